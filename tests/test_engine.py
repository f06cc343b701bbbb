"""The engine built from a config: what the pipeline gets with and without rules."""

from __future__ import annotations

from pathlib import Path

from auditor.config import load_config
from auditor.daemon import build_pipeline
from auditor.store import Store


def _config(tmp_path: Path, bundled: bool) -> Path:
    path = tmp_path / f"c{int(bundled)}.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "a.db"}"\n[rules]\nbundled = {str(bundled).lower()}\n'
    )
    return path


def test_without_rules_the_pipeline_has_no_detector(tmp_path: Path) -> None:
    """No rules, nothing to detect: no detector (a scan's parent then never rebuilds the
    workers' events) and nothing to sieve; a reload to rules and back carries on."""
    store = Store.open(tmp_path / "a.db")
    try:
        bare = build_pipeline(load_config(_config(tmp_path, False)), store, None)
        assert bare.detector is None
        assert bare.setup is not None and bare.setup.sieve is None
        ruled = build_pipeline(load_config(_config(tmp_path, True)), store, bare)
        assert ruled.detector is not None
        assert ruled.setup is not None and ruled.setup.sieve is not None
        again = build_pipeline(load_config(_config(tmp_path, False)), store, ruled)
        assert again.detector is None
        back = build_pipeline(load_config(_config(tmp_path, True)), store, again)
        assert back.detector is not None
        assert back.setup is not None and back.setup.sieve is not None
        assert back.setup.sieve.token != ruled.setup.sieve.token  # a new load, a new token
    finally:
        store.close()

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.config import load_config, parse_config
from auditor.errors import ConfigError


def test_empty_config_is_valid() -> None:
    cfg = parse_config({}, "c.toml")
    assert cfg.sources == () and cfg.store.path == Path("log-auditor.db")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"store": {"pth": "x"}}, "key 'store.pth': unknown key"),
        ({"source": [{"name": "a"}]}, "key 'source[0].path': is required"),
        ({"source": [{"name": "a", "path": "/x", "start": "middle"}]}, "source[0].start"),
        ({"report": {"schedule": "every day"}}, "report.schedule"),
        ({"daemon": {"batch_lines": 0}}, "daemon.batch_lines"),
        ({"daemon": {"batch_lines": "many"}}, "expected int"),
        ({"rules": {"override": {"x": {"severity": "huge"}}}}, "rules.override.x.severity"),
        ({"bogus": 1}, "key 'bogus': unknown key"),
    ],
)
def test_errors_name_file_and_key(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(doc, "c.toml")
    assert "c.toml" in str(exc.value) and message in str(exc.value)


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[store]\npath = "state/a.db"\n[[source]]\nname="api"\npath="logs/x.log"\n')
    cfg = load_config(cfg_file)
    assert cfg.store.path == tmp_path / "state" / "a.db"
    assert cfg.sources[0].path == str(tmp_path / "logs" / "x.log")


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[store\n")
    with pytest.raises(ConfigError, match="c.toml: invalid TOML"):
        load_config(f)

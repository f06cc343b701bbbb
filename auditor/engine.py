"""Builds the pure pipeline from a config: decoders per source, the redactor, the detector.

Shared by `scan` and `run`, so a backfill and live tailing run the same code with the same
rules and the same keyed-hash key.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from auditor.config import Config, SourceConfig
from auditor.errors import UsageError
from auditor.formats import FORMAT_NAMES, FormatSpec, build_decoder
from auditor.keys import load_or_create_key
from auditor.pipeline import Decoder, DecodeSetup, Pipeline, SieveRules
from auditor.redact import Redactor
from auditor.ruleset import RuleSet, no_rules

if TYPE_CHECKING:
    from auditor.detect import Detector
    from auditor.store import Store

# The rule loader and the detector (auditor.rules, auditor.detect: ~15 ms of imports) are
# imported when there are rules: a scan without rules neither loads nor uses them.


def key_path(config: Config, db_path: Path) -> Path:
    """The keyed-hash key lives beside the store unless the config says otherwise."""
    return config.store.key_file or db_path.with_name(db_path.name + ".key")


def check_format_name(name: str) -> None:
    if name not in ("auto", *FORMAT_NAMES):
        choices = ", ".join(("auto", *FORMAT_NAMES))
        raise UsageError(f"unknown format {name!r}; choose one of: {choices}")


def format_spec(src: SourceConfig) -> FormatSpec:
    if src.log_format is None and src.fields is None:
        check_format_name(src.format)
    return FormatSpec(src.format, log_format=src.log_format, fields=src.fields, scheme=src.scheme)


def config_rule_paths(config: Config) -> list[Path]:
    paths: list[Path] = []
    if config.rules.bundled:
        from auditor.rules import bundled_rules_dir

        paths.append(bundled_rules_dir())
    paths.extend(config.rules.paths)
    return paths


def load_config_rules(config: Config) -> RuleSet:
    paths = config_rule_paths(config)
    if not paths and not config.rules.overrides:
        return no_rules()
    from auditor.rules import load_rulesets

    return load_rulesets(paths, config.rules.overrides)


def sieve_rules(config: Config, ruleset: RuleSet) -> SieveRules | None:
    """How a decode worker loads the same rules (None: no rules, nothing to sieve)."""
    if not ruleset.rules:
        return None
    return SieveRules(
        tuple(str(p) for p in config_rule_paths(config)),
        dict(config.rules.overrides),
        ruleset.sha256,
        tuple(r.id for r in ruleset.rules),
        uuid.uuid4().hex,
    )


def restore_detector(ruleset: RuleSet, blob: bytes | None) -> Detector:
    """A detector for ``ruleset``, resuming from ``blob`` (a stored state) if any."""
    from auditor.detect import Detector

    return Detector.restore(ruleset, blob) if blob else Detector(ruleset)


@dataclass
class Engine:
    """Everything the pipeline needs, built once per run (and again on reload)."""

    config: Config
    redactor: Redactor
    ruleset: RuleSet
    specs: dict[str, FormatSpec]
    decoders: dict[str, Decoder]
    sieve: SieveRules | None = None  # for decode workers to sieve for ``detector``
    state: bytes | None = None  # the detector's state as the store held it
    _detector: Detector | None = field(default=None, repr=False)

    @property
    def detector(self) -> Detector:
        """The detector for ``ruleset``, resumed from ``state``; built when first asked for
        (``build_engine`` asks when there are rules: without, a scan never does)."""
        if self._detector is None:
            self._detector = restore_detector(self.ruleset, self.state)
        return self._detector

    def pipeline(self) -> Pipeline:
        """Without rules there is nothing to detect: no detector, so the events are not
        rebuilt from a worker's rows nor looked at (and the stored state stays as the
        last rules left it)."""
        setup = DecodeSetup(self.redactor.key, self.specs, self.sieve)
        return Pipeline(self.decoders, self.detector if self.ruleset.rules else None, setup)

    def add_source(self, name: str, spec: FormatSpec) -> Decoder:
        """Register a source not in the config (a plain `scan` of a file)."""
        if name not in self.decoders:
            self.specs[name] = spec
            self.decoders[name] = build_decoder(spec, self.redactor, name)
        return self.decoders[name]


def build_engine(
    config: Config,
    store: Store | None,
    db_path: Path,
    extra_sources: Mapping[str, FormatSpec] | None = None,
) -> Engine:
    """Build the engine; the detector resumes from the state committed in the store (None:
    a new store, not open yet, which holds none)."""
    redactor = Redactor(load_or_create_key(key_path(config, db_path)))
    ruleset = load_config_rules(config)
    blob = store.detector_state() if store is not None else None
    # Built now (a state that cannot be restored is logged now), except without rules: then
    # when first asked for (``Engine.detector``), which a scan never does.
    detector = restore_detector(ruleset, blob) if ruleset.rules else None
    specs = {s.name: format_spec(s) for s in config.sources}
    specs.update(extra_sources or {})
    decoders: dict[str, Decoder] = {
        name: build_decoder(spec, redactor, name) for name, spec in specs.items()
    }
    sieve = sieve_rules(config, ruleset)
    return Engine(config, redactor, ruleset, specs, decoders, sieve, blob, detector)

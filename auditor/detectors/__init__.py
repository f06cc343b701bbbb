"""Detection building blocks: fields, conditions, gates, windows, and the detector-backed
rule implementations (one idea per module). ``auditor.detect.Detector`` composes them.

Detector modules are imported lazily by ``build_detectors`` so that ``auditor.rules``
can use ``fields``/``conditions``/``params`` without an import cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from auditor.detectors.base import StatefulDetector
    from auditor.rules import Rule

MODULES: dict[str, str] = {
    "pii": "auditor.detectors.pii",
    "transport": "auditor.detectors.transport",
    "volume": "auditor.detectors.volume",
    "enumeration": "auditor.detectors.enumeration",
    "lockout": "auditor.detectors.lockout",
    "silence": "auditor.detectors.silence",
    "error-rate": "auditor.detectors.errorrate",
}
"""Detector name (``detector = "..."`` in a rule file) → implementing module."""


def build_detectors(rules: list[Rule]) -> list[StatefulDetector]:
    """Instances for the detector-backed rules; each module groups its rules as it likes."""
    by_name: dict[str, list[Rule]] = {}
    for rule in rules:
        assert rule.detector is not None
        by_name.setdefault(rule.detector, []).append(rule)
    out: list[StatefulDetector] = []
    for name, group in by_name.items():
        module = importlib.import_module(MODULES[name])
        out.extend(module.build(group))
    return out

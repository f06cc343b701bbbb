"""Findings and events in the shapes SIEMs read: native (CONTRACT.md), OCSF and ECS.

Pure: every function maps an already-redacted dict (what ``auditor.store.queries`` yields,
or its CONTRACT JSON form) to a new dict, ready for ``orjson.dumps``. Rule metadata comes
in as an optional ``auditor.rules.Rule``, a ``RuleInfo`` or a plain mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from auditor.export.ecs import event_to_ecs, finding_to_ecs
from auditor.export.native import event_native, finding_native
from auditor.export.ocsf import event_to_ocsf, finding_to_ocsf
from auditor.export.ruleinfo import RuleInfo, rule_info

SHAPES: tuple[str, ...] = ("native", "ocsf", "ecs")


def serialize_finding(f: Mapping[str, Any], shape: str, rule: object = None) -> dict[str, Any]:
    """One finding in ``shape`` (one of ``SHAPES``); ``ValueError`` for any other shape."""
    if shape == "native":
        return finding_native(f)
    if shape == "ocsf":
        return finding_to_ocsf(f, rule)
    if shape == "ecs":
        return finding_to_ecs(f, rule)
    raise ValueError(f"unknown output shape {shape!r}; use one of {', '.join(SHAPES)}")


def serialize_event(e: Mapping[str, Any], shape: str) -> dict[str, Any]:
    """One stored event in ``shape`` (one of ``SHAPES``); ``ValueError`` for any other shape."""
    if shape == "native":
        return event_native(e)
    if shape == "ocsf":
        return event_to_ocsf(e)
    if shape == "ecs":
        return event_to_ecs(e)
    raise ValueError(f"unknown output shape {shape!r}; use one of {', '.join(SHAPES)}")


__all__ = [
    "SHAPES",
    "RuleInfo",
    "event_to_ecs",
    "event_to_ocsf",
    "finding_to_ecs",
    "finding_to_ocsf",
    "rule_info",
    "serialize_event",
    "serialize_finding",
]

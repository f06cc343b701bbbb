"""Parameter schemas of the detector-backed rules, and the parsers they share with the loader.

Kept apart from the detectors themselves so that ``auditor.rules`` can validate a rule
file without importing the detection code (and without an import cycle).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from auditor.detectors.fields import FIELDS
from auditor.model import PII_TYPES, Severity

_DURATION = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ParamError(ValueError):
    """A bad parameter value; the loader adds file, rule and key."""


def parse_duration(value: Any) -> float:
    """``"10s"``, ``"10m"``, ``"1h"``, ``"500ms"``, ``"1d"`` or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ParamError(f"expected a duration such as '10s' or '5m', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ParamError(f"expected a duration such as '10s' or '5m', got {value!r}")
    if seconds <= 0:
        raise ParamError(f"a duration must be greater than 0, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """``600.0`` → ``"10m"`` (for messages and ``explain``)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ParamError(f"expected a non-negative integer, got {v!r}")
    return v


def _pos_int(v: Any) -> int:
    n = _int(v)
    if n == 0:
        raise ParamError("expected an integer greater than 0, got 0")
    return n


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ParamError(f"expected a non-negative number, got {v!r}")
    return float(v)


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ParamError(f"expected a string, got {v!r}")
    return v


def _severity(v: Any) -> Severity:
    try:
        return Severity.parse(_str(v))
    except KeyError:
        raise ParamError(f"expected low, medium, high or critical, got {v!r}") from None


def _str_list(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ParamError(f"expected a list of strings, got {v!r}")
    return tuple(v)


def _int_list(v: Any) -> frozenset[int]:
    if not isinstance(v, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in v
    ):
        raise ParamError(f"expected a list of integers, got {v!r}")
    return frozenset(v)


def _pii_types(v: Any) -> frozenset[str]:
    types = _str_list(v)
    bad = [t for t in types if t not in PII_TYPES]
    if bad:
        raise ParamError(f"unknown pii type(s) {', '.join(bad)}; known: {', '.join(PII_TYPES)}")
    return frozenset(types)


def _severity_map(v: Any) -> dict[str, Severity]:
    if not isinstance(v, dict):
        raise ParamError(f"expected a table of name = severity, got {v!r}")
    return {str(k): _severity(x) for k, x in v.items()}


def _field(v: Any) -> str:
    name = _str(v)
    if name not in FIELDS:
        raise ParamError(f"unknown field '{name}'")
    return name


def _fields(v: Any) -> tuple[str, ...]:
    names = (v,) if isinstance(v, str) else _str_list(v)
    if not names:
        raise ParamError("expected at least one field")
    return tuple(_field(n) for n in names)


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        s = _str(v)
        if s not in choices:
            raise ParamError(f"expected one of {', '.join(choices)}, got {s!r}")
        return s

    return check


@dataclass(frozen=True, slots=True)
class Param:
    parse: Callable[[Any], Any]
    default: Any  # as written in TOML (parsed like a given value); None = required


_LOCATIONS = ["path", "query", "referer", "target"]
_CREDENTIAL_TYPES = [
    "password",
    "basic-auth",
    "session-id",
    "api-key",
    "jwt",
    "aws-access-key",
    "github-token",
    "stripe-key",
    "slack-token",
]
_PII = ["email", "pan", "iban", "ssn", "phone", "national-id"]

SCHEMAS: dict[str, dict[str, Param]] = {
    "pii": {
        "types": Param(_pii_types, None),
        "details": Param(_str_list, []),
        "exclude_details": Param(_str_list, []),
        "locations": Param(_str_list, _LOCATIONS),
        "severity_by_type": Param(_severity_map, {}),
        "severity_by_detail": Param(_severity_map, {}),
        "plain_http_severity": Param(_choice("", "low", "medium", "high", "critical"), ""),
    },
    "transport": {
        "check": Param(_choice("plain-http", "credentials", "pii", "weak-tls"), None),
        "redirect_statuses": Param(_int_list, [301, 302, 307, 308]),
        "min_tls": Param(_float, 1.2),
        "credential_types": Param(_pii_types, _CREDENTIAL_TYPES),
        "pii_types": Param(_pii_types, _PII),
    },
    "volume": {
        "mode": Param(_choice("baseline", "ceiling", "no-429"), "baseline"),
        "by": Param(_field, "client_ip"),
        "bucket": Param(parse_duration, "1m"),
        "floor": Param(_pos_int, 120),
        "z": Param(_float, 3.5),
        "history": Param(_pos_int, 60),
        "min_history": Param(_pos_int, 10),
        "ceiling": Param(_pos_int, 1200),
        "heavy": Param(_pos_int, 600),
        "limited_statuses": Param(_int_list, [429, 503]),
        "max_keys": Param(_pos_int, 20000),
    },
    "enumeration": {
        "principal": Param(_fields, ["user_name", "client_ip"]),
        "within": Param(parse_duration, "10m"),
        "distinct": Param(_pos_int, 50),
        "run": Param(_pos_int, 20),
        "max_step": Param(_pos_int, 3),
        "denied_share": Param(_float, 0.3),
        "success_share": Param(_float, 0.8),
        "escalated_severity": Param(_severity, "high"),
        "max_keys": Param(_pos_int, 20000),
    },
    "lockout": {
        "failure": Param(_str, "auth_failure"),
        "success": Param(_str, "auth_success"),
        "max_attempts": Param(_pos_int, 10),
        "window": Param(parse_duration, "30m"),
        "lockout_statuses": Param(_int_list, [423, 429]),
        "max_keys": Param(_pos_int, 20000),
    },
    "silence": {
        "min_gap": Param(parse_duration, "1h"),
        "factor": Param(_float, 20.0),
        "min_events": Param(_pos_int, 100),
    },
    "error-rate": {
        "by": Param(_field, "source"),
        "bucket": Param(parse_duration, "5m"),
        "min_ratio": Param(_float, 0.05),
        "mad_k": Param(_float, 3.0),
        "min_requests": Param(_pos_int, 50),
        "min_errors": Param(_pos_int, 10),
        "history": Param(_pos_int, 48),
        "min_history": Param(_pos_int, 6),
        "max_keys": Param(_pos_int, 5000),
    },
}
"""Detector name → parameter name → schema. ``rules check`` shows these names in errors."""

PREDICATE_PARAMS = {("lockout", "failure"), ("lockout", "success")}
"""Parameters that name a predicate (checked against the loaded predicates)."""


def parse_params(detector: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``given`` against the detector's schema and fill the defaults."""
    schema = SCHEMAS[detector]
    for name in given:
        if name not in schema:
            known = ", ".join(sorted(schema))
            raise ParamError(f"unknown param '{name}' for detector '{detector}' (known: {known})")
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        if name in given:
            raw = given[name]
        elif spec.default is None:
            raise ParamError(f"param '{name}' is required for detector '{detector}'")
        else:
            raw = spec.default
        try:
            out[name] = spec.parse(raw)
        except ParamError as exc:
            raise ParamError(f"param '{name}': {exc}") from None
    return out

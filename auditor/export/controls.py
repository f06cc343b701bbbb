"""Control ids (``PCI-DSS-4.0.1:3.5.1``) → the standards and requirements they name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Framework prefix of a control id → the standard's name as SIEMs usually spell it.
_STANDARDS = {
    "PCI-DSS-4.0.1": "PCI DSS v4.0.1",
    "PCI-DSS-3.2.1": "PCI DSS v3.2.1",
    "GDPR": "GDPR",
    "OWASP-API-2023": "OWASP API Security Top 10 (2023)",
}


def split_control(control: str) -> tuple[str, str]:
    """``"PCI-DSS-4.0.1:3.5.1"`` → ``("PCI-DSS-4.0.1", "3.5.1")``; no colon → ``("", id)``."""
    framework, sep, requirement = control.partition(":")
    return (framework, requirement) if sep else ("", control)


def standard_name(framework: str) -> str:
    return _STANDARDS.get(framework, framework)


def compliance(controls: Iterable[str]) -> dict[str, Any] | None:
    """The OCSF ``compliance`` object: standards and requirements, in first-seen order."""
    ids = list(dict.fromkeys(controls))
    if not ids:
        return None
    standards: list[str] = []
    requirements: list[str] = []
    for c in ids:
        framework, requirement = split_control(c)
        name = standard_name(framework) if framework else ""
        if name and name not in standards:
            standards.append(name)
        requirements.append(f"{name} {requirement}".strip())
    return {
        "standards": standards or ["unspecified"],
        "requirements": requirements,
        "control": ", ".join(ids),
    }


def by_framework(controls: Iterable[str]) -> dict[str, list[str]]:
    """Requirement ids grouped by framework prefix (for labels and tags)."""
    out: dict[str, list[str]] = {}
    for c in controls:
        framework, requirement = split_control(c)
        out.setdefault(framework or "other", []).append(requirement)
    return out

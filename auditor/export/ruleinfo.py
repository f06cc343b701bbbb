"""What the outputs need to know about a rule, from a loaded ``Rule`` or a plain mapping.

The shapes stay pure: they take this small frozen value (or anything that looks like a rule:
``auditor.rules.Rule``, a dict from a rule file) instead of reaching for the ruleset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_WRAPPED = re.compile(r"[ \t]*(?<!\n)\n(?!\n)[ \t]*")


@dataclass(frozen=True, slots=True)
class RuleInfo:
    id: str | None = None
    title: str | None = None
    description: str | None = None
    remediation: str | None = None
    category: str | None = None
    controls: tuple[str, ...] = ()
    references: tuple[str, ...] = ()


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _prose(value: object) -> str | None:
    """Rule files wrap their prose at ~90 columns: join the lines, keep blank-line breaks."""
    text = _text(value)
    return None if text is None else _WRAPPED.sub(" ", text)


def _texts(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list | tuple):
        return tuple(v for v in value if isinstance(v, str) and v)
    return ()


def rule_info(rule: object) -> RuleInfo:
    """A ``RuleInfo`` from ``None``, a ``RuleInfo``, a mapping, or an object with attributes."""
    if rule is None:
        return RuleInfo()
    if isinstance(rule, RuleInfo):
        return rule
    if isinstance(rule, Mapping):
        get: Any = rule.get
    else:

        def get(name: str) -> object:
            return getattr(rule, name, None)

    return RuleInfo(
        id=_text(get("id")),
        title=_text(get("title")),
        description=_prose(get("description")),
        remediation=_prose(get("remediation")),
        category=_text(get("category")),
        controls=_texts(get("controls")),
        references=_texts(get("references")) or _texts(get("reference")),
    )

"""``RuleSet``: the loaded rules (see ``auditor.rules``, which loads them).

A module of its own so that a scan without rules has an empty set without importing the
rule loader and its validation (``NO_RULES``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from auditor.rules import Predicate, Rule


@dataclass(frozen=True, eq=False)
class RuleSet:
    """The enabled rules of all loaded files, in load order, and what identifies them."""

    rules: tuple[Rule, ...]
    predicates: Mapping[str, Predicate]
    files: tuple[Path, ...]
    sha256: str  # of the files' bytes, in load order
    disabled: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return f"{len(self.rules)} rules, sha256:{self.sha256[:12]}"

    def get(self, rule_id: str) -> Rule | None:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        return None

    def only(self, rule_ids: Sequence[str]) -> RuleSet:
        """The same set restricted to some rules (examples run one rule at a time)."""
        keep = tuple(r for r in self.rules if r.id in rule_ids)
        return RuleSet(keep, self.predicates, self.files, self.sha256, self.disabled)


def no_rules() -> RuleSet:
    """What ``load_rulesets`` returns for no files and no overrides."""
    return RuleSet((), {}, (), hashlib.sha256().hexdigest(), ())

"""Running the examples of rule files: what ``log-auditor rules check`` and the tests do.

An example is one or more raw log lines (``format``, default nginx-combined), decoded by
the production decoders with a throw-away key, optionally repeated, re-timed (``step``)
and varied (client IP, user name, the last number in the path), then fed to a fresh
``Detector`` holding only the rule under test. ``fires`` says whether that rule must emit
at least one hit.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from auditor.detect import Detector
from auditor.errors import ConfigError
from auditor.model import Event, Hit, Line
from auditor.rules import Example, ExamplePart, Rule, RuleSet

Decode = Callable[[Line], Event | None]
_LAST_NUMBER = re.compile(r"(\d{1,18})(?!.*\d)")


@dataclass(frozen=True, slots=True)
class Problem:
    """One failed check: ``file: rule 'id': example[i]: what``."""

    file: str
    rule_id: str
    what: str

    def __str__(self) -> str:
        return f"{self.file}: rule '{self.rule_id}': {self.what}"


class Decoders:
    """Decoders per format name, built on demand with a throw-away redaction key."""

    def __init__(self) -> None:
        self._cache: dict[str, Decode] = {}

    def get(self, name: str) -> Decode:
        got = self._cache.get(name)
        if got is None:
            from auditor.formats import FormatSpec, build_decoder
            from auditor.redact import Redactor

            got = build_decoder(FormatSpec(name), Redactor(b"k" * 32), "example")
            self._cache[name] = got
        return got


def _vary(ev: Event, i: int, fields: tuple[str, ...]) -> Event:
    changes: dict[str, object] = {}
    if "client_ip" in fields:
        changes["client_ip"] = f"198.51.{100 + i // 250}.{i % 250 + 1}"
    if "user_name" in fields:
        changes["user_name"] = f"{ev.user_name or 'user'}{i}"
    if "path_id" in fields:
        m = _LAST_NUMBER.search(ev.path)
        if m:
            n = int(m.group(1)) + i
            changes["path"] = ev.path[: m.start()] + str(n) + ev.path[m.end() :]
        else:
            changes["path"] = f"{ev.path}-{i}"
    return dataclasses.replace(ev, **changes) if changes else ev  # type: ignore[arg-type]


def example_events(example: Example, decode: Decode) -> list[Event]:
    """The events of an example; raises ``ValueError`` for a line that does not parse."""
    out: list[Event] = []
    last: Event | None = None
    for part in example.parts:
        base = _decode_part(part, decode)
        start = None
        if part.step is not None:
            start = (
                base[0].timestamp if last is None else last.timestamp + timedelta(seconds=part.step)
            )
        k = 0
        for _ in range(part.repeat):
            for ev in base:
                if start is not None and part.step is not None:
                    ev = dataclasses.replace(ev, timestamp=start + timedelta(seconds=k * part.step))
                ev = _vary(ev, k, part.vary)
                out.append(ev)
                last = ev
                k += 1
    return out


def _decode_part(part: ExamplePart, decode: Decode) -> list[Event]:
    events = []
    for text in part.lines:
        ev = decode(Line("example", "example", 0, len(text) + 1, text))
        if ev is None:
            raise ValueError(f"line does not parse: {text[:80]!r}")
        if part.pad_path:
            ev = dataclasses.replace(ev, path=ev.path + "A" * part.pad_path)
        events.append(ev)
    return events


def run_example(
    ruleset: RuleSet, rule: Rule, example: Example, decoders: Decoders
) -> tuple[bool, list[Hit]]:
    """(passed, hits of the rule). Raises ``ValueError`` when the example cannot be built."""
    try:
        decode = decoders.get(example.format)
    except ConfigError as exc:  # a bad format name is a problem of the rule file
        raise ValueError(f"format {example.format!r}: {exc}") from None
    events = example_events(example, decode)
    det = Detector(ruleset.only([rule.id]))
    hits = [h for ev in events for h in det.observe(ev) if h.rule_id == rule.id]
    return (bool(hits) == example.fires, hits)


def check_examples(ruleset: RuleSet, decoders: Decoders | None = None) -> list[Problem]:
    """Run every example of every rule; one ``Problem`` per failure."""
    decoders = decoders or Decoders()
    problems: list[Problem] = []
    for rule in ruleset.rules:
        for ex in rule.examples:
            where = f"example[{ex.index}]"
            try:
                ok, hits = run_example(ruleset, rule, ex, decoders)
            except ValueError as exc:
                problems.append(Problem(rule.file, rule.id, f"{where}: {exc}"))
                continue
            if not ok:
                want = "fire" if ex.fires else "not fire"
                got = f"{len(hits)} hit(s)" if hits else "no hit"
                note = f" ({ex.note})" if ex.note else ""
                problems.append(
                    Problem(rule.file, rule.id, f"{where}: expected to {want}, got {got}{note}")
                )
    return problems

"""What every detector-backed rule implementation shares: the per-event environment, hit
construction, and the state contract (``dump``/``load``/``sweep``) the ``Detector`` relies on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from itertools import accumulate
from operator import attrgetter
from typing import Any

from auditor.detectors.fields import EventView, evidence
from auditor.model import Event, Hit, Severity
from auditor.packedevents import PackedEvents
from auditor.rules import Rule


class Env:
    """Per-event context handed to detectors: matched predicates and a lazy ``EventView``."""

    __slots__ = ("_ev", "_t", "_view", "lazy", "preds")

    def __init__(self, lazy: Mapping[str, Any] | None = None) -> None:
        self.lazy = lazy
        self.preds: frozenset[str] = frozenset()
        self._view: EventView | None = None
        self._ev: Event | None = None
        self._t = 0.0

    def reset(self, ev: Event, t: float, preds: frozenset[str], view: EventView | None) -> None:
        self._ev, self._t, self.preds, self._view = ev, t, preds, view

    def view(self) -> EventView:
        if self._view is None:
            assert self._ev is not None
            self._view = EventView(self._ev, self._t, self.preds, self.lazy)
        return self._view


_NO_PREDS: frozenset[str] = frozenset()

Hits = list[tuple[int, list[Hit]]]
"""Hits of a run of events, each list tagged with the index of the event that caused it."""


class Stretch:
    """A run of events (``events[lo:hi]``) handed to a detector at once (see ``Detector``).

    ``ts`` holds the log time of every event, ``marks`` its running maximum (the watermark),
    so ``bisect(marks, x)`` finds where log time first reaches ``x``. ``seen`` holds the
    predicates and views of the events the rules looked at; ``env(i)`` builds the per-event
    context a detector needs for allow-lists (rarely: only when it is about to emit);
    ``column(name)`` one field of every event, read once for the sieve and all detectors.
    """

    __slots__ = ("columns", "events", "hi", "lazy", "lo", "marks", "seen", "ts")

    def __init__(
        self,
        events: Sequence[Event],
        ts: list[float],
        marks: list[float],
        lo: int,
        hi: int,
        seen: dict[int, tuple[frozenset[str], EventView | None]],
        lazy: Mapping[str, Any] | None,
        columns: dict[str, list[Any]] | None = None,
    ) -> None:
        self.events, self.ts, self.marks = events, ts, marks
        self.lo, self.hi, self.seen, self.lazy = lo, hi, seen, lazy
        self.columns = {} if columns is None else columns

    def column(self, name: str) -> list[Any]:
        """Field ``name`` of ``events[lo:hi]`` (index ``i - lo``), read once per stretch:
        the sieve and the detectors share it (each pass over a thousand events that are
        no longer in the CPU cache costs ~50 ns per event)."""
        got = self.columns.get(name)
        if got is None:
            events = self.events
            whole = events.columns.get(name) if isinstance(events, PackedEvents) else None
            if whole is not None:  # sent by the decode worker: the events stay unbuilt
                got = self.columns[name] = whole[self.lo : self.hi]
            else:
                got = self.columns[name] = list(map(attrgetter(name), events[self.lo : self.hi]))
        return got

    def env(self, i: int) -> Env:
        env = Env(self.lazy)
        got = self.seen.get(i)
        if got is None:
            env.reset(self.events[i], self.ts[i], _NO_PREDS, None)
        else:
            env.reset(self.events[i], self.ts[i], got[0], got[1])
        return env


def running_max(values: list[float], initial: float | None = None) -> list[float]:
    """``list(accumulate(values, max, initial=initial))``. Log times usually come in
    order, and then it is a sorted copy: ``sorted`` and a list compare run in C at a few
    ns per time, where ``accumulate`` calls ``max`` for each (~250 ns)."""
    ordered = sorted(values)
    if ordered == values and (initial is None or not values or initial <= values[0]):
        return ordered if initial is None else [initial, *ordered]
    return list(accumulate(values, max, initial=initial))


def to_dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def make_hit(
    rule: Rule,
    ev: Event,
    key: str,
    count: int = 1,
    first: float | None = None,
    *,
    severity: Severity | None = None,
    extra: str | None = None,
    pii_type: str | None = None,
    digest: str | None = None,
    client_ip: str | None = "",
) -> Hit:
    """A ``Hit`` for ``rule`` at event ``ev``; ``first`` (log seconds) defaults to the event."""
    first_seen = ev.timestamp
    if first is not None:  # the earlier of the two (min() costs ~200 ns more per call)
        start = to_dt(first)
        if not first_seen < start:
            first_seen = start
    return Hit(
        rule_id=rule.id,
        title=rule.title,
        category=rule.category,
        severity=severity if severity is not None else rule.severity,
        key=key,
        timestamp=ev.timestamp,
        first_seen=first_seen,
        count=count,
        source=ev.source,
        client_ip=ev.client_ip if client_ip == "" else client_ip,
        evidence=evidence(ev, extra),
        controls=rule.controls,
        pii_type=pii_type,
        digest=digest,
        episode_gap_s=rule.episode_gap_s,
    )


_FOLD_MARGIN = 0.002
"""Seconds short of a rule's episode gap from which two hits are not folded: the store
compares whole milliseconds, and a fold must never join what it would keep apart."""


class Folds:
    """Per-request hits (count 1) of a stretch, folded into one hit per rule and key while
    they come in time order, with one severity, less than the rule's episode gap apart.

    A key past its threshold (a volume limit, an enumeration under way, a window rule's
    episode) makes a hit for each further request: tens of thousands in busy traffic, each
    an event built from its row and a hit made, for the store to add them up again into
    one finding. The store folds hits just so (``Store._fold_hits``: count added, first
    and last seen, the first hit's evidence while the severity does not rise, a new
    episode after a gap), so the findings are the same; ``Hit.emits`` tells how many hits
    one stands for. ``events``: the stretch's (indexes are theirs).
    """

    __slots__ = ("events", "runs")
    enabled = True  # False: every hit stands alone (tests compare both ways)

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = events
        # (rule id, key) -> [rule, key, first i, last i, last t, n, severity, extra,
        #                    client_ip, first]
        self.runs: dict[tuple[str, str], list[Any]] = {}

    def extend(self, rule: Rule, key: str, i: int, t: float, severity: Severity) -> bool:
        """Fold a count-1 hit of ``rule`` for ``key`` at event ``i`` (log time ``t``) into
        the run under way, if it can be; else False: ``start`` one."""
        run = self.runs.get((rule.id, key))
        if run is None or not self.enabled:
            return False
        last_t = run[4]
        if not (last_t <= t < last_t + rule.episode_gap_s - _FOLD_MARGIN and run[6] == severity):
            return False
        run[3] = i
        run[4] = t
        run[5] += 1
        return True

    def start(
        self,
        rule: Rule,
        key: str,
        i: int,
        t: float,
        severity: Severity,
        extra: str | None,
        out: Hits,
        *,
        client_ip: str | None = "",
        first: float | None = None,
    ) -> None:
        """Start a run with this hit (``extra``: its evidence's note; ``client_ip`` and
        ``first``: as ``make_hit`` takes them), the one of ``rule`` and ``key`` before it
        emitted into ``out``."""
        self.cut(rule, key, out)
        run = [rule, key, i, i, t, 1, severity, extra, client_ip, first]
        if self.enabled:
            self.runs[(rule.id, key)] = run
        else:
            self._emit(run, out)

    def cut(self, rule: Rule, key: str, out: Hits) -> None:
        """Emit the run of ``rule`` and ``key`` before another hit of theirs (a run never
        spans one)."""
        run = self.runs.pop((rule.id, key), None)
        if run is not None:
            self._emit(run, out)

    def flush(self, out: Hits) -> None:
        """Emit every run (at the end of the stretch)."""
        for run in self.runs.values():
            self._emit(run, out)
        self.runs.clear()

    def _emit(self, run: list[Any], out: Hits) -> None:
        rule, key, i, last, _t, n, severity, extra, client_ip, first = run
        hit = make_hit(
            rule, self.events[i], key, 1, first, severity=severity, extra=extra, client_ip=client_ip
        )
        if n > 1:
            hit = replace(hit, timestamp=self.events[last].timestamp, count=n, emits=n)
        out.append((i, [hit]))


class StatefulDetector:
    """Base of the detector implementations (one instance may serve several rules)."""

    name = "detector"
    # Which events the Detector hands over: "all", those with "exposures", those with
    # "preds" or one of ``statuses``, or "transport" (scheme/port/TLS known).
    wants = "all"
    statuses: frozenset[int] = frozenset()
    # The fields ``observe_stretch`` reads with ``Stretch.column`` (a decode worker sends
    # them; see auditor.packedevents).
    columns: tuple[str, ...] = ()

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    @property
    def ident(self) -> str:
        """Stable name of this instance in snapshots."""
        return f"{self.name}:{','.join(r.id for r in self.rules)}"

    @property
    def fingerprint(self) -> str:
        return ",".join(r.fingerprint for r in self.rules)

    def suspect_tests(self) -> list[tuple[str, Callable[[Any], object]]] | None:
        """For a "transport" detector: tests of one field each that together let through a
        superset of the events it can fire on (the sieve marks an event when one passes;
        a path not starting with '/' is marked anyway). None: every event whose scheme,
        server port or TLS version is known."""
        return None

    def observe(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        raise NotImplementedError

    def observe_one(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        """``observe`` for detectors that implement ``observe_stretch``: a stretch of one."""
        s = Stretch((ev,), [t], [t], 0, 1, {0: (env.preds, env._view)}, env.lazy)
        got = self.observe_stretch(s)
        if not got:
            return None
        return got[0][1] if len(got) == 1 else [h for _, hits in got for h in hits]

    def observe_stretch(self, s: Stretch) -> Hits:
        """``observe`` over ``s.events[s.lo:s.hi]``; detectors that see every event override
        it with a loop of their own (one call per batch instead of one per event)."""
        out: Hits = []
        events, ts = s.events, s.ts
        for i in range(s.lo, s.hi):
            got = self.observe(events[i], ts[i], s.env(i))
            if got:
                out.append((i, got))
        return out

    def sweep(self, now: float) -> None:
        """Forget state that can no longer matter at log time ``now``."""

    def dump(self) -> Any:
        return None

    def load(self, data: Any) -> None:
        """Restore what ``dump`` returned."""

    def explain(self, rule: Rule, view: EventView, env: Env) -> tuple[str, str]:
        """``(verdict, reason)`` for ``explain``: verdict is fires/counts/no."""
        return ("no", "detector")

    @staticmethod
    def allowed(rule: Rule, env: Env) -> bool:
        return bool(rule.allow) and rule.allow.allows(env.view())

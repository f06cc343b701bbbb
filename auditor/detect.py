"""The detection engine: events in, hits out, in log-time order, state in a snapshot.

``Detector(ruleset).observe(event)`` gates the event (``auditor.detectors.gate``),
evaluates the predicates and rule clauses that passed their gates, feeds threshold
windows, and runs the detector-backed rules (PII, transport, volume...). Windows run on
the events' own timestamps, so the hits do not depend on how the input is batched, and
``snapshot()``/``Detector.restore()`` carry every bit of state across a restart.
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import compress
from operator import attrgetter, itemgetter, or_
from typing import Any, cast

import orjson

from auditor.detectors import build_detectors
from auditor.detectors.base import (
    Env,
    Folds,
    Hits,
    StatefulDetector,
    Stretch,
    make_hit,
    running_max,
)
from auditor.detectors.conditions import Clause, clause_holds, first_failure
from auditor.detectors.fields import DIRECT_FIELDS, MAX_SCAN, EventView, decode_url, key_of
from auditor.detectors.gate import (
    CachedGate,
    Entry,
    Plan,
    build_plan,
    cost,
    gate_of,
    status_values,
)
from auditor.detectors.lane import LaneColumns, Row, condition_keys, lane_attributes
from auditor.detectors.sieve import RowTest, Sieve
from auditor.detectors.windows import Window, make_window
from auditor.model import Event, Hit, Severity
from auditor.packedevents import PackedEvents
from auditor.pipeline import Marks
from auditor.rules import Allow, Rule, RuleSet, Threshold

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 2
_READABLE = (1, 2)  # 2: the larger states as plain JSON objects (see the detectors' load)
SWEEP_EVERY = 300.0  # seconds of log time between sweeps of idle state (caps bound memory too)
_NO_PREDS: frozenset[str] = frozenset()
_EVENT_ORDER = itemgetter(0, 1)
_SIEVE_FROM = 16  # events in a stretch
STRETCH = 1024  # events at most in a stretch (see _stretches)  # hits of one event: rules, then detectors in a fixed order


def _ua(raw: str | None) -> str | None:
    return None if raw is None or raw == "-" else raw


def _ref(raw: str | None) -> str | None:
    return None if raw is None or raw == "-" else decode_url(raw)


_CACHED_RAW: dict[str, tuple[Callable[[Event], str | None], Callable[[str | None], str | None]]] = {
    "user_agent": (attrgetter("user_agent"), _ua),
    "referrer": (attrgetter("referrer"), _ref),
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one rule relates to one event, for ``explain``."""

    rule_id: str
    category: str
    verdict: str  # "fires" | "counts" | "no"
    reason: str


class Detector:
    """Stateful rule evaluation over a stream of events (see module doc)."""

    use_lane = True  # False: every rule through the gates (tests compare both ways)

    def __init__(self, ruleset: RuleSet, max_keys: int = 20000) -> None:
        self.ruleset = ruleset
        # While a stretch is detected: the rules' count-1 hits folded (see ``Folds``),
        # what they emitted, and the index of the event being looked at.
        self._folds: Folds | None = None
        self._folded: Hits = []
        self._at = 0
        eager = _eager_predicates(ruleset)
        self._lazy = {
            name: pred.clauses for name, pred in ruleset.predicates.items() if name not in eager
        }
        entries: list[Entry] = []
        names = set(ruleset.predicates)
        for name, pred in ruleset.predicates.items():
            if name in eager:
                for clause in pred.clauses:
                    entries.append(Entry(len(entries), name, True, _cheap_first(clause, names)))
        self._rule_order: dict[str, int] = {}
        for pos, rule in enumerate(ruleset.rules):
            self._rule_order[rule.id] = pos
            if rule.detector is None:
                for clause in rule.clauses:
                    entries.append(Entry(len(entries), rule.id, False, _cheap_first(clause, names)))
        # Rules counted from columns (see ``auditor.detectors.lane``) leave the gates.
        lane, self._lane_codes, lane_attrs = self._lane_of(ruleset, entries, eager)
        in_lane = {e.index for _, parts in lane for e in parts}
        self._lane_attrs = tuple(sorted(lane_attrs))
        self._plan: Plan = build_plan(
            [e for e in entries if e.index not in in_lane], frozenset(eager)
        )
        self._entries = entries
        self._rules = {r.id: r for r in ruleset.rules}
        self._allow = {r.id: r.allow for r in ruleset.rules if r.allow}
        # Identical unless-clauses (shared by several rules) are evaluated once per event.
        clause_ids: dict[str, int] = {}
        self._unless = {
            r.id: [(clause_ids.setdefault(repr(c), len(clause_ids)), c) for c in r.unless]
            for r in ruleset.rules
            if r.unless
        }
        self._has_preds = any(e.is_pred for e in entries)
        fields = dict(self._plan.fields)
        self._methods = fields.pop("method", None)
        self._fields = [(attrgetter(f), table) for f, table in fields.items()]
        self._status_get = self._plan.status.get
        self._always = self._plan.always
        self._min_length = self._plan.min_length
        self._cached = [
            (_CACHED_RAW[f][0], CachedGate(f, entries, ids, _CACHED_RAW[f][1]))
            for f, ids in self._plan.cached.items()
        ]
        url = self._plan.url
        self._url_on = bool(self._plan.url_entries or self._plan.length)
        self._pre_match = url.prefixes.rx.match if url.prefixes.rx is not None else None
        self._suf_match = url.suffixes.rx.match if url.suffixes.rx is not None else None
        self._always_search = url.always_rx.search if url.always_rx is not None else None
        assert url.charset is not None
        self._rare_findall = url.charset.findall
        # Trigger characters that need no decoding: anything but '%' (and '+' when a
        # literal has a space, since '+' decodes to one in a query).
        self._quiet = frozenset(url.groups) - {"%", "+" if url.space else "%"}
        self._windows: dict[str, Window] = {
            r.id: make_window(r.threshold, max_keys) for r in ruleset.rules if r.threshold
        }
        self._pred_entries = frozenset(e.index for e in entries if e.is_pred)
        # Entries whose one condition is what their dict gate looks up: a candidate holds.
        in_tables = {i for ids in self._plan.status.values() for i in ids}
        in_tables.update(i for t in self._plan.fields.values() for ids in t.values() for i in ids)
        self._exact = frozenset(i for i in in_tables if len(entries[i].clause) == 1)
        self._firing: dict[str, Firing] = {
            r.id: self._firing_of(r) for r in ruleset.rules if r.detector is None
        }
        self.lane_rules = tuple(rule.id for rule, _ in lane)
        self._lane: list[LaneRule] = [
            (self._firing[rule.id], tuple(e.clause for e in parts), rule.threshold)
            for rule, parts in lane
        ]
        self._lane_keys = condition_keys(
            [
                *(clause for _, clauses, _ in self._lane for clause in clauses),
                *(clause for rule, _ in lane for clause in rule.unless),
                *(clause for clauses in self._lazy.values() for clause in clauses),
            ]
        )
        self._dets: list[StatefulDetector] = build_detectors(
            [r for r in ruleset.rules if r.detector is not None]
        )
        self._exp_dets = [d for d in self._dets if d.wants == "exposures"]
        self._pred_dets = [d for d in self._dets if d.wants == "preds"]
        self._all_dets = [d for d in self._dets if d.wants == "all"]
        # What the detectors read of every event (a decode worker sends these columns).
        self.columns: tuple[str, ...] = tuple(
            dict.fromkeys(
                ["source", *(c for d in self._all_dets for c in d.columns), *self._lane_attrs]
            )
        )
        self._transport_dets = [d for d in self._dets if d.wants == "transport"]
        self._pred_statuses: frozenset[int] = frozenset().union(
            *(d.statuses for d in self._pred_dets)
        )
        # What the sieve must also let through: what the transport and lockout detectors
        # look at (see ``_stretch``).
        extra: list[RowTest] = []
        if self._pred_dets and self._pred_statuses:
            extra.append(("status", self._pred_statuses.__contains__))
        if self._exp_dets:
            extra.append(("exposures", bool))
        known: tuple[str, ...] = ()
        for det in self._transport_dets:
            tests = det.suspect_tests()
            if tests is None:
                known = ("scheme", "server_port", "tls_version")
            else:
                extra.extend(tests)
        self._sieve = Sieve(
            self._plan,
            [(gate.name, gate) for _, gate in self._cached],
            self._url_on,
            extra,
            relative=bool(self._transport_dets),
            known=known,
        )
        # Fingerprints (hashes of rule definitions) once, and each window's last dump.
        self._fps = {rid: self._rules[rid].fingerprint for rid in self._windows}
        self._det_fps = [(d, d.fingerprint) for d in self._dets]
        self._frags: dict[str, orjson.Fragment] = {}
        self._wm = -1.0
        self._next_sweep = 0.0
        self._last_dt: datetime | None = None
        self._last_t = 0.0

    def _lane_of(
        self, ruleset: RuleSet, entries: list[Entry], eager: set[str]
    ) -> tuple[list[tuple[Rule, list[Entry]]], frozenset[int], set[str]]:
        """The rules counted from columns (see ``auditor.detectors.lane``) with their
        entries, in rule order, the status codes they look at, and the attributes they read.
        Every clause of such a rule must qualify, else the rule could fire twice."""
        if not self.use_lane:
            return [], frozenset(), set()
        gated = frozenset(eager)
        rules = {r.id: r for r in ruleset.rules}
        clauses = {name: pred.clauses for name, pred in ruleset.predicates.items()}
        by_rule: dict[str, list[tuple[Entry, frozenset[int], frozenset[str] | None]]] = {}
        for e in entries:
            if e.is_pred:
                continue
            kind, best = gate_of(e.clause, gated)
            if kind != "status":  # a clause gated elsewhere may test the status too
                best = next((c for c in e.clause if status_values(c)), best)
            codes = status_values(best)
            attrs = None
            if codes:
                attrs = lane_attributes(rules[e.owner], e.clause, clauses, self._lazy)
            by_rule.setdefault(e.owner, []).append((e, codes, attrs))
        lane: list[tuple[Rule, list[Entry]]] = []
        codes_used: set[int] = set()
        used: set[str] = set()
        for rule_id, parts in by_rule.items():
            if any(attrs is None for _, _, attrs in parts):
                continue
            lane.append((rules[rule_id], [e for e, _, _ in parts]))
            for _, codes, attrs in parts:
                assert attrs is not None
                used |= attrs
                codes_used |= codes
        return lane, frozenset(codes_used), used

    def _firing_of(self, rule: Rule) -> Firing:
        th = rule.threshold
        window = self._windows.get(rule.id) if th is not None else None
        key_get: Callable[[EventView], str | None] = _none
        value_get = None
        if th is not None:
            by = th.by
            key_get = _text_of(by[0]) if len(by) == 1 else partial(_joined_key, by)
            value_get = _text_of(th.of) if th.of is not None else None
        return (
            rule,
            self._unless.get(rule.id),
            self._allow.get(rule.id),
            key_get,
            value_get,
            window,
        )

    # --- the hot path -------------------------------------------------------------------

    def _time(self, ev: Event) -> float:
        ts = ev.timestamp
        if ts is self._last_dt:
            return self._last_t
        t = ts.timestamp()
        self._last_dt, self._last_t = ts, t
        return t

    def observe(self, event: Event) -> list[Hit]:
        """Hits caused by ``event`` (usually none). Never raises on odd event values."""
        return self.observe_many((event,))

    def observe_many(self, events: Sequence[Event], marks: Marks | None = None) -> list[Hit]:
        """Hits caused by ``events``, in log-time order: what ``observe`` on each event in
        turn returns, concatenated, whatever the batch size (the pipeline's entry point).
        ``marks``: what ``sieve(events)`` returned, run in another process (the decode
        worker), so this one need not sieve.

        The rules run event by event; each stateful detector then runs over the whole
        stretch between two sweeps in a loop of its own, and the hits are put back in
        event order (per event: rules first, then the detectors in a fixed order).
        """
        n = len(events)
        if n == 0:
            return []
        ts = self._times(events)
        wms = running_max(ts)  # the watermark after each event
        out: list[tuple[int, int, list[Hit]]] = []
        lo = 0
        while wms[-1] >= self._next_sweep:
            i = bisect_left(wms, self._next_sweep, lo)
            self._stretches(events, ts, wms, lo, i, out, marks)
            self._sweep(ts[i])
            lo = i
        self._stretches(events, ts, wms, lo, n, out, marks)
        self._wm = max(self._wm, wms[-1])
        if not out:
            return []
        if len(out) == 1:
            return out[0][2]
        out.sort(key=_EVENT_ORDER)
        return [h for _, _, hits in out for h in hits]

    def _stretches(
        self,
        events: Sequence[Event],
        ts: list[float],
        marks: list[float],
        lo: int,
        hi: int,
        out: list[tuple[int, int, list[Hit]]],
        sieved: Marks | None = None,
    ) -> None:
        """``events[lo:hi]`` (no sweep falls inside) in stretches of at most ``STRETCH``
        events: a stretch is read a dozen times (a column at a time), which is cheap while
        its events stay in the CPU cache and dear when they must come from memory again."""
        for start in range(lo, hi, STRETCH):
            self._stretch(events, ts, marks, start, min(start + STRETCH, hi), out, sieved)

    def _times(self, events: Sequence[Event]) -> list[float]:
        """Log time (epoch seconds) of each event; consecutive events often share their
        datetime object. (Hashing aware datetimes to convert each distinct one once costs
        more than converting.)"""
        if isinstance(events, PackedEvents):  # from a decode worker: left unbuilt
            return events.seconds()
        out: list[float] = []
        append = out.append
        last_dt, last_t = self._last_dt, self._last_t
        for ev in events:
            dt = ev.timestamp
            if dt is not last_dt:
                last_dt, last_t = dt, dt.timestamp()
            append(last_t)
        self._last_dt, self._last_t = last_dt, last_t
        return out

    def _stretch(  # noqa: C901 - hot path, kept inline for speed
        self,
        events: Sequence[Event],
        ts: list[float],
        marks: list[float],
        lo: int,
        hi: int,
        out: list[tuple[int, int, list[Hit]]],
        sieved: Marks | None = None,
    ) -> None:
        """Rules (and the detectors that want few events) event by event, for the events
        that can pass a gate or interest such a detector, then each detector that sees
        every event over the whole stretch."""
        seen: dict[int, tuple[frozenset[str], EventView | None]] = {}
        candidates = self._candidates
        lazy = self._lazy
        transport, exposed, pred_dets = self._transport_dets, self._exp_dets, self._pred_dets
        pred_statuses = self._pred_statuses
        order = len(self._all_dets)
        # A few events are cheaper to look at than to sieve (``observe`` of one).
        suspects: Sequence[int] = range(hi - lo)
        url_suspects = None
        columns: dict[str, list[Any]] = {}  # fields of events[lo:hi] the sieve read
        if sieved is not None:  # sieved where the events were decoded
            marked, url_marked = sieved.suspects, sieved.url
            a = bisect_left(marked, lo)
            suspects = [i - lo for i in marked[a : bisect_left(marked, hi, a)]]
            a = bisect_left(url_marked, lo)
            url_suspects = {i - lo for i in url_marked[a : bisect_left(url_marked, hi, a)]}
        elif hi - lo > _SIEVE_FROM:
            suspects, url_suspects = self._suspects(events[lo:hi], columns)
        stretch = Stretch(events, ts, marks, lo, hi, seen, lazy, columns)
        self._folds = Folds(events)
        for j in suspects:
            i = lo + j
            ev = events[i]
            t = ts[i]
            cands, view = candidates(ev, t, url_suspects is None or j in url_suspects)
            preds = _NO_PREDS
            if cands:
                if view is None:
                    view = EventView(ev, t, _NO_PREDS, lazy)
                hits: list[Hit] = []
                self._at = i
                preds = self._evaluate(cands, view, t, hits)
                if hits:
                    out.append((i, 0, hits))
                seen[i] = (preds, view)
            env = None
            if transport and (
                ev.scheme is not None
                or ev.server_port is not None
                or ev.tls_version is not None
                or not ev.path.startswith("/")
            ):
                env = Env(lazy)
                env.reset(ev, t, preds, view)
                for det in transport:
                    got = det.observe(ev, t, env)
                    if got:
                        out.append((i, order + 1, got))
            if ev.exposures and exposed:
                if env is None:
                    env = Env(lazy)
                    env.reset(ev, t, preds, view)
                for det in exposed:
                    got = det.observe(ev, t, env)
                    if got:
                        out.append((i, order + 2, got))
            if pred_dets and (preds or ev.status in pred_statuses):
                if env is None:
                    env = Env(lazy)
                    env.reset(ev, t, preds, view)
                for det in pred_dets:
                    got = det.observe(ev, t, env)
                    if got:
                        out.append((i, order + 3, got))
        if self._lane_codes:
            self._run_lane(stretch, out)
        folded = self._folded
        self._folds.flush(folded)
        self._folds = None
        if folded:
            out.extend((i, 0, got) for i, got in folded)
            folded.clear()
        if self._all_dets:
            for pos, det in enumerate(self._all_dets, 1):
                for i, got in det.observe_stretch(stretch):
                    out.append((i, pos, got))

    def _run_lane(self, s: Stretch, out: list[tuple[int, int, list[Hit]]]) -> None:
        """The lane's rules over the stretch (see ``_lane_of``), a rule at a time in rule
        order, each condition tested on a column of the events with one of the lane's
        status codes; a window is fed in event order, and an event is built for a hit."""
        codes = self._lane_codes
        statuses = s.column("status")
        at = list(compress(range(len(statuses)), map(codes.__contains__, statuses)))
        if not at:
            return
        cols = LaneColumns(at, s.column, self._lazy, self._lane_keys)
        for (rule, unless, allow, _, _, window), clauses, th in self._lane:
            ok = cols.clause(clauses[0])
            for clause in clauses[1:]:
                ok = list(map(or_, ok, cols.clause(clause)))
            for _, clause in unless or ():
                ok = cols.unless(ok, clause)
            if True not in ok:
                continue
            if window is None or th is None:
                self._lane_plain(s, [at[p] for p in compress(range(len(at)), ok)], rule, out)
                continue
            keys = cols.keys(th.by)
            values = cols.texts(th.of) if th.of is not None else None
            lo, ts, add = s.lo, s.ts, window.add
            for p in compress(range(len(at)), ok):
                counted = keys[p]
                if counted is None:
                    continue
                value = None
                if values is not None:
                    value = values[p]
                    if value is None:
                        continue
                i = lo + at[p]
                t = ts[i]
                if allow and allow.allows(self._row_view(s, i, t)):
                    continue
                got = add(counted, t, value)
                if got is not None:
                    hits = self._lane_hit(s, i, t, rule, got, counted)
                    if hits:
                        out.append((i, 0, hits))

    def _lane_plain(
        self, s: Stretch, matched: list[int], rule: Rule, out: list[tuple[int, int, list[Hit]]]
    ) -> None:
        """A lane's rule without a threshold: a hit for each event that matches (at the
        stretch's positions ``matched``) and is not allow-listed."""
        allow = rule.allow
        for j in matched:
            i = s.lo + j
            t = s.ts[i]
            if allow and allow.allows(self._row_view(s, i, t)):
                continue
            view = EventView(s.events[i], t, _NO_PREDS, self._lazy)
            hits: list[Hit] = []
            self._at = i
            self._one(rule, view, key_of(view, rule.key) or "-", t, None, hits)
            if hits:
                out.append((i, 0, hits))

    def _lane_hit(
        self, s: Stretch, i: int, t: float, rule: Rule, got: tuple[int, float], key: str
    ) -> list[Hit]:
        """The hit of a lane's window at event ``i``; a further event of an episode is
        folded into the run under way without building the event when it can be (what
        ``_one`` would do: its severity cannot rise without an escalation)."""
        folds = self._folds
        if (
            got[0] == 1
            and not rule.escalate
            and folds is not None
            and folds.enabled
            and folds.extend(rule, key, i, t, rule.severity)
        ):
            return []
        hits: list[Hit] = []
        self._at = i
        self._crossed(rule, got, key, EventView(s.events[i], t, _NO_PREDS, self._lazy), t, hits)
        return hits

    def _row_view(self, s: Stretch, i: int, t: float) -> EventView:
        """A view of event ``i`` that reads the lane's columns (for an allow-list)."""
        ev = s.events[i]
        if isinstance(s.events, PackedEvents):
            row = Row(s.events, i)
            j = i - s.lo
            for name in self._lane_attrs:
                setattr(row, name, s.column(name)[j])
            ev = cast(Event, row)
        return EventView(ev, t, _NO_PREDS, self._lazy)

    def sieve(
        self, events: Sequence[Event], token: str, columns: dict[str, list[Any]] | None = None
    ) -> Marks:
        """The sieve's verdict on ``events`` (see ``_suspects``), for ``observe_many`` in
        the process that detects them: a decode worker sieves what it decoded. The fields
        the sieve read are left in ``columns``."""
        out, url = self._sieve.suspects(events, columns)
        out |= url
        return Marks(array("I", sorted(out)), array("I", sorted(url)), len(events), token)

    def _suspects(
        self, events: Sequence[Event], columns: dict[str, list[Any]] | None = None
    ) -> tuple[list[int], set[int]]:
        """Indexes of the events the per-event loop must see (in order): those that may
        pass a gate, and those the transport, PII or lockout detectors want (``Sieve``),
        and which of them may pass a URL gate. The others can cause no hit there, so
        they are skipped."""
        out, url = self._sieve.suspects(events, columns)
        out |= url
        return sorted(out), url

    def _candidates(  # noqa: C901 - hot path, kept inline for speed
        self, ev: Event, t: float, url_gates: bool = True
    ) -> tuple[list[int], EventView | None]:
        """Entries whose gate passes (see ``auditor.detectors.gate``); flat for speed.
        ``url_gates=False`` skips the URL gates (the sieve found that none can pass)."""
        cands: list[int] = []
        ids = self._status_get(ev.status)
        if ids:
            cands.extend(ids)
        methods = self._methods
        if methods is not None:
            ids = methods.get(ev.method)
            if ids:
                cands.extend(ids)
        for get, table in self._fields:
            ids = table.get(get(ev))
            if ids:
                cands.extend(ids)
        for get_raw, gate in self._cached:
            raw_value = get_raw(ev)
            ids = gate.cache.get(raw_value)
            if ids is None:
                ids = gate.candidates(raw_value)
            if ids:
                cands.extend(ids)
        view = None
        if self._url_on and url_gates:
            url = self._plan.url
            path, query = ev.path, ev.query
            raw = path if query is None else path + "?" + query
            found: list[str] | None = None
            slow = "//" in path or "/./" in path
            if not slow and url.rare(raw):
                found = self._rare_findall(raw if len(raw) <= MAX_SCAN else raw[:MAX_SCAN])
                slow = not self._quiet.issuperset(found)
            if slow:
                # Encoded (or '+'-spaced, or '//'-obfuscated): gate on the decoded text.
                view = EventView(ev, t, _NO_PREDS, self._lazy)
                low = view.lower("target") or ""
                low_path = view.lower("path") or ""
                if len(low) > MAX_SCAN:
                    low = low[:MAX_SCAN]
                found = self._rare_findall(low)
            else:
                low = ""
                low_path = path.lower()
            pre = self._pre_match
            if pre is not None and pre(low_path) is not None:
                url.prefixes.candidates(low_path, cands)
            suf = self._suf_match
            if suf is not None and suf(low_path[::-1]) is not None:
                url.suffixes.candidates(low_path, cands)
            for bigram, _ in url.pairs:
                if bigram in raw or (slow and bigram in low):
                    if not low:
                        low = raw.lower() if len(raw) <= MAX_SCAN else raw[:MAX_SCAN].lower()
                    url.pair_candidates(low, cands)
                    break
            always = self._always_search
            if always is not None or found:
                if not low:
                    low = raw.lower() if len(raw) <= MAX_SCAN else raw[:MAX_SCAN].lower()
                if always is not None and always(low) is not None:
                    url.always_candidates(low, cands)
                if found:
                    url.group_candidates(low, found, cands)
            if len(raw) >= self._min_length:
                for least, ids in self._plan.length:
                    if len(raw) >= least:
                        cands.extend(ids)
        if self._always:
            cands.extend(self._always)
        return cands, view

    def _evaluate(
        self, cands: list[int], view: EventView, t: float, hits: list[Hit]
    ) -> frozenset[str]:
        entries = self._entries
        cands.sort()
        preds: set[str] = set()
        rule_ids: list[int] = []
        if self._has_preds and not self._pred_entries.isdisjoint(cands):
            gated = self._plan.preds
            pending = cands
            while pending:
                fresh: list[str] = []
                for i in pending:
                    e = entries[i]
                    if not e.is_pred:
                        rule_ids.append(i)
                    elif e.owner not in preds and clause_holds(e.clause, view):
                        preds.add(e.owner)
                        fresh.append(e.owner)
                        view.preds = frozenset(preds)
                pending = sorted({j for name in fresh for j in gated.get(name, ())})
        else:  # no predicate can hold: they are all gated among the candidates
            rule_ids = cands
        if not rule_ids:
            return view.preds if preds else _NO_PREDS
        matched: list[str] = []
        last = ""
        exact = self._exact
        for i in sorted(set(rule_ids)) if preds else rule_ids:
            e = entries[i]
            owner = e.owner
            if (
                owner != last
                and owner not in matched
                and (i in exact or clause_holds(e.clause, view))
            ):
                matched.append(owner)
                last = owner
        if len(matched) > 1:
            matched.sort(key=self._rule_order.__getitem__)
        firing = self._firing
        for rid in matched:
            self._fire(firing[rid], view, t, hits)
        return view.preds if preds else _NO_PREDS

    def _fire(self, f: Firing, view: EventView, t: float, hits: list[Hit]) -> None:
        rule, unless, allow, key_of_view, value_of_view, window = f
        if unless is not None:
            memo = view._memo
            if memo is None:
                memo = view._memo = {}
            for cid, clause in unless:
                held = memo.get(cid)
                if held is None:
                    held = memo[cid] = clause_holds(clause, view)
                if held:
                    return
        if allow is not None and allow.allows(view):
            return
        if window is None:
            key = key_of(view, rule.key) or "-"
            self._one(rule, view, key, t, None, hits)
            return
        counted = key_of_view(view)
        if counted is None:
            return
        value = None
        if value_of_view is not None:
            value = value_of_view(view)
            if value is None:
                return
        got = window.add(counted, t, value)
        if got is not None:
            self._crossed(rule, got, counted, view, t, hits)

    def _crossed(
        self,
        rule: Rule,
        got: tuple[int, float],
        key: str,
        view: EventView,
        t: float,
        hits: list[Hit],
    ) -> None:
        """The hit of a window that ``add`` says crossed its threshold, or went on past it."""
        if got[0] == 1:  # a further event of an episode (or a threshold of one)
            self._one(rule, view, key, t, got[1], hits)
            return
        if self._folds is not None:
            self._folds.cut(rule, key, self._folded)
        hits.append(self._hit(rule, view, key, got[0], got[1]))

    def _one(
        self, rule: Rule, view: EventView, key: str, t: float, first: float | None, hits: list[Hit]
    ) -> None:
        """A count-1 hit at the event being looked at: folded while a stretch is detected."""
        folds = self._folds
        if folds is None or not folds.enabled:
            hits.append(self._hit(rule, view, key, 1, first))
            return
        severity = self._severity(rule, view)
        if not folds.extend(rule, key, self._at, t, severity):
            extra = self._extra(rule, view)
            folds.start(rule, key, self._at, t, severity, extra, self._folded, first=first)

    @staticmethod
    def _severity(rule: Rule, view: EventView) -> Severity:
        severity = rule.severity
        for esc in rule.escalate:
            if esc.severity > severity and clause_holds(esc.clause, view):
                severity = esc.severity
        return severity

    @staticmethod
    def _extra(rule: Rule, view: EventView) -> str | None:
        if rule.evidence != "target":
            value = view.get(rule.evidence)
            if value:
                label = "ua" if rule.evidence == "user_agent" else "referer"
                return f"{label}={str(value)[:100]!r}"
        return None

    @classmethod
    def _hit(cls, rule: Rule, view: EventView, key: str, count: int, first: float | None) -> Hit:
        severity, extra = cls._severity(rule, view), cls._extra(rule, view)
        return make_hit(rule, view.ev, key, count, first, severity=severity, extra=extra)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_EVERY
        for w in self._windows.values():
            w.sweep(now)
        for det in self._dets:
            det.sweep(now)

    # --- state ----------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """All window and detector state, as compact JSON (committed with each batch)."""
        frags = self._frags
        for rid, w in self._windows.items():
            if w.dirty or rid not in frags:  # a window nothing touched is dumped as before
                frags[rid] = orjson.Fragment(orjson.dumps([self._fps[rid], w.dump()]))
                w.dirty = False
        state: dict[str, Any] = {
            "v": SNAPSHOT_VERSION,
            "wm": self._wm,
            "ns": self._next_sweep,
            "w": frags,
            "d": {d.ident: [fp, d.dump()] for d, fp in self._det_fps},
        }
        return orjson.dumps(state)

    @classmethod
    def restore(cls, ruleset: RuleSet, blob: bytes | None) -> Detector:
        """A detector for ``ruleset`` resuming from ``blob``.

        State of rules whose definition changed (or vanished) is dropped; a blob that
        cannot be read is logged and ignored: losing windows is better than not starting.
        """
        det = cls(ruleset)
        if not blob:
            return det
        try:
            state = orjson.loads(blob)
            if state.get("v") not in _READABLE:
                raise ValueError(f"snapshot version {state.get('v')!r}")
            det._wm = float(state["wm"])
            det._next_sweep = float(state["ns"])
            for rid, (fp, data) in state["w"].items():
                rule = det._rules.get(rid)
                if rule is not None and rid in det._windows and rule.fingerprint == fp:
                    det._windows[rid].load(data)
            dets = {d.ident: d for d in det._dets}
            for ident, (fp, data) in state["d"].items():
                d = dets.get(ident)
                if d is not None and d.fingerprint == fp:
                    d.load(data)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("detector state could not be restored, starting fresh: %s", exc)
            return cls(ruleset)
        return det

    # --- explain --------------------------------------------------------------------------

    def predicates_of(self, event: Event) -> frozenset[str]:
        """Every predicate the event satisfies (all of them, gated or not)."""
        view = EventView(event, self._time(event), _NO_PREDS, self._lazy)
        return frozenset(
            name
            for name, pred in self.ruleset.predicates.items()
            if any(clause_holds(c, view) for c in pred.clauses)
        )

    def explain(self, event: Event) -> list[Verdict]:
        """For every rule: does this event fire it, count toward it, or why not."""
        t = self._time(event)
        preds = self.predicates_of(event)
        view = EventView(event, t, preds, self._lazy)
        env = Env(self._lazy)
        env.reset(event, t, preds, view)
        out: list[Verdict] = []
        dets = {r.id: d for d in self._dets for r in d.rules}
        for rule in self.ruleset.rules:
            if rule.detector is not None:
                verdict, reason = dets[rule.id].explain(rule, view, env)
                out.append(Verdict(rule.id, rule.category, verdict, reason))
                continue
            out.append(self._explain_rule(rule, view))
        return out

    def verdict(self, event: Event, rule_id: str) -> Verdict:
        """Does ``event`` fire ``rule_id``, count toward it, or why not (state unchanged).

        The question a conformance test asks of one line (fail2ban's ``failJSON``): the
        same answer ``explain`` prints. Raises ``KeyError`` for a rule not in the set.
        """
        if rule_id not in self._rules:
            raise KeyError(rule_id)
        return next(v for v in self.explain(event) if v.rule_id == rule_id)

    def _explain_rule(self, rule: Rule, view: EventView) -> Verdict:
        failures = []
        for clause in rule.clauses:
            bad = first_failure(clause, view)
            if bad is None:
                break
            failures.append(bad)
        else:
            reason = "; ".join(f"{c.describe()} does not hold" for c in failures[:3])
            return Verdict(rule.id, rule.category, "no", reason)
        for clause in rule.unless:
            if clause_holds(clause, view):
                cond = ", ".join(c.describe() for c in clause)
                return Verdict(
                    rule.id, rule.category, "no", f"matches but excluded by unless ({cond})"
                )
        if rule.allow and rule.allow.allows(view):
            return Verdict(rule.id, rule.category, "no", "matches but allow-listed")
        th = rule.threshold
        if th is None:
            return Verdict(rule.id, rule.category, "fires", "all conditions hold")
        key = key_of(view, th.by)
        if key is None:
            return Verdict(rule.id, rule.category, "no", f"matches but has no {'+'.join(th.by)}")
        level = self._windows[rule.id].peek(key) + 1
        return Verdict(
            rule.id,
            rule.category,
            "counts",
            f"counts toward {rule.id} ({min(level, th.n)} of {th.n}: {th.describe()}, key {key})",
        )

    def patterns(self) -> list[str]:
        """Every regex the engine built from the rule set (for the backtracking test)."""
        return self._plan.patterns() + self._sieve.patterns()


Firing = tuple[
    Rule,
    "list[tuple[int, Clause]] | None",
    "Allow | None",
    Callable[[EventView], "str | None"],
    "Callable[[EventView], str | None] | None",
    "Window | None",
]
"""How a rule whose clause matched counts or fires: the rule, its unless-clauses, its
allow-list, the key and the distinct value of its threshold, and its window."""


LaneRule = tuple[Firing, tuple[Clause, ...], "Threshold | None"]
"""A rule counted from columns: how it fires, its clauses (OR), its threshold."""


def _none(view: EventView) -> str | None:
    return None


def _joined_key(by: tuple[str, ...], view: EventView) -> str | None:
    return key_of(view, by)


def _text_of(name: str) -> Callable[[EventView], str | None]:
    """The value of field ``name`` as text, ``None`` when missing or empty (a threshold
    key or distinct value); straight from the event for the fields that are as logged."""
    if name in DIRECT_FIELDS:
        get = attrgetter(name)

        def direct(view: EventView) -> str | None:
            raw = get(view.ev)
            if raw is None or raw == "":
                return None
            return raw if isinstance(raw, str) else str(raw)

        return direct

    def derived(view: EventView) -> str | None:
        raw = view.get(name)
        if raw is None or raw == "":
            return None
        return raw if isinstance(raw, str) else str(raw)

    return derived


def _cheap_first(clause: Clause, preds: set[str]) -> Clause:
    """The same conditions, cheapest first (a GET fails ``method = POST`` before any regex)."""
    return tuple(sorted(clause, key=lambda c: cost(c, preds)))


def _eager_predicates(ruleset: RuleSet) -> set[str]:
    """Predicates to evaluate through the gates: those rule clauses and detectors test.

    The others (only used in ``unless``/``escalate`` or inside other predicates, such as
    ``auth_route`` in ``auth_failure``) are evaluated on demand by the ``EventView``.
    """
    names = set(ruleset.predicates)
    used: set[str] = set()
    for rule in ruleset.rules:
        for clause in rule.clauses:
            used.update(c.field for c in clause if c.field in names)
        for value in rule.params.values():
            if isinstance(value, str) and value in names:
                used.add(value)
    return used

"""Object-id enumeration (OWASP API1, BOLA): one principal walking the ids of a route.

For routes whose template has an id (``/orders/{id}``), per principal (the user when the
log has one, else the client IP) and route: the distinct ids requested within the window
and the longest run of sequential numeric ids (each step 1..``max_step``). Enough of
either is a finding; mostly-2xx answers (data may have been disclosed: GDPR 33 triage) or
many 403/404 (someone probing other users' objects) raise the severity.
"""

from __future__ import annotations

from itertools import compress
from typing import Any

from auditor.detectors.base import Env, Folds, Hits, StatefulDetector, Stretch, make_hit
from auditor.detectors.fields import EventView
from auditor.detectors.params import format_duration
from auditor.model import Event, Hit, Severity
from auditor.rules import Rule

# State: [ids{id: t}, last_num, run, best_run, n, n_2xx, n_denied, last_t, first_t, active]
IDS, LAST_NUM, RUN, BEST, N, N2XX, NDENIED, LAST_T, FIRST_T, ACTIVE = range(10)
_MAX_ROUTE = 2048
_NO_ID = (0, -1)


def _new(t: float) -> list[Any]:
    return [{}, None, 0, 0, 0, 0, 0, t, t, False]


class EnumerationDetector(StatefulDetector):
    name = "enumeration"
    columns = ("route", "path", "user_name", "client_ip", "status")

    def __init__(self, rule: Rule) -> None:
        super().__init__([rule])
        self.rule = rule
        self.has_allow = bool(rule.allow)
        p = rule.params
        self.window: float = p["within"]
        self.distinct: int = p["distinct"]
        self.run: int = p["run"]
        self.max_step: int = p["max_step"]
        self.principal: tuple[str, ...] = p["principal"]
        self.max_keys: int = p["max_keys"]
        self.routes: dict[str, tuple[int, int]] = {}
        self.default_principal = self.principal == ("user_name", "client_ip")
        self.keys: dict[str, list[Any]] = {}

    def _shape(self, route: str) -> tuple[int, int]:
        """(segment count, index of the last ``{id}`` segment) of a route template."""
        got = self.routes.get(route)
        if got is None:
            if len(route) > _MAX_ROUTE:  # a hostile megabyte of '/.' is no object route
                return _NO_ID
            segs = route.split("/")
            last = max((i for i, s in enumerate(segs) if s.startswith("{")), default=-1)
            got = (len(segs), last) if last >= 0 else _NO_ID
            if len(self.routes) > 50000:
                self.routes.clear()
            self.routes[route] = got
        return got

    def _principal(self, ev: Event) -> str | None:
        for name in self.principal:
            value = getattr(ev, name, None)
            if value not in (None, "", "-"):
                return str(value)
        return None

    def _object_id(self, ev: Event) -> str | None:
        n, idx = self.routes.get(ev.route) or self._shape(ev.route)
        if idx < 0:
            return None
        segs = ev.path.split("/", n)
        if len(segs) != n:
            return None
        return segs[idx] or None

    def observe(self, ev: Event, t: float, env: Env) -> list[Hit] | None:
        return self.observe_one(ev, t, env)

    def observe_stretch(self, s: Stretch) -> Hits:  # noqa: C901 - hot path, kept inline for speed
        """Per request of a route with an object id: the principal's walk over that route."""
        out: Hits = []
        events, ts = s.events, s.ts
        routes, keys = self.routes, self.keys
        default_principal = self.default_principal
        window, distinct, max_step = self.window, self.distinct, self.max_step
        # Only the requests of routes with an object id (in C: one shape per distinct route).
        names = s.column("route")
        with_id = {r for r in set(names) if self._shape(r)[1] >= 0}
        if not with_id:
            return out
        # Columns, not events: a decode worker sent them, and the events stay unbuilt but
        # for the few that emit (see auditor.packedevents).
        paths, users, ips, statuses = (
            s.column("path"),
            s.column("user_name"),
            s.column("client_ip"),
            s.column("status"),
        )
        base = s.lo
        # The count-1 hits of a walk under way, folded (unless allow-lists must look at
        # each request).
        folds = None if self.has_allow else Folds(s.events)
        for i in compress(range(s.lo, s.hi), map(with_id.__contains__, names)):
            j = i - base
            route = names[j]
            n, idx = routes.get(route) or self._shape(route)
            path = paths[j]
            if path.count("/") != n - 1:  # split("/", n) would not give n segments
                continue
            oid = path[path.rfind("/") + 1 :] if idx == n - 1 else path.split("/", n)[idx]
            if not oid:
                continue
            if default_principal:
                who = users[j]
                if not who or who == "-":
                    who = ips[j]
                    if who is None:
                        continue
            else:
                who = self._principal(events[i])
                if who is None:
                    continue
            key = who + "|" + route
            t = ts[i]
            status = statuses[j] or 0
            ok = 1 if 200 <= status < 300 else 0
            denied = 1 if status == 403 or status == 404 else 0
            st = keys.get(key)
            if st is None:
                if len(keys) >= self.max_keys:
                    self._evict()
                num = int(oid) if oid.isdigit() and len(oid) < 19 else None
                keys[key] = [{oid: t}, num, 1, 1, 1, ok, denied, t, t, False]
                continue
            last = st[LAST_T]
            if t < last:  # noqa: PLR1730 - a branch is cheaper than max() here
                t = last
            if t - last > window:
                st[:] = _new(t)
            st[LAST_T] = t
            st[N] += 1
            st[N2XX] += ok
            st[NDENIED] += denied
            if st[ACTIVE]:
                if folds is not None:
                    sev = self._severity(st)
                    if not folds.extend(self.rule, key, i, ts[i], sev):
                        folds.start(self.rule, key, i, ts[i], sev, self._note(st), out)
                    continue
                got = self._emit(events[i], st, key, 1, None, s, i)
                if got:
                    out.append((i, got))
                continue
            ids: dict[str, float] = st[IDS]
            ids.pop(oid, None)
            ids[oid] = t
            if oid.isdigit() and len(oid) < 19:
                num = int(oid)
                prev = st[LAST_NUM]
                if prev is not None and 1 <= num - prev <= max_step:
                    run = st[RUN] = st[RUN] + 1
                    if run > st[BEST]:  # noqa: PLR1730 - a branch is cheaper than max() here
                        st[BEST] = run
                elif prev is None or num != prev:
                    st[RUN] = 1
                st[LAST_NUM] = num
            if len(ids) >= distinct:
                cutoff = t - window
                for old in [k for k, seen in ids.items() if seen < cutoff]:
                    del ids[old]
            if len(ids) >= distinct or st[BEST] >= self.run:
                st[ACTIVE] = True
                if folds is not None:
                    folds.cut(self.rule, key, out)  # the walk before, now ended
                got = self._emit(events[i], st, key, st[N], st[FIRST_T], s, i)
                if got:
                    out.append((i, got))
        if folds is not None:
            folds.flush(out)
        return out

    def _emit(
        self,
        ev: Event,
        st: list[Any],
        key: str,
        count: int,
        first: float | None,
        s: Stretch,
        i: int,
    ) -> list[Hit] | None:
        # (an emit for ~4% of the bench's events: branches, not max(), and no enum call
        # when the severity already is one)
        rule = self.rule
        if self.has_allow and self.allowed(rule, s.env(i)):
            return None
        sev = self._severity(st)
        return [make_hit(rule, ev, key, count, first, severity=sev, extra=self._note(st))]

    def _severity(self, st: list[Any]) -> Severity:
        """The severity of a walk so far: raised when most answers were 2xx (data may have
        been disclosed) or many were 403/404 (probing other users' objects)."""
        n = st[N] if st[N] > 1 else 1  # noqa: FURB136 - see _emit
        p = self.rule.params
        sev = self.rule.severity
        if st[N2XX] / n >= p["success_share"] or st[NDENIED] / n > p["denied_share"]:
            escalated = p["escalated_severity"]
            if escalated > sev:  # noqa: PLR1730 - see _emit
                sev = escalated
        return sev if type(sev) is Severity else Severity(sev)

    @staticmethod
    def _note(st: list[Any]) -> str:
        """The evidence's note on a walk so far."""
        n = st[N] if st[N] > 1 else 1  # noqa: FURB136 - see _emit
        return (
            f"[{len(st[IDS])} distinct ids, sequential run {st[BEST]},"
            f" {st[N2XX] / n:.0%} 2xx, {st[NDENIED] / n:.0%} 403/404]"
        )

    def _evict(self) -> None:
        order = sorted(self.keys.items(), key=lambda kv: kv[1][LAST_T])
        for k, _ in order[: max(1, len(order) // 4)]:
            del self.keys[k]

    def sweep(self, now: float) -> None:
        window = self.window
        stale = [k for k, st in self.keys.items() if now - st[7] > window]  # 7: LAST_T
        for k in stale:
            del self.keys[k]

    def dump(self) -> Any:
        return self.keys  # plain JSON already: {key: [{id: t}, last_num, run, ...]}

    def load(self, data: Any) -> None:
        """What ``dump`` returned (or, from snapshot version 1, ``[[key, [[[id, t]], ...]]]``)."""
        self.keys = {}
        for k, st in data.items() if isinstance(data, dict) else data:
            pairs = st[0].items() if isinstance(st[0], dict) else st[0]
            ids = {str(a): float(b) for a, b in pairs}
            self.keys[str(k)] = [ids, *st[1:]]

    def explain(self, rule: Rule, view: EventView, env: Env) -> tuple[str, str]:
        ev = view.ev
        oid = self._object_id(ev)
        if oid is None:
            return ("no", f"route {ev.route} has no object id")
        who = self._principal(ev)
        if who is None:
            return ("no", "no principal (user or client IP)")
        st = self.keys.get(f"{who}|{ev.route}")
        seen = len(st[IDS]) if st is not None else 0
        return (
            "counts",
            (
                f"counts toward {rule.id} (id {oid!r}; {seen} distinct ids so far, fires at"
                f" {self.distinct} within {format_duration(self.window)} or a sequential run of {self.run})"
            ),
        )


def build(rules: list[Rule]) -> list[StatefulDetector]:
    return [EnumerationDetector(r) for r in rules]

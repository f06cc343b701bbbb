"""Windowed counters for threshold rules, in log time, bounded, and serialisable.

One ``Window`` per threshold rule keeps a small state per key (client IP, user, route...).
``add`` returns ``None`` (below threshold), or ``(count, first_seen)`` when the threshold is
crossed, or ``(1, t)`` for a further matching event while the episode lasts: the episode
continues while matching events come no further apart than the window (for a burst: while
the bucket has not drained). The store folds these into one finding.

Events may arrive slightly out of order (several files per source): a time never goes
backwards inside a key, so a late event is counted at the key's latest time.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from auditor.rules import Threshold

Crossing = tuple[int, float]


class Window:
    """State of one threshold rule over all its keys. Subclasses implement one kind."""

    def __init__(self, threshold: Threshold, max_keys: int = 20000) -> None:
        self.th = threshold
        self.n, self.window = threshold.n, threshold.window  # read per event
        self.max_keys = max_keys
        self.keys: dict[str, list[Any]] = {}
        self.swept = 0.0  # watermark of the last sweep
        self.dirty = True  # changed since the last dump (the Detector keeps the last one)

    # subclasses: _new(t) -> state, _add(state, t, value) -> Crossing | None,
    # _idle(state, now) -> bool, _dump(state) -> list, _load(list) -> state, and
    # _first(t, value) -> what _add makes of _new(t) when that cannot cross, else None

    def add(self, key: str, t: float, value: str | None = None) -> Crossing | None:
        self.dirty = True
        keys = self.keys
        st = keys.get(key)
        if st is None:
            if len(keys) >= self.max_keys:
                self._evict()
            first = self._first(t, value)
            if first is not None:  # most keys are new (one call instead of two)
                keys[key] = first
                return None
            st = keys[key] = self._new(t)
        return self._add(st, t, value)

    def peek(self, key: str) -> int:
        """How many matching events the key holds now (for ``explain``)."""
        st = self.keys.get(key)
        return 0 if st is None else self._level(st)

    def sweep(self, now: float) -> None:
        """Drop keys that can no longer fire or continue; called as log time advances."""
        if now - self.swept < self.th.window:
            return
        self.swept = now
        self.dirty = True
        for k in self._idle_keys(now):
            del self.keys[k]

    def _idle_keys(self, now: float) -> list[str]:
        idle = self._idle
        return [k for k, st in self.keys.items() if idle(st, now)]

    def _evict(self) -> None:
        # Least recently seen first; ties keep insertion order (sorted is stable).
        order = sorted(self.keys.items(), key=lambda kv: self._last(kv[1]))
        for k, _ in order[: max(1, len(order) // 4)]:
            del self.keys[k]

    def dump(self) -> list[Any]:
        """``[swept, {key: state}]``; states that are plain JSON are not copied."""
        if type(self)._dump is Window._dump:
            return [self.swept, self.keys]
        return [self.swept, {k: self._dump(st) for k, st in self.keys.items()}]

    def load(self, data: list[Any]) -> None:
        """What ``dump`` returned (or, from snapshot version 1, ``[swept, [[key, state]]]``)."""
        self.swept = float(data[0])
        items = data[1].items() if isinstance(data[1], dict) else data[1]
        self.keys = {str(k): self._load(v) for k, v in items}
        self.dirty = True

    def _new(self, t: float) -> list[Any]:
        raise NotImplementedError

    def _first(self, t: float, value: str | None) -> list[Any] | None:
        return None

    def _add(self, st: list[Any], t: float, value: str | None) -> Crossing | None:
        raise NotImplementedError

    def _idle(self, st: list[Any], now: float) -> bool:
        raise NotImplementedError

    def _last(self, st: list[Any]) -> float:
        raise NotImplementedError

    def _level(self, st: list[Any]) -> int:
        raise NotImplementedError

    def _dump(self, st: list[Any]) -> list[Any]:
        return st

    def _load(self, data: list[Any]) -> list[Any]:
        return list(data)


class CountWindow(Window):
    """At least ``n`` events within ``window`` seconds. State: [times, last, active]."""

    def _new(self, t: float) -> list[Any]:
        return [deque(maxlen=self.th.n), t, False]

    def _first(self, t: float, value: str | None) -> list[Any] | None:
        n = self.n
        return [deque((t,), maxlen=n), t, False] if n > 1 else None

    def _add(self, st: list[Any], t: float, value: str | None) -> Crossing | None:
        last = st[1]
        if last > t:  # noqa: PLR1730 - a branch is cheaper than max() here
            t = last
        times: deque[float] = st[0]
        window = self.window
        st[1] = t
        if st[2]:
            if t - last <= window:
                return (1, t)
            st[2] = False
            times.clear()
        times.append(t)
        if len(times) == self.n and times[0] >= t - window:
            first = times[0]
            count = len(times)
            times.clear()
            st[2] = True
            return (count, first)
        return None

    def _idle(self, st: list[Any], now: float) -> bool:
        return bool(now - st[1] > self.th.window)

    def _idle_keys(self, now: float) -> list[str]:
        window = self.th.window
        return [k for k, st in self.keys.items() if now - st[1] > window]

    def _last(self, st: list[Any]) -> float:
        return float(st[1])

    def _level(self, st: list[Any]) -> int:
        cutoff = st[1] - self.th.window
        return sum(1 for x in st[0] if x >= cutoff)

    def _dump(self, st: list[Any]) -> list[Any]:
        return [list(st[0]), st[1], st[2]]

    def _load(self, data: list[Any]) -> list[Any]:
        return [deque(data[0], maxlen=self.th.n), float(data[1]), bool(data[2])]


class DistinctWindow(Window):
    """At least ``n`` distinct values within the window. State: [values, count, last, active].

    ``values`` maps value → last time seen (dict order is recency order) and never holds
    more than ``n`` live values; ``count`` is the number of matching events since the key
    was last idle for a whole window (used for ``min_count`` and the reported count).
    """

    def _new(self, t: float) -> list[Any]:
        return [{}, 0, t, False]

    def _first(self, t: float, value: str | None) -> list[Any] | None:
        if self.n <= 1:
            return None
        return [{} if value is None else {value: t}, 1, t, False]

    def _add(self, st: list[Any], t: float, value: str | None) -> Crossing | None:
        last = st[2]
        if last > t:  # noqa: PLR1730 - a branch is cheaper than max() here
            t = last
        st[2] = t
        values: dict[str, float] = st[0]
        window = self.window
        if t - last > window:
            st[3] = False
            values.clear()
            st[1] = 0
        st[1] += 1
        if st[3]:
            return (1, t)
        if value is not None:
            values.pop(value, None)
            values[value] = t
        n = self.n
        if len(values) < n:
            return None
        cutoff = t - window
        for v in [v for v, seen in values.items() if seen < cutoff]:
            del values[v]
        if len(values) >= n and st[1] >= self.th.min_count:
            first = next(iter(values.values()))
            count = max(st[1], len(values))
            st[3] = True
            values.clear()
            return (count, first)
        return None

    def _idle(self, st: list[Any], now: float) -> bool:
        return bool(now - st[2] > self.th.window)

    def _idle_keys(self, now: float) -> list[str]:
        window = self.th.window
        return [k for k, st in self.keys.items() if now - st[2] > window]

    def _last(self, st: list[Any]) -> float:
        return float(st[2])

    def _level(self, st: list[Any]) -> int:
        cutoff = st[2] - self.th.window
        return sum(1 for seen in st[0].values() if seen >= cutoff)

    def _load(self, data: list[Any]) -> list[Any]:
        pairs = data[0].items() if isinstance(data[0], dict) else data[0]
        values = {str(k): float(v) for k, v in pairs}
        return [values, int(data[1]), float(data[2]), bool(data[3])]


class BurstWindow(Window):
    """Leaky bucket: capacity ``n``, draining one event per ``window`` s; fires past ``n``.

    State: [level, last, first, count, active]: ``first``/``count`` cover the events
    since the bucket was last empty.
    """

    def _new(self, t: float) -> list[Any]:
        return [0.0, t, t, 0, False]

    def _first(self, t: float, value: str | None) -> list[Any] | None:
        return [1.0, t, t, 1, False] if self.n >= 1 and self.window > 0 else None

    def _add(self, st: list[Any], t: float, value: str | None) -> Crossing | None:
        last = st[1]
        if last > t:  # noqa: PLR1730 - a branch is cheaper than max() here
            t = last
        level = st[0] - (t - last) / self.window
        if level <= 0.0:
            level = 0.0
            st[2] = t
            st[3] = 0
            st[4] = False
        level += 1.0
        st[0] = level
        st[1] = t
        st[3] += 1
        if st[4]:
            return (1, t)
        if level > self.n:
            st[4] = True
            return (int(st[3]), float(st[2]))
        return None

    def _idle(self, st: list[Any], now: float) -> bool:
        return bool(st[0] - (now - st[1]) / self.th.window <= 0.0)

    def _idle_keys(self, now: float) -> list[str]:
        window = self.th.window
        return [k for k, st in self.keys.items() if st[0] - (now - st[1]) / window <= 0.0]

    def _last(self, st: list[Any]) -> float:
        return float(st[1])

    def _level(self, st: list[Any]) -> int:
        return int(st[0])

    def _load(self, data: list[Any]) -> list[Any]:
        return [float(data[0]), float(data[1]), float(data[2]), int(data[3]), bool(data[4])]


def make_window(threshold: Threshold, max_keys: int = 20000) -> Window:
    if threshold.kind == "count":
        return CountWindow(threshold, max_keys)
    if threshold.kind == "distinct":
        return DistinctWindow(threshold, max_keys)
    return BurstWindow(threshold, max_keys)

"""Which events of a batch can pass any gate: a few passes in C over the whole batch
instead of a dozen Python steps per event.

``Detector`` gates events one by one (``auditor.detectors.gate``), and most events (clean
traffic) pass no gate at all. ``Sieve.suspects(events)`` returns a superset of the events
that can pass one, testing every gate in bulk:

- the dict gates (status, method...) and the user-agent/referrer gates once per distinct
  value of the field (a column by ``map``, a ``set``, then ``compress``: in C);
- the URL gates over all the paths of the batch joined in one string, and all its queries
  in another (one ``find`` for '%', for each trigger character one ``in`` and, if it is
  there, a search for the literals it leads, one search for the path prefixes...): a
  match marks the line's event. (A rule literal holding a '?' falls back to one string
  of ``path?query`` targets.)

The Detector then gates the suspects exactly as before; the others pass no gate, so
skipping them changes nothing. A URL that needs decoding first ('%', '//'...) makes its
event a suspect; so does a non-ASCII one or one holding a newline (rare: logs escape
them), and one longer than 8 KiB (the long-URL rule looks at it anyway).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import compress, repeat
from operator import add, attrgetter, is_not, not_
from typing import Any

from auditor.detectors.fields import MAX_SCAN
from auditor.detectors.gate import CachedGate, Plan, trie_pattern
from auditor.model import Event

_PATH = attrgetter("path")
_QUERY = attrgetter("query")

RowTest = tuple[str, Callable[[Any], object]]
"""A field and a test of its value: an event whose value passes is a suspect."""


def _mark(text: str, next_match: Callable[[int], int], out: set[int], first: int = 0) -> None:
    """Add to ``out`` the number of every line of ``text`` (``first`` for line 0) in which
    ``next_match(pos)`` (a position inside the next match at or after ``pos``, or -1)
    finds a match. Lines are counted as the search moves on, in C."""
    count, find = text.count, text.find
    line, last = first, 0
    pos = next_match(0)
    while pos >= 0:
        line += count("\n", last, pos)
        out.add(line)
        end = find("\n", pos)
        if end < 0:
            return
        line += 1
        last = end + 1
        pos = next_match(last)


def _finder(text: str, needle: str) -> Callable[[int], int]:
    find = text.find
    return lambda pos: find(needle, pos)


def _searcher(text: str, rx: re.Pattern[str]) -> Callable[[int], int]:
    search = rx.search

    def next_match(pos: int) -> int:
        m = search(text, pos)
        return -1 if m is None else m.start()

    return next_match


def _text(items: list[str], text: str, out: set[int], at: list[int] | None) -> str:
    """``text`` (``items`` joined by newlines), or, when an item is not ASCII (lower-casing
    may change its length) or holds a newline (the line count would slip), the items
    joined again with those blanked and their events (``at[i]``, or ``i``) marked."""
    if text.isascii() and text.count("\n") == len(items) - 1:
        return text
    for i, item in enumerate(items):
        if not item.isascii() or "\n" in item:
            out.add(i if at is None else at[i])
            items[i] = ""
    return "\n".join(items)


def _joined(items: list[str], lengths: list[int], out: set[int], longest: int) -> str:
    """``items`` joined by newlines; an item longer than ``longest`` (a hostile megabyte:
    the gates look at it alone), not ASCII (lower-casing may change its length) or holding
    a newline (the line count would slip) is marked and blanked."""
    if lengths and max(lengths) > longest:
        for i, length in enumerate(lengths):
            if length > longest:
                out.add(i)
                items[i] = ""
    text = "\n".join(items)
    if text.isascii() and text.count("\n") == len(items) - 1:
        return text
    for i, item in enumerate(items):
        if not item.isascii() or "\n" in item:
            out.add(i)
            items[i] = ""
    return "\n".join(items)


def _column(
    columns: dict[str, list[Any]], name: str, get: Callable[[Any], Any], events: Sequence[Event]
) -> list[Any]:
    """The field ``name`` of every event: as ``columns`` has it (read already, or decoded
    so: see ``auditor.rowchunk``), or read now and left there."""
    values = columns.get(name)
    if values is None:
        values = columns[name] = list(map(get, events))
    return values


class Sieve:
    """Bulk pre-test of all the gates of a ``Plan`` (see module doc); ``extra`` adds tests
    of other fields, ``known`` marks the events where one of these fields is not None,
    ``relative`` those whose path does not start with '/' (what some detectors want)."""

    def __init__(
        self,
        plan: Plan,
        cached: Sequence[tuple[str, CachedGate]],
        url_on: bool,
        extra: Sequence[RowTest] = (),
        relative: bool = False,
        known: Sequence[str] = (),
    ) -> None:
        self.everything = bool(plan.always)
        tests: list[RowTest] = []
        if plan.status:
            tests.append(("status", plan.status.__contains__))
        for name, table in plan.fields.items():
            tests.append((name, table.__contains__))
        tests.extend((name, gate.candidates) for name, gate in cached)
        tests.extend(extra)
        by_field: dict[str, list[Callable[[Any], object]]] = {}
        for name, test in tests:
            by_field.setdefault(name, []).append(test)
        self.columns = [(name, attrgetter(name), tests) for name, tests in by_field.items()]
        self.known = [(name, attrgetter(name)) for name in known]
        self.url_on = url_on
        self.relative = relative  # also mark paths that do not start with '/'
        url = plan.url
        self.decode_marks = ["%", "//", "/./"] + (["+"] if url.space else [])
        self.pairs = [bigram for bigram, _ in url.pairs]
        # A path prefix right after a newline of "\n" + the paths (a path's start).
        prefixes = [n for n, _ in url.prefixes.items]
        self.prefix_rx = re.compile("\n(?:" + trie_pattern(prefixes) + ")") if prefixes else None
        suffixes = [n for n, _ in url.suffixes.items]
        self.suffix_rx = re.compile(trie_pattern(suffixes)) if suffixes else None
        # Anywhere in a target: the literal-led regexes of the trigger characters (one
        # search: it skips to those characters), path suffixes, the literals without any.
        searches = []
        if url.groups:
            searches.append(re.compile("|".join(g[0].pattern for g in url.groups.values())))
        if self.suffix_rx is not None:
            searches.append(self.suffix_rx)
        if url.always_rx is not None:
            searches.append(url.always_rx)
        self.searches = searches
        self.min_length = plan.min_length
        # No literal holds a '?': each lies inside the path or inside the query, so the
        # two are searched as two texts, without building "path?query" for every event.
        # Each trigger character is looked for first ('in': memchr, in C), and its own
        # literal-led regex runs only over a text that has it (sre skips to a leading
        # literal fast; a class of twenty characters costs a test per character).
        needles = [n for n, _ in url.prefixes.items + url.suffixes.items + url.always]
        needles += [n for group in url.groups.values() for n, _ in group[1]]
        needles += [n for _, items in url.pairs for n, _ in items]
        self.split = not any("?" in n for n in needles)
        self.leads = [
            (ch, None if rx.pattern == re.escape(ch) else rx)
            for ch, (rx, _) in sorted(url.groups.items())
        ]
        self.path_marks = ["%", "//", "/./"] + (["+"] if url.space else [])
        self.query_marks = ["%"] + (["+"] if url.space else [])
        self.anywhere = [url.always_rx] if url.always_rx is not None else []

    def patterns(self) -> list[str]:
        rxs = [self.prefix_rx, *self.searches]
        return [rx.pattern for rx in rxs if rx is not None]

    def suspects(
        self, events: Sequence[Event], columns: dict[str, list[Any]] | None = None
    ) -> tuple[set[int], set[int]]:
        """Indexes (into ``events``) of the events that may pass a gate (see module doc):
        those marked by the tests of whole fields, and those marked by the URL gates
        (only these need the URL gates run on them). The fields read are left in
        ``columns`` (by name), for the detectors."""
        n = len(events)
        if self.everything:
            return set(range(n)), set(range(n))
        if columns is None:
            columns = {}
        out: set[int] = set()
        url: set[int] = set()
        for name, get, tests in self.columns:  # each distinct value of the field tested once
            values = _column(columns, name, get, events)
            hot = {v for v in set(values) if any(test(v) for test in tests)}
            if hot:
                out.update(compress(range(n), map(hot.__contains__, values)))
        for name, get in self.known:  # usually all None: one count in C
            values = _column(columns, name, get, events)
            if values.count(None) != n:
                out.update(compress(range(n), map(is_not, values, repeat(None))))
        if self.url_on or self.relative:
            paths = _column(columns, "path", _PATH, events)
            joined = "\n".join(paths)
            if self.relative and n:
                lines = joined.count("\n")
                if not (joined[:1] == "/" and joined.count("\n/") == lines == n - 1):
                    starts = map(str.startswith, paths, repeat("/"))
                    out.update(compress(range(n), map(not_, starts)))
            if self.url_on:
                queries = _column(columns, "query", _QUERY, events)
                if self.split:
                    self._split_url(list(paths), joined, queries, url)
                else:
                    self._url(queries, list(paths), url)
        return out, url

    def _split_url(
        self, paths: list[str], joined: str, queries: list[str | None], out: set[int]
    ) -> None:
        """``_url`` over the paths and the queries as two texts (see ``split``)."""
        n = len(paths)
        has_query = list(map(is_not, queries, repeat(None)))
        at = list(compress(range(n), has_query))  # query line -> event
        items: list[str] = list(compress(queries, has_query))  # type: ignore[arg-type]
        longest = max(map(len, paths), default=0) + max(map(len, items), default=-1) + 1
        if longest >= min(self.min_length, MAX_SCAN + 1):  # a long target (rare)
            joined = self._long_targets(paths, items, at, out)
        ptext = _text(paths, joined, out, None)
        qtext = _text(items, "\n".join(items), out, at) if items else ""
        qout: set[int] = set()
        # Escapes, '+' for a space, '//' or '/./' need decoding first: the full gate decides.
        for needle in self.path_marks:
            _mark(ptext, _finder(ptext, needle), out)
        for needle in self.query_marks if qtext else ():
            _mark(qtext, _finder(qtext, needle), qout)
        low = ptext.lower()
        qlow = qtext.lower()
        for text, dest in ((low, out), (qlow, qout)):
            for bigram in self.pairs:
                _mark(text, _finder(text, bigram), dest)
            for ch, rx in self.leads:
                if ch in text:
                    _mark(text, _finder(text, ch) if rx is None else _searcher(text, rx), dest)
            for rx in self.anywhere:
                _mark(text, _searcher(text, rx), dest)
        if self.suffix_rx is not None:  # path suffixes: the gate looks at the path only
            _mark(low, _searcher(low, self.suffix_rx), out)
        self._mark_prefixes(low, out)
        if qout:
            out.update(at[j] for j in qout)

    def _mark_prefixes(self, low: str, out: set[int]) -> None:
        """Mark the lines of ``low`` (lower-cased, one event a line) that start with a
        gated path prefix."""
        if self.prefix_rx is None:
            return
        nl_low = "\n" + low  # line 0 is empty: lines count from -1
        search = _searcher(nl_low, self.prefix_rx)

        def path_start(pos: int) -> int:  # the match starts at the newline before it
            at = search(max(pos - 1, 0))
            return -1 if at < 0 else at + 1

        _mark(nl_low, path_start, out, -1)

    def _long_targets(
        self, paths: list[str], items: list[str], at: list[int], out: set[int]
    ) -> str:
        """Mark the events whose target (``path?query``) reaches the length gates, and
        blank those longer than ``MAX_SCAN`` (a hostile megabyte: the gates look at it
        alone); the paths joined again."""
        lengths = list(map(len, paths))
        for j, i in enumerate(at):
            lengths[i] += len(items[j]) + 1
        query_of = dict(zip(at, range(len(at)), strict=True))
        for i, length in enumerate(lengths):
            if length >= self.min_length:
                out.add(i)
            if length > MAX_SCAN:
                out.add(i)
                paths[i] = ""
                q = query_of.get(i)
                if q is not None:
                    items[q] = ""
        return "\n".join(paths)

    def _url(self, queries: list[str | None], paths: list[str], out: set[int]) -> None:
        # One line per event, its target; a missing query is written "?None" (a harmless
        # superset: it can only mark more events).
        lines = list(map(add, paths, map(add, repeat("?"), map(str, queries))))
        lengths = list(map(len, lines))
        text = _joined(lines, lengths, out, MAX_SCAN)
        # Escapes, '+' for a space, '//' or '/./' need decoding first: the full gate decides.
        for needle in self.decode_marks:
            _mark(text, _finder(text, needle), out)
        for bigram in self.pairs:
            _mark(text, _finder(text, bigram), out)
        low = text.lower()
        for rx in self.searches:
            _mark(low, _searcher(low, rx), out)
        self._mark_prefixes(low, out)
        if lengths and max(lengths) >= self.min_length:
            least = self.min_length
            out.update(i for i, length in enumerate(lengths) if length >= least)

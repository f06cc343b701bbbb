"""Log timestamps → aware UTC datetimes, memoized by the logged string.

Timestamps repeat for every request within the same second, so the parsed value is kept in
a bounded dict keyed by the exact text: on a busy access log nearly every lookup hits.
Times logged without an offset (HAProxy, nginx error log, naive ISO) are taken as UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

MONTHS = {
    "Jan": 1,
    "Feb": 2,
    "Mar": 3,
    "Apr": 4,
    "May": 5,
    "Jun": 6,
    "Jul": 7,
    "Aug": 8,
    "Sep": 9,
    "Oct": 10,
    "Nov": 11,
    "Dec": 12,
}

_CLF = re.compile(
    r"(\d{1,2})/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(?: ?([+-])(\d\d):?(\d\d))?"
)
_SLASHED = re.compile(r"(\d{4})/(\d\d)/(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?")
_EPOCH = re.compile(r"\d{9,19}(?:\.\d+)?")

_MAX_CACHE = 8192
_cache: dict[str, datetime] = {}
TIME_CACHE = _cache  # decoders bind TIME_CACHE.get to inline the hit; cleared, never replaced


def _fraction(text: str | None) -> int:
    """Digits after the decimal point → microseconds."""
    if not text:
        return 0
    return int((text + "000000")[:6])


def _parse_clf(m: re.Match[str]) -> datetime | None:
    day, mon, year, hh, mm, ss, frac, sign, oh, om = m.groups()
    month = MONTHS.get(mon)
    if month is None:
        return None
    dt = datetime(int(year), month, int(day), int(hh), int(mm), int(ss), _fraction(frac), UTC)
    if sign:
        offset = timedelta(hours=int(oh), minutes=int(om))
        dt = dt - offset if sign == "+" else dt + offset
    return dt


def _parse_epoch(text: str) -> datetime | None:
    return _from_epoch(float(text))


def _from_epoch(value: float) -> datetime | None:
    if value >= 1e17:
        value /= 1e9
    elif value >= 1e14:
        value /= 1e6
    elif value >= 1e11:
        value /= 1e3
    return datetime.fromtimestamp(value, UTC)


_minutes: dict[str, datetime] = {}
_SECONDS = {f"{i:02d}": timedelta(seconds=i) for i in range(61)}  # "00".."60", ASCII only


def _clf_by_minute(text: str) -> datetime | None:
    """``dd/Mon/yyyy:HH:MM:SS +zzzz`` via a per-minute memo: a new second costs one add."""
    key = text[:17] + text[20:]
    base = _minutes.get(key)
    if base is None:
        m = _CLF.fullmatch(text[:17] + ":00" + text[20:])
        base = _parse_clf(m) if m else None
        if base is None:
            return None
        if len(_minutes) >= _MAX_CACHE:
            _minutes.clear()
        _minutes[key] = base
    delta = _SECONDS.get(text[18:20])
    return None if delta is None else base + delta


_whole_seconds: dict[str, datetime] = {}
_MICROS = timedelta(microseconds=1)
_MILLIS = {f"{i:03d}": timedelta(milliseconds=i) for i in range(1000)}  # "000".."999"


def _clf_fraction(text: str) -> datetime | None:
    """``dd/Mon/yyyy:HH:MM:SS.fff`` (HAProxy's accept date, a new text nearly every line)
    via a per-second memo: the fraction is added to the whole second, which is what
    ``_parse_clf`` builds from the same text."""
    second, frac = text[:20], text[21:]
    base = _whole_seconds.get(second)
    if base is not None:
        delta = _MILLIS.get(frac)  # HAProxy logs milliseconds: three digits
        if delta is not None:
            return base + delta
    if not (len(frac) <= 9 and frac.isdigit() and frac.isascii()):
        return _parse_uncached(text)
    if base is None:
        base = _parse_uncached(second)
        if base is None:
            return None
        if len(_whole_seconds) >= _MAX_CACHE:
            _whole_seconds.clear()
        _whole_seconds[second] = base
    return base + _MICROS * _fraction(frac)


def _parse_uncached(text: str) -> datetime | None:
    if len(text) == 26 and text[2] == "/" and text[17] == ":" and text[20] == " ":
        return _clf_by_minute(text)
    text = text.strip().strip("[]")
    if len(text) < 8:
        return None
    c0 = text[0]
    if c0.isdigit():
        if text[2:3] == "/" or text[1:2] == "/":
            m = _CLF.fullmatch(text)
            return _parse_clf(m) if m else None
        if text[4:5] == "-":
            dt = datetime.fromisoformat(text)
            tz = dt.tzinfo
            if tz is UTC:  # "Z" and "+00:00" parse to the UTC singleton: nothing to convert
                return dt
            if tz is None:
                return dt.replace(tzinfo=UTC)
            return dt.astimezone(UTC) if dt.utcoffset() else dt.replace(tzinfo=UTC)
        if text[4:5] == "/":
            m2 = _SLASHED.fullmatch(text)
            if m2 is None:
                return None
            y, mo, d, hh, mm, ss, frac = m2.groups()
            return datetime(
                int(y), int(mo), int(d), int(hh), int(mm), int(ss), _fraction(frac), UTC
            )
        if _EPOCH.fullmatch(text):
            return _parse_epoch(text)
    return None


def parse_time(text: str | None) -> datetime | None:
    """CLF, ISO 8601, ``yyyy/mm/dd HH:MM:SS`` or epoch (s, ms, µs, ns) → aware UTC.

    ``None`` for anything else, including out-of-range dates; never raises.
    """
    if not text:
        return None
    dt = _cache.get(text)
    if dt is not None:
        return dt
    return _parse_and_remember(text)


def parse_new_time(text: str) -> datetime | None:
    """``parse_time`` of a non-empty text that is not in ``TIME_CACHE`` (a decoder that has
    just looked it up there calls this, not ``parse_time``). An ISO 8601 time in UTC with a
    fraction is not remembered (an equal value, not the same object, for the same text)."""
    if len(text) > 20 and text[-1] == "Z" and text[4] == "-":
        # JSON loggers, Envoy, Traefik: a new text nearly every line, so not kept in the
        # memo, where each insertion (and the clearing of a full one) cost more than the
        # parse itself. Indexing, not slicing, in the test: three slices cost twice the
        # parse. A year of four ASCII digits (the test below) is the only one
        # fromisoformat reads.
        try:
            iso = _fromisoformat(text)
        except (ValueError, OverflowError, OSError):
            iso = None  # the general way below says what it is
        if iso is not None and iso.tzinfo is UTC:
            return iso
    return _parse_and_remember(text)


def _parse_and_remember(text: str) -> datetime | None:
    """``parse_time`` of a non-empty text not in the memo, kept there."""
    try:
        if text[-1:] == "Z" and text[4:5] == "-" and text[:4].isdigit():
            # ISO 8601 in UTC (JSON loggers: a new text each line when it has a fraction),
            # first: what _parse_uncached does for it, directly. Its third character is a
            # digit, so neither CLF test below would take it.
            iso = _fromisoformat(text)
            dt = iso if iso.tzinfo is UTC else _parse_uncached(text)
        elif len(text) == 26 and text[2] == "/" and text[17] == ":" and text[20] == " ":
            dt = _clf_by_minute(text)  # nginx/Apache $time_local, the usual case
        elif text[20:21] in (".", ",") and text[2] == "/" and text[:2].isdigit():
            dt = _clf_fraction(text)
        else:
            dt = _parse_uncached(text)
    except (ValueError, OverflowError, OSError):
        return None
    if dt is None:
        return None
    if len(_cache) >= _MAX_CACHE:
        _cache.clear()
    _cache[text] = dt
    return dt


_fromisoformat = datetime.fromisoformat


def epoch_time(value: float) -> datetime | None:
    """``parse_time(repr(value))`` for a JSON number, without the text in between.

    ``repr`` gives 9 to 19 plain digits (what ``_EPOCH`` accepts) exactly for integers in
    [1e8, 1e19) and floats in [1e8, 1e16) (from 1e16 on, a float's repr has an exponent);
    ``float`` of that text is ``float(value)``. Everything else reads as no time.
    """
    if value.__class__ is int:
        if not 100_000_000 <= value < 10**19:
            return None
    elif not 1e8 <= value < 1e16:  # a float (NaN fails too)
        return None
    try:
        return _from_epoch(float(value))
    except (ValueError, OverflowError, OSError):
        return None

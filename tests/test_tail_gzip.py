"""The tailer and a ``.gz`` still being written by its compressor.

A rotated log the daemon did not finish (it was down, or the file was compressed before
its end was read) may be found as a ``.gz`` the compressor is still writing: its
decompressed bytes end part-way through a line, and its stream has no end yet. It is
compressed here in pieces that end at chosen points of its text (``Z_SYNC_FLUSH``, as a
compressor's output is cut by its writes), written one piece at a time with checks in
between and the tailer's clock moved past its ``rotate_wait``: every line must come out
exactly once and whole, also across a restart.
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path

import pytest
from test_tail import _OPEN, Clock, Sink, _close_tailers, check  # noqa: F401 - fixture used

from auditor.config import SourceConfig
from auditor.fileid import fingerprint
from auditor.pipeline import Batch
from auditor.readgap import GapKind
from auditor.store import Store
from auditor.tail import SourceTailer

WAIT = 10.0  # clock moved between pieces: twice the tailers' rotate_wait


def make(
    path: Path | str, stored: dict[str, int] | None = None, *, last_seen: float | None = None
) -> tuple[SourceTailer, Sink, Clock]:
    sink, clock = Sink(), Clock()
    t = SourceTailer(
        SourceConfig(name="web", path=str(path), start="beginning"),
        sink,
        dict(stored or {}),
        rotate_wait=5.0,
        clock=clock,
        last_seen=last_seen,
    )
    if stored:
        t.initial = False
    _OPEN.append(t)
    return t, sink, clock


def text(n: int, *, unterminated: bool = False) -> bytes:
    body = b"".join(b"line %05d %s\n" % (i, b"abcdefghij" * (1 + i % 7)) for i in range(n))
    return body + b"the last line, unterminated" if unterminated else body


def lines_of(data: bytes) -> list[str]:
    return data.decode().splitlines()


def pieces(data: bytes, cuts: list[int], *, trailer_apart: bool = True) -> list[bytes]:
    """``data`` gzip-compressed, in pieces whose decompressed bytes end at ``cuts``; the
    last piece ends the stream. With ``trailer_apart`` the stream's end (the last deflate
    block and the CRC/size trailer) is a piece of its own: everything is readable before
    it, yet the stream is not complete."""
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    out: list[bytes] = []
    start = 0
    for cut in [*cuts, len(data)]:
        out.append(c.compress(data[start:cut]) + c.flush(zlib.Z_SYNC_FLUSH))
        start = cut
    end = c.flush()
    if trailer_apart:
        out.append(end)
    else:
        out[-1] += end
    assert zlib.decompress(b"".join(out), 31) == data
    return out


def mid_line_cuts(data: bytes, at: list[float]) -> list[int]:
    """Offsets part-way through the lines found at the fractions ``at`` of ``data``."""
    cuts = []
    for frac in at:
        nl = data.index(b"\n", int(len(data) * frac))
        cuts.append(nl - 3)  # three bytes before a newline: a line cut
    return cuts


def grow(path: Path, piece: bytes) -> None:
    with path.open("ab") as f:
        f.write(piece)


def grow_checked(t: SourceTailer, clock: Clock, gz: Path, parts: list[bytes]) -> None:
    """The compressor writes ``parts``, a piece every ``WAIT`` seconds, the tailer checking
    before and after each piece."""
    for part in parts:
        clock.now += WAIT
        check(t)
        grow(gz, part)
        check(t)


def test_gzip_stream_reads_a_growing_file_without_losing_bytes(tmp_path: Path) -> None:
    """What a check reads of a .gz being written, piece by piece, is its text in order:
    nothing lost at the end of a truncated stream (GzipFile drops what its buffered
    read had decompressed when it raises EOFError there), complete only at its end."""
    from auditor.tailfile import GzipStream

    data = text(4000, unterminated=True)
    gz = tmp_path / "a.gz"
    gz.write_bytes(b"")
    parts = pieces(data, mid_line_cuts(data, [0.2, 0.5, 0.9]))
    got = b""
    with gz.open("rb", buffering=0) as raw:
        s = GzipStream(raw)
        for part in parts:
            assert not s.complete
            grow(gz, part)
            while block := s.read(4096):
                got += block
            assert data.startswith(got)
        assert s.complete and got == data
        # Resumed at an offset part-way: the rest only.
    with gz.open("rb", buffering=0) as raw:
        s2 = GzipStream(raw, skip=1234)
        rest = b""
        while block := s2.read(1000):
            rest += block
        assert rest == data[1234:] and s2.complete


def test_gzip_stream_on_a_compressor_output_cut_anywhere(tmp_path: Path) -> None:
    """A compressor's output is not cut at flush points: cut at random bytes (inside
    deflate blocks, the header, the trailer), each read gives a prefix of the text, and
    the stream is complete only once its last byte is there."""
    import gzip
    import random

    from auditor.tailfile import GzipStream

    data = b"".join(b"%d %s\n" % (i, str(i * 7919).encode() * (i % 9)) for i in range(30000))
    comp = gzip.compress(data, mtime=0)
    rng = random.Random(5)
    for _ in range(5):
        cuts = [*sorted(rng.sample(range(1, len(comp)), 25)), len(comp) - 3, len(comp)]
        gz = tmp_path / "cut.gz"
        gz.write_bytes(b"")
        got, prev = b"", 0
        with gz.open("rb", buffering=0) as raw:
            s = GzipStream(raw)
            for cut in cuts:
                grow(gz, comp[prev:cut])
                prev = cut
                while block := s.read(65536):
                    got += block
                assert data.startswith(got)
                assert s.complete == (cut == len(comp))
        assert got == data


def _rotated_while_down(tmp_path: Path, data: bytes, read_lines: int) -> tuple[Path, int, float]:
    """access.log held ``data``; the daemon read ``read_lines`` of it, stopped; the log
    was rotated and a new access.log written. Returns the .gz path (to be written), the
    stored offset and when the daemon was last seen."""
    log = tmp_path / "access.log"
    offset = sum(len(ln) + 1 for ln in lines_of(data)[:read_lines])
    last_seen = time.time() - 30
    log.write_bytes(b"new 0\n")
    gz = tmp_path / "access.log.1.gz"
    gz.write_bytes(b"")
    return gz, offset, last_seen


@pytest.mark.parametrize("trailer_apart", [True, False])
@pytest.mark.parametrize("unterminated", [True, False])
def test_a_gz_being_written_at_a_restart_is_read_once_and_whole(
    tmp_path: Path, trailer_apart: bool, unterminated: bool
) -> None:
    """The daemon was down while access.log was rotated; started, it finds the rotated
    file only as a .gz its compressor is writing (slower than ``rotate_wait``). It
    resumes where it stood, however far the .gz has got, and waits for its end."""
    data = text(3000, unterminated=unterminated)
    gz, offset, last_seen = _rotated_while_down(tmp_path, data, 100)
    fid = fingerprint(data[:4096])
    assert fid is not None
    parts = pieces(data, mid_line_cuts(data, [0.01, 0.3, 0.6]), trailer_apart=trailer_apart)
    grow(gz, parts[0])  # the daemon starts here: the .gz holds less than what was read
    t, sink, clock = make(tmp_path / "access.log", {fid: offset}, last_seen=last_seen)
    check(t)
    grow_checked(t, clock, gz, parts[1:])
    clock.now += WAIT
    check(t)
    clock.now += WAIT
    check(t)
    want = lines_of(data)[100:] + ["new 0"]
    assert sorted(sink.lines) == sorted(want)
    assert not t.files.keys() - {fingerprint(b"new 0\n")}


def test_a_gz_being_written_survives_a_sigkill(tmp_path: Path) -> None:
    """Killed while the .gz is half written: the next daemon resumes it at the committed
    position (an offset in its decompressed bytes), reads each line once."""
    data = text(3000, unterminated=True)
    gz, offset, last_seen = _rotated_while_down(tmp_path, data, 10)
    fid = fingerprint(data[:4096])
    assert fid is not None
    parts = pieces(data, mid_line_cuts(data, [0.2, 0.4, 0.7]))
    grow(gz, parts[0])
    t, sink, clock = make(tmp_path / "access.log", {fid: offset}, last_seen=last_seen)
    check(t)
    grow(gz, parts[1])
    clock.now += WAIT
    check(t)
    first = sink.lines
    stored = {fid: offset, **{fid: p.offset for fid, p in sink.positions.items()}}
    t.close()  # SIGKILL: what was emitted was committed
    grow(gz, parts[2])
    t2, sink2, clock2 = make(tmp_path / "access.log", stored, last_seen=time.time() - 1)
    check(t2)
    grow_checked(t2, clock2, gz, parts[3:])
    clock2.now += WAIT
    check(t2)
    want = lines_of(data)[10:] + ["new 0"]
    assert sorted(first + sink2.lines) == sorted(want)


@pytest.mark.parametrize("unterminated", [False, True])
@pytest.mark.parametrize("restart", [False, True])
def test_a_compressor_slow_to_start_and_to_write(
    tmp_path: Path, restart: bool, unterminated: bool
) -> None:
    """access.log.1 is compressed by a compressor slow to start (its .gz empty, then a
    header only, each for longer than ``rotate_wait``) and to write (pieces cut part-way
    through lines, the stream's end last), access.log.1 removed at the end. Either the
    running daemon had read access.log.1 to its end and closed it, or it was down when
    access.log rotated, having read 100 lines: each line once, none cut. An unterminated
    last line, left unread when access.log.1 is closed, is read from the finished .gz."""
    data = text(2000, unterminated=unterminated)
    log = tmp_path / "access.log"
    rotated, gz = tmp_path / "access.log.1", tmp_path / "access.log.1.gz"
    if restart:
        fid = fingerprint(data[:4096])
        assert fid is not None
        stored = {fid: sum(len(ln) + 1 for ln in lines_of(data)[:100])}
        last_seen = time.time() - 30
        rotated.write_bytes(data)
        log.write_bytes(b"new 0\n")
        gz.write_bytes(b"")
        t, sink, clock = make(log, stored, last_seen=last_seen)
        check(t)
        want = lines_of(data)[100:] + ["new 0"]
    else:
        log.write_bytes(data)
        t, sink, clock = make(log)
        check(t)
        log.rename(rotated)
        log.write_bytes(b"new 0\n")
        gz.write_bytes(b"")
        check(t)
        want = lines_of(data) + ["new 0"]
    clock.now += WAIT
    check(t)  # access.log.1 is read to its end and closed; the .gz is still empty
    assert [Path(f.path).name for f in t.files.values()] == ["access.log"]
    parts = pieces(data, mid_line_cuts(data, [0.01, 0.5, 0.99]))
    header, parts[0] = parts[0][:10], parts[0][10:]
    grow_checked(t, clock, gz, [header, *parts])
    rotated.unlink()
    clock.now += WAIT
    check(t)
    assert sorted(sink.lines) == sorted(want)
    assert [Path(f.path).name for f in t.files.values()] == ["access.log"]


@pytest.mark.parametrize("unterminated", [False, True])
@pytest.mark.parametrize("when", ["before_close", "between_checks", "at_restart"])
def test_a_compressed_copy_finished_early_completes_the_last_line(
    tmp_path: Path, when: str, unterminated: bool
) -> None:
    """access.log.1's copy is compressed and finished while access.log.1 is still read:
    before it is closed (``before_close``), with logrotate's rename, compression and
    removal all between two checks (``between_checks``), or while the daemon was down,
    both files there at its start (``at_restart``). access.log.1's unterminated last
    line is read from the finished copy, once; nothing else from it."""
    data = text(2000, unterminated=unterminated)
    log = tmp_path / "access.log"
    rotated, gz = tmp_path / "access.log.1", tmp_path / "access.log.1.gz"
    want = lines_of(data) + ["new 0"]
    if when == "at_restart":
        fid = fingerprint(data[:4096])
        assert fid is not None
        stored = {fid: sum(len(ln) + 1 for ln in lines_of(data)[:100])}
        rotated.write_bytes(data)
        gz.write_bytes(b"".join(pieces(data, [])))
        log.write_bytes(b"new 0\n")
        t, sink, clock = make(log, stored, last_seen=time.time() - 30)
        want = want[100:]
    else:
        log.write_bytes(data)
        t, sink, clock = make(log)
        check(t)
        log.rename(rotated)
        log.write_bytes(b"new 0\n")
        if when == "between_checks":
            gz.write_bytes(b"".join(pieces(data, [])))
            rotated.unlink()
        else:
            gz.write_bytes(b"")
            check(t)  # the .gz is held, empty
            gz.write_bytes(b"".join(pieces(data, [])))
            clock.now += 1
    check(t)
    for _ in range(3):
        clock.now += WAIT
        check(t)
        rotated.unlink(missing_ok=True)
    assert sorted(sink.lines) == sorted(want)
    assert [Path(f.path).name for f in t.files.values()] == ["access.log"]


@pytest.mark.parametrize("unterminated", [False, True])
def test_a_copy_compressed_at_the_next_rotation_completes_the_last_line(
    tmp_path: Path, unterminated: bool
) -> None:
    """logrotate's ``delaycompress``: access.log.1 stays as it is, closed long before
    (quiet for more than ``idle_close``), until the next rotation compresses it as
    access.log.2.gz, slowly. Its unterminated last line is read from there, once."""
    data = text(2000, unterminated=unterminated)
    log = tmp_path / "access.log"
    log.write_bytes(data)
    t, sink, clock = make(log)
    check(t)
    log.rename(tmp_path / "access.log.1")
    log.write_bytes(b"new 0\n")
    for _ in range(10):
        clock.now += WAIT
        check(t)
    (tmp_path / "access.log.1").rename(tmp_path / "access.log.2")
    log.rename(tmp_path / "access.log.1")
    log.write_bytes(b"new 1\n")
    gz = tmp_path / "access.log.2.gz"
    gz.write_bytes(b"")
    check(t)
    parts = pieces(data, mid_line_cuts(data, [0.5]))
    grow_checked(t, clock, gz, parts)
    (tmp_path / "access.log.2").unlink()
    for _ in range(2):
        clock.now += WAIT
        check(t)
    assert sorted(sink.lines) == sorted([*lines_of(data), "new 0", "new 1"])
    assert [Path(f.path).name for f in t.files.values()] == ["access.log"]


@pytest.mark.parametrize("removed", [False, True])
@pytest.mark.parametrize("unterminated", [False, True])
def test_a_file_let_go_then_compressed_completes_the_last_line(
    tmp_path: Path, unterminated: bool, removed: bool
) -> None:
    """A quiet server: access.log.1 is let go (followed by name) while access.log stays
    empty past ``idle_close``. Then access.log gets a line and its compressor, slow to
    start and to write, copies it (or access.log stays empty until access.log.1 is
    removed, its copy finished: ``removed``). Its unterminated last line is read from
    the finished copy, once."""
    data = text(2000, unterminated=unterminated)
    log = tmp_path / "access.log"
    rotated, gz = tmp_path / "access.log.1", tmp_path / "access.log.1.gz"
    log.write_bytes(data)
    t, sink, clock = make(log)
    check(t)
    log.rename(rotated)
    log.write_bytes(b"")
    for _ in range(8):
        clock.now += WAIT
        check(t)
    assert [Path(w.path).name for w in t.watched.values()] == ["access.log.1"]
    if not removed:
        log.write_bytes(b"new 0\n")
    gz.write_bytes(b"")
    check(t)
    parts = pieces(data, mid_line_cuts(data, [0.01, 0.5, 0.99]))
    header, parts[0] = parts[0][:10], parts[0][10:]
    grow_checked(t, clock, gz, [header, *parts])
    rotated.unlink()
    if removed:
        log.write_bytes(b"new 0\n")
    for _ in range(3):
        clock.now += WAIT
        check(t)
    assert sorted(sink.lines) == sorted([*lines_of(data), "new 0"])
    assert [Path(f.path).name for f in t.files.values()] == ["access.log"]


def test_a_compressed_copy_that_stops_in_the_last_line_leaves_it_unread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """access.log.1, left with an unterminated last line, is being compressed; the
    compressor is killed part-way through that line, its input left. The cut line is not
    emitted, the dead copy is not read again (one warning), and no line comes twice."""
    data = text(2000, unterminated=True)
    log = tmp_path / "access.log"
    rotated, gz = tmp_path / "access.log.1", tmp_path / "access.log.1.gz"
    log.write_bytes(data)
    t, sink, clock = make(log)
    check(t)
    log.rename(rotated)
    log.write_bytes(b"new 0\n")
    gz.write_bytes(b"")
    with caplog.at_level(logging.INFO):
        check(t)
        parts = pieces(data, [len(data) // 2, len(data) - 10])
        grow_checked(t, clock, gz, parts[:2])  # and nothing more: killed
        for _ in range(20):
            clock.now += WAIT
            check(t)
    assert sorted(sink.lines) == sorted([*lines_of(data)[:-1], "new 0"])
    assert [Path(f.path).name for f in t.files.values()] == ["access.log"]
    warned = [r for r in caplog.records if "incomplete" in r.getMessage()]
    assert len(warned) == 1
    assert t.stats.gaps == 0  # its input was left: nothing is missing but the cut line


@pytest.mark.parametrize("unterminated", [False, True])
def test_a_glob_matching_the_archives_and_a_slow_compressor(
    tmp_path: Path, unterminated: bool
) -> None:
    """A source ``access.log*``: access.log.1 is matched at its own path, and so is the
    .gz its compressor writes slowly; access.log.1 is removed at the end. Each line once,
    the unterminated last one from the finished .gz."""
    data = text(2000, unterminated=unterminated)
    log = tmp_path / "access.log"
    log.write_bytes(data)
    t, sink, clock = make(tmp_path / "access.log*")
    check(t)
    log.rename(tmp_path / "access.log.1")
    log.write_bytes(b"new 0\n")
    gz = tmp_path / "access.log.1.gz"
    gz.write_bytes(b"")
    check(t)
    parts = pieces(data, mid_line_cuts(data, [0.01, 0.5, 0.99]))
    header, parts[0] = parts[0][:10], parts[0][10:]
    grow_checked(t, clock, gz, [header, *parts])
    (tmp_path / "access.log.1").unlink()
    for _ in range(2):
        clock.now += WAIT
        check(t)
    assert sorted(sink.lines) == sorted([*lines_of(data), "new 0"])
    assert [Path(f.path).name for f in t.files.values()] == ["access.log"]


def test_a_gz_matched_at_its_path_is_not_ended_before_its_stream_is(tmp_path: Path) -> None:
    """A source whose glob matches the archives: a .gz found half written at its path is
    not closed, its partial line emitted, at the end of its bytes so far (more than one
    read's worth: a read ends part-way through a line)."""
    data = text(30000, unterminated=True)
    gz = tmp_path / "app.log.gz"
    gz.write_bytes(b"")
    parts = pieces(data, mid_line_cuts(data, [0.3, 0.8]))
    t, sink, clock = make(tmp_path / "app.log*")
    for part in parts:
        grow(gz, part)
        check(t)
        clock.now += WAIT
        check(t)
    assert sink.lines == lines_of(data)


@pytest.mark.parametrize("input_left", [False, True])
def test_a_gz_whose_compressor_stopped_is_let_go_with_nothing_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, input_left: bool
) -> None:
    """A .gz that stops growing before its stream ends (its compressor was killed) is
    waited for while it grows, then closed after ``idle_close`` quiet seconds with one
    warning; its cut last line is not emitted. A killed gzip leaves its input: the rest
    is read from it, from where the .gz stopped."""
    data = text(2000)
    gz, _, last_seen = _rotated_while_down(tmp_path, data, 0)
    fid = fingerprint(data[:4096])
    assert fid is not None
    if input_left:
        (tmp_path / "access.log.1").write_bytes(data)
    cut, cut2 = mid_line_cuts(data, [0.3, 0.5])
    parts = pieces(data, [cut, cut2])
    grow(gz, parts[0])
    t, sink, clock = make(tmp_path / "access.log", {fid: 0}, last_seen=last_seen)
    with caplog.at_level(logging.INFO):
        check(t)
        # The .gz was taken (its trailer-less tail reads as a large length).
        assert "access.log.1.gz" in [Path(f.path).name for f in t.files.values()]
        for _ in range(5):  # 50 s, quiet: less than idle_close
            clock.now += WAIT
            check(t)
        grow(gz, parts[1])  # and on: quiet since for less than idle_close
        for _ in range(5):
            clock.now += WAIT
            check(t)
        assert "access.log.1.gz" in [Path(f.path).name for f in t.files.values()]
        for _ in range(3):
            clock.now += WAIT
            check(t)
    if input_left:
        assert sorted(sink.lines) == sorted([*lines_of(data), "new 0"])
        (tmp_path / "access.log.1").unlink()
        clock.now += WAIT
        check(t)
    else:
        whole = data[: data.rindex(b"\n", 0, cut2) + 1]
        assert sorted(sink.lines) == sorted([*lines_of(whole), "new 0"])
    assert [Path(f.path).name for f in t.files.values()] == ["access.log"]
    assert t.stats.gaps == (0 if input_left else 1)  # the metric log_auditor_gaps_total
    if input_left:
        assert sink.gaps == []
    else:
        # Recorded for the store: where its text stopped, and the cut line known lost.
        (gap,) = sink.gaps
        assert (gap.source, gap.path, gap.file_id, gap.kind) == (
            "web",
            str(gz),
            fid,
            GapKind.UNFINISHED_ARCHIVE,
        )
        assert (gap.offset, gap.bytes_not_read) == (len(whole), cut2 - len(whole))
        assert gap.cause == "its compressed stream has no end"
    warned = [r for r in caplog.records if "incomplete" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING


def test_a_gz_that_cannot_be_decompressed_is_reported_and_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = text(500)
    gz, _, last_seen = _rotated_while_down(tmp_path, data, 0)
    fid = fingerprint(data[:4096])
    assert fid is not None
    good = pieces(data, [3000])[0]
    grow(gz, good + b"\xff" * 200)  # damaged after its first 3000 bytes of text
    t, sink, clock = make(tmp_path / "access.log", {fid: 0}, last_seen=last_seen)
    with caplog.at_level(logging.INFO):
        check(t)
        clock.now += WAIT
        check(t)
    assert sink.lines == lines_of(data[: data.rindex(b"\n", 0, 3000) + 1]) + ["new 0"]
    assert [Path(f.path).name for f in t.files.values()] == ["access.log"]
    assert t.stats.gaps == 1
    assert any(
        r.levelno == logging.WARNING and "access.log.1.gz" in r.getMessage() for r in caplog.records
    )
    (gap,) = sink.gaps
    assert gap.kind is GapKind.UNFINISHED_ARCHIVE and gap.cause.startswith("cannot be decompressed")


def test_a_damaged_archive_met_again_after_a_restart_is_journalled_once(tmp_path: Path) -> None:
    """The tailer finds a damaged .gz again at every start (its stored position stays
    short of its end, and it is still beside the log); the store keeps one record of the
    gap, written with the positions the tailer emitted, as the daemon's writer does."""
    data = text(500)
    gz, _, last_seen = _rotated_while_down(tmp_path, data, 0)
    fid = fingerprint(data[:4096])
    assert fid is not None
    grow(gz, pieces(data, [3000])[0] + b"\xff" * 200)
    store = Store.open(tmp_path / "audit.db")
    found = []
    for _ in range(2):  # two runs of the daemon
        stored = {p.file_id: p.offset for p in store.positions("web")} or {fid: 0}
        t, sink, clock = make(tmp_path / "access.log", stored, last_seen=last_seen)
        check(t)
        clock.now += WAIT
        check(t)
        store.write(Batch(positions=list(sink.positions.values()), read_gaps=sink.gaps))
        found += sink.gaps
    assert len(found) == 2 and found[0].ref == found[1].ref
    rows = store.conn.execute("SELECT at_ms, source, kind, detail FROM journal").fetchall()
    assert rows == [(found[0].at_ms, "web", "read-gap", found[0].describe())]
    assert str(gz) in rows[0][3] and f"after offset {found[0].offset:,}" in rows[0][3]
    store.close()

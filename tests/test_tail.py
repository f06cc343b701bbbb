"""The tailer on real files: every kind of rotation, restarts, globs, bad paths.

Each test drives ``SourceTailer.check()`` by hand (no watcher, no timers), so the order
of file operations and checks is exact; the clock is a variable the test moves.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.config import SourceConfig
from auditor.pipeline import Position
from auditor.readgap import GapKind, ReadGap
from auditor.tail import CHUNK, CHUNKS_PER_TURN, Chunk, SourceState, SourceTailer, TailItem
from auditor.tailfile import rotated_siblings, source_kind, watch_root


class Sink:
    """Collects what a tailer emits."""

    def __init__(self) -> None:
        self.items: list[TailItem] = []
        self.times: list[float] = []  # wall time of each item
        self._taken = 0

    async def __call__(self, item: TailItem) -> None:
        self.items.append(item)
        self.times.append(time.time())

    @property
    def lines(self) -> list[str]:
        return [ln.text for c in self.items if isinstance(c, Chunk) for ln in c.lines]

    @property
    def positions(self) -> dict[str, Position]:
        out: dict[str, Position] = {}
        for c in self.items:
            if isinstance(c, Chunk):
                out[c.position.file_id] = c.position
        return out

    @property
    def rotations(self) -> int:
        return sum(c.rotations for c in self.items if isinstance(c, Chunk))

    @property
    def gaps(self) -> list[ReadGap]:
        return [g for c in self.items if isinstance(c, Chunk) for g in c.gaps]

    @property
    def states(self) -> list[str | None]:
        return [s.error for s in self.items if isinstance(s, SourceState)]

    def take(self) -> list[str]:
        """The lines emitted since the last take()."""
        lines = self.lines
        out, self._taken = lines[self._taken :], len(lines)
        return out


def modes_apply() -> bool:
    """False for root with CAP_DAC_OVERRIDE (it reads a file of mode 000)."""
    import tempfile

    with tempfile.NamedTemporaryFile() as f:
        os.chmod(f.name, 0)
        try:
            open(f.name).close()
        except PermissionError:
            return True
    return False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


_OPEN: list[SourceTailer] = []


@pytest.fixture(autouse=True)
def _close_tailers() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def make(
    path: Path | str,
    *,
    start: str = "beginning",
    stored: dict[str, int] | None = None,
    max_line: int = 65536,
) -> tuple[SourceTailer, Sink, Clock]:
    sink, clock = Sink(), Clock()
    t = SourceTailer(
        SourceConfig(name="web", path=str(path), start=start),
        sink,
        dict(stored or {}),
        max_line=max_line,
        rotate_wait=5.0,
        clock=clock,
    )
    _OPEN.append(t)
    return t, sink, clock


def check(t: SourceTailer, *, final: bool = False) -> None:
    async def go() -> None:
        while await t.check(final=final):
            pass

    asyncio.run(go())


def write(path: Path, *lines: str, mode: str = "a") -> None:
    with path.open(mode) as f:
        f.writelines(f"{ln}\n" for ln in lines)


def test_start_end_skips_existing_and_waits_for_newline(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "old 1", "old 2")
    with log.open("a") as f:
        f.write("half")
    t, sink, _ = make(log, start="end")
    check(t)
    assert sink.take() == []
    with log.open("a") as f:
        f.write(" done\nnew 1\nnew")
    check(t)
    # The partial line present at start belongs to the new data: it is read whole.
    assert sink.take() == ["half done", "new 1"]
    with log.open("a") as f:
        f.write(" 2\n")
    check(t)
    assert sink.take() == ["new 2"]
    assert list(sink.positions.values())[-1].offset == log.stat().st_size


def test_start_beginning_and_resume_from_stored_position(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "a", "b", "c")
    t, sink, _ = make(log)
    check(t)
    assert sink.take() == ["a", "b", "c"]
    stored = {fid: p.offset for fid, p in sink.positions.items()}
    t.close()
    write(log, "d")
    # A restart with the committed positions: only the new line.
    t2, sink2, _ = make(log, start="beginning", stored=stored)
    check(t2)
    assert sink2.lines == ["d"]


def test_rename_and_create_finishes_old_file_first(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "1", "2")
    t, sink, clock = make(log)
    check(t)
    assert sink.take() == ["1", "2"]
    write(log, "3")
    log.rename(tmp_path / "access.log.1")
    write(log, "new 1", mode="w")
    write(tmp_path / "access.log.1", "4 (late writer)")
    check(t)
    assert sink.take() == ["3", "4 (late writer)", "new 1"]
    assert sink.rotations == 1
    # The rotated file stays open for late writers until rotate_wait passes.
    write(tmp_path / "access.log.1", "5 (later)")
    check(t)
    assert sink.take() == ["5 (later)"]
    assert len(t.files) == 2
    clock.now += 6
    check(t)
    assert len(t.files) == 1
    write(log, "new 2")
    check(t)
    assert sink.take() == ["new 2"]


def test_delete_and_recreate(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "1")
    t, sink, _ = make(log)
    check(t)
    with log.open("a") as held:
        log.unlink()
        held.write("2 (written to the deleted file)\n")
    check(t)
    write(log, "new 1", mode="w")
    check(t)
    assert sink.lines == ["1", "2 (written to the deleted file)", "new 1"]
    assert sink.rotations == 1


def test_two_rotations_between_checks_lose_nothing(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "a1")
    t, sink, _ = make(log)
    check(t)
    # Two rename rotations before the tailer looks again: b never sat at the path
    # while the tailer looked.
    write(log, "a2")
    log.rename(tmp_path / "access.log.2")
    write(log, "b1", "b2", mode="w")
    log.rename(tmp_path / "access.log.1")
    write(log, "c1", mode="w")
    check(t)
    assert sink.lines == ["a1", "a2", "b1", "b2", "c1"]


def test_copytruncate_reads_unread_part_from_the_copy(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "1", "2")
    t, sink, _ = make(log)
    check(t)
    write(log, "3", "4")  # not read yet when the copy is made
    shutil.copyfile(log, tmp_path / "access.log.1")
    os.truncate(log, 0)
    write(log, "new 1")
    check(t)
    assert sink.lines == ["1", "2", "3", "4", "new 1"]
    assert sink.rotations == 1
    assert t.stats.gaps == 0


def test_copytruncate_when_regrown_past_the_old_offset(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "1")
    t, sink, _ = make(log)
    check(t)
    write(log, "2")
    shutil.copyfile(log, tmp_path / "access.log.1")
    os.truncate(log, 0)
    # The new content is already longer than what was read: the first line tells.
    write(log, *(f"new {i} with a longer text" for i in range(5)))
    check(t)
    assert sink.lines == ["1", "2", *(f"new {i} with a longer text" for i in range(5))]


def test_copytruncate_with_compressed_copy(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "1")
    t, sink, _ = make(log)
    check(t)
    write(log, "2", "3")
    with gzip.open(tmp_path / "access.log.1.gz", "wb") as gz:
        gz.write(log.read_bytes())
    os.truncate(log, 0)
    write(log, "new 1")
    check(t)
    assert sink.lines == ["1", "2", "3", "new 1"]


def test_copytruncate_without_a_copy_counts_a_gap(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "1")
    t, sink, _ = make(log)
    check(t)
    write(log, "2 (lost: no copy kept)")
    os.truncate(log, 0)
    write(log, "new 1")
    check(t)
    assert sink.lines == ["1", "new 1"]
    assert t.stats.gaps == 1
    # Read to its end at the last look: how much was written before the truncation is
    # not known (here a line was).
    (gap,) = sink.gaps
    assert (gap.kind, gap.offset, gap.bytes_not_read) == (GapKind.TRUNCATION, 2, None)


def test_a_truncation_without_a_copy_is_recorded_with_what_was_seen_unread(
    tmp_path: Path,
) -> None:
    """Truncated while half read (more than one turn of reads): the gap names the file,
    where reading stopped and the bytes seen beyond it, and travels with the position."""
    log = tmp_path / "access.log"
    line = "x" * 99
    write(log, *[line] * (CHUNK * CHUNKS_PER_TURN // 100 + 5000))  # 500 kB past one turn
    size = log.stat().st_size
    t, sink, _ = make(log)
    t.wall_clock = lambda: 1_790_000_000.25
    asyncio.run(t.check())  # one turn: 4 MiB read, the rest not yet
    stopped = sink.positions[next(iter(sink.positions))].offset
    assert 0 < stopped < size
    os.truncate(log, 0)
    write(log, "new 1")
    check(t)
    (gap,) = sink.gaps
    assert gap == ReadGap(
        source="web",
        path=str(log),
        file_id=gap.file_id,
        kind=GapKind.TRUNCATION,
        offset=stopped,
        bytes_not_read=size - stopped,
        at_ms=1_790_000_000_250,
        cause="shrank to 6 bytes",
    )
    (carrier,) = [c for c in sink.items if isinstance(c, Chunk) and c.gaps]
    assert carrier.position.file_id == gap.file_id and carrier.position.offset == stopped
    assert f"at least {size - stopped:,} bytes after offset {stopped:,}" in gap.describe()
    assert sink.lines[-1] == "new 1"
    assert t.stats.gaps == 1


def test_symlink_swap_like_kubernetes(tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    pods.mkdir()
    containers = tmp_path / "containers"
    containers.mkdir()
    link = containers / "api.log"
    write(pods / "0.log", "c0 1")
    link.symlink_to(pods / "0.log")
    t, sink, _ = make(link)
    check(t)
    assert str(pods) in t.watch_dirs()  # the target's directory is watched too
    write(pods / "0.log", "c0 2")
    write(pods / "1.log", "c1 1")
    tmp_link = containers / ".api.log.tmp"
    tmp_link.symlink_to(pods / "1.log")
    tmp_link.replace(link)  # atomic swap, as kubelet does
    check(t)
    assert sink.lines == ["c0 1", "c0 2", "c1 1"]
    assert sink.rotations == 1


def test_restart_after_rotation_and_compression_while_stopped(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "1", "2")
    t, sink, _ = make(log)
    check(t)
    stored = {fid: p.offset for fid, p in sink.positions.items()}
    t.close()
    # While stopped: more lines, rotated, compressed, a new file.
    write(log, "3", "4")
    with gzip.open(tmp_path / "access.log.1.gz", "wb") as gz:
        gz.write(log.read_bytes())
    log.unlink()
    write(log, "new 1")
    (tmp_path / "unrelated.log").write_text("not ours\n")
    t2, sink2, _ = make(log, start="end", stored=stored)
    check(t2)
    assert sink2.lines == ["3", "4", "new 1"]


def test_restart_with_fully_read_archive_reads_nothing(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "1", "2")
    t, sink, _ = make(log)
    check(t)
    stored = {fid: p.offset for fid, p in sink.positions.items()}
    t.close()
    with gzip.open(tmp_path / "access.log.1.gz", "wb") as gz:
        gz.write(log.read_bytes())
    log.unlink()
    write(log, "new 1")
    t2, sink2, _ = make(log, stored=stored)
    check(t2)
    assert sink2.lines == ["new 1"]


def test_glob_new_files_are_read_from_their_beginning(tmp_path: Path) -> None:
    write(tmp_path / "a.access.log", "a old")
    t, sink, _ = make(tmp_path / "*.access.log", start="end")
    check(t)
    assert sink.take() == []
    write(tmp_path / "b.access.log", "b 1", "b 2")
    write(tmp_path / "a.access.log", "a new")
    (tmp_path / "c.error.log").write_text("not matched\n")
    check(t)
    assert sorted(sink.take()) == ["a new", "b 1", "b 2"]


def test_directory_source_with_rotated_and_compressed_files_reads_each_line_once(
    tmp_path: Path,
) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    write(d / "access.log", "1", "2")
    t, sink, clock = make(d)
    check(t)
    write(d / "access.log", "3")
    (d / "access.log").rename(d / "access.log.1")
    write(d / "access.log", "new 1", mode="w")
    check(t)
    clock.now += 10
    check(t)
    # logrotate's delaycompress, a rotation later: the .1 is compressed and removed.
    with gzip.open(d / "access.log.1.gz", "wb") as gz:
        gz.write((d / "access.log.1").read_bytes())
    (d / "access.log.1").unlink()
    check(t)
    clock.now += 10
    check(t)
    assert sink.lines == ["1", "2", "3", "new 1"]


def test_long_lines_are_cut_and_flagged(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "x" * 100, "short")
    t, sink, _ = make(log, max_line=10)
    check(t)
    chunks = [c for c in sink.items if isinstance(c, Chunk)]
    lines = [ln for c in chunks for ln in c.lines]
    assert [ln.text for ln in lines] == ["x" * 10, "short"]
    assert [ln.truncated for ln in lines] == [True, False]


def test_missing_path_waits_then_reads_from_the_beginning(tmp_path: Path) -> None:
    log = tmp_path / "later" / "access.log"
    t, sink, _ = make(log, start="end")
    check(t)
    assert sink.states[-1] is not None and "does not exist" in sink.states[-1]
    log.parent.mkdir()
    write(log, "first")
    check(t)
    assert sink.lines == ["first"]
    assert sink.states[-1] is None


def test_directory_deleted_and_recreated(tmp_path: Path) -> None:
    d = tmp_path / "nginx"
    d.mkdir()
    log = d / "access.log"
    write(log, "1")
    t, sink, clock = make(log)
    check(t)
    shutil.rmtree(d)
    check(t)
    assert "does not exist" in (sink.states[-1] or "")
    d.mkdir()
    write(log, "2")
    check(t)
    clock.now += 10
    check(t)
    assert sink.lines == ["1", "2"]
    assert sink.states[-1] is None


def test_file_replaced_by_a_directory_is_reported_then_recovers(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "1")
    t, sink, clock = make(log)
    check(t)
    log.unlink()
    log.mkdir()
    check(t)
    assert sink.states[-1] == f"{log}: is a directory, expected a file"
    clock.now += 10
    log.rmdir()
    write(log, "2")
    check(t)
    assert sink.lines == ["1", "2"]
    assert sink.states[-1] is None


@pytest.mark.skipif(not modes_apply(), reason="this user reads files whatever their mode")
def test_permission_denied_is_reported_and_retried(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "1")
    log.chmod(0)
    t, sink, clock = make(log)
    check(t)
    assert sink.states[-1] == f"{log}: permission denied"
    log.chmod(0o644)
    clock.now += 120
    check(t)
    assert sink.lines == ["1"]
    assert sink.states[-1] is None


def test_positions_follow_the_lines(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "a" * 10, "b" * 10)
    t, sink, _ = make(log)
    check(t)
    chunk = [c for c in sink.items if isinstance(c, Chunk) and c.lines][-1]
    assert chunk.position.offset == chunk.lines[-1].end == 22
    assert chunk.position.size == 22
    assert chunk.position.source == "web"


def test_helpers() -> None:
    assert source_kind("/var/log/*.log") == "glob"
    assert source_kind("/nonexistent/access.log") == "file"
    assert source_kind("/var/log/") == "dir"
    assert watch_root("/var/log/nginx/access.log", "file") == ("/var/log/nginx", False)
    assert watch_root("/var/log/pods/*/*/0.log", "glob") == ("/var/log/pods", True)
    assert watch_root("/var/log/nginx/*.log", "glob") == ("/var/log/nginx", False)


def test_rotated_siblings(tmp_path: Path) -> None:
    for name in ("access.log", "access.log.1", "access.log.2.gz", "access.log-20260101", "x"):
        (tmp_path / name).write_text("")
    names = [Path(p).name for p in rotated_siblings(str(tmp_path / "access.log"))]
    assert names == ["access.log-20260101", "access.log.1", "access.log.2.gz"]


def test_copytruncate_while_another_file_is_being_drained(tmp_path: Path) -> None:
    """The truncation lands between the check and the read of the active file."""
    log = tmp_path / "access.log"
    write(log, *(f"a{i}" for i in range(100)))
    t, sink, _ = make(log)
    check(t)
    log.rename(tmp_path / "access.log.1")
    write(tmp_path / "access.log.1", *(f"a{i}" for i in range(100, 200)))
    write(log, *(f"b{i}" for i in range(100)), mode="w")
    fired = False

    async def emit(item: TailItem) -> None:
        nonlocal fired
        await sink(item)
        if not fired and isinstance(item, Chunk) and item.lines:
            fired = True  # while the rotated file is read: copytruncate the active one
            shutil.copyfile(log, tmp_path / "access.log.2")
            os.truncate(log, 0)
            write(log, *(f"c{i}" for i in range(300)))

    t.emit = emit
    check(t)
    expected = [f"a{i}" for i in range(100, 200)] + [f"b{i}" for i in range(100)]
    assert sink.lines == [f"a{i}" for i in range(100)] + expected + [f"c{i}" for i in range(300)]


def test_a_big_rotated_file_is_finished_before_its_successor(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "start")
    t, sink, _ = make(log)
    check(t)
    big = [f"old {i} " + "x" * 200 for i in range(40_000)]  # several read turns
    write(log, *big)
    log.rename(tmp_path / "access.log.1")
    write(log, "new 1", mode="w")
    check(t)
    assert sink.lines == ["start", *big, "new 1"]


@pytest.mark.skipif(not modes_apply(), reason="this user reads files whatever their mode")
def test_unreadable_directory_source_is_reported_then_recovers(tmp_path: Path) -> None:
    d = tmp_path / "logs"
    d.mkdir()
    write(d / "a.log", "1")
    d.chmod(0)
    t, sink, clock = make(d)
    check(t)
    assert "permission denied" in (sink.states[-1] or "")
    d.chmod(0o755)
    clock.now += 120
    check(t)
    assert sink.lines == ["1"]
    assert sink.states[-1] is None


def test_copytruncate_then_rename_between_checks_of_an_unread_file(tmp_path: Path) -> None:
    """The soak's lost file: the path's file, still unread behind its predecessor, is
    copytruncated (the copy keeps its lines), refilled and renamed before the next check.
    """
    log = tmp_path / "access.log"
    write(log, "a0")
    t, sink, _ = make(log)
    check(t)
    write(log, *(f"a{i}" for i in range(1, 100)))
    log.rename(tmp_path / "access.log.1")
    write(log, *(f"b{i}" for i in range(100)), mode="w")
    fired = False

    async def emit(item: TailItem) -> None:
        nonlocal fired
        await sink(item)
        if not fired and isinstance(item, Chunk) and item.lines:
            fired = True  # while the predecessor is drained, b (unread) rotates twice
            shutil.copyfile(log, tmp_path / "access.log.2")
            os.truncate(log, 0)
            write(log, *(f"c{i}" for i in range(100)))
            log.rename(tmp_path / "access.log.3")
            write(log, *(f"d{i}" for i in range(10)), mode="w")

    t.emit = emit
    check(t)
    sizes = {"a": 100, "b": 100, "c": 100, "d": 10}
    assert sink.lines == [f"{x}{i}" for x, n in sizes.items() for i in range(n)]
    assert t.stats.gaps == 0


def test_copytruncate_then_rename_between_checks_of_a_half_read_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "a0", "a1")
    t, sink, _ = make(log)
    check(t)
    write(log, "a2", "a3")  # not read when the copy is made
    shutil.copyfile(log, tmp_path / "access.log.1")
    os.truncate(log, 0)
    write(log, "b0 a longer line than before", "b1")
    log.rename(tmp_path / "access.log.2")
    write(log, "c0", mode="w")
    check(t)
    assert sink.lines == ["a0", "a1", "a2", "a3", "b0 a longer line than before", "b1", "c0"]
    assert sink.rotations == 2
    assert t.stats.gaps == 0
    # Each file's last position is its full length, under its own identity.
    assert {Path(p.path).name: p.offset for p in sink.positions.values()} == {
        name: (tmp_path / name).stat().st_size
        for name in ("access.log", "access.log.1", "access.log.2")
    }


def test_copytruncate_then_delete_between_checks_reads_the_held_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write(log, "a0")
    t, sink, _ = make(log)
    check(t)
    with log.open("a") as held:
        write(log, "a1")
        shutil.copyfile(log, tmp_path / "access.log.1")
        os.truncate(log, 0)
        held.write("b0\nb1\n")
        held.flush()
        log.unlink()
        check(t)
    write(log, "c0", mode="w")
    check(t)
    assert sink.lines == ["a0", "a1", "b0", "b1", "c0"]


# -- interleavings of copytruncate, rename, create, delete and checks ---------------------


def _compress_in_place(src: Path, gz: Path) -> None:
    """Fill ``gz`` (already created, perhaps held) with ``src`` compressed, on its inode.

    Its header's time (10) is a newline byte: its raw bytes hold a "first line", as most
    archives' first 4 KiB do (a few short lines compressed often do not).
    """
    with (
        gz.open("r+b") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=10) as dst,
    ):
        dst.write(src.read_bytes())


class Rotator:
    """A log at a path, the writer that holds it open (as nginx does), and rotations.

    Operations (one word each): ``W`` the writer appends a numbered line to the file it
    holds; ``CT`` copytruncate (copy beside it, truncate to 0); ``CP`` copy only (``CPP``
    as ``cp -p``: the same modification time); ``RN`` rename away; ``CR`` create an empty
    file at the path; ``RO`` the writer reopens the path; ``RM`` delete the path; ``SH``
    rename the newest rotated file again; ``GZ`` compress the oldest rotated file the
    writer does not hold and remove it; ``GZS`` and ``GZE`` the same in two steps, as a
    compressor does it (``GZS``: the ``.gz`` is created, still empty: gzip buffers its
    header; ``GZE``: it is filled in place and the original removed); ``C`` a check of the
    tailer; ``CA`` a check, then a
    minute passes (file times are set back); ``Q`` the tailer's clock moves past its
    ``idle_close`` (twice over); ``K`` a SIGKILL after everything emitted was committed,
    ``KL`` one that loses what the last check emitted, ``KH`` the second half of it (a new
    tailer resumes from the committed positions). Rotated names never repeat.
    """

    def __init__(self, d: Path) -> None:
        self.d = d
        self.log = d / "access.log"
        self.n = self.k = 0
        self.written: list[str] = []
        self.log.write_text("")
        self.held = self.log.open("a")
        self.seen: set[int] = set()  # inodes at the path at a check
        self.compressing: Path | None = None  # GZS done, GZE not yet

    def age(self) -> None:
        """A minute passes: every file was last changed well before the next check."""
        old = time.time() - 60
        for p in self.d.iterdir():
            os.utime(p, (old, old))

    def checked(self) -> None:
        if self.log.exists():
            self.seen.add(self.log.stat().st_ino)

    def close(self) -> None:
        self.held.close()

    def _next(self) -> Path:
        self.k += 1
        return self.d / f"access.log.{self.k}"

    def _rotated(self) -> list[Path]:
        plain = [
            p for p in self.d.glob("access.log.*") if p.suffix != ".gz" and p != self.compressing
        ]
        return sorted(plain, key=lambda p: int(p.name.rsplit(".", 1)[1]))

    def _not_held(self) -> list[Path]:
        held = os.fstat(self.held.fileno()).st_ino
        return [p for p in self._rotated() if p.stat().st_ino != held]

    def can(self, op: str) -> bool:
        if op in ("CT", "CP", "CPP", "RN", "RM", "RO"):
            if not self.log.exists():
                return False
            if op == "RO":
                return os.fstat(self.held.fileno()).st_ino != self.log.stat().st_ino
            if op == "RM":  # a file deleted before any check was never there for the tailer
                return self.log.stat().st_ino in self.seen
        return {
            "CR": lambda: not self.log.exists(),
            "SH": lambda: bool(self._rotated()),
            "GZ": lambda: bool(self._not_held()),
            "GZS": lambda: self.compressing is None and bool(self._not_held()),
            "GZE": lambda: self.compressing is not None,
        }.get(op, lambda: True)()

    def do(self, op: str) -> None:
        if op == "W":
            text = f"l{self.n}"
            self.n += 1
            self.held.write(text + "\n")
            self.held.flush()
            self.written.append(text)
        elif op == "CT":
            shutil.copyfile(self.log, self._next())
            os.truncate(self.log, 0)
        elif op == "CP":
            shutil.copyfile(self.log, self._next())
        elif op == "CPP":  # cp -p: the copy has the same modification time
            shutil.copy2(self.log, self._next())
        elif op == "RN":
            self.log.rename(self._next())
        elif op == "CR":
            self.log.touch()
        elif op == "RO":
            self.held.close()
            self.held = self.log.open("a")
        elif op == "RM":
            self.log.unlink()
        elif op == "SH":
            self._rotated()[-1].rename(self._next())
        elif op == "GZ":
            old = self._not_held()[0]
            with old.open("rb") as src, gzip.open(f"{old}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            old.unlink()
        elif op == "GZS":
            self.compressing = self._not_held()[0]
            Path(f"{self.compressing}.gz").touch()
        elif op == "GZE":
            started, self.compressing = self.compressing, None
            assert started is not None
            _compress_in_place(started, Path(f"{started}.gz"))
            started.unlink()
        else:
            raise AssertionError(op)


class Player:
    """A tailer checked by hand over a ``Rotator``, restarted as after a SIGKILL."""

    def __init__(self, r: Rotator, runner: asyncio.Runner) -> None:
        self.r, self.runner = r, runner
        self.t, self.sink, self.clock = make(r.log)
        self.committed: list[TailItem] = []  # what killed tailers emitted, committed
        self.last_check = 0  # sink items before the last check
        self.seen = time.time()  # when the store last saw the source: its registration

    def check(self) -> None:
        self.last_check = len(self.sink.items)
        while self.runner.run(self.t.check()):
            pass
        self.r.checked()

    def restart(self, keep: int) -> None:
        """SIGKILL: the first ``keep`` items were committed; a new tailer resumes."""
        self.committed.extend(self.sink.items[:keep])
        self.seen = self.sink.times[keep - 1] if keep else self.seen
        self.last_check = 0
        self.t.close()
        stored: dict[str, int] = {}
        for c in self.committed:
            if isinstance(c, Chunk):
                fid = c.position.file_id
                stored[fid] = max(c.position.offset, stored.get(fid, 0))
        self.t, self.sink, self.clock = make(self.r.log, stored=stored)
        self.t.last_seen = self.seen
        self.t.initial = False
        self.r.seen.clear()

    def do(self, op: str) -> None:
        if op in ("C", "CA"):
            self.check()
            if op == "CA":
                self.r.age()
        elif op == "Q":  # a quiet while: rotated files idle past idle_close are let go
            self.clock.now += 2 * self.t.idle_close
        elif op == "K":
            self.restart(len(self.sink.items))
        elif op == "KL":  # what the last check emitted was not committed
            self.restart(self.last_check)
        elif op == "KH":  # half of it was
            self.restart((self.last_check + len(self.sink.items)) // 2)
        else:
            self.r.do(op)

    @property
    def read(self) -> list[str]:
        items = [*self.committed, *self.sink.items]
        return [ln.text for c in items if isinstance(c, Chunk) for ln in c.lines]


def play(tmp_path: Path, ops: str, *, skip: bool = False) -> tuple[list[str], list[str]] | None:
    """Lines read and lines written: a first line and a check, then ``ops``, then the
    writer's last line, checks, a new file at the path (reopened, written) and checks
    until the rotated files are closed. None when an operation cannot be done where it
    comes (a rename of a missing path, ...), unless ``skip``: then it is left out.
    """
    r = Rotator(tmp_path)
    try:
        with asyncio.Runner() as runner:
            p = Player(r, runner)
            for op in ["W", "C", *ops.split()]:
                if r.can(op):
                    p.do(op)
                elif not skip:
                    return None
            for op in ["W", "C", "CR", "RO", "W", "C"]:
                if r.can(op):
                    p.do(op)
            p.clock.now += 10
            p.check()
            p.check()
            return p.read, r.written
    finally:
        r.close()


# Each lost a line before (the name says which), with the tailer checking at C.
LOST_BEFORE = {
    # copytruncated, then renamed before the next write: the writer goes on in the
    # renamed (emptied) file, which was dropped
    "CT RN C W": "copytruncate + rename between checks, written after",
    "CT RN CR C W": "same, with a new file created at the path",
    "CT C RN W": "copytruncate seen; the empty file renamed before its next line",
    "CT C RN CR C W": "same, seen moved",
    "CT C W CT": "the emptied file refilled and copytruncated again between checks",
    "RN CR RO C RN": "a new file rotated away before its first line",
    "RN C CR RO RN": "a file created and rotated while the path was missing",
    "CP W CT": "an older copy of the same file was taken for the copytruncate copy",
    # with a restart (K: everything emitted was committed)
    "K RN C": "a file read to its end, rotated at the restart, written after: not followed",
}


# Each stored lines twice before.
DOUBLED_BEFORE = {
    # the .gz held without a first line was known by the fingerprint of its compressed
    # bytes once filled: read from 0 as a file never seen
    "RN CR RO W GZS C GZE C": "a .gz found empty beside a rotated path, filled later",
    "RN CR RO W GZS C W C GZE C": "same, filled after its original was read on",
}


@pytest.mark.parametrize("ops", list(DOUBLED_BEFORE))
def test_interleavings_that_doubled_lines(tmp_path: Path, ops: str) -> None:
    played = play(tmp_path, ops)
    assert played is not None
    read, written = played
    assert sorted(read) == sorted(written), DOUBLED_BEFORE[ops]


def test_every_short_interleaving_around_a_compression_reads_each_line_once(
    tmp_path: Path,
) -> None:
    """A file rotated, its successor written and the compression of the first begun, then
    every sequence of 3 operations of write, compression in two steps, check, rename and
    restart (a held .gz is filled before, after or between checks, kills and rotations)."""
    tried = 0
    ops = ["W", "GZS", "GZE", "C", "RN", "K"]
    for seq in itertools.product(ops, repeat=3):
        d = tmp_path / "-".join(seq)
        d.mkdir()
        played = play(d, " ".join(["RN", "CR", "RO", "W", "GZS", *seq, "GZE", "C"]), skip=True)
        assert played is not None
        read, written = played
        assert sorted(read) == sorted(written), " ".join(seq)
        tried += 1
    assert tried == len(ops) ** 3


@pytest.mark.parametrize("ops", list(LOST_BEFORE))
def test_interleavings_that_lost_lines(tmp_path: Path, ops: str) -> None:
    played = play(tmp_path, ops)
    assert played is not None
    read, written = played
    assert read == written, LOST_BEFORE[ops]


def test_every_short_interleaving_reads_each_line_once(tmp_path: Path) -> None:
    """Every sequence of up to 3 operations of rename, copytruncate, create, delete,
    reopen, write and check. Order across files written between two checks is not
    asserted (it follows the checks), only that every line is read exactly once.
    """
    tried = 0
    for n in (1, 2, 3):
        for seq in itertools.product(["W", "CT", "RN", "CR", "RO", "RM", "C"], repeat=n):
            d = tmp_path / "-".join(seq)
            d.mkdir()
            played = play(d, " ".join(seq))
            if played is not None:
                read, written = played
                assert sorted(read) == sorted(written), " ".join(seq)
                tried += 1
    assert tried > 100


@pytest.mark.slow
def test_random_long_interleavings_read_each_line_once(tmp_path: Path) -> None:
    """Random sequences of 12 operations, copies, shifts and compression included."""
    ops = ["W", "CT", "CP", "RN", "CR", "RO", "RM", "SH", "GZ", "GZS", "GZE", "C", "CA"]
    _play_random_sequences(tmp_path, ops, seed=7, count=2000)


def test_at_a_restart_the_file_its_writer_holds_is_resumed_not_its_copy(tmp_path: Path) -> None:
    # Both start alike and are read to their end; the copy is the newer one.
    played = play(tmp_path, "CP RN K")
    assert played is not None
    read, written = played
    assert read == written


@pytest.mark.slow
def test_random_interleavings_with_sigkills_read_each_line_once(tmp_path: Path) -> None:
    """Random sequences of 12 operations with restarts that lose what was not committed
    (no deletes and no passing minutes: a file deleted or left alone while the daemon
    is down is not owed)."""
    ops = ["W", "CT", "CP", "RN", "CR", "RO", "SH", "GZ", "GZS", "GZE", "C", "K", "KL", "KH"]
    _play_random_sequences(tmp_path, ops, seed=21, count=1500)


def _play_random_sequences(tmp_path: Path, ops: list[str], *, seed: int, count: int) -> None:
    """``count`` random sequences of 12 of ``ops``, each in a directory of its own: every
    line written is read exactly once."""
    rng = random.Random(seed)
    for i in range(count):
        seq = " ".join(rng.choice(ops) for _ in range(12))
        d = tmp_path / str(i)
        d.mkdir()
        played = play(d, seq, skip=True)
        shutil.rmtree(d)
        assert played is not None
        read, written = played
        assert sorted(read) == sorted(written), seq


def test_restarts_around_a_copytruncated_file_renamed_before_its_next_line(
    tmp_path: Path,
) -> None:
    """Positions are those emitted with the lines (committed with them): a restart
    while the emptied file is held without a position, and one after it was read."""
    r = Rotator(tmp_path)
    try:
        r.do("W")
        t, sink, _ = make(r.log)
        check(t)
        for op in ("CT", "RN", "CR"):
            r.do(op)
        check(t)  # the renamed, emptied file is held; nothing to read, no position
        assert sink.lines == ["l0"] and len(t.blanks) == 2
        stored = {fid: p.offset for fid, p in sink.positions.items()}
        t.close()
        last_seen = time.time()
        # While stopped: the writer fills the renamed file, then reopens the path.
        r.do("W")
        r.do("RO")
        r.do("W")
        t2, sink2, _ = make(r.log, stored=stored)
        t2.last_seen = last_seen
        check(t2)
        assert sink2.lines == ["l1", "l2"]
        # Stopped again, with more in both: each resumes at its emitted position.
        stored |= {fid: p.offset for fid, p in sink2.positions.items()}
        t2.close()
        last_seen = time.time()
        with (tmp_path / "access.log.2").open("a") as late:
            late.write("l1 late\n")
        r.do("W")
        t3, sink3, _ = make(r.log, stored=stored)
        t3.last_seen = last_seen
        check(t3)
        assert sink3.lines == ["l1 late", "l3"]
    finally:
        r.close()


def test_an_empty_file_created_and_rotated_between_checks_is_held(tmp_path: Path) -> None:
    """Never seen at the path, still empty when found beside it, filled afterwards."""
    r = Rotator(tmp_path)
    try:
        r.do("W")
        t, sink, _ = make(r.log)
        check(t)
        for op in ("RN", "CR", "RO", "RN", "CR"):  # the writer is in access.log.2, empty
            r.do(op)
        old = time.time() - 60  # the new file at the path tells of no change since
        os.utime(r.log, (old, old))
        check(t)
        r.do("W")
        check(t)
        assert sink.lines == ["l0", "l1"]
    finally:
        r.close()


def test_a_file_copytruncated_and_renamed_while_stopped_is_read_once_filled(
    tmp_path: Path,
) -> None:
    r = Rotator(tmp_path)
    try:
        r.do("W")
        t, sink, _ = make(r.log)
        check(t)
        stored = {fid: p.offset for fid, p in sink.positions.items()}
        t.close()
        last_seen = time.time()
        for op in ("W", "CT", "RN", "CR"):  # while stopped; the writer holds the renamed file
            r.do(op)
        old = time.time() - 60  # the new file at the path tells of no change since
        os.utime(r.log, (old, old))
        t2, sink2, _ = make(r.log, stored=stored)
        t2.last_seen = last_seen
        check(t2)
        assert sink2.take() == ["l1"]  # from the copy
        r.do("W")
        check(t2)
        assert sink2.take() == ["l2"]
    finally:
        r.close()


def test_a_quiet_writer_in_a_copytruncated_renamed_file_is_waited_for(tmp_path: Path) -> None:
    """Copytruncate never tells the writer to reopen: the renamed file stays its file,
    however long it is quiet, until the path holds a file with lines."""
    r = Rotator(tmp_path)
    try:
        r.do("W")
        t, sink, clock = make(r.log)
        check(t)
        for op in ("CT", "RN", "CR"):
            r.do(op)
        check(t)
        clock.now += 60  # well past rotate_wait
        check(t)
        r.do("W")
        check(t)
        clock.now += 60
        check(t)
        r.do("W")
        check(t)
        assert sink.take() == ["l0", "l1", "l2"]
        # The writer reopens the path: the renamed file is closed rotate_wait later.
        r.do("RO")
        r.do("W")
        check(t)
        assert sink.take() == ["l3"]
        assert len(t.files) == 2
        clock.now += 6
        check(t)
        assert [Path(f.path).name for f in t.files.values()] == ["access.log"]
    finally:
        r.close()


@pytest.mark.parametrize("original", ["open", "closed"])
def test_a_gzip_copy_found_empty_and_filled_later_is_not_read_again(
    tmp_path: Path, original: str
) -> None:
    """delaycompress: the compressor has just created ``access.log.1.gz`` (empty: gzip
    buffers its header) when a check finds it beside a path that rotated. It is held
    without a first line; once written, its first line is the one of ``access.log.1``
    (a file already read), not that of its compressed bytes: nothing is read again.
    The soak stored a rotated file's lines twice this way (held .gz promoted under the
    fingerprint of its raw bytes, read from 0)."""
    log = tmp_path / "access.log"
    write(log, *(f"a{i} {'x' * 60}" for i in range(300)))
    t, sink, clock = make(log)
    check(t)
    assert len(sink.take()) == 300
    rotated, gz = tmp_path / "access.log.1", tmp_path / "access.log.1.gz"
    log.rename(rotated)
    write(log, "b0")
    gz.touch()  # the compressor started
    check(t)
    assert sink.take() == ["b0"]
    assert [Path(b.path).name for b in t.blanks.values()] == ["access.log.1.gz"]
    if original == "closed":
        # The compressor wrote its header (no line yet); access.log.1, at its end past
        # rotate_wait, is closed with its position kept while the .gz is still held.
        clock.now += 4
        gz.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff")
        check(t)
        clock.now += 2
        check(t)
        assert [Path(f.path).name for f in t.files.values()] == ["access.log"]
        assert [Path(b.path).name for b in t.blanks.values()] == ["access.log.1.gz"]
    _compress_in_place(rotated, gz)
    rotated.unlink()
    check(t)
    write(log, "b1")
    clock.now += 10
    check(t)
    check(t)
    assert sink.take() == ["b1"]
    assert not t.blanks and [Path(f.path).name for f in t.files.values()] == ["access.log"]

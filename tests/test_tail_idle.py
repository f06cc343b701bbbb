"""Rotated files whose writer is gone: their descriptor is let go, their name still read.

A renamed file is held open while its writer may still be in it (nothing with lines is
at the path it came from). A writer gone for good (nginx reopened after USR1 on a quiet
server, a copytruncate copy never written again, an application stopped) would keep that
descriptor until a restart: once read to its end and quiet for ``idle_close`` seconds, it
is closed, and the file is followed by its name (a stat per check) instead, opened again
from where reading stood if it grows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import pytest
from test_tail import Rotator, Sink, _close_tailers, check, make, write  # noqa: F401 - fixture used

from auditor.tail import SourceTailer


def held(path: Path, writer: IO[str] | None = None) -> int:
    """Descriptors of this process open on ``path``'s file, but the ``writer``'s."""
    st = path.stat()
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        if writer is not None and int(fd) == writer.fileno():
            continue
        try:
            other = os.stat(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        n += (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)
    return n


def test_renamed_file_of_a_quiet_server_is_closed_and_read_again_when_written(
    tmp_path: Path,
) -> None:
    """nginx's USR1 with no request since: the path holds an empty file for good."""
    r = Rotator(tmp_path)
    try:
        r.do("W")
        t, sink, clock = make(r.log)
        check(t)
        for op in ("W", "RN", "CR", "RO"):
            r.do(op)
        rotated = tmp_path / "access.log.1"
        check(t)
        assert sink.take() == ["l0", "l1"]
        clock.now += 6
        check(t)
        assert held(rotated) == 1  # the path holds no line yet: its writer may be in it
        clock.now += 60
        check(t)
        assert held(rotated) == 0
        assert t.stats.open_files == 1  # the empty file at the path
        # A late line in the renamed file (a worker that had not reopened) is read.
        write(rotated, "late")
        check(t)
        assert sink.take() == ["late"]
        rotated.rename(tmp_path / "access.log.2")  # renamed again while let go
        clock.now += 120
        check(t)
        assert held(tmp_path / "access.log.2") == 0
        write(tmp_path / "access.log.2", "later")
        check(t)
        assert sink.take() == ["later"]
        r.do("W")
        check(t)
        assert sink.take() == ["l2"]
        clock.now += 6
        check(t)
        assert held(tmp_path / "access.log.2") == 0 and not t.watched
    finally:
        r.close()


def test_copytruncate_copy_is_closed_when_the_writer_is_gone(tmp_path: Path) -> None:
    r = Rotator(tmp_path)
    try:
        r.do("W")
        t, sink, clock = make(r.log)
        check(t)
        r.do("W")
        r.do("CT")
        r.close()  # the writer stops for good: the truncated file stays empty
        check(t)
        assert sink.lines == ["l0", "l1"]
        clock.now += 120
        check(t)
        check(t)
        assert held(tmp_path / "access.log.1") == 0
        assert t.stats.open_files == 1  # the empty file at the path, waiting for a line
        write(r.log, "new")
        check(t)
        assert sink.lines == ["l0", "l1", "new"]
        clock.now += 6
        check(t)
        assert not t.watched
    finally:
        r.close()


def _renamed_and_let_go(tmp_path: Path) -> tuple[SourceTailer, Sink]:
    """access.log (line a0) read, renamed to access.log.1 with nothing at the path, then
    quiet for two minutes: let go."""
    log = tmp_path / "access.log"
    write(log, "a0")
    t, sink, clock = make(log)
    check(t)
    log.rename(tmp_path / "access.log.1")
    check(t)
    clock.now += 120
    check(t)
    return t, sink


def test_renamed_file_without_a_successor_is_closed(tmp_path: Path) -> None:
    """Renamed away and no file created at the path (an application stopped)."""
    t, sink = _renamed_and_let_go(tmp_path)
    assert held(tmp_path / "access.log.1") == 0
    assert t.stats.open_files == 0
    (tmp_path / "access.log.1").unlink()
    check(t)
    assert not t.watched
    assert sink.lines == ["a0"]


def test_a_writer_that_appends_for_a_few_seconds_after_the_rename(tmp_path: Path) -> None:
    """The renamed file is finished before its successor, also when let go meanwhile."""
    r = Rotator(tmp_path)
    try:
        r.do("W")
        t, sink, clock = make(r.log)
        check(t)
        for op in ("RN", "CR", "W"):
            r.do(op)
        check(t)
        clock.now += 120
        check(t)
        assert held(tmp_path / "access.log.1", r.held) == 0
        # The writer writes twice more in the renamed file, then reopens, all between
        # two checks: the renamed file's lines come first.
        r.do("W")
        r.do("W")
        r.do("RO")
        r.do("W")
        check(t)
        assert sink.lines == ["l0", "l1", "l2", "l3", "l4"]
    finally:
        r.close()


@pytest.mark.xfail(
    strict=True,
    reason="a file let go is looked for in its own directory only: moved out of it, and then"
    " written to, its new lines are not read (held open, they were)",
)
def test_a_file_let_go_moved_to_another_directory_then_written(tmp_path: Path) -> None:
    t, sink = _renamed_and_let_go(tmp_path)
    (tmp_path / "old").mkdir()
    (tmp_path / "access.log.1").rename(tmp_path / "old" / "access.log.1")
    write(tmp_path / "old" / "access.log.1", "late")
    check(t)
    assert sink.lines == ["a0", "late"]

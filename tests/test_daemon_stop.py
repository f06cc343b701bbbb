"""The daemon's stop, in process: a stop request is never lost, whenever it comes.

The end-to-end signal tests are in test_daemon.py; these drive ``Daemon.run`` in this
process to put a stop exactly where a race would put it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from auditor.config import SourceConfig, load_config
from auditor.daemon import Daemon, _end_tasks
from auditor.tail import SourceTailer, TailItem
from daemon_helpers import append, count, write_config


async def _until(cond: object, what: str) -> None:
    assert callable(cond)
    for _ in range(600):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_stop_in_the_same_loop_turn_as_a_wake_up_still_stops(tmp_path: Path) -> None:
    """A tailer woken in the loop turn in which its cancel comes (a file event just as
    SIGTERM arrives): on Python 3.11 ``asyncio.wait_for`` then returns the wake-up and
    drops the cancel, and the daemon used to wait for that tailer forever."""
    logs = tmp_path / "logs"  # not beside the store: its writes would wake the tailer
    logs.mkdir()
    log = logs / "access.log"
    append(log, range(3))
    # A long poll: between wake-ups the tailer waits in wait_for(wake, poll_interval).
    config = load_config(
        write_config(tmp_path, [{"name": "api", "path": str(log)}], daemon={"poll_interval": 30})
    )
    db = tmp_path / "audit.db"
    daemon = Daemon(config, extra_tasks=[], env={})

    async def scenario() -> int:
        running = asyncio.create_task(daemon.run())
        await _until(lambda: count(db) == 3, "the first lines")
        await asyncio.sleep(0.3)  # the tailer is back waiting for a wake-up
        daemon.tailers["api"].wake()
        daemon._stop.set()  # what the SIGTERM handler does, in the same loop turn
        # A bound, so that a lost stop fails the test instead of hanging it.
        done, _ = await asyncio.wait([running], timeout=30)
        assert done, "the daemon did not stop"
        return running.result()

    assert asyncio.run(scenario()) == 0


def test_a_stop_asked_while_starting_stops_before_reading(tmp_path: Path) -> None:
    """SIGTERM noted by `log-auditor run` before the event loop took signals over."""
    log = tmp_path / "access.log"
    append(log, range(3))
    config = load_config(write_config(tmp_path, [{"name": "api", "path": str(log)}]))
    daemon = Daemon(config, extra_tasks=[], env={}, stop_asked=lambda: True)
    assert asyncio.run(asyncio.wait_for(daemon.run(), 60)) == 0
    assert count(tmp_path / "audit.db") == 0


def test_sigterm_before_the_event_loop_is_noted_not_fatal() -> None:
    code = (
        "import os, signal\n"
        "from auditor.cli import note_stop_signals\n"
        "asked = note_stop_signals()\n"
        "assert not asked()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "assert asked(), 'not noted'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr


def test_a_task_that_swallows_its_cancel_is_cancelled_again() -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # as a wait_for on Python 3.11 may do
        await asyncio.sleep(3600)

    async def scenario() -> asyncio.Task[None]:
        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait_for(_end_tasks([task]), 30)
        return task

    assert asyncio.run(scenario()).cancelled()


def _open_paths() -> list[str]:
    """What this process's descriptors point at."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
    return out


def test_a_tailer_closed_while_its_cancelled_check_goes_on_leaves_no_file_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop or a reload cancels a tailer's check, whose worker thread goes on: the
    files are closed once that thread has ended. Closed under it, the thread opened the
    log again afterwards, and nothing ever closed that descriptor (seen as an unclosed
    file after the loop-turn stop test above, on a loaded machine)."""
    log = tmp_path / "access.log"
    append(log, range(3))

    async def drop(item: TailItem) -> None:
        pass

    tailer = SourceTailer(SourceConfig(name="api", path=str(log)), drop, {})
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()
    reconcile = tailer._reconcile

    def held() -> None:
        entered.set()
        release.wait(30)
        try:
            reconcile()
        finally:
            finished.set()

    monkeypatch.setattr(tailer, "_reconcile", held)

    async def scenario() -> None:
        check = asyncio.create_task(tailer.check())
        await asyncio.to_thread(entered.wait, 30)
        check.cancel()  # what a stop does to the source's task
        with contextlib.suppress(asyncio.CancelledError):
            await check
        tailer.close()  # and then the daemon closes its tailers
        release.set()
        await asyncio.to_thread(finished.wait, 30)
        await _until(lambda: not tailer.files, "the files closed after the thread")

    try:
        asyncio.run(scenario())
        assert str(log) not in _open_paths()
    finally:
        tailer.close()

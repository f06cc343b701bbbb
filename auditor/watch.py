"""Waking the tailers when something changes in the directories they read.

Directories, not files, are watched (with watchfiles), so a rename, a create, a delete or a
symlink swap is seen as well as an append. A change only *wakes* the tailers concerned;
what happened is worked out by the tailer's own check, so a missed or merged notification
costs latency, never data. The watch set is rebuilt when a directory appears, disappears
or is replaced (deleted and recreated), and when watching fails (NFS, no inotify, too many
watches) the tailers' poll timers carry on alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence

from watchfiles import awatch

from auditor.tail import SourceTailer

log = logging.getLogger(__name__)

DEBOUNCE_MS = 50  # longest a burst of changes is grouped before the tailers are woken
STEP_MS = 10
RETRY_AFTER = 30.0  # seconds before a failed watch is tried again

# dir -> (recursive, dev, inode): a replaced directory has another inode.
WatchSet = dict[str, tuple[bool, int, int]]


def nearest_existing(path: str) -> str:
    """``path`` if it is a directory, else its nearest existing ancestor."""
    p = os.path.abspath(path)
    while not os.path.isdir(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def wanted(tailers: Sequence[SourceTailer]) -> WatchSet:
    """What to watch for these tailers (sources that force polling are left out)."""
    out: WatchSet = {}
    for t in tailers:
        if t.config.poll:
            continue
        for d, recursive in t.watch_dirs().items():
            real = nearest_existing(d)
            rec = recursive and real == os.path.abspath(d)
            try:
                st = os.stat(real)
            except OSError:
                continue
            prev = out.get(real)
            out[real] = (rec or (prev is not None and prev[0]), st.st_dev, st.st_ino)
    return out


def _concerns(t: SourceTailer, path: str) -> bool:
    parent = os.path.dirname(path)
    for d, recursive in t.watch_dirs().items():
        d = os.path.abspath(d)
        if parent == d or path == d or (recursive and path.startswith(d.rstrip("/") + "/")):
            return True
        # A directory on the way to the source was created or removed.
        if d.startswith(path.rstrip("/") + "/"):
            return True
    return False


class DirWatcher:
    """One watch over every source's directories; ``run()`` until cancelled."""

    def __init__(self, tailers: Callable[[], Sequence[SourceTailer]], poll_interval: float):
        self._tailers = tailers
        self._poll = poll_interval
        self._failed_at: float | None = None
        self._poke = asyncio.Event()
        self.wakeups = 0

    def refresh(self) -> None:
        """Look at the watch set now (a source was added, a symlink target moved)."""
        self._poke.set()

    async def run(self) -> None:
        while True:
            want = wanted(self._tailers())
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._refresh(want, stop))
                for recursive in (False, True):
                    dirs = sorted(d for d, v in want.items() if v[0] is recursive)
                    if dirs and self._failed_at is None:
                        tg.create_task(self._watch(dirs, recursive, stop))

    async def _refresh(self, want: WatchSet, stop: asyncio.Event) -> None:
        """Rebuild the watch when the set of directories changes (safety-net tick)."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:  # not wait_for: see SourceTailer.run (a cancel must never be lost)
                async with asyncio.timeout(self._poll):
                    await self._poke.wait()
            except TimeoutError:
                pass
            self._poke.clear()
            if stop.is_set():
                return
            if self._failed_at is not None and loop.time() - self._failed_at >= RETRY_AFTER:
                self._failed_at = None
                stop.set()
            elif wanted(self._tailers()) != want:
                stop.set()

    async def _watch(self, dirs: list[str], recursive: bool, stop: asyncio.Event) -> None:
        try:
            async for changes in awatch(
                *dirs,
                watch_filter=None,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=stop,
                recursive=recursive,
                ignore_permission_denied=True,
            ):
                self.wakeups += 1
                self._dispatch({path for _, path in changes})
        except (OSError, RuntimeError) as exc:
            self._failed_at = asyncio.get_running_loop().time()
            log.warning(
                "cannot watch %s (%s); polling instead, trying again in %.0f s",
                ", ".join(dirs),
                exc,
                RETRY_AFTER,
            )
            # Wake everyone: a change may have been missed while the watch broke.
            for t in self._tailers():
                t.wake()

    def _dispatch(self, paths: set[str]) -> None:
        for t in self._tailers():
            if any(_concerns(t, p) for p in paths):
                t.wake()

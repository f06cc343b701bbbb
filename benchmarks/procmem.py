"""Memory of a process and its children, as the machine sees it (Linux /proc).

A scan or the daemon runs decode workers beside the main process, so the main process's
RSS alone understates what log-auditor holds. ``tree_memory`` adds up the RSS of the whole
process tree, and its PSS (each shared page divided among the processes sharing it: the
fairer total); ``PeakSampler`` keeps the peaks while a command runs.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def _field_kib(path: str, name: str) -> int:
    try:
        with open(path) as f:
            for row in f:
                if row.startswith(name):
                    return int(row.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class TreeMemory:
    main_rss: int  # KiB, the process itself
    rss: int  # KiB, summed over the tree
    pss: int  # KiB, summed over the tree
    processes: int


def tree_memory(pid: int) -> TreeMemory:
    pids = tree_pids(pid)
    rss = {p: _field_kib(f"/proc/{p}/status", "VmRSS:") for p in pids}
    pss = sum(_field_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
    return TreeMemory(rss.get(pid, 0), sum(rss.values()), pss, len(pids))


class PeakSampler:
    """Samples ``tree_memory(pid)`` every ``every`` seconds in a thread until ``stop()``;
    ``peak`` holds the largest of each figure seen."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid, self.every = pid, every
        self.peak = TreeMemory(0, 0, 0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            m = tree_memory(self.pid)
            p = self.peak
            self.peak = TreeMemory(
                max(p.main_rss, m.main_rss),
                max(p.rss, m.rss),
                max(p.pss, m.pss),
                max(p.processes, m.processes),
            )

    def stop(self) -> TreeMemory:
        self._stop.set()
        self._thread.join()
        return self.peak

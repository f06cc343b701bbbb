"""The daemon's outputs: one delivery task each, started, reloaded and stopped together.

``Daemon`` calls ``prepare`` in the store thread before any source is read (so a new
output with ``start = "end"`` begins exactly at the findings that exist then), ``start``
inside its TaskGroup, ``request_stop`` when SIGTERM comes and ``wait`` before it exits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from auditor.config import Config
from auditor.outputs.build import build_sink
from auditor.outputs.delivery import OutputRunner, OutputStats, sleep_unless_stopped
from auditor.outputs.metrics import render_outputs
from auditor.store import Store
from auditor.store.outputs import ensure_cursor

log = logging.getLogger(__name__)

RESTART_DELAY = 5.0  # after an unexpected error in a delivery task
ONCE_GRACE = 5.0  # run --once: past its deadline, a step in flight gets this long to commit


class Outputs:
    def __init__(self, ruleset: Callable[[], object | None]) -> None:
        self._ruleset = ruleset  # the running RuleSet (rules enrich OCSF/ECS findings)
        self._rules_of: object | None = None
        self._rules: dict[str, object] = {}
        self.runners: dict[str, OutputRunner] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._kept: dict[str, OutputStats] = {}
        self._step_locks: dict[str, threading.Lock] = {}  # by output name, for good

    @staticmethod
    def prepare(store: Store, config: Config) -> None:
        """Create missing cursors now, in the store thread, before any batch is written."""
        for out in config.outputs:
            ensure_cursor(store, out.name, out.start)

    def start(
        self,
        tg: asyncio.TaskGroup,
        config: Config,
        secrets: Mapping[str, bytes],
    ) -> None:
        self._stop = asyncio.Event()
        for out in config.outputs:
            runner = OutputRunner(
                out,
                Path(config.store.path),
                build_sink(out, secrets),
                self.rules,
                step_lock=self._step_locks.setdefault(out.name, threading.Lock()),
            )
            kept = self._kept.pop(out.name, None)
            if kept is not None:  # same output after a reload: its counters go on
                runner.stats = kept
            self.runners[out.name] = runner
            self._tasks.append(tg.create_task(self._supervise(runner), name=f"output:{out.name}"))
        if config.outputs:
            log.info("outputs: %s", ", ".join(f"{o.name} ({o.type})" for o in config.outputs))

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self, deadline: float) -> None:
        """Let each task finish its batch in flight (and commit it), until ``deadline``."""
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
            for task in late:
                task.cancel()
        self._kept = {n: r.stats for n, r in self.runners.items()}
        self.runners = {}

    async def deliver_pending(
        self, config: Config, secrets: Mapping[str, bytes], deadline: float
    ) -> bool:
        """``run --once``: each output sends what waits for it in the store (the findings of
        the pass, and any a receiver could not take before), as the daemon does, until none
        is pending or ``deadline`` (then the step in flight commits, for ``ONCE_GRACE`` s
        at most). Returns whether every output sent everything; what is left waits in the
        store for the next run."""
        stop = asyncio.Event()
        runners = [
            OutputRunner(out, Path(config.store.path), build_sink(out, secrets), self.rules)
            for out in config.outputs
        ]
        tasks = [
            asyncio.create_task(r.run(stop, drain=True), name=f"output:{r.out.name}")
            for r in runners
        ]
        if not tasks:
            return True
        _, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        stop.set()
        if late:
            _, stuck = await asyncio.wait(late, timeout=ONCE_GRACE)
            for task in stuck:
                task.cancel()
            if stuck:
                await asyncio.wait(stuck)
        complete = True
        for runner, task in zip(runners, tasks, strict=True):
            error = None if task.cancelled() else task.exception()
            if error is not None:
                log.error("output %s: unexpected error", runner.out.name, exc_info=error)
            unsent = task in late and (task.cancelled() or runner.stats.pending > 0)
            if error is not None or unsent:
                complete = False
                log.error(
                    "output %s: %d findings not sent before run --once ended%s;"
                    " they wait in the store for the next run",
                    runner.out.name,
                    runner.stats.pending,
                    f" ({runner.stats.last_error})" if runner.stats.last_error else "",
                )
        return complete

    async def _supervise(self, runner: OutputRunner) -> None:
        while not self._stop.is_set():
            try:
                await runner.run(self._stop)
            except Exception:
                log.exception(
                    "output %s: unexpected error, restarting it in %.0f s",
                    runner.out.name,
                    RESTART_DELAY,
                )
                await sleep_unless_stopped(self._stop, RESTART_DELAY)

    def rules(self) -> Mapping[str, object]:
        """Rules by id, rebuilt when the daemon's ruleset changes (reload)."""
        ruleset = self._ruleset()
        if ruleset is not self._rules_of:
            rules = getattr(ruleset, "rules", ())
            self._rules = {str(getattr(r, "id", "")): r for r in rules}
            self._rules_of = ruleset
        return self._rules

    def stats(self) -> dict[str, OutputStats]:
        return {n: r.stats for n, r in self.runners.items()}

    def render_metrics(self) -> str:
        return render_outputs(self.stats())

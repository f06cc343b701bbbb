"""`log-auditor run`: the composition root of the daemon.

::

    SourceTailer (one per source) ─┐                       ┌─ Pipeline.process ─ Store.write
    SourceTailer ──────────────────┼─▶ BoundedQueue ─▶ Writer (one thread owns the store)
    DirWatcher (wakes tailers) ────┘                       └─ positions commit with events

    Daemon: asyncio.TaskGroup of the above + watchdog, STATUS=, metrics, scheduled jobs;
            SIGTERM/SIGINT: stop reading, commit what is queued, exit 0 (within 5 s);
            SIGHUP: reload config and rules, or keep the running ones if the new are bad.

A source that fails (permission denied, missing path, a directory instead of a file) is
reported on stderr and in ``status`` and retried; the others keep going. An unexpected
error ends the process (exit 1) and systemd restarts it; positions commit with their
events, so the restart neither loses nor doubles a line.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditor.config import Config, SourceConfig, load_config
from auditor.decodeworker import workers_wanted
from auditor.errors import AuditorError, ConfigError
from auditor.metrics import Metrics, SourceLive, parse_listen, serve
from auditor.outputs.build import load_secrets
from auditor.outputs.service import Outputs
from auditor.pipeline import Pipeline
from auditor.sdnotify import Notifier, watchdog_interval
from auditor.store import Store
from auditor.tail import SourceState, SourceTailer
from auditor.watch import DirWatcher
from auditor.writer import Barrier, BoundedQueue, Writer

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 3.5  # SIGTERM -> exit 0 within 5 s, with a margin for closing
STATUS_EVERY = 10.0
STALL_SECONDS = 30.0  # a writer silent this long is hung: stop the watchdog pings
QUEUE_BYTES = 32 << 20
MAX_RESTART_DELAY = 60.0
CANCEL_AGAIN = 0.1  # seconds between cancels of a task that does not end at stop
STUCK_WARNING = 1.0  # seconds after which such a task is named in the log

PipelineFactory = Callable[[Config, Store, Pipeline | None], Pipeline]
ExtraTask = Callable[[Config], Awaitable[None]]


def build_pipeline(config: Config, store: Store, previous: Pipeline | None) -> Pipeline:
    """Decoders and detector from the config; a reload carries the detector's windows over.

    Runs in the store thread (the engine reads the detector state from the store).
    """
    from auditor.engine import build_engine

    engine = build_engine(config, store, config.store.path)
    pipeline = engine.pipeline()
    if previous is None or previous.detector is None or pipeline.detector is None:
        return pipeline
    from auditor.detect import Detector

    pipeline.detector = Detector.restore(engine.ruleset, previous.detector.snapshot())
    return pipeline


def _cpus() -> int:
    """CPUs this process may run on (a systemd CPUAffinity= or a container may give one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def scheduled_tasks() -> list[ExtraTask]:
    """Jobs that run inside the daemon: the report scheduler, when it is installed.

    ``auditor.report.schedule.run_report_scheduler(config, store_path, stop_event)`` runs
    until its stop event is set; here it runs until cancelled (at shutdown, and on
    reload, when it starts again with the new config).
    """
    try:
        schedule = importlib.import_module("auditor.report.schedule")
    except ImportError:
        return []
    scheduler = getattr(schedule, "run_report_scheduler", None)
    if scheduler is None:
        return []

    async def reports(config: Config) -> None:
        stop = asyncio.Event()
        try:
            await scheduler(config, config.store.path, stop)
        finally:
            stop.set()

    return [reports, retention]


RETENTION_EVERY_S = 24 * 3600
RETENTION_FIRST_S = 300  # after start: let a restart catch up on the logs first


async def retention(config: Config) -> None:
    """Delete what the ``[retention]`` periods let go, once a day, on its own connection
    and a chunk at a time (see auditor.store.retention), so ingest never waits long."""
    from auditor.store.retention import prune_path

    await asyncio.sleep(RETENTION_FIRST_S)
    while True:
        try:
            result = await asyncio.to_thread(
                prune_path, config.store.path, config.retention, datetime.now(UTC)
            )
            if result.total:
                log.info("retention: deleted %s", result.deleted)
        except (AuditorError, sqlite3.Error, OSError) as exc:
            log.error("retention: %s; trying again tomorrow", exc)
        await asyncio.sleep(RETENTION_EVERY_S)


class Daemon:
    """One run of ``log-auditor run``; ``await Daemon(config).run()`` returns the exit code."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        once: bool = False,
        pipeline_factory: PipelineFactory = build_pipeline,
        extra_tasks: Sequence[ExtraTask] | None = None,
        env: Mapping[str, str] | None = None,
        stop_asked: Callable[[], bool] | None = None,
    ) -> None:
        """``stop_asked``: whether SIGTERM/SIGINT came before ``run()`` took them over
        (``log-auditor run`` notes them from its start); the daemon then stops at once."""
        self.config = config
        self.config_path = config_path
        self.once = once
        self.pipeline_factory = pipeline_factory
        self.extra_tasks = list(scheduled_tasks() if extra_tasks is None else extra_tasks)
        d = config.daemon
        self.queue = BoundedQueue(d.queue_lines, QUEUE_BYTES)
        self.metrics = Metrics()
        self.writer = Writer(
            config.store.path,
            self.queue,
            self.metrics,
            batch_lines=d.batch_lines,
            batch_seconds=d.batch_seconds,
            decode_worker=d.decode_worker if d.decode_worker is not None else _cpus() >= 2,
            decode_workers=workers_wanted(),
            max_line=d.max_line_bytes,
        )
        self.notifier = Notifier.from_env(env)
        self.watchdog = watchdog_interval(env)
        self.tailers: dict[str, SourceTailer] = {}
        self._sources: dict[str, asyncio.Task[None]] = {}
        self._extras: list[asyncio.Task[None]] = []
        self.watcher: DirWatcher | None = None
        self._seen: dict[str, int | None] = {}  # before registration: None = first start
        self._tg: asyncio.TaskGroup | None = None
        self._stop = asyncio.Event()
        self._stop_asked = stop_asked
        self._reload_lock = asyncio.Lock()
        # A reload still running at SIGTERM would wait for a writer that has stopped.
        self._reloads: set[asyncio.Task[bool]] = set()
        self.outputs = Outputs(self._ruleset)
        self._secrets: dict[str, bytes] = {}

    # -- entry ---------------------------------------------------------------------------

    async def run(self) -> int:
        if self.config.daemon.metrics_listen:
            parse_listen(self.config.daemon.metrics_listen)  # a bad address never starts
        self._secrets = load_secrets(self.config)  # nor does an unreadable secret_file
        loop = asyncio.get_running_loop()
        if not self.once:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
            loop.add_signal_handler(signal.SIGHUP, self._on_hup)
            # Asked after this, the handler above has it; asked before, this flag has.
            if self._stop_asked is not None and self._stop_asked():
                self._stop.set()
        # A file-size limit then fails the write (and the writer retries) instead of
        # killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        try:
            store = await self.writer.open()
            await self.writer.exclusive(self._swap_pipeline, self.config, store)
            await self.writer.call(self._register, store, self.config.sources, "start")
            await self.writer.call(Outputs.prepare, store, self.config)
            if self.once:
                return await self._run_once()
            if self._stop.is_set():
                log.info("stopped while starting")
                return 0
            return await self._run_forever()
        finally:
            try:
                await self.writer.close()
                self.notifier.close()
            finally:
                # Only now: a second SIGTERM while the worker and the store close must not
                # kill the process by the signal (exit -15 instead of 0).
                if not self.once:
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                        loop.remove_signal_handler(sig)

    def _swap_pipeline(self, config: Config, store: Store) -> None:
        """In the store thread, while no batch is processed (``Writer.exclusive``), so no
        batch runs on the old pipeline after the new one."""
        self.writer.pipeline = self.pipeline_factory(config, store, self.writer.pipeline)

    def _register(self, store: Store, sources: Sequence[SourceConfig], what: str) -> None:
        """Record the sources; first learn which of them start for the first time."""
        for s in sources:
            if s.name not in self._sources and s.name not in self._seen:
                self._seen[s.name] = store.source_seen_ms(s.name)
            store.register_source(s.name, s.path, s.format)
        store.journal(what, None, f"{len(sources)} sources")

    async def _run_once(self) -> int:
        """Read what every source holds now, commit, exit (``run --once``)."""
        writer_task = asyncio.create_task(self.writer.run())
        for src in self.config.sources:
            tailer = await self._make_tailer(src)
            try:
                while await tailer.check(final=True):
                    pass
            finally:
                tailer.close()
        await self.writer.stop(writer_task, time.monotonic() + 3600)
        await self.writer.call(self.writer.store.journal, "stop", None, "once")
        return 0

    async def _run_forever(self) -> int:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            writer_task = tg.create_task(self.writer.run(), name="writer")
            self.watcher = DirWatcher(
                lambda: list(self.tailers.values()), self.config.daemon.poll_interval
            )
            watcher = tg.create_task(self.watcher.run(), name="watcher")
            for src in self.config.sources:
                self._start_source(src)
            aux = [
                tg.create_task(self._watchdog(), name="watchdog"),
                tg.create_task(self._status_loop(), name="status"),
            ]
            server = None
            if self.config.daemon.metrics_listen:
                try:
                    server = await serve(self.config.daemon.metrics_listen, self.render_metrics)
                except OSError as exc:
                    # Self-monitoring is no reason to stop auditing: say so and go on.
                    log.error(
                        "metrics: cannot listen on %s: %s; running without the endpoint",
                        self.config.daemon.metrics_listen,
                        exc.strerror or exc,
                    )
            self._start_extras()
            self.outputs.start(tg, self.config, self._secrets)
            self.notifier.ready(self._status_text())
            log.info(
                "log-auditor started: %d sources, store %s",
                len(self.config.sources),
                self.config.store.path,
            )
            await self._stop.wait()

            # Graceful stop: readers first, then the writer commits what is queued.
            self.notifier.stopping()
            log.info("stopping: committing what was read")
            deadline = time.monotonic() + SHUTDOWN_SECONDS
            readers = [*self._sources.values(), *self._extras, watcher, *aux, *self._reloads]
            for task in readers:
                task.cancel()
            if server is not None:
                server.close()
            self.outputs.request_stop()  # each finishes and commits its batch in flight
            committed = await self.writer.stop(writer_task, deadline)
            await self.outputs.wait(deadline)
            for t in self.tailers.values():
                t.close()
            if committed:
                # asyncio.timeout, not wait_for, which can drop a cancel on 3.11 (gh-86296).
                with contextlib.suppress(AuditorError):
                    async with asyncio.timeout(max(0.1, deadline + 0.5 - time.monotonic())):
                        await self.writer.call(self.writer.store.journal, "stop", None, "signal")
            # The TaskGroup waits for every task: one that swallowed its cancel would
            # hold the exit forever.
            await _end_tasks([*readers, writer_task])
        log.info("stopped")
        return 0

    # -- sources -------------------------------------------------------------------------

    async def _make_tailer(self, src: SourceConfig) -> SourceTailer:
        store = self.writer.store
        rows = await self.writer.call(store.positions, src.name)
        if src.name in self._seen:
            seen = self._seen.pop(src.name)
        else:
            seen = await self.writer.call(store.source_seen_ms, src.name)
        d = self.config.daemon
        tailer = SourceTailer(
            src,
            self.queue.put,
            {p.file_id: p.offset for p in rows},
            max_line=d.max_line_bytes,
            poll_interval=d.poll_interval,
            last_seen=None if seen is None else seen / 1000,
            first_start=seen is None,
            on_watch_change=self._watch_changed,
        )
        self.tailers[src.name] = tailer
        self._watch_changed()
        return tailer

    def _watch_changed(self) -> None:
        if self.watcher is not None:
            self.watcher.refresh()

    def _start_source(self, src: SourceConfig) -> None:
        assert self._tg is not None
        self._sources[src.name] = self._tg.create_task(self._supervise(src), name=src.name)

    async def _supervise(self, src: SourceConfig) -> None:
        """Run a source's tailer; after an unexpected error, start it again (backing off)."""
        delay = 1.0
        while True:
            tailer = await self._make_tailer(src)
            try:
                await tailer.run()
            except Exception as exc:
                log.exception(
                    "source %s: unexpected error, restarting it in %.0f s", src.name, delay
                )
                await self.queue.put(SourceState(src.name, f"internal error: {exc}"))
            finally:
                tailer.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)
            await self._barrier()  # positions in the store are then current

    async def _stop_source(self, name: str) -> None:
        task = self._sources.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tailer = self.tailers.pop(name, None)
        if tailer is not None:
            tailer.close()

    async def _barrier(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.queue.put(Barrier(fut), force=True)
        await fut

    def _start_extras(self) -> None:
        assert self._tg is not None
        for fn in self.extra_tasks:
            self._extras.append(self._tg.create_task(self._guard(fn(self.config)), name="job"))

    @staticmethod
    async def _guard(job: Awaitable[None]) -> None:
        try:
            await job
        except Exception:
            log.exception("scheduled jobs stopped after an unexpected error")

    # -- reload --------------------------------------------------------------------------

    def _on_hup(self) -> None:
        if self._tg is not None and not self._stop.is_set():
            task = self._tg.create_task(self.reload(), name="reload")
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    async def reload(self) -> bool:
        """Reload config and rules; a bad new config is refused and the old one kept."""
        async with self._reload_lock:
            self.notifier.reloading()
            ok = await self._reload()
            self.notifier.ready(self._status_text())
            return ok

    async def _reload(self) -> bool:
        old = self.config
        path = self.config_path or old.file
        try:
            if path is None:
                raise ConfigError("no config file to reload from")
            new = await asyncio.to_thread(load_config, path)
            if new.store.path != old.store.path:
                raise ConfigError(f"{path}: key 'store.path': changing the store needs a restart")
            if new.daemon.metrics_listen:
                parse_listen(new.daemon.metrics_listen)
            secrets = await asyncio.to_thread(load_secrets, new)
            await self.writer.exclusive(self._swap_pipeline, new, self.writer.store)
        except AuditorError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return False
        if new.daemon.metrics_listen != old.daemon.metrics_listen:
            log.warning("daemon.metrics_listen changes take effect at the next start")
        before = {s.name: s for s in old.sources}
        after = {s.name: s for s in new.sources}
        changed = [n for n, s in before.items() if after.get(n) != s]
        for name in changed:
            await self._stop_source(name)
        if changed:
            await self._barrier()  # their queued chunks are committed before they restart
        self.config = new
        self.writer.batch_lines = new.daemon.batch_lines
        self.writer.batch_seconds = new.daemon.batch_seconds
        await self.writer.call(self._register, self.writer.store, new.sources, "reload")
        for name, src in after.items():
            if name not in self._sources:
                self._start_source(src)
        for task in self._extras:
            task.cancel()
        self._extras.clear()
        self._start_extras()
        if new.outputs != old.outputs or secrets != self._secrets:
            await self.outputs.wait(time.monotonic() + SHUTDOWN_SECONDS)
            await self.writer.call(Outputs.prepare, self.writer.store, new)
            self._secrets = secrets
            assert self._tg is not None
            self.outputs.start(self._tg, new, secrets)
        log.info("reloaded %s: %d sources (%d restarted)", path, len(new.sources), len(changed))
        return True

    # -- health, status, metrics ---------------------------------------------------------

    def healthy(self) -> bool:
        return time.monotonic() - self.writer.heartbeat < STALL_SECONDS

    async def _watchdog(self) -> None:
        if self.watchdog is None:
            return
        while True:
            if self.healthy():
                self.notifier.watchdog()
            await asyncio.sleep(self.watchdog)

    async def _status_loop(self) -> None:
        last_lines, last_t = self.metrics.lines_read(), time.monotonic()
        while True:
            await asyncio.sleep(STATUS_EVERY)
            lines, now = self.metrics.lines_read(), time.monotonic()
            rate = (lines - last_lines) / max(now - last_t, 1e-6)
            last_lines, last_t = lines, now
            self.notifier.status(self._status_text(rate))

    def _status_text(self, rate: float | None = None) -> str:
        parts = [f"{len(self.config.sources)} sources"]
        if rate is not None:
            parts.append(f"{rate:,.0f} lines/s")
        lag = sum(t.live_lag() for t in self.tailers.values())
        parts.append(f"queue {self.queue.lines} lines, lag {lag} bytes")
        if self.writer.failing:
            parts.append(f"STORE FAILING: {self.writer.failing}")
        errors = [f"{n}: {t.stats.error}" for n, t in self.tailers.items() if t.stats.error]
        if errors:
            parts.append("; ".join(errors))
        return "; ".join(parts)

    def render_metrics(self) -> str:
        live = {
            n: SourceLive(t.live_lag(), t.stats.open_files, t.stats.gaps, t.stats.error)
            for n, t in self.tailers.items()
        }
        text = self.metrics.render(live, self.queue.lines, self.queue.nbytes)
        return text + self.outputs.render_metrics()

    def _ruleset(self) -> object | None:
        """The running rules (outputs add their description and remediation to findings)."""
        return getattr(getattr(self.writer.pipeline, "detector", None), "ruleset", None)


async def _end_tasks(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Wait until ``tasks`` have ended, cancelling again any that goes on (a task that
    catches CancelledError, or a wait that dropped it), and name the ones that take long."""
    started = time.monotonic()
    named = False
    left = {t for t in tasks if not t.done()}
    while left:
        _, left = await asyncio.wait(left, timeout=CANCEL_AGAIN)
        for task in left:
            task.cancel()
        if left and not named and time.monotonic() - started >= STUCK_WARNING:
            named = True
            log.warning("stopping: still waiting for %s", ", ".join(map(_where, left)))


def _where(task: asyncio.Task[Any]) -> str:
    """A task's name and the line it waits at."""
    frames = task.get_stack(limit=1)
    if not frames:
        return task.get_name()
    code = frames[-1].f_code
    return f"{task.get_name()} ({code.co_filename}:{frames[-1].f_lineno} in {code.co_name})"


async def run(
    config: Config,
    *,
    config_path: Path | None = None,
    once: bool = False,
    extra_tasks: Sequence[ExtraTask] | None = None,
    stop_asked: Callable[[], bool] | None = None,
) -> int:
    """Run the daemon until SIGTERM/SIGINT (or, with ``once``, until caught up)."""
    daemon = Daemon(
        config,
        config_path=config_path,
        once=once,
        extra_tasks=extra_tasks,
        stop_asked=stop_asked,
    )
    return await daemon.run()

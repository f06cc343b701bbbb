"""Scheduled reports inside the daemon: cron triggers, catch-up after downtime, retention.

The only module that imports apscheduler (3.x). Its ``CronTrigger`` computes the fire
times (UTC); the loop around it is ours, for two reasons: apscheduler 3 keeps jobs in
memory, so a run missed while the daemon was down is forgotten, and its scheduler reads
the wall clock itself, so it cannot be tested without waiting. Here the clock and the
sleep are arguments, and what is due is a pure function of the manifest and the time:

- each job's last produced period is read from the output directory's manifest;
- every period that a cron fire since then should have produced, and that is complete,
  is produced now, oldest first (at most ``MAX_CATCHUP`` per job);
- a job that never produced a report starts from the first time the scheduler saw it
  (kept in ``schedule-state.json``), so the first fire after installation is not lost.

Wiring (daemon)::

    stop = asyncio.Event()
    tg.create_task(run_report_scheduler(config, db_path, stop))
    ...
    stop.set()   # on SIGTERM; the loop returns after the report in progress, if any
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from auditor.config import Config, ReportJob
from auditor.errors import AuditorError, ConfigError
from auditor.report import integrity
from auditor.report.periods import last_full_period

log = logging.getLogger(__name__)

STATE_FILE = "schedule-state.json"
MAX_CATCHUP = 31  # periods per job produced after a long downtime
MAX_SLEEP = 300.0  # wake at least every 5 minutes: wall-clock jumps, suspend, retries
RETRY_AFTER = timedelta(minutes=10)
_PERIOD_SPAN = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=31)}

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
Producer = Callable[[ReportJob, datetime, datetime, datetime], Awaitable[None]]


_DOW = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _dow(token: str) -> int:
    t = token.strip().lower()
    if t.isdigit() and int(t) <= 7:
        return int(t) % 7
    if t[:3] in _DOW:
        return _DOW.index(t[:3])
    raise ValueError(f"bad day of week {token!r}")


def cron_day_of_week(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as apscheduler 3 day names.

    apscheduler 3 counts 0 as Monday (its issue 286), so ``1`` would mean Tuesday; the
    field is expanded to names (``1-5`` → ``mon,tue,wed,thu,fri``) to keep cron's meaning.
    """
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        rng, slash, step_text = part.partition("/")
        step = int(step_text) if slash else 1
        if step < 1:
            raise ValueError(f"bad step in {part!r}")
        if rng == "*":
            lo, hi = 0, 6
        elif "-" in rng:
            a, b = rng.split("-", 1)
            lo, hi = _dow(a), _dow(b)
            if b.strip() == "7":
                hi = 7
        else:
            lo = _dow(rng)
            hi = 6 if slash else lo
        if hi < lo:
            hi += 7
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_DOW[d] for d in sorted(days))


def trigger(job: ReportJob) -> CronTrigger | OrTrigger:
    """The job's 5-field crontab schedule as an apscheduler trigger in UTC.

    Cron semantics are kept where apscheduler 3 differs: weekday numbers (0 = Sunday),
    and a day of month together with a day of week fires on either (cron's OR).
    A bad expression is a ``ConfigError`` naming the job.
    """
    fields = job.schedule.split()
    try:
        if len(fields) != 5:
            raise ValueError(f"expected 5 fields, got {len(fields)}")
        minute, hour, dom, month, dow = fields
        days = cron_day_of_week(dow)
        common = {"minute": minute, "hour": hour, "month": month, "timezone": UTC}
        if dom not in ("*", "?") and days != "*":
            return OrTrigger(
                [CronTrigger(day=dom, **common), CronTrigger(day_of_week=days, **common)]
            )
        return CronTrigger(day="*" if dom == "?" else dom, day_of_week=days, **common)
    except ValueError as exc:
        raise ConfigError(f"report job '{job.name}': schedule {job.schedule!r}: {exc}") from None


def validate_jobs(config: Config) -> None:
    """Fail fast at daemon start: every job's cron expression must parse."""
    names = [j.name for j in config.report.jobs]
    for job in config.report.jobs:
        trigger(job)
        if names.count(job.name) > 1:
            raise ConfigError(f"report job '{job.name}': two jobs have this name")


def next_fire(trig: CronTrigger | OrTrigger, now: datetime) -> datetime | None:
    """The first fire time at or after ``now``."""
    t: datetime | None = trig.get_next_fire_time(None, now)
    return t


def fire_times(
    trig: CronTrigger | OrTrigger, after: datetime, until: datetime
) -> Iterator[datetime]:
    """Fire times in ``[after, until]``, in order."""
    t = next_fire(trig, after)
    while t is not None and t <= until:
        yield t
        t = trig.get_next_fire_time(t, t + timedelta(seconds=1))


def due_periods(
    job: ReportJob,
    trig: CronTrigger | OrTrigger,
    done_end: datetime | None,
    since: datetime,
    now: datetime,
    max_catchup: int = MAX_CATCHUP,
) -> list[tuple[datetime, datetime]]:
    """Periods the job should have produced by ``now`` and has not.

    ``done_end``: end of the newest period already produced (None: never). A fire at ``f``
    reports on the last full period before ``f``. Only fires at or after ``since`` (first
    start) count when nothing was produced yet.
    """
    span = _PERIOD_SPAN[job.period]
    floor = now - span * (max_catchup + 1) - timedelta(days=1)
    anchor = done_end if done_end is not None else since
    out: list[tuple[datetime, datetime]] = []
    for f in fire_times(trig, max(anchor, floor), now):
        p = last_full_period(job.period, f)
        if done_end is not None and p[1] <= done_end:
            continue
        if p not in out:
            out.append(p)
    return out[-max_catchup:]


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def last_done(directory: Path, job: ReportJob) -> datetime | None:
    """End of the newest period produced for ``job`` according to the manifest."""
    best: datetime | None = None
    try:
        entries = integrity.read_manifest(directory)
    except ValueError as exc:
        log.error("report schedule: %s; treating job %s as never run", exc, job.name)
        return None
    for e in entries:
        if e.kind != "report" or e.fields.get("job") != job.name:
            continue
        end = _parse_time(e.fields.get("end"))
        if end is not None and (best is None or end > best):
            best = end
    return best


def job_since(directory: Path, jobs: Sequence[ReportJob], now: datetime) -> dict[str, datetime]:
    """When the scheduler first saw each job (recorded on first sight, owner-only file)."""
    path = directory / STATE_FILE
    state: dict[str, str] = {}
    if path.exists():
        try:
            loaded = orjson.loads(path.read_bytes())
            if isinstance(loaded, dict):
                state = {str(k): str(v) for k, v in loaded.get("since", {}).items()}
        except (orjson.JSONDecodeError, AttributeError, OSError) as exc:
            log.warning("report schedule: %s unreadable (%s); starting afresh", path, exc)
    out: dict[str, datetime] = {}
    changed = False
    for job in jobs:
        t = _parse_time(state.get(job.name))
        if t is None:
            t = now
            state[job.name] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            changed = True
        out[job.name] = t
    if changed:
        integrity.write_atomic(path, orjson.dumps({"since": state}, option=orjson.OPT_SORT_KEYS))
    return out


def expired(directory: Path, retention_days: int, now: datetime) -> list[integrity.Entry]:
    """Report entries whose period ended more than ``retention_days`` ago and not pruned."""
    entries = integrity.read_manifest(directory)
    pruned = {e.file for e in entries if e.kind == "prune"}
    cutoff = now - timedelta(days=retention_days)
    out = []
    for e in entries:
        if e.kind != "report" or e.file in pruned:
            continue
        end = _parse_time(e.fields.get("end"))
        if end is not None and end < cutoff:
            out.append(e)
    return out


def prune_reports(directory: Path, retention_days: int, now: datetime) -> list[str]:
    """Delete expired reports; each deletion is a manifest line, so ``verify`` still passes."""
    if not (directory / integrity.MANIFEST).exists():
        return []
    with integrity.manifest_lock(directory):
        old = expired(directory, retention_days, now)
        removed = integrity.prune(directory, old, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    for name in removed:
        log.info("report %s pruned (older than %d days)", name, retention_days)
    return removed


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stop`` is set.

    asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that comes in the
    loop turn in which ``stop`` is set (CPython gh-86296): the daemon cancels this task at
    shutdown and on reload, and it would then go on running the old schedule.
    """
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await stop.wait()
    except TimeoutError:
        pass


def _default_producer(config: Config, store_path: Path) -> Producer:
    from auditor.report.produce import produce_report

    async def produce(job: ReportJob, start: datetime, end: datetime, now: datetime) -> None:
        await asyncio.to_thread(
            produce_report,
            config,
            store_path,
            start,
            end,
            job=job.name,
            kind=job.period,
            now=now,
            strict_rules=False,
        )

    return produce


@dataclass
class _Failure:
    retry_at: datetime
    count: int


async def run_report_scheduler(
    config: Config,
    store_path: Path,
    stop_event: asyncio.Event,
    *,
    clock: Clock | None = None,
    sleep: Sleep | None = None,
    produce: Producer | None = None,
) -> None:
    """Produce every job's reports at its cron times until ``stop_event`` is set.

    ``clock``, ``sleep`` and ``produce`` are seams for tests; by default the wall clock,
    a sleep that ends early when the stop event is set, and ``produce_report`` run in a
    worker thread. A failing report is logged and retried after ``RETRY_AFTER``; it never
    ends the loop.
    """
    jobs = config.report.jobs
    if not jobs:
        log.info("report schedule: no jobs configured")
        return
    clock = clock or (lambda: datetime.now(UTC))
    sleep = sleep or (lambda s: _wait(stop_event, s))
    produce = produce or _default_producer(config, store_path)
    directory = config.report.output_dir
    integrity.ensure_dir(directory)
    triggers = {job.name: trigger(job) for job in jobs}
    since = job_since(directory, jobs, clock())
    failures: dict[tuple[str, datetime], _Failure] = {}
    log.info("report schedule: %s", ", ".join(f"{j.name} ({j.schedule}, {j.period})" for j in jobs))
    while not stop_event.is_set():
        now = clock()
        for job in jobs:
            done = last_done(directory, job)
            for start, end in due_periods(job, triggers[job.name], done, since[job.name], now):
                if stop_event.is_set():
                    return
                fail = failures.get((job.name, start))
                if fail is not None and now < fail.retry_at:
                    continue
                try:
                    await produce(job, start, end, now)
                except (AuditorError, OSError) as exc:
                    count = fail.count + 1 if fail else 1
                    failures[(job.name, start)] = _Failure(now + RETRY_AFTER, count)
                    log.error(
                        "report %s for %s failed (attempt %d): %s",
                        job.name,
                        start.date(),
                        count,
                        exc,
                    )
                else:
                    failures.pop((job.name, start), None)
        try:
            prune_reports(directory, config.report.retention_days, now)
        except (OSError, ValueError) as exc:
            log.error("report retention: %s", exc)
        await sleep(_delay(triggers.values(), now, clock()))


def _delay(triggers: Iterable[CronTrigger | OrTrigger], now: datetime, current: datetime) -> float:
    """Seconds until the next fire of any trigger after ``now``, capped at ``MAX_SLEEP``."""
    best: datetime | None = None
    for trig in triggers:
        t = next_fire(trig, now)
        if t is not None and t <= now:
            t = trig.get_next_fire_time(t, now + timedelta(seconds=1))
        if t is not None and (best is None or t < best):
            best = t
    if best is None:
        return MAX_SLEEP
    return min(MAX_SLEEP, max(0.0, (best - current).total_seconds()))

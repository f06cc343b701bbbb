"""The report scheduler with an injected clock: cron times, catch-up, retries, retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditor.config import Config, ReportConfig, ReportJob, RulesConfig
from auditor.errors import ConfigError, StoreError
from auditor.report import integrity
from auditor.report.schedule import (
    MAX_SLEEP,
    RETRY_AFTER,
    cron_day_of_week,
    due_periods,
    fire_times,
    prune_reports,
    run_report_scheduler,
    trigger,
    validate_jobs,
)
from report_samples import empty_store


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


DAILY = ReportJob("daily", "0 6 * * *", "day")
WEEKLY = ReportJob("weekly", "30 6 * * 1", "week")
MONTHLY = ReportJob("monthly", "0 7 1 * *", "month")


class FakeTime:
    """A clock that only moves when the scheduler sleeps."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


class Recorder:
    """A producer that files a manifest entry, like the real one, and records the call."""

    def __init__(self, out: Path, stop: asyncio.Event, until: int, fail_first: int = 0) -> None:
        self.out, self.stop, self.until, self.fail_first = out, stop, until, fail_first
        self.calls: list[tuple[str, datetime, datetime, datetime]] = []

    async def __call__(self, job: ReportJob, start: datetime, end: datetime, now: datetime) -> None:
        self.calls.append((job.name, start, end, now))
        if len(self.calls) <= self.fail_first:
            raise StoreError("database is locked")
        with integrity.manifest_lock(self.out):
            integrity.append_entry(
                self.out,
                "report",
                f"{job.name}-{start:%Y%m%d}.pdf",
                "0" * 64,
                job=job.name,
                start=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                end=end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
        if len(self.calls) - self.fail_first >= self.until:
            self.stop.set()


def _config(out: Path, *jobs: ReportJob, retention: int = 400) -> Config:
    return Config(
        rules=RulesConfig(bundled=False),
        report=ReportConfig(output_dir=out, jobs=jobs, retention_days=retention),
    )


def _run(cfg: Config, t: FakeTime, rec: Recorder, stop: asyncio.Event) -> None:
    coro = run_report_scheduler(
        cfg, Path("unused.db"), stop, clock=t.clock, sleep=t.sleep, produce=rec
    )
    asyncio.run(asyncio.wait_for(coro, timeout=30))


def test_fires_at_the_cron_times(tmp_path: Path) -> None:
    out = tmp_path / "r"
    stop = asyncio.Event()
    t = FakeTime(utc(2026, 11, 20, 23, 17, 42))  # a Friday evening
    rec = Recorder(out, stop, until=5)
    _run(_config(out, DAILY, WEEKLY), t, rec, stop)
    assert rec.calls == [
        ("daily", utc(2026, 11, 20), utc(2026, 11, 21), utc(2026, 11, 21, 6)),
        ("daily", utc(2026, 11, 21), utc(2026, 11, 22), utc(2026, 11, 22, 6)),
        ("daily", utc(2026, 11, 22), utc(2026, 11, 23), utc(2026, 11, 23, 6)),
        ("weekly", utc(2026, 11, 16), utc(2026, 11, 23), utc(2026, 11, 23, 6, 30)),
        ("daily", utc(2026, 11, 23), utc(2026, 11, 24), utc(2026, 11, 24, 6)),
    ]
    assert max(t.sleeps) <= MAX_SLEEP


def test_missed_runs_are_produced_when_the_daemon_comes_back(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    with integrity.manifest_lock(out):  # the last report before the downtime: 2026-11-17
        integrity.append_entry(
            out,
            "report",
            "d.pdf",
            "0" * 64,
            job="daily",
            start="2026-11-17T00:00:00Z",
            end="2026-11-18T00:00:00Z",
        )
    stop = asyncio.Event()
    back = utc(2026, 11, 21, 9, 12)
    t = FakeTime(back)
    rec = Recorder(out, stop, until=4)
    _run(_config(out, DAILY), t, rec, stop)
    assert [(c[1].day, c[3]) for c in rec.calls] == [
        (18, back),
        (19, back),
        (20, back),  # caught up at once, oldest first
        (21, utc(2026, 11, 22, 6)),  # then on schedule
    ]


def test_first_fire_after_installation_is_not_lost(tmp_path: Path) -> None:
    """The daemon first ran at 05:00, was down from 05:30 to 07:00: the 06:00 run is due."""
    out = tmp_path / "r"
    stop = asyncio.Event()
    stop.set()  # only let it record when it first saw the job
    t = FakeTime(utc(2026, 11, 20, 5, 0))
    _run(_config(out, DAILY), t, Recorder(out, stop, 1), stop)
    stop = asyncio.Event()
    t = FakeTime(utc(2026, 11, 20, 7, 0))
    rec = Recorder(out, stop, until=1)
    _run(_config(out, DAILY), t, rec, stop)
    assert rec.calls == [("daily", utc(2026, 11, 19), utc(2026, 11, 20), utc(2026, 11, 20, 7))]


def test_a_failed_report_is_retried_later(tmp_path: Path) -> None:
    out = tmp_path / "r"
    stop = asyncio.Event()
    t = FakeTime(utc(2026, 11, 20, 5, 59))
    rec = Recorder(out, stop, until=1, fail_first=1)
    _run(_config(out, DAILY), t, rec, stop)
    (_, s1, _, at1), (_, s2, _, at2) = rec.calls
    assert s1 == s2 == utc(2026, 11, 19)
    assert at1 == utc(2026, 11, 20, 6) and RETRY_AFTER <= at2 - at1 <= RETRY_AFTER + timedelta(
        seconds=MAX_SLEEP
    )


def test_due_periods_weekly_monthly_and_catch_up_cap() -> None:
    since = utc(2026, 1, 1)
    assert due_periods(WEEKLY, trigger(WEEKLY), None, since, utc(2026, 11, 23, 6, 29))[-1:] == [
        (utc(2026, 11, 9), utc(2026, 11, 16))
    ]
    months = due_periods(MONTHLY, trigger(MONTHLY), utc(2026, 8, 1), since, utc(2026, 11, 1, 7))
    assert months == [
        (utc(2026, 8, 1), utc(2026, 9, 1)),
        (utc(2026, 9, 1), utc(2026, 10, 1)),
        (utc(2026, 10, 1), utc(2026, 11, 1)),
    ]
    many = due_periods(
        DAILY, trigger(DAILY), utc(2025, 1, 1), since, utc(2026, 11, 20, 7), max_catchup=5
    )
    assert [p[0].day for p in many] == [15, 16, 17, 18, 19]
    hourly = ReportJob("h", "0 * * * *", "day")  # fires more often than its period
    assert (
        len(due_periods(hourly, trigger(hourly), utc(2026, 11, 19), since, utc(2026, 11, 20, 23)))
        == 1
    )


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("1", "mon"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("sat,SUN", "sun,sat"),
        ("*", "*"),
    ],
)
def test_cron_weekdays_keep_crontab_numbering(field: str, names: str) -> None:
    assert cron_day_of_week(field) == names


def test_day_of_month_or_day_of_week_like_cron() -> None:
    trig = trigger(ReportJob("x", "0 6 1 * 1", "day"))  # the 1st, and every Monday
    fires = list(fire_times(trig, utc(2026, 11, 28), utc(2026, 12, 10)))
    assert [f.day for f in fires] == [30, 1, 7]


def test_bad_cron_and_duplicate_names_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="report job 'x'"):
        validate_jobs(_config(tmp_path, ReportJob("x", "61 * * * *", "day")))
    with pytest.raises(ConfigError, match="day of week"):
        validate_jobs(_config(tmp_path, ReportJob("x", "0 6 * * funday", "day")))
    with pytest.raises(ConfigError, match="two jobs"):
        validate_jobs(_config(tmp_path, DAILY, DAILY))


def test_no_jobs_returns_at_once(tmp_path: Path) -> None:
    stop = asyncio.Event()
    asyncio.run(run_report_scheduler(_config(tmp_path / "r"), tmp_path / "x.db", stop))


def test_retention_prunes_old_reports_and_keeps_the_chain(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    with integrity.manifest_lock(out):
        for day in (1, 2, 3):
            name = f"d{day}.pdf"
            (out / name).write_bytes(b"%PDF-" + bytes([day]))
            digest = integrity.sha256_file(out / name)
            integrity.sidecar(out / name).write_text(f"{digest}  {name}\n")
            integrity.append_entry(
                out, "report", name, digest, job="daily", end=f"2026-10-0{day}T00:00:00Z"
            )
    removed = prune_reports(out, 49, utc(2026, 11, 21))
    assert removed == ["d1.pdf", "d2.pdf"]
    assert sorted(p.name for p in out.glob("*.pdf")) == ["d3.pdf"]
    assert integrity.verify(out).ok
    assert prune_reports(out, 49, utc(2026, 11, 21)) == []


def test_scheduled_report_is_a_real_chained_pdf(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    empty_store(db).close()
    out = tmp_path / "r"
    cfg = _config(out, DAILY)
    stop = asyncio.Event()
    t = FakeTime(utc(2026, 11, 21, 5, 58))

    async def sleep(seconds: float) -> None:
        await t.sleep(seconds)
        if list(out.glob("*.pdf")):
            stop.set()

    coro = run_report_scheduler(cfg, db, stop, clock=t.clock, sleep=sleep)
    asyncio.run(asyncio.wait_for(coro, timeout=60))
    assert [p.name for p in out.glob("*.pdf")] == ["log-auditor-daily-2026-11-20.pdf"]
    assert integrity.verify(out).ok
    assert integrity.read_manifest(out)[0].fields["generated_at"] == "2026-11-21T06:00:00Z"

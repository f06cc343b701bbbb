"""A cancel is never lost by the shell's timed waits (outputs, report schedule, metrics).

On Python 3.11 ``asyncio.wait_for`` returns the inner result and drops a cancel that
comes in the loop turn in which the inner wait ends (CPython gh-86296): a task cancelled
just as its stop event is set then went on. Each wait here is put in exactly that turn;
with ``wait_for`` every one of them returned normally instead of being cancelled.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from auditor.config import parse_config
from auditor.metrics import serve
from auditor.outputs.delivery import OutputRunner, sleep_unless_stopped
from auditor.outputs.filesink import FileSink
from auditor.outputs.service import Outputs
from auditor.report.schedule import run_report_scheduler
from daemon_helpers import free_port

Waiter = Callable[[asyncio.Event], Coroutine[Any, Any, Any]]


async def _cancelled_as_stop_is_set(wait: Waiter, settle: float = 0.05) -> bool:
    """Whether a task in ``wait(stop)`` ends cancelled when the cancel comes in the very
    loop turn in which ``stop`` is set."""
    stop = asyncio.Event()
    task = asyncio.create_task(wait(stop))
    await asyncio.sleep(settle)  # the task now waits on ``stop``
    assert not task.done()
    stop.set()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=30)
    assert done, "the task did not end"
    return task.cancelled()


def test_sleep_unless_stopped_keeps_a_cancel() -> None:
    assert asyncio.run(_cancelled_as_stop_is_set(lambda stop: sleep_unless_stopped(stop, 30)))


def test_sleep_unless_stopped_wakes_on_stop_and_after_its_time() -> None:
    async def main() -> None:
        stop = asyncio.Event()
        await sleep_unless_stopped(stop, 0.01)  # returns after its time
        asyncio.get_running_loop().call_later(0.01, stop.set)
        await asyncio.wait_for(sleep_unless_stopped(stop, 3600), 30)  # and at the stop

    asyncio.run(main())


def test_an_output_cancelled_as_it_stops_is_cancelled_and_closes(tmp_path: Path) -> None:
    out = parse_config(
        {"output": [{"name": "f", "type": "file", "path": str(tmp_path / "f.jsonl")}]}, "t.toml"
    ).outputs[0]
    sink = FileSink(tmp_path / "f.jsonl", out.max_bytes, out.keep)
    runner = OutputRunner(out, tmp_path / "audit.db", sink, poll=30)
    # 1 s: its first step (opening the store in a thread) is over; it waits for the poll.
    assert asyncio.run(_cancelled_as_stop_is_set(runner.run, settle=1.0))
    assert runner._store is None  # closed


def test_an_output_restart_delay_keeps_a_cancel(caplog: pytest.LogCaptureFixture) -> None:
    class Failing:
        out = parse_config({"output": [{"name": "x", "type": "syslog"}]}, "t.toml").outputs[0]

        async def run(self, stop: asyncio.Event) -> None:
            raise RuntimeError("boom")

    async def supervise(stop: asyncio.Event) -> None:
        outputs = Outputs(lambda: None)
        outputs._stop = stop
        await outputs._supervise(Failing())  # type: ignore[arg-type]

    assert asyncio.run(_cancelled_as_stop_is_set(supervise))
    assert "restarting it in" in caplog.text


def test_the_report_schedule_keeps_a_cancel(tmp_path: Path) -> None:
    config = parse_config(
        {
            "store": {"path": str(tmp_path / "audit.db")},
            "report": {
                "output_dir": str(tmp_path / "reports"),
                "schedule": "0 6 1 1 *",
            },
        },
        "t.toml",
    )

    async def nothing(*args: object) -> None:
        pass

    def scheduler(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        return run_report_scheduler(config, tmp_path / "audit.db", stop, produce=nothing)

    assert asyncio.run(_cancelled_as_stop_is_set(scheduler, settle=0.5))


def test_the_metrics_endpoint_still_answers() -> None:
    port = free_port()

    async def main() -> str:
        server = await serve(f"127.0.0.1:{port}", lambda: "up 1\n")
        try:

            def get() -> str:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=10) as resp:
                    return str(resp.read().decode())

            return await asyncio.to_thread(get)
        finally:
            server.close()

    assert asyncio.run(main()) == "up 1\n"

"""`log-auditor run`: the daemon (tail, store, detect, scheduled jobs) until SIGTERM."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from auditor.cli import cli, early_stop_asked, note_stop_signals
from auditor.config import DEFAULT_CONFIG_PATH, Config, load_config
from auditor.errors import AuditorError, UsageError
from auditor.sdnotify import setup_logging

log = logging.getLogger("auditor.daemon")

EXIT_GRACE = 0.8  # seconds worker threads still busy at exit (a report being written) get
ONCE_OUTPUT_SECONDS = 30.0  # run --once: how long its outputs may take to send what it found
ONCE_OUTPUT_ENV = "LOG_AUDITOR_ONCE_OUTPUT_SECONDS"


@cli.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (default: $LOG_AUDITOR_CONFIG, else /etc/log-auditor/config.toml).",
)
@click.option(
    "--once",
    is_flag=True,
    help="Read what the sources hold now, commit it, send its findings to the outputs and"
    " exit (no watching).",
)
@click.pass_context
def run_cmd(ctx: click.Context, config_path: Path | None, once: bool) -> None:
    """Tail every configured source, store, detect and run scheduled jobs until SIGTERM.

    SIGTERM or SIGINT: stop reading, commit what was read, exit 0. SIGHUP: reload the
    config and rules (a bad new config is refused and the running one kept). Under
    systemd (Type=notify) it reports readiness, status and watchdog pings. Positions
    commit with their events, so a restart (even after SIGKILL) resumes exactly.
    """
    # A SIGTERM/SIGINT stops the daemon cleanly (exit 0), also one that comes while it
    # starts: noted since the CLI's first line (auditor.cli), or from here on when this
    # command runs some other way (a test's CliRunner).
    stop_asked = early_stop_asked or note_stop_signals()
    if once:
        _default_stop_signals(stop_asked)
    # `kill -USR1` prints every thread's stack to stderr (a daemon that seems stuck).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from auditor.daemon import run

    path = config_path or Path(os.environ.get("LOG_AUDITOR_CONFIG") or DEFAULT_CONFIG_PATH)
    config = load_config(path)
    from auditor.report.schedule import validate_jobs

    validate_jobs(config)  # a bad cron line stops the start, not the first report
    from auditor.store.writerlock import WriterLock

    # One process reads logs into a store (a second would store the same lines again):
    # held until this process ends.
    writer_lock = WriterLock(config.store.path).acquire()
    once_seconds = _once_output_seconds() if once else 0.0
    verbose = (ctx.parent.params.get("verbose") or 0) if ctx.parent else 0
    setup_logging(logging.DEBUG if verbose else logging.INFO)
    from auditor.gctune import tune_for_ingest

    tune_for_ingest()
    try:
        main = run(config, config_path=path, once=once, stop_asked=stop_asked)
        code, busy = _run(
            _then_deliver(main, config, once_seconds) if once else _noting_stop_after(main)
        )
    except KeyboardInterrupt:
        code, busy = 0, False
    except Exception as exc:
        if isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        if isinstance(exc, AuditorError):
            raise exc from None
        log.critical("unexpected error, stopping", exc_info=exc)
        code, busy = 1, False
    if busy:
        # A worker thread (a report being written) would hold the exit past systemd's
        # patience; everything of the pipeline is committed and closed already.
        log.warning("exiting while a background job is still running")
        logging.shutdown()
        os._exit(code)
    writer_lock.release()
    sys.exit(code)


def _default_stop_signals(stop_asked: Callable[[], bool]) -> None:
    """``run --once`` is one pass, like ``scan``: the signals' default actions again; a
    stop asked while it started ends it here, before anything is read (exit 0)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if stop_asked():
        sys.exit(0)


async def _then_deliver(once: Coroutine[Any, Any, int], config: Config, seconds: float) -> int:
    """``run --once``: the pass, then its findings go to the outputs as the daemon sends
    them, for ``seconds`` at most (what is left waits in the store)."""
    code = await once
    if code != 0 or not config.outputs:
        return code
    from auditor.engine import load_config_rules
    from auditor.outputs.build import load_secrets
    from auditor.outputs.service import Outputs

    # Read again as the pass read them (its warnings were given then); the rules add
    # their description and remediation to OCSF/ECS findings, as in the daemon.
    secrets = load_secrets(config, warn=lambda text: None)
    ruleset = load_config_rules(config)
    await Outputs(lambda: ruleset).deliver_pending(config, secrets, time.monotonic() + seconds)
    return code


def _once_output_seconds() -> float:
    raw = os.environ.get(ONCE_OUTPUT_ENV, "")
    if not raw:
        return ONCE_OUTPUT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise UsageError(f"{ONCE_OUTPUT_ENV}: expected seconds (a number >= 0), got {raw!r}")
    return seconds


async def _noting_stop_after(daemon: Coroutine[Any, Any, int]) -> int:
    """The daemon, then SIGTERM/SIGINT noted again (it gives them back to their default
    actions as it ends): a second one while the process exits must not kill it by the
    signal (exit -15) after a clean stop."""
    try:
        return await daemon
    finally:
        note_stop_signals()


def _run(main: Coroutine[Any, Any, int]) -> tuple[int, bool]:
    """Like ``asyncio.run``, but busy worker threads get a bounded wait at the end.

    Returns the exit code and whether worker threads were still busy.
    """
    loop = asyncio.new_event_loop()
    busy = False
    try:
        asyncio.set_event_loop(loop)
        code = loop.run_until_complete(main)
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        try:
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), EXIT_GRACE))
        except TimeoutError:
            busy = True
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return code, busy

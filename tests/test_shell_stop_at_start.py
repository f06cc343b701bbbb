"""`log-auditor run` stops cleanly (exit 0, no traceback) on a SIGTERM or SIGINT that comes
at any moment of its start-up: while the CLI imports its commands, while the daemon opens
the store, once it runs. Other commands keep the signals' default actions.

Real processes. The first few tens of milliseconds after exec are the interpreter's own
start (before any of our code runs), which no Python code can cover. So the process here
is `python -m auditor run` as its ``__main__`` does it, with one marker line on stdout
once ``auditor.cli`` is imported (its first line is where `run` starts noting the
signals); the signal follows the marker after a series of short delays, through the
command imports (0.3-0.7 s on a busy host, where the signal used to kill it: exit -15),
the daemon's start and its first seconds. The console script is checked the same way,
from the moment it catches SIGTERM (``SigCgt`` in /proc/PID/status).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_helpers import append, count, wait_for, write_config

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="needs /proc (Linux)"
)

DELAYS = (0.0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8)


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (False once it has gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


MAIN = Path(__file__).resolve().parent.parent / "auditor" / "__main__.py"
MARKED = (
    "import os, sys\n"
    f"sys.argv[0] = {str(MAIN)!r}\n"
    "import auditor.cli\n"
    "os.write(1, b'imported\\n')\n"
    "auditor.cli.main()\n"
)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""  # it has ended


def _start(config: Path, *, script: bool = False) -> subprocess.Popen[bytes]:
    """`log-auditor run` by its console script, or as `python -m auditor` with the marker."""
    entry = Path(sys.executable).with_name("log-auditor")
    cmd = [str(entry)] if script else [sys.executable, "-c", MARKED]
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    return subprocess.Popen(
        [*cmd, "run", "--config", str(config)],
        stdout=subprocess.DEVNULL if script else subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=str(config.parent),
    )


def _stop_after(proc: subprocess.Popen[bytes], delay: float, sig: int) -> tuple[int, str]:
    """Signal ``proc`` ``delay`` s after its marker (or, for the console script, after it
    first catches SIGTERM); its exit code and stderr."""
    if proc.stdout is not None:
        assert proc.stdout.readline() == b"imported\n"
    else:
        deadline = time.monotonic() + 60
        while not _catches(proc.pid, signal.SIGTERM) and proc.poll() is None:
            assert time.monotonic() < deadline, "the process never caught SIGTERM"
            time.sleep(0.001)
    time.sleep(delay)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode(errors="replace")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    log = tmp_path / "access.log"
    append(log, range(20))
    return write_config(tmp_path, [{"name": "api", "path": str(log)}])


@pytest.mark.parametrize("delay", DELAYS)
def test_sigterm_at_any_moment_of_the_start_exits_0(config: Path, delay: float) -> None:
    code, err = _stop_after(_start(config), delay, signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err, err


@pytest.mark.parametrize("delay", (0.0, 0.05, 0.2))
def test_sigint_at_the_start_exits_0_without_a_traceback(config: Path, delay: float) -> None:
    code, err = _stop_after(_start(config), delay, signal.SIGINT)
    assert code == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


@pytest.mark.skipif(
    not Path(sys.executable).with_name("log-auditor").exists(), reason="no console script"
)
@pytest.mark.parametrize("delay", (0.0, 0.1))
def test_the_console_script_notes_it_too(config: Path, delay: float) -> None:
    code, err = _stop_after(_start(config, script=True), delay, signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err, err


def test_a_stop_after_the_start_still_commits_what_was_read(config: Path) -> None:
    proc = _start(config)
    db = config.parent / "audit.db"
    try:
        wait_for(lambda: count(db) == 20, 60, what="the lines")
    finally:
        code, err = _stop_after(proc, 0.0, signal.SIGTERM)
    assert code == 0, err
    assert count(db) == 20


def _handlers_after_import(argv: list[str], handed_down: bool = False) -> str:
    """What SIGTERM's and SIGINT's handlers are right after ``import auditor.cli`` in a
    process started with the arguments ``argv[1:]`` (named ``argv[0]``). ``handed_down``:
    started without them, and given them in ``sys.argv``, as multiprocessing's spawn does
    for a worker of the console script."""
    code = (
        "import signal, sys\n"
        f"sys.argv = {argv!r}\n"
        "import auditor.cli\n"
        "def name(h):\n"
        "    if h == signal.SIG_DFL or h is signal.default_int_handler:\n"
        "        return 'default'\n"
        "    return 'noted' if callable(h) else str(h)\n"
        "print(name(signal.getsignal(signal.SIGTERM)), name(signal.getsignal(signal.SIGINT)))\n"
    )
    args = [] if handed_down else argv[1:]
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_only_run_notes_the_signals_from_the_first_line() -> None:
    main = str(MAIN)
    default = "default default"
    assert _handlers_after_import(["/usr/bin/log-auditor", "run"]) == "noted noted"
    assert _handlers_after_import(["/usr/bin/log-auditor", "-vv", "run", "--once"]) == (
        "noted noted"
    )
    assert _handlers_after_import([main, "run", "--config", "x.toml"]) == "noted noted"
    # Other commands (Ctrl-C ends a scan at once), and other programs that import us.
    assert _handlers_after_import(["/usr/bin/log-auditor", "scan", "run"]) == default
    assert _handlers_after_import(["/usr/bin/log-auditor", "-v", "findings"]) == default
    assert _handlers_after_import(["/usr/bin/other-tool", "run"]) == default
    # A decode worker of the console script (its parent's sys.argv, not its own arguments).
    assert _handlers_after_import(["/usr/bin/log-auditor", "run"], handed_down=True) == default


def test_the_console_scripts_decode_worker_keeps_the_default_actions(tmp_path: Path) -> None:
    """The worker ends with its parent; it must not take `run`'s noting of SIGTERM along
    (multiprocessing's spawn runs the console script again in it, with the parent's argv)."""
    if not Path(sys.executable).with_name("log-auditor").exists():
        pytest.skip("no console script")
    log = tmp_path / "access.log"
    log.write_text("")
    config = write_config(
        tmp_path, [{"name": "api", "path": str(log)}], daemon={"decode_worker": True}
    )
    proc = _start(config, script=True)
    db = tmp_path / "audit.db"
    try:
        wait_for(lambda: _catches(proc.pid, signal.SIGTERM), 60, what="the daemon's handler")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        workers: list[int] = []

        def worker_started() -> bool:
            workers[:] = [int(c) for c in children.read_text().split()]
            return any("child_main" in _cmdline(c) for c in workers)

        append(log, range(2000))
        wait_for(lambda: count(db) == 2000, 60, what="the lines")
        wait_for(worker_started, 30, what="the decode worker")
        for pid in workers:
            assert not _catches(pid, signal.SIGTERM), _cmdline(pid)
    finally:
        code, err = _stop_after(proc, 0.0, signal.SIGTERM)
    assert code == 0, err


def test_run_once_stopped_while_starting_exits_0_before_reading(config: Path) -> None:
    """``run --once`` is one pass (the default actions again once it starts); a stop that
    came while the CLI imported ends it there."""
    code = (
        "import os, signal, sys\n"
        "sys.argv[0] = 'log-auditor'\n"
        "import auditor.cli\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "auditor.cli.main()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "run", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert count(config.parent / "audit.db") == 0
    # Without the stop, the same pass reads every line.
    plain = subprocess.run(
        [sys.executable, "-m", "auditor", "run", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert plain.returncode == 0, plain.stderr
    assert count(config.parent / "audit.db") == 20

"""`log-auditor run --once` sends the findings of its pass to the configured outputs, as the
daemon does, before it exits, for a bounded time; what a receiver cannot take waits in
the store for the next run. Real CLI processes, a real webhook receiver on loopback and
a real file output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson

from auditor.outputs.webhook import FINDING_HEADER
from daemon_helpers import finding_lines, query, write_config
from receivers import Receiver

SECRET = "once-hmac-key-5c2e"


def _setup(tmp: Path, url: str) -> tuple[Path, Path, Path]:
    """A config with a webhook (OCSF, the default shape) and a file output (native)."""
    log = tmp / "access.log"
    log.write_text("")
    config = write_config(tmp, [{"name": "api", "path": str(log)}], rules=True)
    with config.open("a") as f:
        f.write(
            f'[[output]]\nname = "hook"\ntype = "webhook"\nurl = "{url}"\n'
            f'secret = "{SECRET}"\nretry_initial = 0.05\nretry_max = 0.2\n'
            f'[[output]]\nname = "file"\ntype = "file"\npath = "{tmp / "out" / "f.json"}"\n'
            'shape = "native"\n'
        )
    return config, log, tmp / "out" / "f.json"


def _once(config: Path, seconds: float | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if seconds is not None:
        env["LOG_AUDITOR_ONCE_OUTPUT_SECONDS"] = str(seconds)
    res = subprocess.run(
        [sys.executable, "-m", "auditor", "run", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert "Traceback" not in res.stderr, res.stderr
    return res


def _findings(config: Path) -> Counter[str]:
    return Counter(str(r[0]) for r in query(config.parent / "audit.db", "SELECT id FROM findings"))


def _file_ids(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(orjson.loads(line)["id"] for line in path.read_text().splitlines())


def test_run_once_sends_its_findings_to_every_output(tmp_path: Path, receiver: Receiver) -> None:
    config, log, target = _setup(tmp_path, receiver.url)
    log.write_text(finding_lines(range(12)))
    res = _once(config)
    assert res.returncode == 0, res.stderr
    found = _findings(config)
    assert sum(found.values()) >= 12
    assert receiver.ids() == found  # each once
    assert _file_ids(target) == found
    receiver.check_signatures(SECRET.encode())
    body = orjson.loads(receiver.requests()[0][1])
    assert body["finding_info"]["uid"] == receiver.requests()[0][0][FINDING_HEADER]  # OCSF

    # Nothing new: nothing sent again. New lines: only their findings.
    assert _once(config).returncode == 0
    assert receiver.ids() == found and _file_ids(target) == found
    with log.open("a") as f:
        f.write(finding_lines(range(12, 20)))
    assert _once(config).returncode == 0
    everything = _findings(config)
    assert sum(everything.values()) > sum(found.values())
    assert receiver.ids() == everything
    assert _file_ids(target) == everything


def test_a_dead_receiver_is_given_a_bounded_time_and_its_findings_wait(
    tmp_path: Path, receiver: Receiver
) -> None:
    config, log, target = _setup(tmp_path, receiver.url)
    log.write_text(finding_lines(range(5)))
    receiver.down = True
    res = _once(config, seconds=1)
    assert res.returncode == 0, res.stderr
    found = _findings(config)
    assert sum(found.values()) >= 5
    assert _file_ids(target) == found  # the other output is not held up
    assert not receiver.requests() and receiver.attempts >= 1
    [line] = [x for x in res.stderr.splitlines() if "not sent" in x]
    assert "output hook:" in line and "wait in the store for the next run" in line
    assert SECRET not in res.stderr

    receiver.down = False  # it is back: the next run sends what waited, once
    res = _once(config)
    assert res.returncode == 0, res.stderr
    assert receiver.ids() == found
    assert _file_ids(target) == found


def test_a_bad_time_bound_is_a_usage_error_before_the_pass(tmp_path: Path) -> None:
    config, log, _ = _setup(tmp_path, "http://127.0.0.1:9/x")
    log.write_text(finding_lines(range(3)))
    env = {**os.environ, "LOG_AUDITOR_ONCE_OUTPUT_SECONDS": "soon"}
    res = subprocess.run(
        [sys.executable, "-m", "auditor", "run", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "log-auditor: error: LOG_AUDITOR_ONCE_OUTPUT_SECONDS: expected seconds"
        " (a number >= 0), got 'soon'"
    )
    assert not _findings(config)

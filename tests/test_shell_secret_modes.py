"""A webhook's ``secret_file`` or ``headers_file`` open to group or others is a warning, as
ssh says of a key: one line on stderr when the daemon starts and in ``check-config``;
``check-config -q`` prints errors only. Real CLI processes on real files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_helpers import Daemon

HMAC_KEY = "hmac-key-6d1f0c-for-tests"
TOKEN = "hec-2b7e9f3c-token-value"


def _files(tmp: Path, secret_mode: int, headers_mode: int) -> Path:
    secret = tmp / "hook.key"
    secret.write_text(HMAC_KEY + "\n")
    secret.chmod(secret_mode)
    headers = tmp / "hook.headers"
    headers.write_text(f"Authorization: Bearer {TOKEN}\n")
    headers.chmod(headers_mode)
    config = tmp / "config.toml"
    config.write_text(
        f'[store]\npath = "{tmp / "audit.db"}"\n[rules]\nbundled = false\n'
        f'[[source]]\nname = "api"\npath = "{tmp / "access.log"}"\nformat = "nginx-combined"\n'
        '[[output]]\nname = "hook"\ntype = "webhook"\nurl = "https://siem.example.org/x"\n'
        'secret_file = "hook.key"\nheaders_file = "hook.headers"\n'
    )
    (tmp / "access.log").write_text("")
    return config


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOG_AUDITOR_ONCE_OUTPUT_SECONDS": "0"}
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def _about(stderr: str, path: Path) -> list[str]:
    return [line for line in stderr.splitlines() if str(path) in line]


def _no_secret(text: str) -> None:
    assert HMAC_KEY not in text and TOKEN not in text


@pytest.mark.parametrize(("mode", "shown"), [(0o644, "644"), (0o640, "640"), (0o604, "604")])
def test_check_config_warns_once_per_open_file(tmp_path: Path, mode: int, shown: str) -> None:
    config = _files(tmp_path, mode, mode)
    res = _cli("check-config", "--config", str(config))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("config OK")
    for key, name in (("secret_file", "hook.key"), ("headers_file", "hook.headers")):
        [line] = _about(res.stderr, tmp_path / name)
        assert line.startswith(f"log-auditor: warning: {config}: key 'output[0].{key}': ")
        assert f"is open to group/others (mode {shown}); chmod 600 it" in line
    assert len(res.stderr.splitlines()) == 2
    _no_secret(res.stdout + res.stderr)


def test_owner_only_files_give_no_warning(tmp_path: Path) -> None:
    config = _files(tmp_path, 0o600, 0o400)
    res = _cli("check-config", "--config", str(config))
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_check_config_quiet_prints_no_warning(tmp_path: Path) -> None:
    config = _files(tmp_path, 0o644, 0o644)
    res = _cli("check-config", "-q", "--config", str(config))
    assert res.returncode == 0
    assert res.stderr == ""
    assert res.stdout.startswith("config OK")


def test_an_error_is_one_line_without_the_warnings(tmp_path: Path) -> None:
    config = _files(tmp_path, 0o644, 0o644)
    (tmp_path / "hook.headers").write_text("not a header line\n")
    for args in (["check-config"], ["run", "--once"]):
        res = _cli(*args, "--config", str(config))
        assert res.returncode == 2, res.stderr
        [line] = res.stderr.strip().splitlines()
        assert "key 'output[0].headers_file'" in line and "line 1" in line
        assert "Traceback" not in res.stderr


def test_run_once_warns_once_per_open_file(tmp_path: Path) -> None:
    config = _files(tmp_path, 0o644, 0o640)
    res = _cli("run", "--once", "--config", str(config))
    assert res.returncode == 0, res.stderr
    [key] = _about(res.stderr, tmp_path / "hook.key")
    assert f"{config}: key 'output[0].secret_file'" in key and "mode 644" in key
    [headers] = _about(res.stderr, tmp_path / "hook.headers")
    assert "output[0].headers_file" in headers and "mode 640" in headers
    assert "WARNING" in key and "WARNING" in headers
    _no_secret(res.stderr)


def test_the_daemon_warns_at_start(tmp_path: Path) -> None:
    config = _files(tmp_path, 0o660, 0o600)
    with Daemon(config) as d:
        d.wait_started()
        assert d.stop() == 0
    [line] = _about(d.stderr, tmp_path / "hook.key")
    assert "output[0].secret_file" in line and "mode 660" in line and "chmod 600" in line
    assert not _about(d.stderr, tmp_path / "hook.headers")
    _no_secret(d.stderr)

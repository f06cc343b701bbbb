"""The systemd unit: required settings, `systemd-analyze security` <= 2.0, `verify` clean.

`systemd-analyze` runs offline (no running systemd needed); the tests that need it skip
where it is not installed. `verify` insists that ExecStart's binary exists, so it checks
a temporary copy of the unit that starts this environment's `log-auditor` instead of
/opt/log-auditor's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "log-auditor.service"
GUIDE = ROOT / "docs" / "operator-guide.md"
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _settings(text: str) -> dict[str, list[str]]:
    """Key → values, in order, across sections (a unit file is close to an INI file)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def _one(settings: dict[str, list[str]], key: str) -> str:
    values = settings.get(key, [])
    assert len(values) == 1, f"{key}= should be set exactly once, got {values}"
    return values[0]


def _exposure(unit: Path) -> tuple[float, str]:
    assert ANALYZE is not None
    proc = subprocess.run(
        [ANALYZE, "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    assert m, f"no exposure level in:\n{proc.stdout}\n{proc.stderr}"
    return float(m.group(1)), proc.stdout


def metrics_dropin() -> str:
    """The drop-in the operator guide gives for the metrics endpoint (one code block)."""
    text = GUIDE.read_text(encoding="utf-8")
    m = re.search(
        r"```ini\n(# /etc/systemd/system/log-auditor\.service\.d/metrics\.conf\n.*?)```",
        text,
        re.DOTALL,
    )
    assert m, "the operator guide should show the metrics drop-in in an ```ini block"
    return m.group(1)


def test_unit_has_what_the_issue_asks_for() -> None:
    s = _settings(UNIT.read_text(encoding="utf-8"))
    assert _one(s, "Type") == "notify"
    assert _one(s, "ExecStart") == (
        "/opt/log-auditor/bin/log-auditor run --config /etc/log-auditor/config.toml"
    )
    assert _one(s, "ExecStartPre") == (
        "/opt/log-auditor/bin/log-auditor check-config --config /etc/log-auditor/config.toml"
    )
    assert _one(s, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert _one(s, "Restart") == "on-failure"
    assert _one(s, "WatchdogSec")
    assert _one(s, "User") == "log-auditor"
    assert _one(s, "SupplementaryGroups") == "adm"
    assert _one(s, "StateDirectory") == "log-auditor"
    assert _one(s, "StateDirectoryMode") == "0700"
    assert _one(s, "ConfigurationDirectory") == "log-auditor"
    assert _one(s, "UMask") == "0077"
    assert "/var/log" in _one(s, "ReadOnlyPaths").split()
    assert _one(s, "ProtectSystem") == "strict"
    assert _one(s, "CapabilityBoundingSet") == ""
    assert _one(s, "RestrictAddressFamilies") == "AF_UNIX"
    assert s["SystemCallFilter"][0] == "@system-service"
    for key in (
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "NoNewPrivileges",
        "MemoryDenyWriteExecute",
        "LockPersonality",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "PrivateNetwork",
    ):
        assert _one(s, key) == "yes", key
    assert _one(s, "SystemCallArchitectures") == "native"


@needs_analyze
def test_security_exposure_is_at_most_2() -> None:
    level, report = _exposure(UNIT)
    assert level <= MAX_EXPOSURE, report


@needs_analyze
def test_security_exposure_with_the_metrics_dropin_is_at_most_2(tmp_path: Path) -> None:
    # A drop-in is merged as if appended: the same [Service] keys, read later.
    unit = tmp_path / "log-auditor.service"
    unit.write_text(UNIT.read_text(encoding="utf-8") + "\n" + metrics_dropin(), encoding="utf-8")
    level, report = _exposure(unit)
    assert level <= MAX_EXPOSURE, report
    assert "PrivateNetwork=no" in metrics_dropin()


@needs_analyze
def test_verify_passes(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "log-auditor"
    if not exe.exists():
        pytest.skip(f"{exe} is not installed (pip install -e . creates it)")
    text = UNIT.read_text(encoding="utf-8").replace("/opt/log-auditor/bin/log-auditor", str(exe))
    unit = tmp_path / "log-auditor.service"
    unit.write_text(text, encoding="utf-8")
    assert ANALYZE is not None
    proc = subprocess.run(
        [ANALYZE, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    # verify also prints warnings about *other* units on the machine; ours must be clean.
    ours = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "log-auditor" in ln]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr


@needs_analyze
def test_verify_rejects_a_missing_binary(tmp_path: Path) -> None:
    # The reason for the temporary copy above: the real unit names /opt/log-auditor.
    unit = tmp_path / "log-auditor.service"
    unit.write_text(
        UNIT.read_text(encoding="utf-8").replace("/opt/log-auditor", str(tmp_path / "nowhere")),
        encoding="utf-8",
    )
    assert ANALYZE is not None
    proc = subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode != 0
    assert "not executable" in proc.stdout + proc.stderr

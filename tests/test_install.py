"""`make install` / `make uninstall` staged into a temporary root (DESTDIR): files and modes.

Staging never touches the live system: no user is created, nothing is chowned, systemctl
is not called. Where systemd's tools exist, the installed sysusers.d and tmpfiles.d
entries are applied inside the temporary root too (`--root`), to check they parse and
produce the directories with the right owners and modes.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.config import load_config

ROOT = Path(__file__).resolve().parent.parent
SH = shutil.which("sh") or "/bin/sh"


def _run(script: str, dest: Path, **env: str) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k not in ("PREFIX", "PURGE", "DESTDIR")}
    full = {**inherited, "DESTDIR": str(dest), **env}
    return subprocess.run(
        [SH, str(ROOT / "scripts" / script)],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "root"
    proc = _run("install.sh", d)
    assert proc.returncode == 0, proc.stderr
    return d


def test_install_creates_the_files_with_their_modes(dest: Path) -> None:
    expected = {
        "etc/log-auditor": 0o750,
        "etc/log-auditor/config.toml": 0o640,
        "var/lib/log-auditor": 0o700,
        "var/lib/log-auditor/reports": 0o700,
        "etc/systemd/system/log-auditor.service": 0o644,
        "etc/tmpfiles.d/log-auditor.conf": 0o644,
        "etc/sysusers.d/log-auditor.conf": 0o644,
        "opt/log-auditor/share/log-auditor/rulesets": 0o755,
        "opt/log-auditor/share/doc/log-auditor/config.toml.example": 0o644,
    }
    for rel, mode in expected.items():
        p = dest / rel
        assert p.exists(), rel
        assert _mode(p) == mode, f"{rel}: {oct(_mode(p))} != {oct(mode)}"
    unit = dest / "etc/systemd/system/log-auditor.service"
    assert unit.read_text() == (ROOT / "systemd/log-auditor.service").read_text()
    shipped = sorted(p.name for p in (ROOT / "rulesets").glob("*.toml"))
    installed = sorted(
        p.name for p in (dest / "opt/log-auditor/share/log-auditor/rulesets").iterdir()
    )
    assert installed == shipped
    for doc in ("operator-guide.md", "rules-guide.md", "compliance-readers.md"):
        if (ROOT / "docs" / doc).exists():
            assert (dest / "opt/log-auditor/share/doc/log-auditor" / doc).exists()


def test_installed_config_is_the_example_and_parses(dest: Path) -> None:
    config = dest / "etc/log-auditor/config.toml"
    assert config.read_text() == (ROOT / "examples/config.toml").read_text()
    cfg = load_config(config)
    assert str(cfg.store.path) == "/var/lib/log-auditor/audit.db"
    assert cfg.sources[0].path == "/var/log/nginx/access.log"
    assert str(cfg.report.output_dir) == "/var/lib/log-auditor/reports"


def test_install_again_keeps_an_edited_config(dest: Path) -> None:
    config = dest / "etc/log-auditor/config.toml"
    config.write_text('[store]\npath = "/srv/audit.db"\n')
    proc = _run("install.sh", dest)
    assert proc.returncode == 0, proc.stderr
    assert "kept existing" in proc.stdout
    assert config.read_text() == '[store]\npath = "/srv/audit.db"\n'


def test_prefix_rewrites_the_unit(tmp_path: Path) -> None:
    d = tmp_path / "root"
    proc = _run("install.sh", d, PREFIX="/srv/la/")
    assert proc.returncode == 0, proc.stderr
    unit = (d / "etc/systemd/system/log-auditor.service").read_text()
    assert "ExecStart=/srv/la/bin/log-auditor run --config /etc/log-auditor/config.toml" in unit
    assert "ExecStartPre=/srv/la/bin/log-auditor check-config" in unit
    assert "/opt/log-auditor" not in unit
    assert (d / "srv/la/share/log-auditor/rulesets").is_dir()


def test_relative_prefix_is_refused(tmp_path: Path) -> None:
    proc = _run("install.sh", tmp_path / "root", PREFIX="opt/x")
    assert proc.returncode == 2
    assert "absolute" in proc.stderr


def test_uninstall_keeps_config_and_state_unless_purge(dest: Path) -> None:
    (dest / "var/lib/log-auditor/audit.db").write_bytes(b"evidence")
    proc = _run("uninstall.sh", dest)
    assert proc.returncode == 0, proc.stderr
    for rel in (
        "etc/systemd/system/log-auditor.service",
        "etc/tmpfiles.d/log-auditor.conf",
        "etc/sysusers.d/log-auditor.conf",
        "opt/log-auditor/share/log-auditor",
        "opt/log-auditor/share/doc/log-auditor",
    ):
        assert not (dest / rel).exists(), rel
    assert (dest / "etc/log-auditor/config.toml").exists()
    assert (dest / "var/lib/log-auditor/audit.db").read_bytes() == b"evidence"

    proc = _run("uninstall.sh", dest, PURGE="1")
    assert proc.returncode == 0, proc.stderr
    assert not (dest / "etc/log-auditor").exists()
    assert not (dest / "var/lib/log-auditor").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_targets_call_the_scripts(tmp_path: Path) -> None:
    d = tmp_path / "root"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFIX", "PURGE", "MAKEFLAGS")}
    run = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "install", f"DESTDIR={d}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert (d / "etc/systemd/system/log-auditor.service").exists()
    run = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "uninstall", f"DESTDIR={d}", "PURGE=1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert not (d / "etc/systemd/system/log-auditor.service").exists()
    assert not (d / "etc/log-auditor").exists()


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
    reason="systemd-sysusers / systemd-tmpfiles are not installed",
)
@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-tmpfiles --root needs root to chown")
def test_sysusers_and_tmpfiles_entries_apply_in_a_root(dest: Path) -> None:
    # A minimal passwd/group inside the staged root, so nothing outside it is read or written.
    etc = dest / "etc"
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nadm:x:4:\n")
    subprocess.run(
        ["systemd-sysusers", f"--root={dest}", "log-auditor.conf"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    entry = next(
        ln for ln in (etc / "passwd").read_text().splitlines() if ln.startswith("log-auditor:")
    )
    uid = int(entry.split(":")[2])
    assert entry.endswith(":/var/lib/log-auditor:/usr/sbin/nologin")
    shutil.rmtree(dest / "var/lib/log-auditor")
    subprocess.run(
        ["systemd-tmpfiles", f"--root={dest}", "--create", "log-auditor.conf"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    for rel, mode, owner in (
        ("var/lib/log-auditor", 0o700, uid),
        ("var/lib/log-auditor/reports", 0o700, uid),
        ("etc/log-auditor", 0o750, 0),
        ("etc/log-auditor/config.toml", 0o640, 0),
    ):
        st = (dest / rel).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (mode, owner), rel
    assert (dest / "etc/log-auditor").stat().st_gid == uid  # group log-auditor (same id)


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
def test_the_installed_unit_verifies_with_prefix_pointing_at_this_venv(tmp_path: Path) -> None:
    venv = Path(sys.executable).parent.parent
    if not (venv / "bin" / "log-auditor").exists():
        pytest.skip("log-auditor is not installed in this environment")
    d = tmp_path / "root"
    proc = _run("install.sh", d, PREFIX=str(venv))
    assert proc.returncode == 0, proc.stderr
    unit = d / "etc/systemd/system/log-auditor.service"
    run = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ours = [ln for ln in (run.stdout + run.stderr).splitlines() if "log-auditor" in ln]
    assert run.returncode == 0 and not ours, run.stdout + run.stderr


LIVE = """\
set -eu
mount --make-rprivate /
for d in etc var opt; do
    mkdir -p "$T/$d-up" "$T/$d-work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$T/$d-up,workdir=$T/$d-work" "/$d"
done
mkdir -p /opt/log-auditor/bin
ln -sf "$EXE" /opt/log-auditor/bin/log-auditor
make -s -C "$SRC" install
id -u log-auditor
stat -c '%a %U:%G %n' /etc/log-auditor /etc/log-auditor/config.toml \\
    /var/lib/log-auditor /var/lib/log-auditor/reports /etc/systemd/system/log-auditor.service
make -s -C "$SRC" uninstall PURGE=1
if id -u log-auditor >/dev/null 2>&1; then echo "user-kept"; else echo "user-removed"; fi
test ! -e /etc/log-auditor && test ! -e /var/lib/log-auditor && echo "purged"
"""


def _live_possible() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not all(shutil.which(t) for t in ("unshare", "make", "id", "stat")):
        return "needs unshare, make, id and stat"
    if not Path("/opt").is_dir():
        return "no /opt to overlay"
    probe = subprocess.run(
        ["unshare", "--mount", "--", "true"], capture_output=True, timeout=30, check=False
    )
    return None if probe.returncode == 0 else "cannot create a mount namespace"


def test_live_install_and_purge_in_a_throwaway_overlay(tmp_path: Path) -> None:
    """The real (non-DESTDIR) path: user, owners, tmpfiles, check-config; host untouched.

    /etc, /var and /opt are overlaid in a private mount namespace, so every write lands in
    tmp_path and disappears with the namespace.
    """
    reason = _live_possible()
    if reason:
        pytest.skip(reason)
    exe = Path(sys.executable).parent / "log-auditor"
    if not exe.exists():
        pytest.skip("log-auditor is not installed in this environment")
    host_before = (Path("/etc/passwd").read_text(), Path("/etc/log-auditor").exists())
    script = tmp_path / "live.sh"
    script.write_text(LIVE)
    env = {**os.environ, "T": str(tmp_path), "EXE": str(exe), "SRC": str(ROOT)}
    for key in ("PREFIX", "DESTDIR", "PURGE", "MAKEFLAGS"):
        env.pop(key, None)
    proc = subprocess.run(
        ["unshare", "--mount", "--", "sh", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0 and "overlay" in proc.stderr:
        pytest.skip(f"overlayfs unavailable: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "created system user log-auditor" in out
    assert "config OK: 1 sources" in out
    assert "750 root:log-auditor /etc/log-auditor\n" in out
    assert "640 root:log-auditor /etc/log-auditor/config.toml\n" in out
    assert "700 log-auditor:log-auditor /var/lib/log-auditor\n" in out
    assert "700 log-auditor:log-auditor /var/lib/log-auditor/reports\n" in out
    assert "644 root:root /etc/systemd/system/log-auditor.service\n" in out
    assert "user-removed" in out and "purged" in out
    # Nothing reached the host.
    assert (Path("/etc/passwd").read_text(), Path("/etc/log-auditor").exists()) == host_before

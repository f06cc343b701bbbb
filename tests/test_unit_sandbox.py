"""The daemon runs under the systemd unit's restrictions, without systemd.

The test starts `log-auditor run` with the unit's command line and the environment systemd
gives a `Type=notify` service, inside a re-creation of the unit's sandbox:

- always: a clean environment with ``NOTIFY_SOCKET`` (a datagram socket the test reads),
  ``WATCHDOG_USEC``/``WATCHDOG_PID``, ``JOURNAL_STREAM`` (stderr), ``STATE_DIRECTORY``,
  the unit's ``Environment=``; ``UMask=0077``; ``NoNewPrivileges``; when libseccomp and
  ``systemd-analyze`` are present, the unit's ``SystemCallFilter=`` (the same system-call
  list, expanded by systemd-analyze), ``MemoryDenyWriteExecute=`` and
  ``RestrictAddressFamilies=AF_UNIX`` as seccomp filters;
- as root with ``unshare`` and ``setpriv``: a private mount and network namespace in which
  ``/`` is read-only except the state directory (``ProtectSystem=strict`` +
  ``StateDirectory=``), the log directory is a read-only bind mount (``ReadOnlyPaths=``),
  ``/proc`` is remounted ``hidepid=invisible,subset=pid`` (``ProtectProc=``,
  ``ProcSubset=``), ``/dev`` holds only the pseudo devices (``PrivateDevices=``), there is
  no network (``PrivateNetwork=``), and the process runs as an unprivileged user with the
  ``adm`` group added (``User=``, ``SupplementaryGroups=adm``) and an empty capability
  bounding set.

Not re-created: ``PrivateTmp``/``ProtectHome`` (this machine's interpreter may live in a
home directory; the test's files live in /tmp) and the cgroup-based settings.

A first test checks the sandbox itself with a probe program, so that the daemon test
means something; the daemon test skips until the daemon can run.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "log-auditor.service"
VENV_BIN = Path(sys.executable).parent
EXE = VENV_BIN / "log-auditor"
NOBODY, ADM = 65534, 4
WATCHDOG_USEC = 2_000_000  # the unit says 60 s; 2 s lets the test see pings quickly


def _unit() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


UNIT_SETTINGS = _unit()


# --- the system-call filter, as systemd would build it ------------------------------------


def _groups() -> dict[str, list[str]]:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return {}
    text = subprocess.run(
        [exe, "syscall-filter"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = line.strip()
            groups[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            groups[current].append(line.strip())
    return groups


def _expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= _expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def allowed_syscalls() -> list[str] | None:
    """The unit's SystemCallFilter= lines, applied in order (`~` removes)."""
    groups = _groups()
    if not groups:
        return None
    allowed: set[str] = set()
    for value in UNIT_SETTINGS.get("SystemCallFilter", []):
        if value.startswith("~"):
            allowed -= _expand(value[1:].split(), groups)
        else:
            allowed |= _expand(value.split(), groups)
    return sorted(allowed)


def _libseccomp() -> str | None:
    for name in ("libseccomp.so.2", "libseccomp.so"):
        try:
            import ctypes

            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    return None


# The last step before exec: what systemd does in the forked child after setting up the
# namespaces and the user. Runs with the target interpreter; no project code.
LAUNCHER = textwrap.dedent(
    r"""
    import ctypes, errno, json, os, sys
    spec = json.loads(os.environ.pop("SANDBOX_SPEC"))
    for key in [k for k in os.environ if k.startswith("SB_")]:
        del os.environ[key]
    os.umask(int(spec["umask"], 8))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise SystemExit("cannot set no_new_privs")
    if spec.get("seccomp"):
        sc = ctypes.CDLL(spec["seccomp"], use_errno=True)
        sc.seccomp_init.restype = ctypes.c_void_p
        sc.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]

        class Cmp(ctypes.Structure):
            _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                        ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]

        sc.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(Cmp)]
        sc.seccomp_load.argtypes = [ctypes.c_void_p]
        ALLOW, ERRNO = 0x7FFF0000, lambda e: 0x00050000 | e
        NE, MASKED_EQ = 1, 7

        def nr(name):
            return sc.seccomp_syscall_resolve_name(name.encode())

        def load(ctx):
            if sc.seccomp_load(ctx) != 0:
                raise SystemExit("seccomp_load failed")

        def rule(ctx, action, name, *cmps):
            n = nr(name)
            if n == -1:
                return
            arr = (Cmp * max(1, len(cmps)))(*cmps)
            rc = sc.seccomp_rule_add_array(ctx, action, n, len(cmps), arr)
            if rc not in (0, -errno.EEXIST):
                raise SystemExit(f"seccomp rule for {name}: {rc}")

        # MemoryDenyWriteExecute= and RestrictAddressFamilies=AF_UNIX, as separate filters
        # (the kernel applies the strictest answer of all filters). First: the allow list
        # below would refuse the seccomp() call that loads a further filter.
        ctx = sc.seccomp_init(ALLOW)
        wx = 0x2 | 0x4  # PROT_WRITE | PROT_EXEC
        rule(ctx, ERRNO(errno.EPERM), "mmap", Cmp(2, MASKED_EQ, wx, wx))
        rule(ctx, ERRNO(errno.EPERM), "mprotect", Cmp(2, MASKED_EQ, 0x4, 0x4))
        rule(ctx, ERRNO(errno.EPERM), "pkey_mprotect", Cmp(2, MASKED_EQ, 0x4, 0x4))
        rule(ctx, ERRNO(errno.EPERM), "shmat", Cmp(2, MASKED_EQ, 0o100000, 0o100000))
        rule(ctx, ERRNO(errno.EAFNOSUPPORT), "socket", Cmp(0, NE, 1, 0))  # AF_UNIX only
        load(ctx)
        # SystemCallFilter= (allow list, EPERM otherwise; SystemCallArchitectures=native:
        # libseccomp kills foreign-ABI calls).
        ctx = sc.seccomp_init(ERRNO(errno.EPERM))
        for name in spec["allow"]:
            rule(ctx, ALLOW, name)
        load(ctx)
    os.execve(spec["argv"][0], spec["argv"], os.environ)
    """
)

# Inside the new mount namespace, as root, before dropping to the service user.
MOUNTS = textwrap.dedent(
    """\
    set -eu
    mount --make-rprivate /
    mount --bind "$SB_STATE" "$SB_STATE"
    mount --bind -o ro "$SB_LOGS" "$SB_LOGS"
    mount -o remount,bind,ro "$SB_LOGS"
    mount -t proc -o hidepid=invisible,subset=pid proc /proc
    mount -t tmpfs -o mode=0755,nosuid,noexec tmpfs /dev
    mknod -m 0666 /dev/null c 1 3
    mknod -m 0666 /dev/zero c 1 5
    mknod -m 0666 /dev/full c 1 7
    mknod -m 0666 /dev/random c 1 8
    mknod -m 0666 /dev/urandom c 1 9
    mount -o remount,bind,ro /
    exec setpriv --reuid="$SB_UID" --regid="$SB_GID" --groups="$SB_GROUPS" \\
        --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
    """
)


def service_uid() -> int:
    """The unprivileged user when it can run this interpreter, else root without capabilities.

    A venv made from an interpreter under /root (pyenv) cannot be run by another user; a real
    installation uses a system Python (see the operator guide). Root with an empty bounding
    set still cannot bypass file permissions, and writes nothing outside the state directory.
    """
    probe = subprocess.run(
        [
            "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--",
            "sh", "-c", '"$0" -c pass', sys.executable,
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )  # fmt: skip
    return NOBODY if probe.returncode == 0 else 0


def full_sandbox_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--net", "--ipc", "--uts", "--", "true"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


class Sandbox:
    """Runs a command the way the unit would, and collects its sd_notify messages."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.full = full_sandbox_available()
        self.uid = service_uid() if self.full else os.getuid()
        self.logs = base / "log"
        self.state = base / "state"
        self.etc = base / "etc"
        for d in (self.logs, self.state, self.etc):
            d.mkdir(parents=True)
        self.notify_path = base / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.notify_path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self.launcher = base / "launcher.py"
        self.launcher.write_text(LAUNCHER)
        self.mounts = base / "mounts.sh"
        self.mounts.write_text(MOUNTS)
        self.seccomp = _libseccomp()
        self.allow = allowed_syscalls() if self.seccomp else None
        if self.full:
            # Debian's layout: logs root:adm 0640 in a root:adm 0750 directory; the state
            # directory belongs to the service user (StateDirectory=), the config is
            # root:<service group> 0640 in a 0750 directory (ConfigurationDirectory=).
            os.chmod(base, 0o755)
            os.chown(self.logs, 0, ADM)
            os.chmod(self.logs, 0o750)
            os.chown(self.state, self.uid, self.uid)
            os.chmod(self.state, 0o700)
            os.chown(self.etc, 0, self.uid)
            os.chmod(self.etc, 0o750)
            for p in base.parents:  # pytest's tmp directories are 0700
                if p == Path("/tmp") or p == p.parent:
                    break
                os.chmod(p, os.stat(p).st_mode | 0o011)

    def log_file(self, name: str, text: str) -> Path:
        path = self.logs / name
        path.write_text(text)
        if self.full:
            os.chown(path, 0, ADM)
            os.chmod(path, 0o640)
        return path

    def config(self, text: str) -> Path:
        path = self.etc / "config.toml"
        path.write_text(text)
        if self.full:
            os.chown(path, 0, self.uid)
            os.chmod(path, 0o640)
        return path

    def start(self, argv: list[str]) -> tuple[subprocess.Popen[bytes], int]:
        """Start ``argv`` sandboxed; returns the process and the read end of its stderr."""
        r, w = os.pipe()
        st = os.fstat(w)
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "NOTIFY_SOCKET": str(self.notify_path),
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
            "INVOCATION_ID": "0123456789abcdef0123456789abcdef",
            "STATE_DIRECTORY": str(self.state),
            "CONFIGURATION_DIRECTORY": str(self.etc),
            "HOME": str(self.state),
            "USER": "nobody" if self.uid == NOBODY else "root",
        }
        for value in UNIT_SETTINGS.get("Environment", []):
            for item in value.split():
                key, _, val = item.partition("=")
                env[key] = val
        spec = {
            "umask": UNIT_SETTINGS["UMask"][0],
            "seccomp": self.seccomp if self.allow else None,
            "allow": self.allow or [],
            "argv": argv,
        }
        # The service's main process is the one systemd forks: WATCHDOG_PID is its pid.
        # A shell sets it and execs, so the pid stays the same through every exec below.
        inner = [sys.executable, str(self.launcher)]
        if self.full:
            env.update(
                SB_STATE=str(self.state),
                SB_LOGS=str(self.logs),
                SB_UID=str(self.uid),
                SB_GID=str(self.uid),
                SB_GROUPS=str(ADM),
            )
            inner = [
                "unshare", "--mount", "--net", "--ipc", "--uts", "--",
                "sh", str(self.mounts), *inner,
            ]  # fmt: skip
        env["SANDBOX_SPEC"] = json.dumps(spec)
        cmd = ["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh", *inner]
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=w, stderr=w, close_fds=True
        )
        os.close(w)
        return proc, r

    def wait_for(self, prefix: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.startswith(prefix) for m in self.messages for line in m.splitlines()):
                return True
            self.drain()
        return any(line.startswith(prefix) for m in self.messages for line in m.splitlines())

    def drain(self) -> None:
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            pass

    def close(self) -> None:
        self.sock.close()


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    sb = Sandbox(tmp_path / "sb")
    yield sb
    sb.close()


PROBE = textwrap.dedent(
    r"""
    import ctypes, errno, mmap, os, socket, sys
    logs, state = sys.argv[1], sys.argv[2]
    out = {}
    def attempt(name, fn):
        try:
            fn()
            out[name] = "ok"
        except OSError as exc:
            out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
    attempt("read_log", lambda: open(os.path.join(logs, "access.log")).read())
    attempt("write_log_dir", lambda: open(os.path.join(logs, "new.log"), "w").close())
    attempt("write_state", lambda: open(os.path.join(state, "f"), "w").close())
    attempt("write_etc", lambda: open("/etc/log-auditor-probe", "w").close())
    attempt("inet_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    attempt("unix_socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
    attempt("wx_mmap", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC))
    libc = ctypes.CDLL(None, use_errno=True)
    def syscall_mount():
        if libc.mount(b"none", b"/mnt", b"tmpfs", 0, None) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    attempt("mount", syscall_mount)
    out["umask"] = oct(os.umask(0))
    out["uid"] = os.getuid()
    out["nnp"] = open("/proc/self/status").read().split("NoNewPrivs:")[1].split()[0]
    out["other_pids_visible"] = any(p.isdigit() and int(p) != os.getpid() and p != "1"
                                    for p in os.listdir("/proc"))
    print(repr(out))
    """
)


def test_the_sandbox_is_real(sandbox: Sandbox) -> None:
    if sandbox.allow is None and not sandbox.full:
        pytest.skip("neither seccomp (libseccomp + systemd-analyze) nor namespaces available")
    sandbox.log_file("access.log", "x\n")
    probe = sandbox.base / "probe.py"
    probe.write_text(PROBE)
    os.chmod(probe, 0o644)
    proc, err = sandbox.start([sys.executable, str(probe), str(sandbox.logs), str(sandbox.state)])
    output = _read_all(err)
    assert proc.wait(timeout=60) == 0, output
    result = ast.literal_eval(output.strip().splitlines()[-1])
    assert result["umask"] == "0o77"
    assert result["nnp"] == "1"
    assert result["read_log"] == "ok"
    assert result["write_state"] == "ok"
    assert result["unix_socket"] == "ok"
    if sandbox.allow is not None:
        assert result["inet_socket"] == "EAFNOSUPPORT"
        assert result["wx_mmap"] in ("EPERM", "EACCES")
        assert result["mount"] == "EPERM"
    if sandbox.full:
        assert result["uid"] == sandbox.uid
        assert result["write_log_dir"] in ("EROFS", "EACCES")
        assert result["write_etc"] in ("EROFS", "EACCES")
        if sandbox.uid != 0:  # hidepid hides other users' processes; root's are all root's
            assert result["other_pids_visible"] is False


def _daemon_runnable() -> str | None:
    """Why the daemon cannot run yet, or None."""
    if not EXE.exists():
        return f"{EXE} is not installed"
    for mod in ("auditor.daemon", "auditor.engine"):
        try:
            __import__(mod)
        except ImportError as exc:
            return f"{mod} is not importable yet: {exc}"
    return None


def _bundled_rules_load() -> bool:
    from auditor.errors import RulesetError
    from auditor.rules import bundled_rules_dir, load_rulesets

    try:
        load_rulesets([bundled_rules_dir()])
    except RulesetError:
        return False
    return True


def _lines(start: int, n: int) -> str:
    return "".join(
        f"192.0.2.{i % 200 + 1} - - [20/Nov/2026:10:{i // 60 % 60:02d}:{i % 60:02d} +0000] "
        f'"GET /v1/items/{i} HTTP/1.1" 200 {100 + i} "-" "sandbox-test/1.0"\n'
        for i in range(start, start + n)
    )


def _argv(exec_line: str, config: Path) -> list[str]:
    """The unit's Exec line with this environment's binary and the test's config."""
    argv = exec_line.split()
    assert argv[0] == "/opt/log-auditor/bin/log-auditor"
    argv[0] = str(EXE)
    i = argv.index("--config")
    assert argv[i + 1] == "/etc/log-auditor/config.toml"
    argv[i + 1] = str(config)
    return argv


def _stored_events(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT coalesce(sum(n), 0) FROM event_blocks").fetchall()[0][0])
    finally:
        conn.close()


def test_daemon_runs_under_the_unit(sandbox: Sandbox) -> None:
    reason = _daemon_runnable()
    if reason:
        pytest.skip(reason)
    sandbox.log_file("access.log", _lines(0, 500))
    db = sandbox.state / "audit.db"
    # The bundled rules, unless they do not load (then rules tests say why): this test is
    # about the sandbox, and runs the pipeline either way.
    bundled = "true" if _bundled_rules_load() else "false"
    config = sandbox.config(
        textwrap.dedent(
            f"""\
            [store]
            path = "{db}"

            [[source]]
            name = "api"
            path = "{sandbox.logs / "access.log"}"
            format = "nginx-combined"
            scheme = "https"
            start = "beginning"

            [report]
            output_dir = "{sandbox.state / "reports"}"

            [rules]
            bundled = {bundled}

            [daemon]
            batch_seconds = 0.05
            poll_interval = 0.2
            """
        )
    )

    # ExecStartPre: the config check, in the same sandbox.
    pre, err = sandbox.start(_argv(UNIT_SETTINGS["ExecStartPre"][0], config))
    pre_out = _read_all(err)
    assert pre.wait(timeout=60) == 0, pre_out
    assert "config OK: 1 sources" in pre_out

    proc, err = sandbox.start(_argv(UNIT_SETTINGS["ExecStart"][0], config))
    try:
        assert sandbox.wait_for("READY=1", 30), sandbox.messages
        # More lines after readiness: written from outside, where the directory is writable.
        with (sandbox.logs / "access.log").open("a") as f:
            f.write(_lines(500, 250))
        assert sandbox.wait_for("WATCHDOG=1", 10), sandbox.messages
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _stored_events(db) < 750:
            time.sleep(0.2)
        assert any(m.startswith("STATUS=") for m in "\n".join(sandbox.messages).splitlines())
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)  # the unit's TimeoutStopSec: systemd kills after it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = _read_all(err)
    sandbox.drain()
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr
    # JOURNAL_STREAM matched: every line carries a syslog priority for journald.
    for line in stderr.splitlines():
        assert re.match(r"<[0-7]>", line), line
    assert _stored_events(db) == 750  # every line once: nothing lost, nothing doubled
    # UMask=0077: everything the daemon created is owner-only, and owned by the service user.
    for p in [db, *sandbox.state.rglob("*")]:
        if p.exists() and not p.is_symlink():
            mode = stat.S_IMODE(p.stat().st_mode)
            assert mode & 0o077 == 0, f"{p}: {oct(mode)}"
            if sandbox.full:
                assert p.stat().st_uid == sandbox.uid, p
    assert sorted(p.name for p in sandbox.logs.iterdir()) == ["access.log"]

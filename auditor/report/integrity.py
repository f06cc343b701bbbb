"""Tamper evidence for the reports in a directory: ``.sha256`` files and a hash chain.

Each report gets ``<name>.pdf.sha256`` (``sha256sum -c`` format) and one line in the
directory's ``manifest.jsonl``. Every line holds the hash of the line before it and its own
hash over its content, so an edited, replaced or deleted report, or an edited manifest line,
breaks the chain; ``verify`` says where. Pruning by retention is itself a manifest line,
so a pruned report is accounted for rather than missing. The chain head printed by
``verify`` can be kept elsewhere to detect truncation of the manifest's tail.

Files are written atomically (temporary file in the same directory, fsync, rename) and
owner-only; a lock file serialises writers (the daemon's scheduler and a manual run).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

MANIFEST = "manifest.jsonl"
LOCK = ".manifest.lock"
GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    kind: str  # "report" | "prune"
    file: str
    sha256: str
    prev: str
    hash: str
    fields: dict[str, Any] = field(default_factory=dict)  # report_id, job, period, ...


@dataclass(frozen=True, slots=True)
class Verification:
    checked: int
    problems: tuple[str, ...]
    head: str

    @property
    def ok(self) -> bool:
        return not self.problems


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_dir(path: Path) -> None:
    """Create the report directory owner-only (0700) if it does not exist."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never half."""
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sidecar(pdf: Path) -> Path:
    return pdf.with_name(pdf.name + ".sha256")


def unique_path(path: Path) -> Path:
    """``path``, or ``name-r2.pdf``, ``name-r3.pdf`` ...: a report is never overwritten."""
    if not path.exists():
        return path
    n = 2
    while True:
        candidate = path.with_name(f"{path.stem}-r{n}{path.suffix}")
        if not candidate.exists():
            return candidate
        n += 1


@contextmanager
def manifest_lock(directory: Path) -> Iterator[None]:
    """Exclusive lock over a report directory's manifest (blocks until free)."""
    ensure_dir(directory)
    fd = os.open(directory / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _entry_hash(body: dict[str, Any]) -> str:
    return sha256_bytes(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))


def _parse(line: bytes) -> Entry:
    d = orjson.loads(line)
    if not isinstance(d, dict):
        raise TypeError("not a JSON object")
    core = {k: d[k] for k in ("seq", "kind", "file", "sha256", "prev", "hash")}
    extra = {k: v for k, v in d.items() if k not in core}
    return Entry(fields=extra, **core)


def read_manifest(directory: Path) -> list[Entry]:
    """The manifest's entries; a line that does not parse raises ``ValueError``."""
    path = directory / MANIFEST
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(_parse(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: line {n}: {exc}") from None
    return out


def append_entry(directory: Path, kind: str, file: str, sha256: str, **fields: Any) -> Entry:
    """Append one chained line; call under ``manifest_lock``."""
    entries = read_manifest(directory)
    prev = entries[-1].hash if entries else GENESIS
    seq = entries[-1].seq + 1 if entries else 1
    body: dict[str, Any] = {"seq": seq, "kind": kind, "file": file, "sha256": sha256, "prev": prev}
    body.update(fields)
    digest = _entry_hash(body)
    line = orjson.dumps({**body, "hash": digest}, option=orjson.OPT_SORT_KEYS) + b"\n"
    path = directory / MANIFEST
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return Entry(seq, kind, file, sha256, prev, digest, dict(fields))


def last_report(directory: Path) -> Entry | None:
    """The newest report entry (for the chain reference printed in the next report)."""
    for e in reversed(read_manifest(directory)):
        if e.kind == "report":
            return e
    return None


def store_report(directory: Path, path: Path, pdf: bytes, **fields: Any) -> Entry:
    """Write the PDF and its ``.sha256`` atomically, then chain it; call under the lock."""
    digest = sha256_bytes(pdf)
    write_atomic(path, pdf)
    write_atomic(sidecar(path), f"{digest}  {path.name}\n".encode())
    return append_entry(directory, "report", path.name, digest, **fields)


def prune(directory: Path, expired: list[Entry], at: str) -> list[str]:
    """Delete expired reports and their ``.sha256``, recording each in the chain."""
    removed = []
    for e in expired:
        pdf = directory / e.file
        if pdf.exists():
            pdf.unlink()
        sidecar(pdf).unlink(missing_ok=True)
        append_entry(directory, "prune", e.file, e.sha256, reason="retention", at=at)
        removed.append(e.file)
    return removed


def verify(directory: Path) -> Verification:
    """Check the chain, every listed report's hash and ``.sha256``, and unlisted PDFs."""
    problems: list[str] = []
    try:
        entries = read_manifest(directory)
    except ValueError as exc:
        return Verification(0, (str(exc),), "")
    if not entries:
        pdfs = sorted(p.name for p in directory.glob("*.pdf"))
        msg = f"{directory}: no {MANIFEST}" + (f" but {len(pdfs)} report(s)" if pdfs else "")
        return Verification(0, (msg,), "")
    prev, expect_seq = GENESIS, 1
    pruned = {e.file for e in entries if e.kind == "prune"}
    listed: set[str] = set()
    checked = 0
    for e in entries:
        where = f"{MANIFEST} entry {e.seq} ({e.file})"
        body = {"seq": e.seq, "kind": e.kind, "file": e.file, "sha256": e.sha256, "prev": e.prev}
        body.update(e.fields)
        if e.seq != expect_seq:
            problems.append(f"{where}: sequence {e.seq}, expected {expect_seq} (entry missing?)")
        if e.prev != prev:
            problems.append(f"{where}: does not chain to the entry before it")
        if _entry_hash(body) != e.hash:
            problems.append(f"{where}: content does not match its hash (edited)")
        prev, expect_seq = e.hash, e.seq + 1
        if e.kind != "report":
            continue
        listed.add(e.file)
        pdf = directory / e.file
        if not pdf.exists():
            if e.file not in pruned:
                problems.append(f"{e.file}: listed in the manifest but missing")
            continue
        checked += 1
        actual = sha256_file(pdf)
        if actual != e.sha256:
            problems.append(f"{e.file}: SHA-256 {actual} differs from the manifest (modified)")
        side = sidecar(pdf)
        if not side.exists():
            problems.append(f"{side.name}: missing")
        elif side.read_text(errors="replace").split()[:1] != [e.sha256]:
            problems.append(f"{side.name}: does not match the manifest")
    problems.extend(
        f"{p.name}: not in the manifest"
        for p in sorted(directory.glob("*.pdf"))
        if p.name not in listed
    )
    return Verification(checked, tuple(problems), prev)

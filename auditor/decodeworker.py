"""Worker processes that split, decode and pack lines while this one detects and stores.

One Python thread can parse, redact, detect and store about 30,000 lines a second; the
machine has more cores than that. Decoding keeps no state across lines except per file
(the line splitter, ``auto``'s choice, W3C columns), so the chunks of a file can go to
several workers (``DecodePool``) when each chunk starts at a line and the format keeps no
per-file state (``spreadable``); detection, which needs every event in log order, stays
here. Chunks go out as raw bytes (``scan``) or split lines (the daemon); a worker sends
back per chunk the counters and aggregates and the events serialized into store blocks,
plus their exact timestamps, each distinct one once; this process rebuilds the events
from the rows when it detects. With rules, a worker also runs the detector's sieve (the
per-event bulk gating, which needs no other event) for this process's rules
(``use_sieve``) and sends its marks along, and the columns the detectors read over every
event: this process then builds only the events its detectors look at one by one.

``scan`` uses workers for large inputs (``PARALLEL_MIN_BYTES``), the daemon when
``decode_worker`` is on. The daemon's workers are new ``python`` processes (about 0.15 s
each to start: the interpreter and the imports); a scan's are forked from it
(``DecodePool(fork=True)``), with every module already imported, while it has no other
thread.
"""

from __future__ import annotations

import fcntl
import gc
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditor.errors import AuditorError
from auditor.formats import FormatSpec, build_decoder
from auditor.formats.registry import parser_for
from auditor.formats.w3c import W3cParser
from auditor.gctune import tune_for_ingest
from auditor.lines import LineSplitter, flatten_lines, unflatten_lines
from auditor.model import Event, Line
from auditor.packedevents import pack, take
from auditor.pipeline import Batch, Decoder, Marks, Pipeline, SieveRules
from auditor.redact import Redactor

if TYPE_CHECKING:
    import subprocess

    from auditor.detect import Detector

PARALLEL_MIN_BYTES = 32 * 1024 * 1024
MORE, END_PLAIN, END_COMPRESSED = 0, 1, 2
PARENT_CHECK = 2.0  # seconds between checks that the parent still lives
ALIVE_EVERY = 1.0  # seconds between checks, when sending, that a worker still lives
LINES = "\x00lines"  # a message of already split lines (the daemon's), not of raw bytes
RULES = "\x00rules"  # a message of the rules to sieve for (``SieveRules``)


class WorkerError(AuditorError):
    """The decode worker failed or died; the scan stops with what was committed."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """What the worker sends back for one chunk of one file."""

    batch: Batch  # events (see ``auditor.packedevents``), counters, aggregates, serialized blocks
    offset: int  # the file offset just after the last complete line seen so far
    pending: bool  # a partial last line waits


def child_main() -> None:
    """The worker process's entry: ``python -c "from auditor.decodeworker import
    child_main; child_main()" TASK_FD RESULT_FD MAX_LINE PARENT_PID``. The redaction key
    comes first on the task pipe (never in the command line or the environment)."""
    task_fd, result_fd, max_line, parent = (int(a) for a in sys.argv[1:5])
    _run(task_fd, result_fd, max_line, parent)
    # Nothing is left to flush (results go out unbuffered): no interpreter teardown, which
    # the parent, waiting for its workers to end, would wait for.
    os._exit(0)


def _run(task_fd: int, result_fd: int, max_line: int, parent: int) -> None:
    tasks = _Pipe(task_fd)
    conn = _Pipe(result_fd)
    try:
        key = tasks.recv_bytes()
    except (EOFError, OSError):
        return
    _serve(tasks, conn, key, max_line, parent)


def _forked_main(task_fd: int, result_fd: int, max_line: int, parent: int) -> None:
    """The worker forked from a scan (``DecodePool(fork=True)``): this process is a copy
    of the parent, which had no other thread. Keeps only its two pipes of the parent's
    files (another worker's task pipe held open here would hide the parent's closing it
    from that worker), reads nothing from the terminal, and leaves the parent's objects
    out of its collections: they are never finalized here (the caller ends with
    ``os._exit``), so nothing of the parent's (its store, its buffered output) is closed
    or flushed twice."""
    gc.freeze()
    lo, hi = sorted((task_fd, result_fd))
    os.closerange(3, lo)
    os.closerange(lo + 1, hi)
    os.closerange(hi + 1, _max_fd())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    _run(task_fd, result_fd, max_line, parent)


def _max_fd() -> int:
    try:
        return max(int(os.sysconf("SC_OPEN_MAX")), 1024)
    except (OSError, ValueError):
        return 65536


class _Forked:
    """A forked worker, with what ``DecodeWorker`` uses of a ``subprocess.Popen``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                got, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                self.returncode = -1
                return self.returncode
            if got:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if the worker still runs after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.0005
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        return code

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _fork(task_fd: int, result_fd: int, max_line: int) -> _Forked:
    """Start a worker as a fork of this process (see ``_forked_main``)."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:
        _forked_main(task_fd, result_fd, max_line, parent)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:  # noqa: BLE001 - reported, then this process ends
        try:
            os.write(2, traceback.format_exc().encode(errors="replace"))
        except OSError:
            pass
    finally:
        os._exit(code)


def can_fork() -> bool:
    """Whether a worker may be forked from this process: only while it has no other
    thread (a lock another thread holds would stay held in the copy)."""
    return hasattr(os, "fork") and threading.active_count() == 1


def _serve(tasks: _Pipe, conn: _Pipe, key: bytes, max_line: int, parent: int) -> None:
    """The worker's loop (runs in the child process); ``parent``: the parent's pid."""
    # Ctrl-C reaches the terminal's whole process group: the parent, which stops this
    # worker itself once its last batch is decoded, decides (no traceback from here).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    redactor = Redactor(key)
    decoders: dict[str, Decoder] = {}
    specs: dict[str, FormatSpec] = {}
    pipeline = Pipeline(decoders, None)
    splitters: dict[str, LineSplitter] = {}
    sieve: _Sieve | None = None
    tune_for_ingest()

    def use(source: str, spec: FormatSpec) -> None:
        if specs.get(source) != spec:
            specs[source] = spec
            decoders[source] = build_decoder(spec, redactor, source)

    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    while True:
        try:
            msg = pickle.loads(tasks.recv_bytes())
        except (EOFError, OSError):  # the parent closed its end, or is gone
            return
        if msg is None:
            return
        if msg[0] == RULES:
            sieve = None if msg[1] is None else _load_sieve(msg[1])
            continue
        if msg[0] == LINES:
            _, source_specs, runs = msg
            for source, spec in source_specs.items():
                use(source, spec)
            _reply(conn, pipeline.decode(unflatten_lines(runs)), 0, False, sieve)
            continue
        file_id, source, spec, path, offset, end = msg
        try:
            data = tasks.recv_bytes()  # the chunk itself, in a message of its own
        except (EOFError, OSError):
            return
        use(source, spec)
        got = decode_chunk(pipeline, splitters, max_line, file_id, source, path, offset, data, end)
        _reply(conn, got.batch, got.offset, got.pending, sieve)


def decode_chunk(
    pipeline: Pipeline,
    splitters: dict[str, LineSplitter],
    max_line: int,
    file_id: str,
    source: str,
    path: str,
    offset: int,
    data: bytes,
    end: int,
) -> Chunk:
    """Split and decode one chunk of a file (``splitters``: the partial line held per
    file), as a worker does with a chunk sent to it; the batch's events stay as built."""
    sp = splitters.get(file_id)
    if sp is None:
        if data[-1:] == b"\n":  # whole lines (the parent cuts chunks after a newline)
            whole = pipeline.decode_whole_lines(source, path, offset, data, max_line)
            if whole is not None:
                return Chunk(whole, offset + len(data), False)
        sp = splitters[file_id] = LineSplitter(source, path, offset, max_line)
    lines = sp.feed(data)
    if end == END_COMPRESSED and sp.pending:
        lines.extend(sp.feed(b"\n"))  # a finished compressed file: its last line is whole
    batch = pipeline.decode(lines)
    if end != MORE or sp.idle:
        # Between whole lines a splitter holds nothing: the file's next chunk may go to
        # another worker of the pool, which starts a splitter at that chunk's offset.
        del splitters[file_id]
    return Chunk(batch, sp.offset, bool(sp.pending))


def _exit_with_parent(parent: int) -> None:
    """A killed parent never says goodbye: its end of the task pipe closes (this process
    holds no write end of it, so a read then ends), but a decode under way would still run
    to its end first. Exit as soon as the parent is gone, wherever the loop is."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK)
    os._exit(0)


@dataclass(frozen=True, slots=True)
class _Sieve:
    """The parent's rules, loaded here: ``mark`` sieves a batch's events for them."""

    detector: Detector
    token: str

    def mark(self, events: list[Event], columns: dict[str, list[Any]]) -> Marks:
        return self.detector.sieve(events, self.token, columns)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.detector.columns


def _load_sieve(rules: SieveRules) -> _Sieve | None:
    """The parent's rules, if they load here as they did there (same files, same rules);
    else None: the parent then sieves itself, as without a worker."""
    from auditor.detect import Detector
    from auditor.rules import load_rulesets

    try:
        ruleset = load_rulesets([Path(p) for p in rules.paths], rules.overrides)
    except (AuditorError, OSError):  # changed since the parent loaded them: its load stands
        return None
    if ruleset.sha256 != rules.sha256 or tuple(r.id for r in ruleset.rules) != rules.rule_ids:
        return None
    return _Sieve(Detector(ruleset), rules.token)


def _reply(
    conn: _Pipe, batch: Batch, offset: int, pending: bool, sieve: _Sieve | None = None
) -> None:
    """Send one decoded chunk back, its events serialized into store blocks (and sieved
    for the parent's rules, so that the parent, which detects, need not)."""
    events = batch.events
    columns = None
    # The columns the sieve read (pack reuses them); all of them when the events were
    # decoded into their rows (``Batch.table``)
    read: dict[str, list[Any]] = dict(batch.table.columns or {}) if batch.table else {}
    if sieve is not None and events:
        batch.marks = sieve.mark(events, read)
        # What the parent's detectors read of every event, so that it builds only the
        # events they look at one by one.
        columns = sieve.columns
    # The parent rebuilds the events from the rows as serialized for the store (one
    # serialisation, not two; the store compresses them, in a thread of the parent where
    # zlib runs without the GIL); see auditor.packedevents.
    packed = (
        pack(events, batch.event_ms, columns, read)
        if batch.table is None
        else batch.table._replace(columns=None if columns is None else take(read, columns, events))
    )
    batch.table = None
    batch.packed = packed.blocks
    batch.dropped = len(events)  # until the parent rebuilds them
    batch.events = []
    batch.event_ms = []
    try:
        conn.send_bytes(
            pickle.dumps(
                (batch, packed._replace(blocks=[]), offset, pending),
                protocol=pickle.HIGHEST_PROTOCOL,
            )
        )
    except (BrokenPipeError, ConnectionResetError):  # the parent is gone
        raise SystemExit(0) from None


class DecodeWorker:
    """The parent's handle: ``send`` chunks in file order, ``receive`` their results in the
    same order. Keep a few chunks in flight so both processes stay busy (the caller counts
    them).

    The worker is a plain ``python`` child started with ``subprocess`` and two pipes, not
    a ``multiprocessing`` process: spawn also starts a resource-tracker process (13 MiB
    for nothing here) and runs the parent's main script again in the child (the console
    script: click and the whole CLI imported in every worker).

    ``fork``: fork the worker from this process instead if it has no other thread
    (``can_fork``), as a scan does: no interpreter to start, nothing to import again.
    ``start``: start the threads that talk to it now; a pool forks every worker first
    and then starts them (``start``)."""

    def __init__(
        self, key: bytes, max_line: int, *, fork: bool = False, start: bool = True
    ) -> None:
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        for fd in (task_w, result_w):
            _widen(fd)
        self._proc: subprocess.Popen[bytes] | _Forked
        try:
            if fork and can_fork():
                self._proc = _fork(task_r, result_w, max_line)
            else:
                self._proc = self._exec(task_r, result_w, max_line)
        except BaseException:
            for fd in (task_w, result_r):
                os.close(fd)
            raise
        finally:
            os.close(task_r)
            os.close(result_w)
        self._task_w, self._result_r = task_w, result_r
        self.key = key
        self._sieve: SieveRules | None = None
        self._poll_at = 0.0
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._started = False
        self._finishing = False
        self._feeder: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        if start:
            self.start()

    @staticmethod
    def _exec(task_r: int, result_w: int, max_line: int) -> subprocess.Popen[bytes]:
        import subprocess  # here: a scan, which forks, never pays for its import

        return subprocess.Popen(
            [
                sys.executable,
                *subprocess._args_from_interpreter_flags(),  # type: ignore[attr-defined]
                "-c",
                "from auditor.decodeworker import child_main; child_main()",
                str(task_r),
                str(result_w),
                str(max_line),
                str(os.getpid()),
            ],
            pass_fds=(task_r, result_w),
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> None:
        """Start talking to the worker (once)."""
        if self._started:
            return
        self._started = True
        # Chunks are written by a thread of their own: a send never waits on a receive,
        # so the two processes cannot deadlock on full pipes. Results are read by another
        # as soon as they come: a result is larger than a pipe holds, and the worker
        # waited, unable to start its next chunk, until this process came to read it.
        self._feeder = threading.Thread(
            target=_feed,
            args=(_Pipe(self._task_w), self._outbox),
            daemon=True,
        )
        self._feeder.start()
        self._reader = threading.Thread(
            target=_drain,
            args=(_Pipe(self._result_r), self._inbox),
            daemon=True,
        )
        self._reader.start()
        self._outbox.put(self.key)

    def _alive(self) -> None:
        """Raise if the worker is known dead, looking at most every ``ALIVE_EVERY``
        seconds: ``poll`` is a system call that lets go of the GIL, and the daemon's event
        loop paid for getting it back on every part sent. A death not seen here is seen
        by ``receive`` (its pipe closes)."""
        now = time.monotonic()
        if now < self._poll_at:
            return
        self._poll_at = now + ALIVE_EVERY
        code = self._proc.poll()
        if code is not None:
            raise WorkerError(f"the decode worker died (exit code {code})")

    def _put(self, msg: object) -> None:
        self._alive()
        self._outbox.put(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))

    def send(
        self,
        file_id: str,
        source: str,
        spec: FormatSpec,
        path: str,
        offset: int,
        data: bytes,
        end: int = MORE,
    ) -> None:
        """``offset``: where ``data`` starts in the file (used when this worker holds no
        partial line of the file); ``end``: MORE, END_PLAIN or END_COMPRESSED (complete an
        unterminated last line)."""
        self._put((file_id, source, spec, path, offset, end))
        # The chunk goes as it is, after its header: pickled with it, its megabyte was
        # copied twice more, once here and once in the worker (0.6 us a Traefik line)
        self._outbox.put(data)

    def use_sieve(self, rules: SieveRules | None) -> None:
        """Sieve what is sent from now on for these rules (None: stop sieving)."""
        if rules is not self._sieve:
            self._sieve = rules
            self._put((RULES, rules))

    def send_lines(self, specs: Mapping[str, FormatSpec], lines: Sequence[Line]) -> None:
        """Decode lines already split (the daemon's); ``specs``: the format of each source
        among them (a changed one rebuilds that source's decoder in the worker)."""
        wanted = {ln.source for ln in lines}
        self._put((LINES, {s: specs[s] for s in wanted if s in specs}, flatten_lines(lines)))

    def ready(self) -> bool:
        """Whether a result waits to be received."""
        return not self._inbox.empty()

    def receive(self, *, events: bool = True) -> Chunk:
        """The next result; ``events=False`` leaves its events unbuilt (as rows in
        ``packed``, counted in ``dropped``): a scan without rules never needs them."""
        raw = self._inbox.get()
        if raw is None:  # the result pipe closed: the worker is gone
            self._inbox.put(None)  # and stays gone for any later receive
            code = _wait(self._proc, 1.0)
            raise WorkerError(f"the decode worker died (exit code {code})") from None
        batch, packed, offset, pending = pickle.loads(raw)
        if events:
            # Sieved there: the detectors read columns and build the few events they look
            # at; otherwise every event is wanted.
            got = packed._replace(blocks=batch.packed or []).events()
            batch.events = got if packed.columns is not None else got.all()
            batch.dropped = 0
        return Chunk(batch, offset, pending)

    def close(self, timeout: float = 2.0) -> None:
        """Ask the worker to finish; kill it if it has not within ``timeout`` seconds (it
        keeps nothing worth waiting for: it may be blocked sending results nobody reads)."""
        self.finish()
        self.wait_finished(timeout)

    def finish(self) -> None:
        """Ask the worker to finish (``close`` without the wait: a pool asks all first)."""
        if not self._started:  # never talked to: its pipes are closed here
            self._started = True
            os.close(self._task_w)
            os.close(self._result_r)
            self._feeder = self._reader = None
            return
        if self._feeder is not None and not self._finishing:
            self._finishing = True
            self._outbox.put(None)  # the feeder closes the task pipe: the worker reads its end

    def wait_finished(self, timeout: float = 2.0) -> None:
        """``close``'s wait, after ``finish``."""
        if _wait(self._proc, timeout) is None:
            self._proc.kill()
            self._proc.wait()
        # The worker is gone: a chunk the feeder was still writing fails (broken pipe) and
        # the rest are dropped with the feeder; the reader sees the result pipe close.
        for t in (self._feeder, self._reader):
            if t is not None:
                t.join(timeout=timeout)
        self._feeder = self._reader = None


def _wait(proc: subprocess.Popen[bytes] | _Forked, timeout: float) -> int | None:
    """The worker's exit code, or None if it still runs after ``timeout`` seconds."""
    if isinstance(proc, _Forked):
        return proc.wait(timeout)
    import subprocess  # imported already: it started ``proc``

    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


class _Pipe:
    """One end of a pipe that carries whole messages: each an 8-byte length, then its
    bytes. (``multiprocessing.connection`` did the same, and its import, with sockets,
    temporary files and the rest of ``multiprocessing``, cost every scan 15 ms.)"""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send_bytes(self, data: bytes) -> None:
        """Raises ``OSError`` (``BrokenPipeError``: the reader is gone)."""
        head = len(data).to_bytes(8, "big")
        if len(data) <= _JOIN_MAX:
            self._write(head + data)
        else:  # not copied to go behind its length
            self._write(head)
            self._write(data)

    def _write(self, data: bytes) -> None:
        done = os.write(self.fd, data)
        if done < len(data):
            view = memoryview(data)
            while done < len(data):
                done += os.write(self.fd, view[done:])

    def recv_bytes(self) -> bytes:
        """The next message; ``EOFError`` once the writer closed its end."""
        return self._read(int.from_bytes(self._read(8), "big"))

    def _read(self, n: int) -> bytes:
        data = os.read(self.fd, n) if n else b""
        if len(data) == n:
            return data
        parts = [data]
        got = len(data)
        while data and got < n:
            data = os.read(self.fd, n - got)
            parts.append(data)
            got += len(data)
        if got < n:
            raise EOFError
        return b"".join(parts)

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


_JOIN_MAX = 1 << 14  # a message up to this long goes in one write, behind its length

PIPE_SIZE = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size for unprivileged users


def _widen(fd: int) -> None:
    """Let the pipe hold a whole chunk or result (64 KiB by default). A message larger
    than the pipe is written in pieces, and each piece, once the reader made room, must
    take the GIL back from a busy thread of the writing process: a chunk took many
    switch intervals to go across."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):  # not Linux, or a lower limit: pieces it is
        pass


def _drain(conn: _Pipe, inbox: queue.SimpleQueue[bytes | None]) -> None:
    """Read the worker's results into ``inbox`` as they come; ``None`` once its pipe
    closes (the worker finished or died). Bounded by what the caller keeps in flight."""
    try:
        while True:
            inbox.put(conn.recv_bytes())
    except (OSError, EOFError):
        pass
    finally:
        inbox.put(None)
        conn.close()


def _feed(conn: _Pipe, outbox: queue.SimpleQueue[bytes | None]) -> None:
    """Write the queued messages to the worker, in order, until ``None``; then close."""
    try:
        while (data := outbox.get()) is not None:
            conn.send_bytes(data)
    except OSError:  # the worker is gone
        pass
    finally:
        conn.close()


def pool_size(cpus: int | None, *, detecting: bool = True) -> int:
    """Decode workers for ``cpus`` cores, at most four: one core is left to this process
    when it detects. Its detection and store writing share one GIL and make the slower
    side: on two cores, a second worker only took CPU from it (1M bench lines, all rules:
    60.9k lines/s with one worker, 57.2k with two), while without rules two workers
    decode faster than one (91.7k against 76.1k)."""
    n = (cpus or 1) - (1 if detecting else 0)
    return max(1, min(n, 4))


def workers_wanted(*, detecting: bool = True) -> int:
    """``pool_size`` of the cores this process may use; ``LOG_AUDITOR_DECODE_WORKERS``
    sets the number instead (tests, benchmarks, an operator who knows better)."""
    raw = os.environ.get("LOG_AUDITOR_DECODE_WORKERS", "")
    if raw.isdigit() and int(raw) > 0:
        return min(int(raw), 16)
    return pool_size(len(os.sched_getaffinity(0)), detecting=detecting)


def spreadable(spec: FormatSpec) -> bool:
    """Whether a file's lines decode alike whichever worker reads them: not ``auto`` (it
    chooses from a file's first lines and keeps the choice) and not W3C (a ``#Fields:``
    header names the columns of the lines after it). A bad spec is not: it fails where
    decoders are built."""
    try:
        parser = parser_for(spec)
    except AuditorError:
        return False
    return parser is not None and not isinstance(parser, W3cParser)


class DecodePool:
    """``n`` decode workers, used like one ``DecodeWorker``: results come back in the
    order the work was sent.

    A scan spreads the chunks of one file over the workers itself (cut at line ends, see
    ``auditor.scanfiles.scan_file_parallel``). ``send_lines`` (the daemon's parts of
    already split lines) sends a part to the next worker in turn when every source in it
    is ``spreadable``, and otherwise to the first worker, where every part of such a
    source goes, so its per-file state (``auto``'s choice, W3C columns) lives in one place.
    ``send_lines`` and ``receive`` may run in different threads (one each).

    ``fork``: the workers are forked from this process if it has no other thread (see
    ``DecodeWorker``), every one before the threads that talk to them start."""

    def __init__(self, key: bytes, max_line: int, n: int = 1, *, fork: bool = False) -> None:
        self.key = key
        self.max_line = max_line
        self.workers: list[DecodeWorker] = []
        self._order: deque[DecodeWorker] = deque()
        self._turn = 0
        self._spread: dict[str, tuple[FormatSpec, bool]] = {}
        try:
            for _ in range(max(1, n)):
                self.workers.append(DecodeWorker(key, max_line, fork=fork, start=False))
            for w in self.workers:
                w.start()
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return len(self.workers)

    def _spreadable(self, source: str, spec: FormatSpec) -> bool:
        known = self._spread.get(source)
        if known is None or known[0] != spec:
            known = self._spread[source] = (spec, spreadable(spec))
        return known[1]

    def use_sieve(self, rules: SieveRules | None) -> None:
        """``DecodeWorker.use_sieve`` on every worker."""
        for w in self.workers:
            w.use_sieve(rules)

    def send_lines(self, specs: Mapping[str, FormatSpec], lines: Sequence[Line]) -> None:
        """``DecodeWorker.send_lines`` on the worker whose turn it is (see the class)."""
        worker = self.workers[0]
        if len(self.workers) > 1:
            sources = {ln.source for ln in lines}
            if all(s in specs and self._spreadable(s, specs[s]) for s in sources):
                worker = self.workers[self._turn]
                self._turn = (self._turn + 1) % len(self.workers)
        worker.send_lines(specs, lines)
        self._order.append(worker)

    def receive(self) -> Chunk:
        """The result of the oldest part sent with ``send_lines``."""
        return self._order.popleft().receive()

    def finish(self) -> None:
        """Ask every worker to finish once it has done what it was sent (``close`` waits)."""
        for w in self.workers:
            w.finish()

    def close(self, timeout: float = 2.0) -> None:
        self.finish()  # all asked first: they end side by side
        for w in self.workers:
            w.wait_finished(timeout)

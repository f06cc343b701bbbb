"""From ``[[output]]`` config to sinks; what can only be checked with I/O is checked here.

``load_secrets`` runs at start, on reload and in ``check-config``: an unreadable or empty
``secret_file``, a ``ca_file`` that does not load, or a ``headers_file`` that cannot be read
or has a bad line is a ``ConfigError`` naming the file and key (and the line), so a bad
output never starts the daemon. Secrets (the HMAC key, the headers file's values) never
appear in a message. A ``secret_file`` or ``headers_file`` open to group or others is a
warning (one line, as ssh says of a key; as for the redaction key): on stderr through
the log at start and reload, through ``check-config``'s own warnings there.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from auditor.config import Config, OutputConfig
from auditor.errors import ConfigError
from auditor.outputs.filesink import FileSink
from auditor.outputs.headers import Headers, format_header_lines, parse_header_lines
from auditor.outputs.sink import Sink
from auditor.outputs.syslog import SyslogSink
from auditor.outputs.webhook import WebhookSink

log = logging.getLogger(__name__)

MAX_HEADERS_FILE_BYTES = 64 << 10
MAX_SECRET_FILE_BYTES = 64 << 10

Warn = Callable[[str], None]  # takes "key 'output[0].secret_file': ..." (no file prefix)


def _key_error(config: Config, out: OutputConfig, key: str, what: str) -> ConfigError:
    return ConfigError(f"{config.file}: key '{out.where}.{key}': {what}")


def headers_key(output_name: str) -> str:
    """Where ``load_secrets`` keeps an output's file headers (':' is not in output names)."""
    return f"{output_name}:headers"


def _read_owner_file(
    config: Config, out: OutputConfig, key: str, path: Path, limit: int, warn: Warn
) -> bytes:
    """The first ``limit + 1`` bytes of a secret file; a warning when group or others may
    open it (its secret is then not only this user's)."""
    try:
        # O_NONBLOCK: a FIFO put there must not hang the start.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _key_error(config, out, key, f"{path} is not a regular file")
            data = os.read(fd, limit + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _key_error(config, out, key, f"cannot read {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        mode = stat.S_IMODE(st.st_mode)
        warn(
            f"key '{out.where}.{key}': {path} is open to group/others (mode {mode:o}); chmod 600 it"
        )
    return data


def _read_headers_file(config: Config, out: OutputConfig, warn: Warn) -> Headers:
    path = out.headers_file
    assert path is not None
    data = _read_owner_file(config, out, "headers_file", path, MAX_HEADERS_FILE_BYTES, warn)
    if len(data) > MAX_HEADERS_FILE_BYTES:
        raise _key_error(
            config, out, "headers_file", f"{path} is larger than {MAX_HEADERS_FILE_BYTES} bytes"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _key_error(
            config, out, "headers_file", f"{path}: line {line}: not UTF-8 text"
        ) from None
    try:
        headers = parse_header_lines(text)
    except ValueError as exc:
        raise _key_error(config, out, "headers_file", f"{path}: {exc}") from None
    if not headers:
        raise _key_error(config, out, "headers_file", f"{path} holds no headers")
    inline = {name.lower() for name, _ in out.headers}
    for name, _ in headers:
        if name.lower() in inline:
            what = f"{path}: header {name} is also set in '{out.where}.headers'"
            raise _key_error(config, out, "headers_file", what)
    return headers


def load_secrets(config: Config, *, warn: Warn | None = None) -> dict[str, bytes]:
    """Each webhook output's HMAC secret by output name, its file headers by ``headers_key``.

    One flat mapping, so that a reload that changed either restarts the outputs. Warnings
    go to ``warn``, by default to the log (naming the config file).
    """
    found: list[str] = []  # given only once every file is good: an error is one line
    secrets: dict[str, bytes] = {}
    for out in config.outputs:
        if out.type != "webhook":
            continue
        if out.secret is not None:
            secrets[out.name] = out.secret.encode()
        elif out.secret_file is not None:
            path = out.secret_file
            data = _read_owner_file(
                config, out, "secret_file", path, MAX_SECRET_FILE_BYTES, found.append
            )
            if len(data) > MAX_SECRET_FILE_BYTES:
                what = f"{path} is larger than {MAX_SECRET_FILE_BYTES} bytes"
                raise _key_error(config, out, "secret_file", what)
            key = data.strip()
            if not key:
                raise _key_error(config, out, "secret_file", f"{path} is empty")
            secrets[out.name] = key
        if out.headers_file is not None:
            headers = _read_headers_file(config, out, found.append)
            secrets[headers_key(out.name)] = format_header_lines(headers)
        if out.ca_file is not None:
            try:
                ssl.create_default_context(cafile=str(out.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise _key_error(
                    config, out, "ca_file", f"cannot load {out.ca_file}: {exc}"
                ) from None
    for text in found:
        (warn or _log_warning(config))(text)
    return secrets


def _log_warning(config: Config) -> Warn:
    def warn(text: str) -> None:
        log.warning("%s: %s", config.file, text)

    return warn


def build_sink(out: OutputConfig, secrets: Mapping[str, bytes]) -> Sink:
    if out.type == "file":
        assert out.path is not None
        return FileSink(Path(out.path), out.max_bytes, out.keep)
    if out.type == "syslog":
        return SyslogSink(out.address, out.facility)
    headers = out.headers
    if out.headers_file is not None:
        headers += parse_header_lines(secrets[headers_key(out.name)].decode("ascii"))
    return WebhookSink(
        out.url, secrets[out.name], timeout=out.timeout, ca_file=out.ca_file, headers=headers
    )

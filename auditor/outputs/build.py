"""From ``[[output]]`` config to sinks; what can only be checked with I/O is checked here.

``load_secrets`` runs at start, on reload and in ``check-config``: an unreadable or empty
``secret_file``, a ``ca_file`` that does not load, or a ``headers_file`` that cannot be read
or has a bad line is a ``ConfigError`` naming the file and key (and the line), so a bad
output never starts the daemon. Secrets (the HMAC key, the headers file's values) never
appear in a message; a headers file open to group or others is a warning, as for the
redaction key.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from collections.abc import Mapping
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


def _key_error(config: Config, out: OutputConfig, key: str, what: str) -> ConfigError:
    return ConfigError(f"{config.file}: key '{out.where}.{key}': {what}")


def headers_key(output_name: str) -> str:
    """Where ``load_secrets`` keeps an output's file headers (':' is not in output names)."""
    return f"{output_name}:headers"


def _read_headers_file(config: Config, out: OutputConfig) -> Headers:
    path = out.headers_file
    assert path is not None
    try:
        # O_NONBLOCK: a FIFO put there must not hang the start.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _key_error(config, out, "headers_file", f"{path} is not a regular file")
            data = os.read(fd, MAX_HEADERS_FILE_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _key_error(
            config, out, "headers_file", f"cannot read {path}: {exc.strerror}"
        ) from None
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
    if st.st_mode & 0o077:
        log.warning(
            "%s: key '%s.headers_file': %s is open to group/others (mode %o); chmod 600 it",
            config.file,
            out.where,
            path,
            stat.S_IMODE(st.st_mode),
        )
    return headers


def load_secrets(config: Config) -> dict[str, bytes]:
    """Each webhook output's HMAC secret by output name, its file headers by ``headers_key``.

    One flat mapping, so that a reload that changed either restarts the outputs.
    """
    secrets: dict[str, bytes] = {}
    for out in config.outputs:
        if out.type != "webhook":
            continue
        if out.secret is not None:
            secrets[out.name] = out.secret.encode()
        elif out.secret_file is not None:
            try:
                text = out.secret_file.read_bytes().strip()
            except OSError as exc:
                raise _key_error(
                    config, out, "secret_file", f"cannot read {out.secret_file}: {exc.strerror}"
                ) from None
            if not text:
                raise _key_error(config, out, "secret_file", f"{out.secret_file} is empty")
            secrets[out.name] = text
        if out.headers_file is not None:
            headers = _read_headers_file(config, out)
            secrets[headers_key(out.name)] = format_header_lines(headers)
        if out.ca_file is not None:
            try:
                ssl.create_default_context(cafile=str(out.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise _key_error(
                    config, out, "ca_file", f"cannot load {out.ca_file}: {exc}"
                ) from None
    return secrets


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

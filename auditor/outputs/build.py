"""From ``[[output]]`` config to sinks; what can only be checked with I/O is checked here.

``load_secrets`` runs at start (and in ``check-config``): an unreadable or empty
``secret_file``, or a ``ca_file`` that does not load, is a ``ConfigError`` naming the file
and key, so a bad output never starts the daemon. The secret itself never appears in a
message.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path

from auditor.config import Config, OutputConfig
from auditor.errors import ConfigError
from auditor.outputs.filesink import FileSink
from auditor.outputs.sink import Sink
from auditor.outputs.syslog import SyslogSink
from auditor.outputs.webhook import WebhookSink


def _key_error(config: Config, out: OutputConfig, key: str, what: str) -> ConfigError:
    return ConfigError(f"{config.file}: key '{out.where}.{key}': {what}")


def load_secrets(config: Config) -> dict[str, bytes]:
    """Each webhook output's HMAC secret, by output name."""
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
    return WebhookSink(out.url, secrets[out.name], timeout=out.timeout, ca_file=out.ca_file)

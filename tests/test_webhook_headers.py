"""Extra request headers on webhook outputs: ``headers`` (config) and ``headers_file`` (secret).

A real HTTP receiver on loopback checks that they arrive beside the signed headers; the
config errors go through the real ``log-auditor check-config`` (exit 2, one line naming
file, key and line, no traceback); the secret values appear in no message, no log line,
no ``status`` output and not in the store.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from auditor.config import load_config, parse_config
from auditor.errors import ConfigError
from auditor.outputs.build import build_sink, load_secrets
from auditor.outputs.headers import parse_header_lines
from auditor.outputs.sink import Item
from auditor.outputs.webhook import FINDING_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from daemon_helpers import Daemon, query, status, wait_for, without_file_access_override
from receivers import Receiver

HMAC_KEY = "hmac-key-for-tests"
TOKEN = "hec-9f3c2b7e-token-value"  # stands for the secret in the headers file


def _webhook(url: str, extra: str = "") -> str:
    return (
        f'[[output]]\nname = "hec"\ntype = "webhook"\nurl = "{url}"\nsecret = "{HMAC_KEY}"\n{extra}'
    )


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


# -- the headers file format (pure) -------------------------------------------------------


def test_header_lines_allow_comments_blank_lines_crlf_and_colons_in_values() -> None:
    text = (
        "# Splunk HEC\r\n"
        "\n"
        f"Authorization:   Splunk {TOKEN}  \r\n"
        "  X-Splunk-Request-Channel: 0f1e2d3c-aaaa-bbbb-cccc-000000000000\n"
        "X-Scope: a:b:c\n"
    )
    assert parse_header_lines(text) == (
        ("Authorization", f"Splunk {TOKEN}"),
        ("X-Splunk-Request-Channel", "0f1e2d3c-aaaa-bbbb-cccc-000000000000"),
        ("X-Scope", "a:b:c"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"# c\nBearer {TOKEN}\n", "line 2: expected 'Name: value'"),
        (f"Auth Token: {TOKEN}\n", "line 1: not a valid header name"),
        (f"Authorization : {TOKEN}\n", "line 1: not a valid header name"),
        (f"\n\nAuthorization: {TOKEN}\rX-Evil: 1\n", "line 3: header Authorization: the value"),
        ("Authorization:\n", "line 1: header Authorization: the value is empty"),
        (f"Authorization: Bearer {TOKEN}\x00\n", "control or non-ASCII"),
        (f"Authorization: Bearer {TOKEN}é\n", "control or non-ASCII"),
        (f"content-type: text/plain; {TOKEN}\n", "line 1: header content-type: set by log-auditor"),
        (f"X-Log-Auditor-Signature: {TOKEN}\n", "set by log-auditor itself"),
        (f"Host: {TOKEN}\n", "set by log-auditor itself"),
        (f"A: 1\nB: 2\na: {TOKEN}\n", "line 3: header a is already set on line 1"),
    ],
)
def test_a_bad_header_line_is_named_by_number_without_its_value(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^line ") as info:
        parse_header_lines(text)
    assert message in str(info.value)
    assert TOKEN not in str(info.value)


# -- the config's headers table -------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X Tenant": "acme"}, "header 'X Tenant': not a valid header name"),
        ({"X-Tenant": "acme\r\nX-Evil: 1"}, "header 'X-Tenant': the value contains a line break"),
        ({"X-Tenant": 7}, "header 'X-Tenant': expected a string value"),
        ({"Content-Length": "1"}, "header 'Content-Length': set by log-auditor itself"),
        ({"x-log-auditor-finding-id": "1"}, "set by log-auditor itself"),
        ({"X-Tenant": "a", "x-tenant": "b"}, "header x-tenant is set twice"),
    ],
)
def test_bad_config_headers_name_the_key(headers: dict[str, object], message: str) -> None:
    doc = {"name": "o", "type": "webhook", "url": "https://h/x", "secret": "s"}
    with pytest.raises(ConfigError) as info:
        parse_config({"output": [{**doc, "headers": headers}]}, "c.toml")
    assert str(info.value).startswith("c.toml: key 'output[0].headers': ")
    assert message in str(info.value)


def test_headers_are_for_webhooks_only() -> None:
    doc = {"name": "o", "type": "file", "path": "/tmp/x", "headers_file": "/etc/h"}
    with pytest.raises(ConfigError, match="output\\[0\\].headers_file': only for type = 'webhook'"):
        parse_config({"output": [doc]}, "c.toml")


# -- on the wire ----------------------------------------------------------------------------


def test_config_and_file_headers_arrive_beside_the_signed_ones(
    tmp_path: Path, receiver: Receiver
) -> None:
    _write(tmp_path / "hec.headers", f"# HEC token\nAuthorization: Splunk {TOKEN}\n")
    config = _write(
        tmp_path / "config.toml",
        _webhook(
            receiver.url,
            'headers = { "X-Tenant" = "acme", "User-Agent" = "collector-test/1" }\n'
            'headers_file = "hec.headers"\n',
        ),
    )
    cfg = load_config(config)
    out = cfg.outputs[0]
    sink = build_sink(out, load_secrets(cfg))
    body = orjson.dumps({"id": "f1", "rule_id": "pii.email-in-url"})
    sink.send([Item(finding={"id": "f1"}, body=body)])
    [(headers, got)] = receiver.requests()
    assert got == body
    assert headers["Authorization"] == f"Splunk {TOKEN}"
    assert headers["X-Tenant"] == "acme"
    assert headers["User-Agent"] == "collector-test/1"  # ours may be replaced
    assert headers["Content-Type"] == "application/json"
    assert headers[FINDING_HEADER] == "f1"
    assert verify(HMAC_KEY.encode(), headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    # The secret is in no repr a log line could show.
    assert TOKEN not in repr(out) and TOKEN not in repr(cfg)


# -- through the real CLI -------------------------------------------------------------------


def _check_config(config: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "auditor", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


_BAD_FILES = [
    (f"Authorization: Splunk {TOKEN}\nBearer {TOKEN}\n", "line 2: expected 'Name: value'"),
    (f"Authorization Splunk {TOKEN}: x\n", "line 1: not a valid header name"),
    (f"# x\nAuthorization: Splunk {TOKEN}\rX-Evil: 1\n", "line 2: header Authorization: the value"),
    (f"Content-Type: text/plain {TOKEN}\n", "line 1: header Content-Type: set by log-auditor"),
]


@pytest.mark.parametrize(("text", "message"), _BAD_FILES)
def test_check_config_refuses_a_bad_headers_file(tmp_path: Path, text: str, message: str) -> None:
    headers = tmp_path / "hec.headers"
    headers.write_bytes(text.encode("latin-1"))
    headers.chmod(0o600)
    config = _write(
        tmp_path / "config.toml",
        _webhook("https://hec.example.org/x", 'headers = { "X-Tenant" = "acme" }\n')
        + 'headers_file = "hec.headers"\n',
    )
    res = _check_config(config)
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    [line] = res.stderr.strip().splitlines()
    assert f"{config}: key 'output[0].headers_file': {headers}" in line
    assert message in line
    assert "Traceback" not in res.stderr and TOKEN not in res.stderr


def test_check_config_refuses_a_missing_or_unreadable_headers_file(tmp_path: Path) -> None:
    secret = _write(tmp_path / "secret.headers", f"Authorization: Bearer {TOKEN}\n", mode=0o000)
    cases = [
        ("missing.headers", "cannot read", ()),
        ("secret.headers", "cannot read", without_file_access_override()),
    ]
    for name, message, prefix in cases:
        config = _write(
            tmp_path / "config.toml",
            _webhook("https://hec.example.org/x", f'headers_file = "{name}"\n'),
            mode=0o644,
        )
        res = _check_config(config, prefix)
        assert res.returncode == 2, (name, res.stderr)
        [line] = res.stderr.strip().splitlines()
        assert "key 'output[0].headers_file': " in line and message in line, line
        assert str(tmp_path / name) in line
        assert "Traceback" not in res.stderr
    assert secret.stat().st_mode & 0o777 == 0


def test_check_config_refuses_a_bad_headers_table(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "config.toml",
        _webhook("https://hec.example.org/x", 'headers = { "Host" = "evil.example.org" }\n'),
    )
    res = _check_config(config)
    assert res.returncode == 2
    assert res.stderr == (
        f"log-auditor: error: {config}: key 'output[0].headers': header 'Host': "
        "set by log-auditor itself, it cannot be replaced\n"
    )


def test_check_config_warns_once_about_a_headers_file_open_to_others(tmp_path: Path) -> None:
    headers = _write(tmp_path / "hec.headers", f"Authorization: Splunk {TOKEN}\n", mode=0o644)
    config = _write(
        tmp_path / "config.toml",
        _webhook("https://hec.example.org/x", 'headers_file = "hec.headers"\n'),
    )
    res = _check_config(config)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("config OK")
    warnings = [line for line in res.stderr.splitlines() if str(headers) in line]
    assert len(warnings) == 1
    assert "output[0].headers_file" in warnings[0] and "mode 644" in warnings[0]
    assert "chmod 600" in warnings[0]
    assert TOKEN not in res.stdout + res.stderr
    headers.chmod(0o600)
    res = _check_config(config)
    assert res.returncode == 0 and str(headers) not in res.stderr


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (f"X-Tenant: {TOKEN}\n".encode(), "header X-Tenant is also set in 'output[0].headers'"),
        (b"# nothing but a comment\n\n", "hec.headers holds no headers"),
        (b"# ok\nAuthorization: \xff\xfe" + TOKEN.encode(), "hec.headers: line 2: not UTF-8 text"),
        (b"A: " + b"x" * (64 << 10), "is larger than 65536 bytes"),
        (None, "hec.headers is not a regular file"),
    ],
)
def test_load_secrets_refuses_other_bad_headers_files(
    tmp_path: Path, data: bytes | None, message: str
) -> None:
    path = tmp_path / "hec.headers"
    if data is None:
        path.mkdir()
    else:
        path.write_bytes(data)
    config = _write(
        tmp_path / "config.toml",
        _webhook("https://hec.example.org/x", 'headers = { "X-Tenant" = "acme" }\n')
        + 'headers_file = "hec.headers"\n',
    )
    with pytest.raises(ConfigError) as info:
        load_secrets(load_config(config))
    text = str(info.value)
    assert text.startswith(f"{config}: key 'output[0].headers_file': {path}")
    assert message in text and TOKEN not in text


# -- the daemon -----------------------------------------------------------------------------


def _finding_lines(first: int, n: int) -> str:
    """Each line raises its own finding: an e-mail address in the URL of its own route."""
    return "".join(
        f'198.51.100.7 - - [20/Nov/2026:12:00:00 +0000] "GET /f/{"".join(chr(97 + int(d)) for d in str(i))}'
        f'?email=john.doe@example.org HTTP/1.1" 200 5 "-" "curl/8"\n'
        for i in range(first, first + n)
    )


def test_the_daemon_sends_them_and_rereads_the_file_on_reload(
    tmp_path: Path, receiver: Receiver
) -> None:
    log = tmp_path / "access.log"
    log.write_text(_finding_lines(100, 3))
    headers = _write(tmp_path / "hec.headers", f"Authorization: Splunk {TOKEN}\n")
    db = tmp_path / "audit.db"
    config = _write(
        tmp_path / "config.toml",
        f'[store]\npath = "{db}"\n[daemon]\npoll_interval = 0.5\nbatch_seconds = 0.1\n'
        f'[[source]]\nname = "api"\npath = "{log}"\nformat = "nginx-combined"\n'
        'start = "beginning"\n'
        + _webhook(
            receiver.url, 'headers = { "X-Tenant" = "acme" }\nheaders_file = "hec.headers"\n'
        )
        + 'categories = ["pii-in-url"]\nstart = "beginning"\nretry_initial = 0.05\n',
    )
    rotated = "rotated-token-0042"

    def delivered() -> list[tuple[object, ...]]:
        return query(db, "SELECT delivered FROM output_cursor WHERE name = 'hec'")

    with Daemon(config) as d:
        wait_for(lambda: len(receiver.requests()) == 3, what="3 findings delivered")
        # Received is not yet recorded: the reload (and the stop below) would otherwise
        # find that delivery still in flight, and a busy machine can hold it past the
        # few seconds they give it.
        wait_for(lambda: delivered() == [(3,)], what="3 deliveries recorded")
        _write(headers, f"Authorization: Splunk {rotated}\n")
        # A file output added with it shows when the reload has restarted the outputs.
        with config.open("a") as f:
            f.write(f'[[output]]\nname = "marker"\ntype = "file"\npath = "{tmp_path / "f.json"}"\n')
        d.signal(signal.SIGHUP)
        wait_for(
            lambda: ("marker",) in query(db, "SELECT name FROM output_cursor"), what="the reload"
        )
        with log.open("a") as f:
            f.write(_finding_lines(200, 2))
        wait_for(lambda: len(receiver.requests()) == 5, what="2 more findings")
        wait_for(lambda: delivered() == [(5,)], what="5 deliveries recorded")
        assert d.stop() == 0
        stderr = d.stderr
    got = [h for h, _ in receiver.requests()]
    assert all(h["X-Tenant"] == "acme" for h in got)
    assert [h["Authorization"] for h in got[:3]] == [f"Splunk {TOKEN}"] * 3
    assert [h["Authorization"] for h in got[3:]] == [f"Splunk {rotated}"] * 2
    # The secrets are nowhere but on the wire.
    st = status(config)
    assert st["outputs"] and TOKEN not in orjson.dumps(st).decode()
    assert TOKEN not in stderr and rotated not in stderr and "Traceback" not in stderr
    for path in tmp_path.glob("audit.db*"):
        data = path.read_bytes()
        assert TOKEN.encode() not in data and rotated.encode() not in data
    assert delivered() == [(5,)]
    assert len(receiver.requests()) == 5  # none sent twice

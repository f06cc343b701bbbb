"""The config file: TOML → frozen ``Config``, validated by hand.

Unknown keys are errors that name the file and the key; a bad config never starts the
daemon (CONTRACT.md). Every section has defaults, so an empty file is a valid config.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from auditor.errors import ConfigError
from auditor.model import CATEGORIES
from auditor.outputs.address import (
    DEFAULT_SYSLOG_ADDRESS,
    FACILITIES,
    SyslogAddress,
    check_webhook_url,
    parse_syslog_address,
)
from auditor.outputs.headers import Headers, check_header, check_unique

DEFAULT_CONFIG_PATH = Path("/etc/log-auditor/config.toml")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: Path = Path("log-auditor.db")
    key_file: Path | None = None  # keyed-hash key; default: <db>.key beside the store


@dataclass(frozen=True, slots=True)
class SourceConfig:
    name: str
    path: str  # a file, a glob or a directory
    format: str = "auto"
    log_format: str | None = None  # operator's nginx log_format / Apache LogFormat string
    fields: dict[str, str] | None = None  # JSON lines: our field -> their key (dotted)
    scheme: str | None = None  # listener scheme when the format does not log it
    start: str = "end"  # "end" | "beginning" on first start
    poll: bool = False  # force polling (NFS, overlay)


@dataclass(frozen=True, slots=True)
class RuleOverride:
    disabled: bool = False
    severity: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    allow_paths: tuple[str, ...] = ()  # regexes on the decoded path
    allow_cidrs: tuple[str, ...] = ()
    allow_user_agents: tuple[str, ...] = ()  # regexes


@dataclass(frozen=True, slots=True)
class RulesConfig:
    paths: tuple[Path, ...] = ()  # extra rule files or directories, after the bundled ones
    bundled: bool = True
    overrides: dict[str, RuleOverride] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReportJob:
    name: str
    schedule: str  # cron, UTC
    period: str  # "day" | "week" | "month"


@dataclass(frozen=True, slots=True)
class ReportConfig:
    output_dir: Path = Path("reports")
    jobs: tuple[ReportJob, ...] = ()
    organisation: str = "Example Organisation"
    scope: str = ""
    logo: Path | None = None
    paper: str = "A4"  # "A4" | "Letter"
    pseudonymise: bool = False
    retention_days: int = 400


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    batch_lines: int = 5000
    batch_seconds: float = 0.2
    queue_lines: int = 50000
    max_line_bytes: int = 65536
    poll_interval: float = 1.0
    metrics_listen: str | None = None  # "127.0.0.1:9464"; off by default
    # Decode in a second process (None: when this process may use two or more CPUs).
    decode_worker: bool | None = None


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    events_days: int = 90
    findings_days: int = 400


OUTPUT_TYPES = ("file", "syslog", "webhook")
DEFAULT_SYSLOG = parse_syslog_address(DEFAULT_SYSLOG_ADDRESS)
OUTPUT_SHAPES = ("native", "ocsf", "ecs")
# Shipped files and webhooks go to SIEMs (OCSF is their common schema); a syslog message
# carries the rule, severity and controls in structured data, the native JSON as text.
DEFAULT_SHAPES = {"file": "ocsf", "syslog": "native", "webhook": "ocsf"}
_OUTPUT_KEYS = {
    "file": ("path", "max_bytes", "keep"),
    "syslog": ("address", "facility"),
    "webhook": ("url", "secret", "secret_file", "timeout", "ca_file", "headers", "headers_file"),
}


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """One ``[[output]]``: where findings go, which ones, in which shape."""

    name: str
    type: str  # "file" | "syslog" | "webhook"
    where: str = ""  # "output[0]", for messages that name the key
    min_severity: str = "low"
    categories: tuple[str, ...] = ()  # empty: every category
    shape: str = "ocsf"
    start: str = "end"  # a new output: "end" (findings from now on) or "beginning"
    max_queue: int = 10000  # findings waiting beyond this: the oldest are skipped, counted
    retry_initial: float = 1.0  # seconds before the first retry; doubles up to retry_max
    retry_max: float = 60.0
    # file
    path: Path | None = None
    max_bytes: int = 10 << 20
    keep: int = 5
    # syslog
    address: SyslogAddress = DEFAULT_SYSLOG
    facility: str = "authpriv"
    # webhook
    url: str = ""
    secret: str | None = field(default=None, repr=False)
    secret_file: Path | None = None
    timeout: float = 10.0
    ca_file: Path | None = None
    headers: Headers = ()  # extra request headers, not secret: they are in the config
    headers_file: Path | None = None  # secret ones, read by outputs.build.load_secrets


@dataclass(frozen=True, slots=True)
class Config:
    file: Path | None = None
    store: StoreConfig = StoreConfig()
    sources: tuple[SourceConfig, ...] = ()
    rules: RulesConfig = RulesConfig()
    report: ReportConfig = ReportConfig()
    daemon: DaemonConfig = DaemonConfig()
    retention: RetentionConfig = RetentionConfig()
    outputs: tuple[OutputConfig, ...] = ()


FORMAT_CHOICES_HINT = "see `log-auditor explain --help` for the format names"
_CRON_FIELDS = 5
_PERIODS = ("day", "week", "month")


class _Table:
    """A TOML table being read: tracks which keys were used, to reject unknown ones."""

    def __init__(self, data: dict[str, Any], file: str, where: str) -> None:
        self.data, self.file, self.where = data, file, where
        self.used: set[str] = set()

    def _err(self, key: str, what: str) -> ConfigError:
        dotted = f"{self.where}.{key}" if self.where else key
        return ConfigError(f"{self.file}: key '{dotted}': {what}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            names = (
                kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            )
            raise self._err(key, f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def require(self, key: str, kind: type) -> Any:
        if key not in self.data:
            raise self._err(key, "is required")
        return self.get(key, kind)

    def str_list(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list, [])
        if not all(isinstance(v, str) for v in values):
            raise self._err(key, "expected a list of strings")
        return tuple(values)

    def table(self, key: str) -> _Table:
        sub = self.get(key, dict, {})
        return _Table(sub, self.file, f"{self.where}.{key}" if self.where else key)

    def positive(self, key: str, kind: type, default: Any) -> Any:
        value = self.get(key, kind, default)
        if value <= 0:
            raise self._err(key, f"must be greater than 0, got {value!r}")
        return value

    def done(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise self._err(key, "unknown key")

    def error(self, key: str, what: str) -> ConfigError:
        return self._err(key, what)


def _rel(base: Path | None, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() or base is None else Path(os.path.normpath(base / p))


def _store(t: _Table, base: Path | None) -> StoreConfig:
    path = t.get("path", str)
    key_file = t.get("key_file", str)
    t.done()
    return StoreConfig(
        path=_rel(base, path) if path else StoreConfig().path,
        key_file=_rel(base, key_file) if key_file else None,
    )


def _source(t: _Table, index: int, base: Path | None) -> SourceConfig:
    name = t.require("name", str)
    path = t.require("path", str)
    fmt = t.get("format", str, "auto")
    fields = t.get("fields", dict)
    if fields is not None and not all(isinstance(v, str) for v in fields.values()):
        raise t.error("fields", "expected a table of strings (our field = their key)")
    scheme = t.get("scheme", str)
    if scheme is not None and scheme not in ("http", "https"):
        raise t.error("scheme", f"must be 'http' or 'https', got {scheme!r}")
    start = t.get("start", str, "end")
    if start not in ("end", "beginning"):
        raise t.error("start", f"must be 'end' or 'beginning', got {start!r}")
    src = SourceConfig(
        name=name,
        path=str(_rel(base, path)),
        format=fmt,
        log_format=t.get("log_format", str),
        fields=fields,
        scheme=scheme,
        start=start,
        poll=t.get("poll", bool, False),
    )
    t.done()
    return src


def _override(t: _Table) -> RuleOverride:
    severity = t.get("severity", str)
    if severity is not None and severity not in ("low", "medium", "high", "critical"):
        raise t.error("severity", f"must be low, medium, high or critical, got {severity!r}")
    ov = RuleOverride(
        disabled=t.get("disabled", bool, False),
        severity=severity,
        params=dict(t.get("params", dict, {})),
        allow_paths=t.str_list("allow_paths"),
        allow_cidrs=t.str_list("allow_cidrs"),
        allow_user_agents=t.str_list("allow_user_agents"),
    )
    t.done()
    return ov


def _rules(t: _Table, base: Path | None) -> RulesConfig:
    paths = tuple(_rel(base, p) for p in t.str_list("paths"))
    bundled = t.get("bundled", bool, True)
    overrides_t = t.table("override")
    overrides: dict[str, RuleOverride] = {}
    for rule_id in overrides_t.data:
        overrides[rule_id] = _override(overrides_t.table(rule_id))
    overrides_t.done()
    for rule_id in t.str_list("disable"):
        overrides[rule_id] = RuleOverride(disabled=True)
    t.done()
    return RulesConfig(paths=paths, bundled=bundled, overrides=overrides)


def _check_cron(t: _Table, key: str, expr: str) -> None:
    if len(expr.split()) != _CRON_FIELDS:
        raise t.error(key, f"expected a 5-field cron expression, got {expr!r}")


def _report(t: _Table, base: Path | None) -> ReportConfig:
    jobs: list[ReportJob] = []
    schedule = t.get("schedule", str)
    period = t.get("period", str, "day")
    if period not in _PERIODS:
        raise t.error("period", f"must be one of {', '.join(_PERIODS)}, got {period!r}")
    if schedule is not None:
        _check_cron(t, "schedule", schedule)
        jobs.append(ReportJob(name="default", schedule=schedule, period=period))
    for i, raw in enumerate(t.get("job", list, [])):
        if not isinstance(raw, dict):
            raise t.error(f"job[{i}]", "expected a table ([[report.job]])")
        jt = _Table(raw, t.file, f"report.job[{i}]")
        job_period = jt.get("period", str, "day")
        if job_period not in _PERIODS:
            raise jt.error("period", f"must be one of {', '.join(_PERIODS)}, got {job_period!r}")
        sched = jt.require("schedule", str)
        _check_cron(jt, "schedule", sched)
        jobs.append(
            ReportJob(name=jt.get("name", str, f"job{i}"), schedule=sched, period=job_period)
        )
        jt.done()
    paper = t.get("paper", str, "A4")
    if paper not in ("A4", "Letter"):
        raise t.error("paper", f"must be 'A4' or 'Letter', got {paper!r}")
    logo = t.get("logo", str)
    out = t.get("output_dir", str)
    cfg = ReportConfig(
        output_dir=_rel(base, out) if out else ReportConfig().output_dir,
        jobs=tuple(jobs),
        organisation=t.get("organisation", str, ReportConfig().organisation),
        scope=t.get("scope", str, ""),
        logo=_rel(base, logo) if logo else None,
        paper=paper,
        pseudonymise=t.get("pseudonymise", bool, False),
        retention_days=t.positive("retention_days", int, ReportConfig().retention_days),
    )
    t.done()
    return cfg


def _daemon(t: _Table) -> DaemonConfig:
    d = DaemonConfig()
    cfg = DaemonConfig(
        batch_lines=t.positive("batch_lines", int, d.batch_lines),
        batch_seconds=t.positive("batch_seconds", float, d.batch_seconds),
        queue_lines=t.positive("queue_lines", int, d.queue_lines),
        max_line_bytes=t.positive("max_line_bytes", int, d.max_line_bytes),
        poll_interval=t.positive("poll_interval", float, d.poll_interval),
        metrics_listen=t.get("metrics_listen", str),
        decode_worker=t.get("decode_worker", bool),
    )
    if cfg.metrics_listen is not None:
        host, _, port = cfg.metrics_listen.rpartition(":")
        if not host or not port.isdigit():
            raise t.error("metrics_listen", f"expected HOST:PORT, got {cfg.metrics_listen!r}")
    t.done()
    return cfg


def _retention(t: _Table) -> RetentionConfig:
    cfg = RetentionConfig(
        events_days=t.positive("events_days", int, RetentionConfig().events_days),
        findings_days=t.positive("findings_days", int, RetentionConfig().findings_days),
    )
    t.done()
    return cfg


def _file_output(t: _Table, base: Path | None, common: OutputConfig) -> OutputConfig:
    return replace(
        common,
        path=_rel(base, t.require("path", str)),
        max_bytes=t.positive("max_bytes", int, common.max_bytes),
        keep=t.positive("keep", int, common.keep),
    )


def _syslog_output(t: _Table, base: Path | None, common: OutputConfig) -> OutputConfig:
    address = t.get("address", str, DEFAULT_SYSLOG_ADDRESS)
    try:
        parsed = parse_syslog_address(address)
    except ValueError as exc:
        raise t.error("address", str(exc)) from None
    facility = t.get("facility", str, common.facility)
    if facility not in FACILITIES:
        raise t.error("facility", f"unknown facility {facility!r} (e.g. authpriv, local0)")
    return replace(common, address=parsed, facility=facility)


def _webhook_output(t: _Table, base: Path | None, common: OutputConfig) -> OutputConfig:
    url = t.require("url", str)
    try:
        check_webhook_url(url)
    except ValueError as exc:
        raise t.error("url", str(exc)) from None
    secret = t.get("secret", str)
    secret_file = t.get("secret_file", str)
    if (secret is None) == (secret_file is None):
        raise t.error("secret", "set exactly one of 'secret' and 'secret_file'")
    if secret is not None and not secret:
        raise t.error("secret", "must not be empty")
    ca_file = t.get("ca_file", str)
    headers_file = t.get("headers_file", str)
    if headers_file is not None and not headers_file:
        raise t.error("headers_file", "must not be empty")
    return replace(
        common,
        url=url,
        secret=secret,
        secret_file=_rel(base, secret_file) if secret_file else None,
        timeout=t.positive("timeout", float, common.timeout),
        ca_file=_rel(base, ca_file) if ca_file else None,
        headers=_webhook_headers(t, t.get("headers", dict, {})),
        headers_file=_rel(base, headers_file) if headers_file else None,
    )


def _webhook_headers(t: _Table, table: dict[str, Any]) -> Headers:
    """``headers = { "X-Tenant" = "acme" }``: checked like the lines of a headers_file."""
    out: list[tuple[str, str]] = []
    for name, value in table.items():
        if not isinstance(value, str):
            raise t.error("headers", f"header {name!r}: expected a string value")
        try:
            out.append(check_header(name, value))
        except ValueError as exc:
            raise t.error("headers", f"header {name!r}: {exc}") from None
    try:
        check_unique(tuple(out))
    except ValueError as exc:
        raise t.error("headers", str(exc)) from None
    return tuple(out)


def _check_output_keys(t: _Table, kind: str) -> None:
    """A key of another output type is named as such, not just as unknown."""
    for other, keys in _OUTPUT_KEYS.items():
        for key in keys:
            if other != kind and key not in _OUTPUT_KEYS[kind] and key in t.data:
                raise t.error(key, f"only for type = {other!r} outputs, this one is {kind!r}")


def _output(t: _Table, base: Path | None) -> OutputConfig:
    name = t.require("name", str)
    if not name or not all(c.isalnum() or c in "._-" for c in name):
        raise t.error("name", f"use letters, digits, '.', '_' and '-' only, got {name!r}")
    kind = t.require("type", str)
    if kind not in OUTPUT_TYPES:
        raise t.error("type", f"must be one of {', '.join(OUTPUT_TYPES)}, got {kind!r}")
    _check_output_keys(t, kind)
    severity = t.get("min_severity", str, "low")
    if severity not in ("low", "medium", "high", "critical"):
        raise t.error("min_severity", f"must be low, medium, high or critical, got {severity!r}")
    categories = t.str_list("categories")
    for c in categories:
        if c not in CATEGORIES:
            raise t.error("categories", f"unknown category {c!r} (see CONTRACT.md)")
    shape = t.get("shape", str, DEFAULT_SHAPES[kind])
    if shape not in OUTPUT_SHAPES:
        raise t.error("shape", f"must be one of {', '.join(OUTPUT_SHAPES)}, got {shape!r}")
    start = t.get("start", str, "end")
    if start not in ("end", "beginning"):
        raise t.error("start", f"must be 'end' or 'beginning', got {start!r}")
    d = OutputConfig(name=name, type=kind)
    retry_initial = t.positive("retry_initial", float, d.retry_initial)
    retry_max = t.positive("retry_max", float, d.retry_max)
    if retry_max < retry_initial:
        raise t.error("retry_max", "must not be less than retry_initial")
    common = OutputConfig(
        name=name,
        type=kind,
        where=t.where,
        min_severity=severity,
        categories=categories,
        shape=shape,
        start=start,
        max_queue=t.positive("max_queue", int, d.max_queue),
        retry_initial=retry_initial,
        retry_max=retry_max,
    )
    readers = {"file": _file_output, "syslog": _syslog_output, "webhook": _webhook_output}
    cfg = readers[kind](t, base, common)
    t.done()
    return cfg


def _outputs(top: _Table, base: Path | None) -> tuple[OutputConfig, ...]:
    outputs: list[OutputConfig] = []
    for i, raw in enumerate(top.get("output", list, [])):
        if not isinstance(raw, dict):
            raise top.error(f"output[{i}]", "expected a table ([[output]])")
        out = _output(_Table(raw, top.file, f"output[{i}]"), base)
        if any(o.name == out.name for o in outputs):
            raise top.error(f"output[{i}].name", f"two outputs are named {out.name!r}")
        outputs.append(out)
    return tuple(outputs)


def parse_config(data: dict[str, Any], file: str, base: Path | None = None) -> Config:
    """Validate an already-decoded TOML document. ``base`` resolves relative paths."""
    top = _Table(data, file, "")
    raw_sources = top.get("source", list, [])
    sources: list[SourceConfig] = []
    for i, raw in enumerate(raw_sources):
        if not isinstance(raw, dict):
            raise top.error(f"source[{i}]", "expected a table ([[source]])")
        sources.append(_source(_Table(raw, file, f"source[{i}]"), i, base))
    names = [s.name for s in sources]
    for name in names:
        if names.count(name) > 1:
            raise top.error("source", f"two sources are named {name!r}")
    cfg = Config(
        file=Path(file),
        store=_store(top.table("store"), base),
        sources=tuple(sources),
        rules=_rules(top.table("rules"), base),
        report=_report(top.table("report"), base),
        daemon=_daemon(top.table("daemon")),
        retention=_retention(top.table("retention")),
        outputs=_outputs(top, base),
    )
    top.done()
    return cfg


def load_config(path: Path) -> Config:
    """Read and validate a config file; every problem is a ``ConfigError`` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(data, str(path), base=path.parent)

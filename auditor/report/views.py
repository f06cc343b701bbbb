"""The frozen values a report is made of: what ``data`` builds and the PDF lays out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from auditor import __version__
from auditor.report.assess import ControlResult, Result, RuleInfo
from auditor.report.completeness import Completeness, SourceSetting
from auditor.store.report_queries import InputRow


@dataclass(frozen=True, slots=True)
class RulesetInfo:
    version: str = "unknown"
    hash: str = ""
    rules: tuple[RuleInfo, ...] = ()
    error: str | None = None  # why the ruleset could not be read, if it could not


@dataclass(frozen=True, slots=True)
class PreviousReport:
    file: str
    sha256: str
    entry: str  # manifest entry hash the new report chains to


@dataclass(frozen=True, slots=True)
class ReportOptions:
    organisation: str = "Example Organisation"
    scope: str = ""
    job: str | None = None
    paper: str = "A4"
    pseudonym_key: bytes | None = None  # set: client addresses print as keyed hashes
    gap_minutes: int = 60
    top_n: int = 10
    max_detail: int = 40  # findings shown in full, most severe first
    max_listed: int = 300  # then one line each; the rest counted per rule
    generator: str = f"log-auditor {__version__}"
    sources: tuple[SourceSetting, ...] = ()
    store: str = ""
    logo: str | None = None
    previous: PreviousReport | None = None


@dataclass(frozen=True, slots=True)
class Meta:
    report_id: str
    organisation: str
    scope: str
    job: str | None
    start: datetime
    end: datetime
    generated_at: datetime
    generator: str
    ruleset_version: str
    ruleset_hash: str
    ruleset_error: str | None
    rule_count: int
    catalogue_version: str
    catalogue_hash: str
    pseudonymised: bool
    query: str
    store: str
    paper: str
    logo: str | None
    gap_minutes: int


@dataclass(frozen=True, slots=True)
class FrameworkSummary:
    key: str
    name: str
    counts: tuple[tuple[Result, int], ...]


@dataclass(frozen=True, slots=True)
class SeverityCount:
    severity: str
    findings: int
    prev_findings: int
    events: int


@dataclass(frozen=True, slots=True)
class CategoryCount:
    category: str
    label: str
    findings: int
    prev_findings: int
    events: int


@dataclass(frozen=True, slots=True)
class BreachClock:
    finding_id: str
    title: str
    severity: str
    detected_at: datetime
    deadline: datetime
    acknowledged_at: datetime | None
    overdue: bool


@dataclass(frozen=True, slots=True)
class FindingView:
    id: str
    rule_id: str
    title: str
    category: str
    severity: str
    first_seen: datetime
    last_seen: datetime
    count: int
    client: str
    source: str
    pii_type: str | None
    evidence: str
    controls: tuple[str, ...]
    action: str
    distinct_values: int
    status: str
    host: str = ""  # fleet reports only


@dataclass(frozen=True, slots=True)
class RuleTally:
    rule_id: str
    title: str
    severity: str
    findings: int
    events: int


@dataclass(frozen=True, slots=True)
class ExposureView:
    pii_type: str
    location: str
    route: str
    param: str
    distinct_values: int
    occurrences: int
    first: datetime
    last: datetime


@dataclass(frozen=True, slots=True)
class ClientCount:
    client: str
    requests: int
    share: float


@dataclass(frozen=True, slots=True)
class Activity:
    bucket_minutes: int
    starts: tuple[datetime, ...]
    requests: tuple[int, ...]
    auth_failures: tuple[int, ...]
    errors_5xx: tuple[int, ...]
    new_findings: tuple[int, ...]
    top_clients: tuple[ClientCount, ...]
    other_clients: int
    other_requests: int
    clients_total: int
    requests_total: int


@dataclass(frozen=True, slots=True)
class TrendRow:
    metric: str
    previous: int
    current: int


@dataclass(frozen=True, slots=True)
class Integrity:
    findings_digest: str
    catalogue_hash: str
    ruleset_hash: str
    previous: PreviousReport | None
    inputs: tuple[InputRow, ...]


@dataclass(frozen=True, slots=True)
class HostView:
    """One host of a fleet report: its store as read and its own data completeness."""

    name: str
    name_from: str  # where the name came from: the store's meta table or the file name
    store: str
    sha256: str  # of the store file as read
    size: int
    modified: datetime
    changed: bool  # the file changed while it was read (a live store)
    findings: int
    findings_digest: str
    requests: int
    completeness: Completeness


@dataclass(frozen=True, slots=True)
class ControlHosts:
    control_id: str
    failing: tuple[str, ...]  # hosts with a finding that shows the control is not met
    review: tuple[str, ...]  # hosts with a finding to review for it


@dataclass(frozen=True, slots=True)
class Fleet:
    """What a report over several hosts' stores adds to the one-store report."""

    hosts: tuple[HostView, ...]
    controls: tuple[ControlHosts, ...]

    def hosts_for(self, control_id: str) -> ControlHosts | None:
        return next((c for c in self.controls if c.control_id == control_id), None)


@dataclass(frozen=True, slots=True)
class ReportData:
    meta: Meta
    verdict: str
    frameworks: tuple[FrameworkSummary, ...]
    severities: tuple[SeverityCount, ...]
    categories: tuple[CategoryCount, ...]
    top_risks: tuple[str, ...]
    breach_clock: tuple[BreachClock, ...]
    controls: tuple[ControlResult, ...]
    findings: tuple[FindingView, ...]  # in full
    listed: tuple[FindingView, ...]  # one line each
    findings_total: int
    events_total: int
    omitted: tuple[RuleTally, ...]
    exposures: tuple[ExposureView, ...]
    exposure_types: tuple[tuple[str, int], ...]
    activity: Activity
    completeness: Completeness
    trend: tuple[TrendRow, ...]
    integrity: Integrity
    fleet: Fleet | None = None  # set when the report covers several hosts' stores

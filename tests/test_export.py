"""Findings and events in the SIEM shapes (OCSF 1.3.0, ECS 8.x), from the bundled demo.

The demo logs are scanned by the real CLI into a temporary store; `findings` and `events`
are then read back in every shape, the OCSF output is checked against the required
attributes and enums of Detection Finding (2004) and HTTP Activity (4002), and no raw
secret the demo logs plant (examples/make_samples.py) may appear in any output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor import __version__
from auditor.export import RuleInfo, serialize_event, serialize_finding
from auditor.export.controls import compliance
from auditor.export.http import forwarded_ips, tls_version
from auditor.export.native import finding_native
from auditor.model import CATEGORIES, PII_TYPES
from auditor.rules import load_rulesets
from daemon_helpers import la

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "examples" / "logs"

# What examples/make_samples.py plants in query strings; none may leave the host.
RAW_SECRETS = (
    "4111-1111-1111-1111",
    "4111111111111111",
    "jane.doe@example.org",
    "jane.doe%40example.org",
    "Winter2026",
)

OCSF_SEVERITY = {"low": 2, "medium": 3, "high": 4, "critical": 5}
OCSF_SEVERITY_NAMES = {2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
HTTP_METHOD_IDS = {"CONNECT": 1, "DELETE": 2, "GET": 3, "HEAD": 4, "OPTIONS": 5}
HTTP_METHOD_IDS |= {"POST": 6, "PUT": 7, "TRACE": 8, "PATCH": 9}


def lines(out: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the scanned demo logs, with a config like examples/demo.toml."""
    d = tmp_path_factory.mktemp("demo")
    (d / "demo.toml").write_text(
        f"""
[store]
path = "{d / "audit.db"}"

[[source]]
name = "api"
path = "{LOGS / "api-access.log"}"
format = "nginx-combined"
scheme = "https"

[[source]]
name = "legacy-http"
path = "{LOGS / "legacy-http.log"}"
format = "nginx-combined"
scheme = "http"
""",
        encoding="utf-8",
    )
    r = la(
        "scan",
        "--config",
        "demo.toml",
        str(LOGS / "api-access.log"),
        str(LOGS / "legacy-http.log"),
        cwd=d,
    )
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="module")
def outputs(demo: Path) -> dict[str, str]:
    """stdout of `findings` and `events` in every shape (and `--json`)."""
    runs: dict[str, tuple[str, ...]] = {
        "findings-json": ("findings", "--json"),
        "events-json": ("events", "--json"),
    }
    for what in ("findings", "events"):
        for shape in ("native", "ocsf", "ecs"):
            runs[f"{what}-{shape}"] = (what, "--format", shape)
    out = {}
    for name, args in runs.items():
        r = la(*args, "--config", "demo.toml", cwd=demo)
        assert r.returncode == 0, (name, r.stderr)
        assert r.stderr == "", (name, r.stderr)
        out[name] = r.stdout
    return out


def test_demo_has_the_planted_findings(outputs: dict[str, str]) -> None:
    native = lines(outputs["findings-native"])
    assert len(native) >= 5
    pii = {f["pii_type"] for f in native if f["category"] in ("pii-in-url", "secret-in-url")}
    assert {"pan", "email", "password"} <= pii


def test_json_is_still_the_native_shape(outputs: dict[str, str]) -> None:
    assert outputs["findings-json"] == outputs["findings-native"]
    assert outputs["events-json"] == outputs["events-native"]
    f = lines(outputs["findings-json"])[0]
    assert set(f) >= {
        "id",
        "rule_id",
        "category",
        "severity",
        "client_ip",
        "source",
        "first_seen",
        "last_seen",
        "count",
        "pii_type",
        "evidence",
        "controls",
    }


def test_ocsf_findings_are_detection_findings(outputs: dict[str, str]) -> None:
    native = {f["id"]: f for f in lines(outputs["findings-native"])}
    ocsf = lines(outputs["findings-ocsf"])
    assert len(ocsf) == len(native)
    for o in ocsf:
        assert o["class_uid"] == 2004
        assert o["category_uid"] == 2
        assert o["activity_id"] == 1
        assert o["type_uid"] == o["class_uid"] * 100 + o["activity_id"]
        assert isinstance(o["time"], int) and o["time"] > 1_600_000_000_000  # epoch ms
        assert o["start_time"] <= o["end_time"] == o["time"]
        info = o["finding_info"]
        f = native[info["uid"]]
        assert o["severity_id"] == OCSF_SEVERITY[f["severity"]]
        assert o["severity"] == OCSF_SEVERITY_NAMES[o["severity_id"]]
        assert isinstance(info["title"], str) and info["title"]
        assert info["types"] == [f["category"]] and f["category"] in CATEGORIES
        assert info["analytic"] == {
            **info["analytic"],
            "uid": f["rule_id"],
            "type_id": 1,
            "type": "Rule",
        }
        assert info["first_seen_time"] == o["start_time"]
        assert info["last_seen_time"] == o["end_time"]
        assert o["count"] == f["count"]
        assert o["status_id"] in (1, 2, 3, 4, 99)
        meta = o["metadata"]
        assert meta["version"] == "1.3.0"
        assert meta["product"] == {
            "name": "log-auditor",
            "vendor_name": "log-auditor",
            "version": __version__,
        }
        # Every evidence object holds at least one of the attributes the schema asks for.
        for ev in o.get("evidences", []):
            assert {"src_endpoint", "data"} & set(ev)
        if f["client_ip"]:
            assert o["evidences"][0]["src_endpoint"] == {"ip": f["client_ip"]}
        if f["pii_type"]:
            assert f["pii_type"] in PII_TYPES
            assert o["evidences"][0]["data"]["pii_type"] == f["pii_type"]
        unmapped = o["unmapped"]
        assert unmapped["controls"] == f["controls"]
        comp = unmapped["compliance"]
        assert comp["standards"] and len(comp["requirements"]) == len(f["controls"])
        # Rule metadata comes from the bundled ruleset.
        assert info.get("desc") and o["remediation"]["desc"]
        assert all(v is not None for v in o.values())


def test_ocsf_events_are_http_activity(outputs: dict[str, str]) -> None:
    events = lines(outputs["events-ocsf"])
    assert len(events) == len(lines(outputs["events-native"])) > 2000
    for o in events:
        assert o["class_uid"] == 4002
        assert o["category_uid"] == 4
        assert o["type_uid"] == 4002 * 100 + o["activity_id"]
        assert isinstance(o["time"], int)
        assert o["severity_id"] == 1
        assert o["metadata"]["product"]["name"] == "log-auditor"
        assert o["metadata"]["version"] == "1.3.0"
        assert "http_request" in o or "http_response" in o
        assert "src_endpoint" in o or "dst_endpoint" in o
        req = o["http_request"]
        assert o["activity_id"] == HTTP_METHOD_IDS.get(req["http_method"], 99)
        assert req["url"]["path"].startswith("/")
        assert isinstance(o["http_response"]["code"], int)
    schemes = {o["http_request"]["url"]["scheme"] for o in events}
    assert schemes == {"http", "https"}


def test_ecs_findings_are_alerts(outputs: dict[str, str]) -> None:
    native = {f["id"]: f for f in lines(outputs["findings-native"])}
    for doc in lines(outputs["findings-ecs"]):
        f = native[doc["event"]["id"]]
        assert doc["event"]["kind"] == "alert"
        assert "intrusion_detection" in doc["event"]["category"]
        assert isinstance(doc["event"]["severity"], int)
        assert doc["@timestamp"] == f["last_seen"] == doc["event"]["end"]
        assert doc["event"]["start"] == f["first_seen"]
        assert doc["rule"]["id"] == f["rule_id"] and doc["rule"]["category"] == f["category"]
        assert doc["rule"]["description"]
        assert doc["observer"]["product"] == doc["agent"]["name"] == "log-auditor"
        assert set(f["controls"]) <= set(doc["tags"])
        assert all("." not in k for k in doc["labels"])
        if f["client_ip"]:
            assert doc["source"]["ip"] == f["client_ip"]


def test_ecs_events_are_web_access(outputs: dict[str, str]) -> None:
    for doc in lines(outputs["events-ecs"]):
        assert doc["event"]["kind"] == "event"
        assert doc["event"]["category"] == ["web"]
        assert doc["@timestamp"].endswith("Z")
        assert doc["http"]["request"]["method"]
        assert isinstance(doc["http"]["response"]["status_code"], int)
        assert doc["url"]["path"].startswith("/")
        assert doc["source"]["ip"]


def test_no_raw_secret_leaves_in_any_shape(outputs: dict[str, str]) -> None:
    for name, text in outputs.items():
        for secret in RAW_SECRETS:
            assert secret not in text, (name, secret)


def test_json_and_a_siem_shape_together_is_a_usage_error(demo: Path) -> None:
    r = la("findings", "--json", "--format", "ocsf", "--config", "demo.toml", cwd=demo)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "--json" in r.stderr
    r = la("events", "--format", "xml", "--config", "demo.toml", cwd=demo)
    assert r.returncode == 2


def test_a_bad_rule_file_does_not_hide_findings(demo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]]\nid = 'x'\n", encoding="utf-8")
    cfg = (demo / "demo.toml").read_text(encoding="utf-8")
    (tmp_path / "c.toml").write_text(f'{cfg}\n[rules]\npaths = ["{bad}"]\n', encoding="utf-8")
    r = la("findings", "--format", "ocsf", "--config", str(tmp_path / "c.toml"), cwd=demo)
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "bad.toml" in r.stderr
    found = lines(r.stdout)
    assert found and all(o["finding_info"]["title"] for o in found)


# Pure functions: inputs of either form, rule metadata of any form, bad input.

ROW: dict[str, Any] = {
    "id": "f1",
    "rule_id": "pii.pan-in-url",
    "title": "Card number in a URL",
    "category": "pii-in-url",
    "severity": 4,
    "key": "k",
    "client_ip": "198.51.100.23",
    "source": "api",
    "first_seen_ms": 1795166040000,
    "last_seen_ms": 1795166100000,
    "count": 2,
    "pii_type": "pan",
    "evidence": "GET /pay?card=411111******1111",
    "controls": ["PCI-DSS-4.0.1:3.5.1", "GDPR:Art.5(1)(c)"],
    "status": "open",
    "distinct_values": 1,
}


@pytest.mark.parametrize("shape", ["native", "ocsf", "ecs"])
def test_store_row_and_contract_json_give_the_same_output(shape: str) -> None:
    assert serialize_finding(finding_native(ROW), shape) == serialize_finding(ROW, shape)


def test_rule_metadata_from_a_rule_a_mapping_or_ruleinfo() -> None:
    ruleset = load_rulesets([ROOT / "rulesets"], {})
    rule = ruleset.get("pii.pan-in-url")
    assert rule is not None
    from_rule = serialize_finding(ROW, "ocsf", rule)
    assert from_rule["finding_info"]["desc"] == " ".join(rule.description.split())
    assert from_rule["remediation"]["desc"] == " ".join(rule.remediation.split())
    as_map: dict[str, Any] = {"title": rule.title, "description": rule.description}
    as_map |= {"remediation": rule.remediation, "references": ["https://example.org/r"]}
    ecs = serialize_finding(ROW, "ecs", as_map)
    assert ecs["rule"]["reference"] == "https://example.org/r"
    assert ecs["rule"]["description"] == from_rule["finding_info"]["desc"]
    info = RuleInfo(title="T", remediation="R")
    assert serialize_finding(ROW, "ocsf", info)["remediation"] == {"desc": "R"}
    assert "remediation" not in serialize_finding(ROW, "ocsf")


def test_unknown_shape_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="ocsf"):
        serialize_finding(ROW, "cef")
    with pytest.raises(ValueError, match="ecs"):
        serialize_event({}, "xml")


def test_compliance_groups_controls_by_standard() -> None:
    c = compliance(["PCI-DSS-4.0.1:3.5.1", "PCI-DSS-4.0.1:3.3.1", "GDPR:Art.32", "Odd"])
    assert c is not None
    assert c["standards"] == ["PCI DSS v4.0.1", "GDPR"]
    assert c["requirements"] == [
        "PCI DSS v4.0.1 3.5.1",
        "PCI DSS v4.0.1 3.3.1",
        "GDPR Art.32",
        "Odd",
    ]
    assert compliance([]) is None


def test_http_field_readings() -> None:
    assert tls_version("TLSv1.3") == ("tls", "1.3")
    assert tls_version("SSLv3") == ("ssl", "3")
    assert tls_version("-") is None
    assert forwarded_ips("203.0.113.9, unknown, 2001:db8::1") == ["203.0.113.9", "2001:db8::1"]
    assert forwarded_ips("unknown") is None
    e = {
        "id": 7,
        "ts_ms": 1795166040000,
        "method": "PROPFIND",
        "path": "/x",
        "scheme": "https",
        "host": "api.example.com",
        "server_port": 8443,
        "status": 207,
        "tls_version": "TLSv1.2",
        "forwarded_for": "203.0.113.9",
    }
    o = serialize_event(e, "ocsf")
    assert (o["activity_id"], o["type_uid"]) == (99, 400299)
    assert o["http_request"]["url"]["url_string"] == "https://api.example.com:8443/x"
    assert o["tls"] == {"version": "1.2"}
    assert o["dst_endpoint"] == {"hostname": "api.example.com", "port": 8443}
    ecs = serialize_event(e, "ecs")
    assert ecs["tls"] == {"version_protocol": "tls", "version": "1.2"}
    assert ecs["url"]["full"] == "https://api.example.com:8443/x"


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
_KEYS = st.sampled_from(
    [*ROW, "first_seen", "last_seen", "ts_ms", "timestamp", "method", "path", "query"]
    + ["host", "scheme", "server_port", "status", "tls_version", "forwarded_for", "user_agent"]
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_KEYS, _JSON), st.sampled_from(["native", "ocsf", "ecs"]), _JSON)
def test_bad_input_never_crashes(d: dict[str, Any], shape: str, rule: Any) -> None:
    orjson.dumps(serialize_finding(d, shape, rule))
    orjson.dumps(serialize_event(d, shape))


def _paths(doc: Any, prefix: str = "") -> set[str]:
    if isinstance(doc, dict):
        return {p for k, v in doc.items() for p in _paths(v, f"{prefix}.{k}" if prefix else k)}
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        return _paths(doc[0], prefix + "[]")
    return {prefix}


def test_the_guide_shows_the_real_shapes(outputs: dict[str, str]) -> None:
    """The OCSF and ECS examples in the operator guide have the fields the CLI prints."""
    guide = (ROOT / "docs" / "operator-guide.md").read_text(encoding="utf-8")
    section = guide.split("## 10. Sending findings to a SIEM", 1)[1]
    blocks = re.findall(r"```json\n(.*?)```", section, re.DOTALL)
    shown = [orjson.loads(b) for b in blocks]
    assert len(shown) == 2
    for example, shape in zip(shown, ("ocsf", "ecs"), strict=True):
        real = [d for d in lines(outputs[f"findings-{shape}"]) if "pan" in orjson.dumps(d).decode()]
        assert real, shape
        assert _paths(example) == _paths(real[0]), shape

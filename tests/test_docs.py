"""The docs agree with the code: config keys, the example config, gateway samples, links.

- The configuration reference in docs/operator-guide.md lists exactly the keys that
  auditor/config.py accepts (read from its source, so a new key fails here until it is
  documented).
- examples/config.toml parses, and with every `# key = value` line switched on it still
  parses and sets every documented key.
- Every TOML config block in the guide and the README parses.
- Each gateway's sample line parses with the `[[source]]` shown beside it, and yields the
  fields the guide says it does.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from auditor.config import load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "operator-guide.md"
EXAMPLE = ROOT / "examples" / "config.toml"
CONFIG_PY = ROOT / "auditor" / "config.py"

# Which TOML table each reader in auditor/config.py reads: (function, variable) → prefix.
SECTIONS = {
    ("parse_config", "top"): "",
    ("_store", "t"): "store",
    ("_source", "t"): "source",
    ("_rules", "t"): "rules",
    ("_rules", "overrides_t"): "rules.override",
    ("_override", "t"): "rules.override.<rule-id>",
    ("_report", "t"): "report",
    ("_report", "jt"): "report.job",
    ("_daemon", "t"): "daemon",
    ("_retention", "t"): "retention",
    ("_outputs", "top"): "",
    ("_output", "t"): "output",
    ("_file_output", "t"): "output",
    ("_syslog_output", "t"): "output",
    ("_webhook_output", "t"): "output",
}
_READERS = {"get", "require", "positive", "str_list", "table"}


def code_keys() -> set[str]:
    """Every leaf key auditor/config.py reads, as `section.key`."""
    tree = ast.parse(CONFIG_PY.read_text(encoding="utf-8"))
    keys: set[str] = set()
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        for node in ast.walk(fn):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _READERS
                and isinstance(node.func.value, ast.Name)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                continue
            where = (fn.name, node.func.value.id)
            assert where in SECTIONS, (
                f"config.py reads key {node.args[0].value!r} through {where}: add it to "
                "SECTIONS in tests/test_docs.py and document it in docs/operator-guide.md"
            )
            prefix = SECTIONS[where]
            keys.add(f"{prefix}.{node.args[0].value}" if prefix else node.args[0].value)
    # Keep leaves only: `source`, `rules.override`, `report.job` are tables.
    return {k for k in keys if not any(o.startswith(k + ".") for o in keys)}


def reference_keys() -> set[str]:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## 4. Configuration reference", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_.<>-]+)` \|", section, re.MULTILINE))


def test_reference_lists_exactly_the_keys_config_py_accepts() -> None:
    code, doc = code_keys(), reference_keys()
    assert len(code) > 30  # the extraction itself works
    assert code - doc == set(), "keys accepted by config.py but missing from the guide"
    assert doc - code == set(), "keys in the guide that config.py does not accept"


def _uncomment(text: str) -> str:
    """Switch on every commented-out setting (`# key = value`, `# [table]`)."""
    return "\n".join(
        re.sub(r"^# ((?:[A-Za-z_]\w*) = .*|\[.*\])$", r"\1", line) for line in text.splitlines()
    )


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        if prefix == "rules.override":
            name = "rules.override.<rule-id>"
        if (
            isinstance(value, dict)
            and name not in ("source.fields", "output.headers")
            and not (name.endswith(".params"))
        ):
            out |= _leaf_keys(value, name)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                out |= _leaf_keys(item, name)
        else:
            out.add(name)
    return out


def test_example_config_parses_for_a_real_deployment() -> None:
    cfg = load_config(EXAMPLE)
    assert str(cfg.store.path) == "/var/lib/log-auditor/audit.db"
    assert [s.path for s in cfg.sources] == ["/var/log/nginx/access.log"]
    assert str(cfg.report.output_dir) == "/var/lib/log-auditor/reports"
    assert cfg.report.jobs, "the example schedules a report"


def test_example_config_shows_every_key_with_a_valid_value() -> None:
    text = _uncomment(EXAMPLE.read_text(encoding="utf-8"))
    data = tomllib.loads(text)
    parse_config(data, str(EXAMPLE), base=EXAMPLE.parent)
    assert _leaf_keys(data) == code_keys()


def _toml_blocks(path: Path) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL)


@pytest.mark.parametrize("doc", ["docs/operator-guide.md", "README.md"])
def test_config_blocks_in_the_docs_parse(doc: str) -> None:
    path = ROOT / doc
    if not path.exists():
        pytest.skip(f"{doc} does not exist")
    blocks = _toml_blocks(path)
    assert blocks or doc == "README.md"
    for block in blocks:
        parse_config(tomllib.loads(block), doc)


def _gateways() -> list[tuple[str, str, str, set[str]]]:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## 5. Gateways", 1)[1].split("\n## ", 1)[0]
    out = []
    for part in section.split("\n### ")[1:]:
        title = part.splitlines()[0]
        conf = re.search(r"```toml\n(.*?)```", part, re.DOTALL)
        line = re.search(r"```log\n(.*?)\n```", part, re.DOTALL)
        reads = re.search(r"^Read from this line: (.*)\.$", part, re.MULTILINE)
        if conf and line and reads:
            out.append((title, conf.group(1), line.group(1), set(reads.group(1).split(", "))))
    return out


GATEWAYS = _gateways()
_FIELDS = {"scheme": "scheme", "TLS version": "tls_version", "host": "host", "user": "user_name"}


def test_every_gateway_has_a_sample() -> None:
    titles = {g[0] for g in GATEWAYS}
    for name in ("nginx", "Apache", "Envoy", "Kong", "Traefik", "HAProxy", "Caddy", "AWS"):
        assert any(t.startswith(name) for t in titles), name


@pytest.mark.parametrize(("title", "conf", "line", "reads"), GATEWAYS, ids=[g[0] for g in GATEWAYS])
def test_gateway_sample_parses_with_its_source(
    title: str, conf: str, line: str, reads: set[str]
) -> None:
    formats = pytest.importorskip("auditor.formats")
    from auditor.model import Line
    from auditor.normalize import PassThroughRedactor

    src = parse_config(tomllib.loads(conf), title).sources[0]
    spec = formats.FormatSpec(
        src.format, log_format=src.log_format, fields=src.fields, scheme=src.scheme
    )
    decode = formats.build_decoder(spec, PassThroughRedactor(), src.name)
    event = decode(Line(src.name, "access.log", 0, len(line) + 1, line))
    assert event is not None, f"{title}: the sample line does not parse"
    assert event.client_ip and event.method and event.status and event.path.startswith("/")
    assert reads <= set(_FIELDS), reads
    for label in reads:
        assert getattr(event, _FIELDS[label]) is not None, f"{title}: no {label}"
    if "scheme" in reads:
        assert event.scheme == "https"


def test_json_field_names_in_the_guide_are_the_ones_the_parser_accepts() -> None:
    spec = pytest.importorskip("auditor.formats.spec")
    text = GUIDE.read_text(encoding="utf-8")
    part = text.split("### Any JSON-lines log", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"`([a-z_]+)`", part)) - {"json", "fields", "on"}
    assert names == set(spec.RAW_KEYS) | set(spec.EVENT_TO_RAW)


@pytest.mark.parametrize("doc", ["operator-guide.md", "rules-guide.md", "compliance-readers.md"])
def test_relative_links_resolve(doc: str) -> None:
    path = ROOT / "docs" / doc
    assert path.exists(), doc
    for target in re.findall(r"\]\((?!https?://|#)([^)#]+)(?:#[^)]*)?\)", path.read_text()):
        assert (path.parent / target).exists(), f"{doc}: broken link {target}"


def test_rule_blocks_in_the_rules_guide_load(tmp_path: Path) -> None:
    rules = pytest.importorskip("auditor.rules")
    blocks = _toml_blocks(ROOT / "docs" / "rules-guide.md")
    files, configs = [], []
    for i, block in enumerate(blocks):
        if "[[rule]]" in block or "[[predicate]]" in block:
            path = tmp_path / f"{i:02d}.toml"
            path.write_text(block, encoding="utf-8")
            files.append(path)
        else:
            configs.append(parse_config(tomllib.loads(block), "rules-guide.md"))
    assert len(files) >= 3 and configs
    loaded = rules.load_rulesets(files)
    assert all(rule.examples or rule.detector for rule in loaded.rules)
    examples = pytest.importorskip("auditor.detectors.examples")
    problems = examples.check_examples(loaded)
    assert problems == [], [str(p) for p in problems]
    for cfg in configs:  # the tuning examples name rules the guide defines
        rules.load_rulesets(files, cfg.rules.overrides)


def _bundled_rule_ids() -> set[str]:
    ids: set[str] = set()
    for path in (ROOT / "rulesets").glob("*.toml"):
        ids |= set(re.findall(r'^id = "([^"]+)"', path.read_text(encoding="utf-8"), re.MULTILINE))
    return ids


def test_rule_ids_in_the_example_config_exist() -> None:
    ids = _bundled_rule_ids()
    if not ids:
        pytest.skip("no bundled rulesets yet")
    cfg = parse_config(tomllib.loads(_uncomment(EXAMPLE.read_text(encoding="utf-8"))), "example")
    named = set(cfg.rules.overrides)
    assert named, "the example shows an override and a disable"
    assert named <= ids, named - ids
    guide = GUIDE.read_text(encoding="utf-8")
    for rule_id in re.findall(r'rules\.override\."([^"]+)"', guide):
        assert rule_id in ids, rule_id


def test_compliance_page_names_every_report_section() -> None:
    """The page for compliance readers walks through the report's sections by their names."""
    sources = " ".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "auditor/report").glob("*.py")
    )
    headings = {" ".join(h.split()) for h in re.findall(r'Heading\("([^"]+)"\)', sources)}
    if not headings:
        pytest.skip("the report has no sections yet")
    page = (ROOT / "docs/compliance-readers.md").read_text(encoding="utf-8").replace("**", "")
    page = " ".join(page.split())
    missing = sorted(h for h in headings if h not in page)
    assert missing == [], missing

"""What a process pays at start for the formats: JSON schemas are compiled when first used,
and the decode worker's imports leave the store's SQLite side out (the scan waits for the
worker's start). Results are covered by the format tests; these check only the laziness."""

from __future__ import annotations

import subprocess
import sys

import orjson

from auditor.formats import FormatSpec, build_decoder
from auditor.formats.jsonfmt import SCHEMAS, JsonParser, compile_schema
from auditor.formats.spec import Ctx
from auditor.model import Line
from auditor.normalize import PassThroughRedactor

CADDY = (
    '{"level":"info","ts":1763625600.5,"logger":"http.log.access.log0","msg":"handled request",'
    '"request":{"remote_ip":"192.0.2.7","remote_port":"51000","client_ip":"192.0.2.7",'
    '"proto":"HTTP/2.0","method":"GET","host":"example.com","uri":"/a?b=1",'
    '"headers":{"User-Agent":["curl/8.4.0"]}},"status":200,"size":12,"duration":0.01}'
)
ENVOY = (
    '{"start_time":"2026-11-20T08:00:00.007Z","method":"GET","path":"/x","protocol":"HTTP/1.1",'
    '"response_code":404,"downstream_remote_address":"192.0.2.9:40000"}'
)


def test_a_json_parser_compiles_a_schema_when_a_record_first_needs_it() -> None:
    parser = JsonParser("json")
    assert len(parser.extractors) == 0
    fields = parser.fields(CADDY)
    assert set(parser.extractors) == {"caddy"}
    raw = compile_schema(SCHEMAS["caddy"])(orjson.loads(CADDY))
    assert fields is not None and raw is not None and raw.items() <= fields.items()
    assert fields["scheme"] == "http"  # the Caddy fixup ran too
    assert parser.fields(ENVOY) is not None
    assert set(parser.extractors) == {"caddy", "envoy"}


def test_a_one_flavour_decoder_decodes_its_records_and_refuses_others() -> None:
    decode = build_decoder(FormatSpec("caddy"), PassThroughRedactor(), "s")
    ev = decode(Line("s", "f", 0, 1, CADDY))
    assert ev is not None and ev.format == "caddy" and ev.path == "/a" and ev.status == 200
    assert decode(Line("s", "f", 1, 2, ENVOY)) is None  # an Envoy record is not Caddy's
    bound = JsonParser("json").bind(Ctx("s", PassThroughRedactor(), None))
    both = [bound(text, Line("s", "f", 0, 1, text)) for text in (CADDY, ENVOY)]
    assert [e.status if e else None for e in both] == [200, 404]


def test_the_decode_worker_starts_without_the_sqlite_store() -> None:
    code = (
        "import sys, auditor.decodeworker\n"
        "print(sorted(m for m in ('sqlite_utils', 'auditor.store.db') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_store_package_still_exports_its_names() -> None:
    from auditor import store
    from auditor.store import Store, StoredPosition, finding_id
    from auditor.store import report_queries as rq  # a submodule, imported by name

    assert store.Store is Store and StoredPosition.__name__ == "StoredPosition"
    assert callable(finding_id) and rq.__name__ == "auditor.store.report_queries"

from __future__ import annotations

import gzip
from pathlib import Path

from auditor.fileid import fingerprint, identify


def test_no_identity_without_complete_first_line(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"partial")
    assert identify(p) is None
    p.write_bytes(b"")
    assert identify(p) is None


def test_identity_is_stable_as_file_grows_and_survives_gzip(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"first line\n")
    a = identify(p)
    p.write_bytes(b"first line\nsecond\n")
    b = identify(p)
    assert a is not None and b is not None and a.file_id == b.file_id
    gz = tmp_path / "a.log.1.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    c = identify(gz)
    assert c is not None and c.file_id == a.file_id and c.compressed


def test_fingerprint_of_huge_first_line() -> None:
    assert fingerprint(b"x" * 5000) is not None
    assert fingerprint(b"x" * 100) is None

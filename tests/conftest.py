"""Shared fixtures: the corpus location, a webhook receiver on loopback, and the slow-test
opt-in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from factories import corpus_dir
from receivers import Receiver


@pytest.fixture
def corpus() -> Path:
    c = corpus_dir()
    if c is None:
        pytest.skip("corpus absent: set LOG_AUDITOR_CORPUS or put ../shared/corpus beside the repo")
    return c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback (``receivers.Receiver``), closed after the test."""
    rx = Receiver()
    try:
        yield rx
    finally:
        rx.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow soak test: set RUN_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

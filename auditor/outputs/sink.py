"""What every output's sink does: send a batch of findings, or say how far it got."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Item:
    """One finding to send: the store row (for headers) and its serialized shape."""

    finding: Mapping[str, Any]  # as auditor.store.queries.iter_findings yields it
    body: bytes  # the finding in the output's shape, as JSON


class DeliveryError(Exception):
    """Sending failed; the first ``sent`` items of the batch did arrive (and count)."""

    def __init__(self, reason: str, sent: int = 0) -> None:
        super().__init__(reason)
        self.sent = sent


class Sink(Protocol):
    """Blocking I/O, called from one worker thread at a time."""

    batch_size: int  # at most this many items per ``send``

    def send(self, items: Sequence[Item]) -> None:
        """Deliver every item in order, or raise ``DeliveryError`` saying how many did."""

    def close(self) -> None: ...

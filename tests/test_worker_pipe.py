"""The decode workers' pipes carry whole messages (``decodeworker._Pipe``): any size,
in order, and a closed writer ends the reader with ``EOFError``."""

from __future__ import annotations

import os
import random
import threading

import pytest

from auditor.decodeworker import _JOIN_MAX, PIPE_SIZE, _Pipe


def test_messages_of_every_size_come_through_whole_and_in_order() -> None:
    r, w = os.pipe()
    rng = random.Random(3)
    sizes = [0, 1, 7, 8, 9, _JOIN_MAX - 1, _JOIN_MAX, _JOIN_MAX + 1, 65536, 3 * PIPE_SIZE + 5]
    sizes += [rng.randrange(0, 200_000) for _ in range(30)]
    msgs = [rng.randbytes(n) for n in sizes]
    writer, reader = _Pipe(w), _Pipe(r)

    def send() -> None:  # larger than the pipe holds: the reader reads meanwhile
        for m in msgs:
            writer.send_bytes(m)
        writer.close()

    t = threading.Thread(target=send)
    t.start()
    try:
        got = [reader.recv_bytes() for _ in msgs]
        with pytest.raises(EOFError):
            reader.recv_bytes()
    finally:
        t.join()
        reader.close()
    assert got == msgs


def test_a_message_cut_short_is_eof() -> None:
    r, w = os.pipe()
    os.write(w, (100).to_bytes(8, "big") + b"x" * 10)
    os.close(w)
    reader = _Pipe(r)
    with pytest.raises(EOFError):
        reader.recv_bytes()
    reader.close()
    reader.close()  # once closed, closing again does nothing


def test_writing_to_a_closed_reader_is_broken_pipe() -> None:
    r, w = os.pipe()
    os.close(r)
    writer = _Pipe(w)
    with pytest.raises(BrokenPipeError):
        writer.send_bytes(b"x" * 100)
    writer.close()

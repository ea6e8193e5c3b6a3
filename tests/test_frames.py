"""Frame encoding, acks and fragment reassembly."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from larkbot.sources.longconn.frames import (
    FragmentAssembler,
    Frame,
    FrameMethod,
    ack_frame,
    decode_frame,
    encode_frame,
    headers_of,
    ping_frame,
)


def _data_frame(payload: bytes, **headers: str) -> object:
    frame = Frame(SeqID=7, LogID=9, service=3, method=FrameMethod.DATA, payload=payload)
    for key, value in headers.items():
        header = frame.headers.add()
        header.key, header.value = key, value
    return frame


def test_ping_frame_has_the_service_id_and_type() -> None:
    frame = decode_frame(encode_frame(ping_frame(42)))
    assert frame.service == 42
    assert frame.method == FrameMethod.CONTROL
    assert headers_of(frame) == {"type": "ping"}


def test_ack_keeps_the_frame_and_carries_code_and_biz_rt() -> None:
    frame = _data_frame(b'{"x":1}', type="event", message_id="f1", sum="1", seq="0")
    ack = decode_frame(encode_frame(ack_frame(frame, 200, 3)))
    assert ack.SeqID == 7 and ack.LogID == 9 and ack.service == 3
    assert headers_of(ack)["message_id"] == "f1"
    assert headers_of(ack)["biz_rt"] == "3"
    assert json.loads(ack.payload) == {"code": 200, "headers": {}, "data": None}


def test_ack_with_data_is_base64() -> None:
    ack = ack_frame(_data_frame(b""), 200, 0, data=b'{"ok":true}')
    assert json.loads(ack.payload)["data"] == "eyJvayI6dHJ1ZX0="


def test_decode_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="malformed frame"):
        decode_frame(b"\xff\xff\xff\xff")


@given(st.binary(max_size=512))
def test_decode_never_raises_anything_but_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        decode_frame(data)


@given(st.binary(min_size=1, max_size=2000), st.integers(min_value=2, max_value=9), st.randoms())
def test_fragments_reassemble_in_any_order(payload: bytes, parts: int, rnd: object) -> None:
    size = -(-len(payload) // parts)
    chunks = [payload[i * size : (i + 1) * size] for i in range(parts)]
    order = list(range(parts))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    assembler = FragmentAssembler()
    results = [assembler.add("m1", parts, seq, chunks[seq], now=0.0) for seq in order]
    assert results[:-1] == [None] * (parts - 1)
    assert results[-1] == payload
    assert len(assembler) == 0


def test_incomplete_fragments_expire() -> None:
    assembler = FragmentAssembler(ttl=5.0)
    assert assembler.add("m1", 2, 0, b"a", now=0.0) is None
    assert assembler.expire(now=6.0) == 1
    # The late second half starts a new set rather than completing a stale one.
    assert assembler.add("m1", 2, 1, b"b", now=6.1) is None


def test_fragment_bounds_are_enforced() -> None:
    assembler = FragmentAssembler(max_bytes=10)
    with pytest.raises(ValueError, match="out of range"):
        assembler.add("m1", 2, 5, b"a", now=0.0)
    with pytest.raises(ValueError, match="size limit"):
        assembler.add("m2", 2, 0, b"x" * 11, now=0.0)
    assert len(assembler) == 0


def test_single_frame_passes_through() -> None:
    assert FragmentAssembler().add("m", 1, 0, b"abc", now=0.0) == b"abc"

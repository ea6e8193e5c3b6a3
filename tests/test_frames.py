"""Frame encoding, acks and fragment reassembly."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import types
from typing import Any

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


def test_a_refusing_ack_carries_its_code() -> None:
    ack = ack_frame(_data_frame(b"{}", type="event"), 503, 12)
    assert (
        ack.payload
        == json.dumps({"code": 503, "headers": {}, "data": None}, separators=(",", ":")).encode()
    )


def test_headers_too_long_for_one_byte_lengths_round_trip() -> None:
    frame = _data_frame(b"x", type="event", trace_id="t" * 200, **{"k" * 130: "v"})
    back = decode_frame(encode_frame(ack_frame(decode_frame(encode_frame(frame)), 200, 1)))
    assert headers_of(back) == {
        "type": "event",
        "trace_id": "t" * 200,
        "k" * 130: "v",
        "biz_rt": "1",
    }


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


def _sdk_frame_class() -> Any:
    """lark-oapi's generated ``pbbp2_pb2.Frame``, without running ``lark_oapi/__init__``."""
    spec = importlib.util.find_spec("lark_oapi")
    assert spec is not None and spec.submodule_search_locations
    root = next(iter(spec.submodule_search_locations))
    placeholders = []
    for name, sub in (("lark_oapi", ""), ("lark_oapi.ws", "/ws")):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [root + sub]
            sys.modules[name] = module
            placeholders.append(name)
    try:
        from lark_oapi.ws.pb.pbbp2_pb2 import Frame as SdkFrame
    finally:
        for name in placeholders:
            del sys.modules[name]
    return SdkFrame


SdkFrame = _sdk_frame_class()
_text = st.text(max_size=40)


@given(
    seq=st.integers(0, 2**64 - 1),
    log=st.integers(0, 2**64 - 1),
    service=st.integers(-(2**31), 2**31 - 1),
    method=st.integers(-(2**31), 2**31 - 1),
    headers=st.lists(st.tuples(_text, _text), max_size=6),
    payload=st.binary(max_size=300),
    payload_type=_text,
    log_id_new=_text,
)
def test_codec_matches_lark_oapis_generated_class_byte_for_byte(
    seq: int,
    log: int,
    service: int,
    method: int,
    headers: list[tuple[str, str]],
    payload: bytes,
    payload_type: str,
    log_id_new: str,
) -> None:
    ours = Frame(SeqID=seq, LogID=log, service=service, method=method, payload=payload)
    theirs = SdkFrame(SeqID=seq, LogID=log, service=service, method=method)
    if payload:
        theirs.payload = payload
    for frame in (ours, theirs):
        for key, value in headers:
            header = frame.headers.add()
            header.key, header.value = key, value
    if payload_type:
        ours.payload_type = theirs.payload_type = payload_type
    if log_id_new:
        ours.LogIDNew = theirs.LogIDNew = log_id_new
    wire = encode_frame(ours)
    assert wire == theirs.SerializeToString()
    parsed = SdkFrame()
    parsed.ParseFromString(wire)
    back = decode_frame(parsed.SerializeToString())
    assert (back.SeqID, back.LogID, back.service, back.method) == (seq, log, service, method)
    assert [(h.key, h.value) for h in back.headers] == headers
    assert (back.payload, back.payload_type, back.LogIDNew) == (payload, payload_type, log_id_new)
    # An ack built from the parsed frame is what the SDK's own CopyFrom would send.
    sdk_ack = SdkFrame()
    sdk_ack.CopyFrom(parsed)
    header = sdk_ack.headers.add()
    header.key, header.value = "biz_rt", "5"
    sdk_ack.payload = json.dumps(
        {"code": 200, "headers": {}, "data": None}, separators=(",", ":")
    ).encode()
    assert encode_frame(ack_frame(back, 200, 5)) == sdk_ack.SerializeToString()


def test_frames_missing_a_required_field_are_refused_like_the_sdk_does() -> None:
    partial = SdkFrame()
    partial.SeqID = 1
    wire = partial.SerializePartialToString()
    with pytest.raises(ValueError, match="malformed frame"):
        decode_frame(wire)
    with pytest.raises(ValueError):
        encode_frame(Frame(SeqID=1, LogID=1, service=1))

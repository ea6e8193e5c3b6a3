"""Binary frames of the long connection (``pbbp2.Frame``) and their headers.

The schema is lark-oapi's (``lark_oapi/ws/pb/pbbp2.proto``, proto2)::

    message Header { required string key = 1; required string value = 2; }
    message Frame {
        required uint64 SeqID = 1;  required uint64 LogID = 2;
        required int32 service = 3; required int32 method = 4;
        repeated Header headers = 5;
        optional string payload_encoding = 6; optional string payload_type = 7;
        optional bytes payload = 8;           optional string LogIDNew = 9;
    }

Encoded and decoded here rather than with lark-oapi's generated class: that class runs on
the pure-Python protobuf runtime lark-oapi vendors, which spends about 135 µs to decode a
frame and encode its ack, a quarter of the whole budget of an echo answer; this codec
spends about 30 µs. Importing that runtime also needs a workaround (``lark_oapi/__init__``
binds an event loop), and costs start-up time. A test checks both codecs byte for byte
against each other, so lark-oapi stays the reference of the schema.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Frame",
    "FrameMethod",
    "FrameType",
    "Header",
    "ack_frame",
    "decode_frame",
    "encode_frame",
    "headers_of",
    "ping_frame",
]

_U64 = (1 << 64) - 1
_OPTIONAL_TEXT = ("payload_encoding", "payload_type", "LogIDNew")


class Header:
    """One ``pbbp2.Header``: a key and a value."""

    __slots__ = ("key", "value")

    def __init__(self, key: str = "", value: str = "") -> None:
        self.key = key
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Header) and (self.key, self.value) == (other.key, other.value)

    def __repr__(self) -> str:
        return f"Header({self.key!r}, {self.value!r})"


class _Headers(list[Header]):
    """The repeated ``headers`` field; ``add()`` appends an empty header, as protobuf's does."""

    def add(self, key: str = "", value: str = "") -> Header:
        header = Header(key, value)
        self.append(header)
        return header


class Frame:
    """One ``pbbp2.Frame``, with the attribute names and methods of the generated class.

    Unset fields read as their defaults (0, empty); optional fields are written when they
    were set to something non-empty or came in the frame that was parsed.
    """

    __slots__ = (
        "LogID",
        "LogIDNew",
        "SeqID",
        "_present",
        "headers",
        "method",
        "payload",
        "payload_encoding",
        "payload_type",
        "service",
    )

    def __init__(
        self,
        SeqID: int | None = None,  # noqa: N803 (the schema's field names)
        LogID: int | None = None,  # noqa: N803
        service: int | None = None,
        method: int | None = None,
        headers: list[Header] | None = None,
        payload_encoding: str = "",
        payload_type: str = "",
        payload: bytes = b"",
        LogIDNew: str = "",  # noqa: N803
    ) -> None:
        self.SeqID = SeqID
        self.LogID = LogID
        self.service = service
        self.method = method
        self.headers = _Headers(headers or ())
        self.payload_encoding = payload_encoding
        self.payload_type = payload_type
        self.payload = payload
        self.LogIDNew = LogIDNew
        self._present: frozenset[str] = frozenset()

    def CopyFrom(self, other: Frame) -> None:  # noqa: N802 (protobuf's name)
        """Become a copy of ``other`` (headers copied, not shared)."""
        for name in Frame.__slots__:
            setattr(self, name, getattr(other, name))
        self.headers = _Headers(Header(h.key, h.value) for h in other.headers)

    def SerializeToString(self) -> bytes:  # noqa: N802
        """Encode the frame; ``ValueError`` when a required field is unset."""
        if self.SeqID is None or self.LogID is None or self.service is None or self.method is None:
            raise ValueError("a frame needs SeqID, LogID, service and method")
        out = bytearray()
        out += b"\x08"
        _put_varint(out, self.SeqID & _U64)
        out += b"\x10"
        _put_varint(out, self.LogID & _U64)
        out += b"\x18"
        _put_varint(out, self.service & _U64)
        out += b"\x20"
        _put_varint(out, self.method & _U64)
        for header in self.headers:
            key, value = header.key.encode(), header.value.encode()
            inner = len(key) + len(value) + 4
            if inner < 0x80:  # every length fits one byte: written in one step
                out += b"\x2a%c\x0a%c%s\x12%c%s" % (inner, len(key), key, len(value), value)
                continue
            inner += _varint_size(len(key)) + _varint_size(len(value)) - 2
            out += b"\x2a"
            _put_varint(out, inner)
            out += b"\x0a"
            _put_varint(out, len(key))
            out += key
            out += b"\x12"
            _put_varint(out, len(value))
            out += value
        present = self._present
        for tag, name in ((b"\x32", "payload_encoding"), (b"\x3a", "payload_type")):
            text = getattr(self, name)
            if text or name in present:
                _put_bytes(out, tag, text.encode())
        if self.payload or "payload" in present:
            _put_bytes(out, b"\x42", bytes(self.payload))
        if self.LogIDNew or "LogIDNew" in present:
            _put_bytes(out, b"\x4a", self.LogIDNew.encode())
        return bytes(out)

    def ParseFromString(self, data: bytes) -> None:  # noqa: N802
        """Decode ``data`` into this frame; ``ValueError`` when it is not a whole frame."""
        _parse_into(self, data)

    def __repr__(self) -> str:
        return (
            f"Frame(SeqID={self.SeqID}, LogID={self.LogID}, service={self.service}, "
            f"method={self.method}, headers={list(self.headers)}, payload={self.payload!r})"
        )


def _varint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_bytes(out: bytearray, tag: bytes, value: bytes) -> None:
    out += tag
    _put_varint(out, len(value))
    out += value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]  # IndexError on a truncated varint
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint too long")


def _int32(value: int) -> int:
    # int32 travels as a sign-extended 64-bit varint; protobuf keeps the low 32 bits.
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _fields(data: bytes) -> Any:
    """Yield ``(field number, wire type, value)``; values of wire types 1 and 5 are skipped."""
    pos, end = 0, len(data)
    while pos < end:
        # One-byte varints (every tag and most lengths of a frame) are read inline: the
        # call to _varint was most of the cost of decoding a frame.
        tag = data[pos]
        pos += 1
        if tag >= 0x80:
            tag, pos = _varint(data, pos - 1)
        number, wire = tag >> 3, tag & 7
        if wire == 2:
            length = data[pos]  # IndexError on a truncated frame, as from _varint
            pos += 1
            if length >= 0x80:
                length, pos = _varint(data, pos - 1)
            if pos + length > end:
                raise ValueError("truncated field")
            value, pos = data[pos : pos + length], pos + length
        elif wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise ValueError("truncated field")
            continue
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if number == 0:
            raise ValueError("field number 0")
        yield number, wire, value


def _parse_header(data: bytes) -> Header:
    # The usual shape, key then value with one-byte lengths, is read without _fields.
    size = len(data)
    if size >= 4 and data[0] == 0x0A and data[1] < 0x80:
        value_at = 4 + data[1]
        if (
            value_at <= size
            and data[value_at - 2] == 0x12
            and data[value_at - 1] < 0x80
            and data[value_at - 1] == size - value_at
        ):
            return Header(data[2 : value_at - 2].decode(), data[value_at:].decode())
    key = value = None
    for number, wire, raw in _fields(data):
        if wire == 2 and number == 1:
            key = raw.decode()
        elif wire == 2 and number == 2:
            value = raw.decode()
    if key is None or value is None:
        raise ValueError("a header lacks its key or value")
    return Header(key, value)


def _parse_into(frame: Frame, data: bytes) -> None:
    required: dict[int, int] = {}
    headers = _Headers()
    present = set()
    text: dict[str, str] = {}
    payload = b""
    # Fields with an unexpected wire type are unknown fields to protobuf: skipped.
    for number, wire, value in _fields(bytes(data)):
        if wire == 0 and 1 <= number <= 4:
            required[number] = value
        elif wire != 2:
            continue
        elif number == 5:
            headers.append(_parse_header(value))
        elif number == 8:
            payload = value
            present.add("payload")
        elif number in (6, 7, 9):
            name = _OPTIONAL_TEXT[(6, 7, 9).index(number)]
            text[name] = value.decode()
            present.add(name)
    if len(required) != 4:
        raise ValueError("the frame lacks a required field (SeqID, LogID, service, method)")
    frame.SeqID, frame.LogID = required[1], required[2]
    frame.service, frame.method = _int32(required[3]), _int32(required[4])
    frame.headers = headers
    frame.payload = payload
    frame.payload_encoding = text.get("payload_encoding", "")
    frame.payload_type = text.get("payload_type", "")
    frame.LogIDNew = text.get("LogIDNew", "")
    frame._present = frozenset(present)


class FrameMethod(enum.IntEnum):
    """``Frame.method``: control (ping/pong) or data (events, cards)."""

    CONTROL = 0
    DATA = 1


class FrameType(enum.StrEnum):
    """Value of the ``type`` header."""

    PING = "ping"
    PONG = "pong"
    EVENT = "event"
    CARD = "card"


def headers_of(frame: Frame) -> dict[str, str]:
    """Return the frame's headers as a plain mapping (last value wins)."""
    return {h.key: h.value for h in frame.headers}


def decode_frame(data: bytes) -> Frame:
    """Parse bytes into a Frame; raises ``ValueError`` on anything malformed."""
    frame = Frame()
    try:
        frame.ParseFromString(data)
    except (ValueError, IndexError) as exc:  # IndexError: the bytes end inside a varint
        raise ValueError(f"malformed frame: {exc or 'truncated'}") from None
    return frame


def encode_frame(frame: Frame) -> bytes:
    """Serialise a Frame."""
    return frame.SerializeToString()


def ping_frame(service_id: int) -> Frame:
    """Build the client's ``type=ping`` control frame."""
    frame = Frame(SeqID=0, LogID=0, service=service_id, method=FrameMethod.CONTROL)
    header = frame.headers.add()
    header.key, header.value = "type", FrameType.PING.value
    return frame


def ack_frame(frame: Frame, code: int, biz_rt_ms: int, data: bytes | None = None) -> Frame:
    """Turn a received data frame into its ack: same frame, JSON response payload.

    ``code`` other than 200 asks the platform to re-deliver the event later.
    """
    # The ack shares the received frame's headers (neither is changed after), and its
    # usual payload is formatted rather than dumped: together, half the cost of a copy.
    ack = Frame(
        SeqID=frame.SeqID,
        LogID=frame.LogID,
        service=frame.service,
        method=frame.method,
        headers=[*frame.headers, Header("biz_rt", str(biz_rt_ms))],
        payload_encoding=frame.payload_encoding,
        payload_type=frame.payload_type,
        LogIDNew=frame.LogIDNew,
    )
    ack._present = frame._present
    if data is None:
        ack.payload = b'{"code":%d,"headers":{},"data":null}' % code
    else:
        body = {"code": code, "headers": {}, "data": base64.b64encode(data).decode()}
        ack.payload = json.dumps(body, separators=(",", ":")).encode()
    return ack


@dataclass
class _Partial:
    parts: list[bytes | None]
    first_seen: float
    size: int = 0


@dataclass
class FragmentAssembler:
    """Reassemble data frames whose payload was split into ``sum`` fragments.

    Incomplete sets are dropped after ``ttl`` seconds, and a set bigger than
    ``max_bytes`` is dropped at once, so a misbehaving peer cannot hold memory.
    """

    ttl: float = 5.0
    max_bytes: int = 4 * 1024 * 1024
    max_sets: int = 1024
    _sets: dict[str, _Partial] = field(default_factory=dict)

    def add(
        self, message_id: str, total: int, seq: int, payload: bytes, now: float
    ) -> bytes | None:
        """Add one fragment; return the whole payload once every fragment is in."""
        self.expire(now)
        if total <= 1:
            return payload
        if not 0 <= seq < total or total > 1024:
            raise ValueError(f"fragment {seq} of {total} is out of range")
        partial = self._sets.get(message_id)
        if partial is None:
            if len(self._sets) >= self.max_sets:
                oldest = min(self._sets, key=lambda k: self._sets[k].first_seen)
                del self._sets[oldest]
            partial = self._sets[message_id] = _Partial([None] * total, now)
        if len(partial.parts) != total:
            raise ValueError("fragments of one message disagree on their count")
        if partial.parts[seq] is None:
            partial.size += len(payload)
        partial.parts[seq] = payload
        if partial.size > self.max_bytes:
            del self._sets[message_id]
            raise ValueError("reassembled payload exceeds the size limit")
        if any(part is None for part in partial.parts):
            return None
        del self._sets[message_id]
        return b"".join(p for p in partial.parts if p is not None)

    def expire(self, now: float) -> int:
        """Drop sets older than ``ttl``; return how many were dropped."""
        stale = [k for k, v in self._sets.items() if now - v.first_seen > self.ttl]
        for key in stale:
            del self._sets[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._sets)

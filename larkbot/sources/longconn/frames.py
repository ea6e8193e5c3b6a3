"""Binary frames of the long connection (``pbbp2.Frame``) and their headers.

The schema is lark-oapi's own generated module. We load only its ``pb`` subpackage:
importing ``lark_oapi`` itself pulls in ~11,000 modules (1.5 s) and binds an asyncio
event loop at import time (lark-oapi 1.7.x), which a daemon that must be
ready in under two seconds, on its own loop, cannot afford.
"""

from __future__ import annotations

import base64
import enum
import importlib.util
import json
import sys
import types
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Frame",
    "FrameMethod",
    "FrameType",
    "ack_frame",
    "decode_frame",
    "encode_frame",
    "headers_of",
    "ping_frame",
]


def _load_frame_class() -> type:
    """Import ``lark_oapi.ws.pb.pbbp2_pb2.Frame`` without running ``lark_oapi/__init__``."""
    spec = importlib.util.find_spec("lark_oapi")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover
        raise ImportError("lark-oapi is not installed; it provides the frame schema")
    root = next(iter(spec.submodule_search_locations))
    placeholders: list[str] = []
    for name, sub in (("lark_oapi", ""), ("lark_oapi.ws", "/ws")):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [root + sub]
            sys.modules[name] = module
            placeholders.append(name)
    try:
        from lark_oapi.ws.pb.pbbp2_pb2 import Frame as FrameClass
    finally:
        # Drop the placeholders so a later real ``import lark_oapi`` runs its own
        # ``__init__``; it then finds ``lark_oapi.ws.pb.*`` already loaded, so the
        # Frame class stays one and the same.
        for name in placeholders:
            del sys.modules[name]
    return FrameClass


Frame: Any = _load_frame_class()


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


def headers_of(frame: Any) -> dict[str, str]:
    """Return the frame's headers as a plain mapping (last value wins)."""
    return {h.key: h.value for h in frame.headers}


def decode_frame(data: bytes) -> Any:
    """Parse bytes into a Frame; raises ``ValueError`` on anything malformed."""
    frame = Frame()
    try:
        frame.ParseFromString(data)
    except Exception as exc:  # the vendored protobuf raises its own DecodeError
        raise ValueError(f"malformed frame: {exc}") from None
    return frame


def encode_frame(frame: Any) -> bytes:
    """Serialise a Frame."""
    return bytes(frame.SerializeToString())


def ping_frame(service_id: int) -> Any:
    """Build the client's ``type=ping`` control frame."""
    frame = Frame(SeqID=0, LogID=0, service=service_id, method=FrameMethod.CONTROL)
    header = frame.headers.add()
    header.key, header.value = "type", FrameType.PING.value
    return frame


def ack_frame(frame: Any, code: int, biz_rt_ms: int, data: bytes | None = None) -> Any:
    """Turn a received data frame into its ack: same frame, JSON response payload.

    ``code`` other than 200 asks the platform to re-deliver the event later.
    """
    ack = Frame()
    ack.CopyFrom(frame)
    header = ack.headers.add()
    header.key, header.value = "biz_rt", str(biz_rt_ms)
    body: dict[str, Any] = {"code": code, "headers": {}, "data": None}
    if data is not None:
        body["data"] = base64.b64encode(data).decode()
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

"""Lark's long connection: endpoint discovery, protobuf frames, ping/pong, reassembly, acks."""

from larkbot.sources.longconn.connection import (
    ClientConfig,
    LarkAuthError,
    LongConnection,
    TransientConnectError,
)

__all__ = ["ClientConfig", "LarkAuthError", "LongConnection", "TransientConnectError"]

"""Webhook receive: Lark POSTs events and card callbacks to the HTTP port.

Mount :func:`webhook_routes` on the ops app (``build_ops_app(state, routes=...)``); every
request is verified (:func:`verify_request`) before its payload reaches the
:data:`FrameHandler` as an :class:`InboundFrame`, and the handler's :class:`Ack` decides
the answer.
"""

from larkbot.sources.webhook._endpoint import ACK_TIMEOUT_SECONDS, WebhookEndpoint, webhook_routes
from larkbot.sources.webhook._seam import Ack, FrameHandler, InboundFrame
from larkbot.sources.webhook._verify import (
    Challenge,
    DecryptError,
    Rejected,
    Verification,
    Verified,
    WebhookKeys,
    decrypt,
    verify_request,
)

__all__ = [
    "ACK_TIMEOUT_SECONDS",
    "Ack",
    "Challenge",
    "DecryptError",
    "FrameHandler",
    "InboundFrame",
    "Rejected",
    "Verification",
    "Verified",
    "WebhookEndpoint",
    "WebhookKeys",
    "decrypt",
    "verify_request",
    "webhook_routes",
]

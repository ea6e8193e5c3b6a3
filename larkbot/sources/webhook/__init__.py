"""Webhook receive: Lark POSTs events and card callbacks to the HTTP port.

Mount :func:`webhook_routes` on the ops app (``build_ops_app(state, routes=...)``); every
request is verified (:func:`verify_request`) before its payload reaches the
frame handler as a :class:`~larkbot.core.frames.InboundFrame`, and the handler's ack decides
the answer.
"""

from larkbot.sources.webhook._endpoint import ACK_TIMEOUT_SECONDS, WebhookEndpoint, webhook_routes
from larkbot.sources.webhook._source import WebhookSource
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
    "Challenge",
    "DecryptError",
    "Rejected",
    "Verification",
    "Verified",
    "WebhookEndpoint",
    "WebhookKeys",
    "WebhookSource",
    "decrypt",
    "verify_request",
    "webhook_routes",
]

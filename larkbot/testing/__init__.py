"""A local stand-in of the Lark platform, for tests, ``larkbot console`` and the benchmark.

``LarkStandIn`` serves the long connection and the OpenAPI on 127.0.0.1 inside the
caller's event loop and records everything it receives. More OpenAPI routes plug in as
``OpenApiRoute`` objects; their handlers get an ``ApiRequest`` and answer data, an
``ApiResponse``, or raise ``ApiError``. ``OpenAIStandIn`` is a local OpenAI-compatible
chat completions server for the LLM brain. ``WebhookDriver`` POSTs events to a webhook
signed and encrypted as Lark does, with faults, and retries like Lark.
"""

from larkbot.testing._openapi import ApiError, ApiRequest, ApiResponse, OpenApiRoute
from larkbot.testing._records import (
    AckRecord,
    ApiCallRecord,
    OutboundRecord,
    PatchRecord,
    ReactionRecord,
    ReplyRecord,
)
from larkbot.testing._scopes import app_scopes_route
from larkbot.testing._webhook import (
    LARK_RETRY_DELAYS,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDriver,
    WebhookFault,
    WebhookRequest,
    lark_encrypt,
    lark_signature,
)
from larkbot.testing.openai_standin import OpenAIStandIn
from larkbot.testing.standin import LarkStandIn

__all__ = [
    "LARK_RETRY_DELAYS",
    "AckRecord",
    "ApiCallRecord",
    "ApiError",
    "ApiRequest",
    "ApiResponse",
    "LarkStandIn",
    "OpenAIStandIn",
    "OpenApiRoute",
    "OutboundRecord",
    "PatchRecord",
    "ReactionRecord",
    "ReplyRecord",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDriver",
    "WebhookFault",
    "WebhookRequest",
    "app_scopes_route",
    "lark_encrypt",
    "lark_signature",
]

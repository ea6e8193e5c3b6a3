"""A local stand-in of the Lark platform, for tests, ``larkbot console`` and the benchmark.

``LarkStandIn`` serves the long connection and the OpenAPI on 127.0.0.1 inside the
caller's event loop and records everything it receives. More OpenAPI routes plug in as
``OpenApiRoute`` objects; their handlers get an ``ApiRequest`` and answer data, an
``ApiResponse``, or raise ``ApiError``. ``OpenAIStandIn`` is a local OpenAI-compatible
chat completions server for the LLM brain.
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
from larkbot.testing.openai_standin import OpenAIStandIn
from larkbot.testing.standin import LarkStandIn

__all__ = [
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
    "app_scopes_route",
]

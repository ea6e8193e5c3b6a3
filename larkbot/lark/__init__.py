"""The Lark OpenAPI client: tenant tokens, retries, rate limits, idempotent replies.

Every stage and every tool talks to Lark through :class:`LarkClient`; this package imports
none of them.
"""

from larkbot.lark.client import (
    BotInfo,
    CredentialsError,
    EndpointAnswer,
    LarkAPIError,
    LarkClient,
    SentMessage,
    reply_uuid,
)

__all__ = [
    "BotInfo",
    "CredentialsError",
    "EndpointAnswer",
    "LarkAPIError",
    "LarkClient",
    "SentMessage",
    "reply_uuid",
]

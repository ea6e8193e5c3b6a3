"""Replies: the async Lark OpenAPI client and the rendering of agent replies into messages."""

from larkbot.reply._retry import RetryPolicy
from larkbot.reply.openapi import (
    BotInfo,
    CredentialsError,
    LarkAPIError,
    LarkClient,
    SentMessage,
    reply_uuid,
)
from larkbot.reply.render import OutboundMessage, render_reply

__all__ = [
    "BotInfo",
    "CredentialsError",
    "LarkAPIError",
    "LarkClient",
    "OutboundMessage",
    "RetryPolicy",
    "SentMessage",
    "render_reply",
    "reply_uuid",
]

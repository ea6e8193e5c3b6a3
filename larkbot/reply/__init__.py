"""The answering stage: run the agent on an admitted message, render its reply into Lark
messages, post them idempotently and settle the message in the store."""

from larkbot.reply.render import OutboundMessage, render_reply
from larkbot.reply.responder import ReplyPoster, Responder

__all__ = ["OutboundMessage", "ReplyPoster", "Responder", "render_reply"]

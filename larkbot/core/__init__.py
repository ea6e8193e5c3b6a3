"""Core types below every stage: the inbound message, the frame seam, the reply, the
conversation, the agent protocol, the language, the error base and the retry policy.

This package imports no stage, no store and no client; every other package may import it.
"""

from larkbot.core.agent import Agent, Reply, RuntimeStatus
from larkbot.core.conversation import Conversation, Turn
from larkbot.core.errors import EX_CONFIG, EX_FAILURE, LarkbotError
from larkbot.core.frames import ACK_OK, ACK_OVERLOADED, Ack, FrameHandler, InboundFrame
from larkbot.core.language import LANGUAGES, Language, detect_language
from larkbot.core.message import InboundMessage, Mention, UserId
from larkbot.core.retry import RetryPolicy

__all__ = [
    "ACK_OK",
    "ACK_OVERLOADED",
    "EX_CONFIG",
    "EX_FAILURE",
    "LANGUAGES",
    "Ack",
    "Agent",
    "Conversation",
    "FrameHandler",
    "InboundFrame",
    "InboundMessage",
    "Language",
    "LarkbotError",
    "Mention",
    "Reply",
    "RetryPolicy",
    "RuntimeStatus",
    "Turn",
    "UserId",
    "detect_language",
]

"""The agent: turns a chat message and its conversation into a reply.

:class:`Assistant` is what the daemon runs; it answers built-in commands itself and hands
requests to a :class:`Brain` (the rule-based :class:`OfflineBrain` by default, an LLM
when one is configured), which acts in Lark through the tools.
"""

from larkbot.agent.assistant import Assistant
from larkbot.agent.brain import Brain, TurnContext
from larkbot.agent.offline import OfflineBrain, ToolCall
from larkbot.agent.profiles import BUILTIN_PROFILES, Profile, profiles_from_settings
from larkbot.core.agent import Agent, Reply, RuntimeStatus
from larkbot.core.conversation import Conversation, Turn
from larkbot.core.language import Language, detect_language

__all__ = [
    "BUILTIN_PROFILES",
    "Agent",
    "Assistant",
    "Brain",
    "Conversation",
    "Language",
    "OfflineBrain",
    "Profile",
    "Reply",
    "RuntimeStatus",
    "ToolCall",
    "Turn",
    "TurnContext",
    "detect_language",
    "profiles_from_settings",
]

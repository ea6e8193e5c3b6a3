"""larkbot: an AI assistant daemon for Lark/Feishu chats.

What an embedder needs is importable from here; each name loads its module on first use,
so ``import larkbot.core`` (which every module does) stays cheap::

    from larkbot import Daemon, Overrides, Settings, load_settings
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from larkbot.core._lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from larkbot.agent.tools.base import Tool, ToolContext, ToolResult
    from larkbot.config import Settings, load_settings
    from larkbot.core import Agent, Conversation, InboundMessage, LarkbotError, Reply
    from larkbot.daemon import Daemon, Overrides
    from larkbot.lark import LarkAPIError, LarkClient
    from larkbot.store import Store
    from larkbot.testing import LarkStandIn, OpenAIStandIn

__all__ = [
    "Agent",
    "Conversation",
    "Daemon",
    "InboundMessage",
    "LarkAPIError",
    "LarkClient",
    "LarkStandIn",
    "LarkbotError",
    "OpenAIStandIn",
    "Overrides",
    "Reply",
    "Settings",
    "Store",
    "Tool",
    "ToolContext",
    "ToolResult",
    "__version__",
    "load_settings",
]

_HOME = {
    "Agent": "larkbot.core",
    "Conversation": "larkbot.core",
    "InboundMessage": "larkbot.core",
    "LarkbotError": "larkbot.core",
    "Reply": "larkbot.core",
    "Daemon": "larkbot.daemon",
    "Overrides": "larkbot.daemon",
    "LarkAPIError": "larkbot.lark",
    "LarkClient": "larkbot.lark",
    "LarkStandIn": "larkbot.testing",
    "OpenAIStandIn": "larkbot.testing",
    "Settings": "larkbot.config",
    "load_settings": "larkbot.config",
    "Store": "larkbot.store",
    "Tool": "larkbot.agent.tools.base",
    "ToolContext": "larkbot.agent.tools.base",
    "ToolResult": "larkbot.agent.tools.base",
}


__getattr__ = lazy_exports(__name__, _HOME)

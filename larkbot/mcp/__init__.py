"""``larkbot mcp``: larkbot's Lark tools as an MCP server, for any AI client.

The same tool registry the chat agent uses, served over stdio, SSE (``/sse`` +
``/messages/``) or streamable HTTP (``/mcp``) with the official MCP SDK. Calls run
through the agent's :class:`~larkbot.agent.tools.runner.ToolRunner`, so the chat bot
and the MCP server agree on every tool, scope, limit, audit line and error sentence.

Safe by default: tools that change data are exposed only with ``--allow-writes`` or a
preset made for writing; the HTTP modes need a bearer token (``LARKBOT_MCP_TOKEN``)
unless they serve loopback only. Token modes: ``tenant`` (the app acts), ``user`` (the
caller's bearer token is their Lark user access token, and every call acts as them),
``auto`` (the app acts unless a call sets ``use_user_token``).
"""

from larkbot.mcp._agent_tool import AskLarkbot, PostAgentAnswer
from larkbot.mcp._auth import Caller, McpTokenVerifier, TokenMode
from larkbot.mcp._presets import DEFAULT_PRESET, PRESETS, Preset, ToolSelectionError, select_tools
from larkbot.mcp._serve import (
    McpOptions,
    McpSetupError,
    Mode,
    check_options,
    exposed_tools,
    serve_mcp,
)
from larkbot.mcp._server import LarkToolServer

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "AskLarkbot",
    "Caller",
    "LarkToolServer",
    "McpOptions",
    "McpSetupError",
    "McpTokenVerifier",
    "Mode",
    "PostAgentAnswer",
    "Preset",
    "TokenMode",
    "ToolSelectionError",
    "check_options",
    "exposed_tools",
    "select_tools",
    "serve_mcp",
]

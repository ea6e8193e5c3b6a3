"""Tools the agent uses in Lark: the registry, the runner and the Lark tools.

Write a tool by subclassing ``Tool[YourInputModel]``; add it with
``default_registry(YourTool())`` or from an installed package through the
``larkbot.tools`` entry-point group (see :mod:`larkbot.agent.tools.registry`).
"""

from larkbot.agent.tools.base import Tool, ToolContext, ToolError, ToolResult
from larkbot.agent.tools.registry import (
    TOOL_ENTRY_POINT_GROUP,
    ToolRegistry,
    default_registry,
    plugin_tools,
)
from larkbot.agent.tools.runner import ToolRunner

__all__ = [
    "TOOL_ENTRY_POINT_GROUP",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolRunner",
    "default_registry",
    "plugin_tools",
]

"""Tools the agent uses in Lark: the registry, the runner and the Lark tools."""

from larkbot.agent.tools.base import Tool, ToolContext, ToolError, ToolResult
from larkbot.agent.tools.registry import ToolRegistry, default_registry
from larkbot.agent.tools.runner import ToolRunner

__all__ = [
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolRunner",
    "default_registry",
]

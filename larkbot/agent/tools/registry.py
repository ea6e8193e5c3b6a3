"""The registry of tools the agent may use, by name."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import tzinfo
from typing import Any

from larkbot.agent.tools.base import Tool
from larkbot.agent.tools.lark_tools import DEFAULT_TIMEZONE, lark_tools

__all__ = ["ToolRegistry", "default_registry"]


class ToolRegistry:
    """Tools by name, in registration order (the order the LLM sees them in)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        """Create a registry holding ``tools``."""
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        """Add ``tool``; a second tool with the same name is a programming error."""
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        """Return the tool called ``name``, or ``None``."""
        return self._tools.get(name)

    def names(self) -> list[str]:
        """Return the tool names in registration order."""
        return list(self._tools)

    def openai_schemas(self, allowed: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Return the OpenAI ``tools`` entries, only for ``allowed`` names when given."""
        wanted = None if allowed is None else set(allowed)
        return [
            tool.openai_schema()
            for name, tool in self._tools.items()
            if wanted is None or name in wanted
        ]

    def __iter__(self) -> Iterator[Tool]:
        """Iterate over the tools in registration order."""
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        """Return the number of tools."""
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        """Return whether a tool called ``name`` is registered."""
        return name in self._tools


def default_registry(*, timezone: tzinfo = DEFAULT_TIMEZONE) -> ToolRegistry:
    """Return a registry with every Lark tool.

    ``timezone`` is where dates and times given without an offset are placed (and how
    dates are shown); it defaults to Asia/Tokyo.
    """
    return ToolRegistry(lark_tools(timezone=timezone))

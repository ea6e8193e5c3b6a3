"""The registry of tools the agent may use, by name, and where the tools come from.

Tools come from three places, in this order: the built-in Lark tools, tools an
embedder passes in code (``default_registry(MyTool())`` or
``registry.with_tools(MyTool())``), and plug-ins: installed packages that declare an entry
point in the ``larkbot.tools`` group, the Python convention for extensions::

    # pyproject.toml of a plug-in package
    [project.entry-points."larkbot.tools"]
    crm = "larkbot_crm:CrmLookup"          # a Tool subclass, built without arguments
    extras = "larkbot_extras:make_tools"   # or a factory returning a tool or a list of them

A plug-in that cannot be loaded, built or checked is skipped with one warning; the bot
still starts with every other tool.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from larkbot.agent.tools.base import Tool
from larkbot.agent.tools.lark_tools import lark_tools

__all__ = ["TOOL_ENTRY_POINT_GROUP", "ToolRegistry", "default_registry", "plugin_tools"]

TOOL_ENTRY_POINT_GROUP = "larkbot.tools"
"""The entry-point group plug-in packages declare their tools in."""

_log = logging.getLogger("larkbot.agent")

# What OpenAI-compatible servers accept as a function name.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolRegistry:
    """Tools by name, in registration order (the order the LLM sees them in)."""

    def __init__(self, tools: Iterable[Tool[Any]] = ()) -> None:
        """Create a registry holding ``tools``."""
        self._tools: dict[str, Tool[Any]] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool[Any]) -> None:
        """Add ``tool``; a malformed tool or a second tool with the same name is refused.

        :raises TypeError: ``tool`` is not a :class:`Tool` or its attributes are missing.
        :raises ValueError: a tool with the same name is already registered.
        """
        _check(tool)
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def with_tools(self, *tools: Tool[Any]) -> ToolRegistry:
        """Return a new registry with this one's tools followed by ``tools``."""
        return ToolRegistry([*self._tools.values(), *tools])

    def get(self, name: str) -> Tool[Any] | None:
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

    def __iter__(self) -> Iterator[Tool[Any]]:
        """Iterate over the tools in registration order."""
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        """Return the number of tools."""
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        """Return whether a tool called ``name`` is registered."""
        return name in self._tools


def default_registry(*extra: Tool[Any], plugins: bool = False) -> ToolRegistry:
    """Return a registry with every Lark tool, then ``extra``, then plug-ins.

    ``plugins=True`` adds the tools of installed packages (:func:`plugin_tools`); a
    plug-in tool whose name is taken is skipped with a warning, while a clash among the
    built-in and ``extra`` tools is a programming error (``ValueError``). Loading
    plug-ins reads package metadata and imports modules: call it before the event loop
    starts or in a worker thread.
    """
    registry = ToolRegistry([*lark_tools(), *extra])
    if plugins:
        for tool in plugin_tools():
            if tool.name in registry:
                _log.warning(
                    "tool plug-in tool %r skipped: a tool with that name is already registered",
                    tool.name,
                )
                continue
            registry.register(tool)
    return registry


def plugin_tools(
    group: str = TOOL_ENTRY_POINT_GROUP,
    *,
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> list[Tool[Any]]:
    """Load the tools installed packages declare in the entry-point ``group``.

    An entry point names a :class:`Tool` subclass (built without arguments) or a factory
    returning a tool or an iterable of tools. One that fails to import, to build, or to
    pass the registry's checks (name, description, input model, schema) is skipped with
    one warning naming it. ``entry_points`` replaces the installed ones (tests).
    """
    found = importlib.metadata.entry_points(group=group) if entry_points is None else entry_points
    tools: list[Tool[Any]] = []
    for entry_point in found:
        try:
            made = _build(entry_point.load())
            for tool in made:
                _check(tool)
                # Built now, so a model pydantic cannot describe fails here, not mid-chat.
                tool.openai_schema()
        except Exception as exc:
            _log.warning(
                "tool plug-in %s (%s) skipped: %s",
                entry_point.name,
                entry_point.value,
                _reason(exc),
            )
            continue
        tools.extend(made)
    return tools


def _build(loaded: object) -> list[Tool[Any]]:
    """The tools an entry point's object stands for: a Tool subclass, or a factory's output."""
    if isinstance(loaded, type):
        if not issubclass(loaded, Tool):
            raise TypeError(f"{loaded.__qualname__} is not a Tool subclass")
        return [loaded()]
    if not callable(loaded):
        raise TypeError("it names neither a Tool subclass nor a factory returning tools")
    made = loaded()
    if isinstance(made, Tool):
        return [made]
    if isinstance(made, Iterable) and not isinstance(made, str | bytes):
        tools = list(made)
        if all(isinstance(tool, Tool) for tool in tools):
            return tools
    raise TypeError("its factory returned something other than a tool or a list of tools")


def _check(tool: object) -> None:
    """Refuse what the runner and the LLM could not use: a non-tool, a bad name or model."""
    if not isinstance(tool, Tool):
        raise TypeError(f"{tool!r} is not a Tool")
    cls = type(tool)
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise TypeError(f"{cls.__qualname__}.name must be 1-64 letters, digits, '_' or '-'")
    if not isinstance(getattr(cls, "description", None), str) or not cls.description.strip():
        raise TypeError(f"tool {name!r} needs a description")
    model = getattr(cls, "input_model", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"tool {name!r} needs an input_model (a pydantic model)")
    if not isinstance(cls.write, bool):
        raise TypeError(f"tool {name!r}: write must be True or False")
    if not isinstance(cls.cacheable, bool):
        raise TypeError(f"tool {name!r}: cacheable must be True or False")
    if not isinstance(cls.scopes, tuple) or not all(isinstance(s, str) for s in cls.scopes):
        raise TypeError(f"tool {name!r}: scopes must be a tuple of strings")


def _reason(exc: Exception) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__

"""Which tools ``larkbot mcp`` exposes: names and presets given to ``--tools``.

A preset is a named group of tools in the spirit of lark-openapi-mcp's. Read-only tools
are always fine; a tool that changes data is exposed only with ``--allow-writes`` or
through a preset made for writing (``preset.base``, ``preset.im``), and naming one
explicitly without either is a configuration error rather than a silent omission.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from larkbot.agent.tools.base import Tool
from larkbot.agent.tools.lark_tools import BASE_TOOLS, MESSAGE_TOOLS
from larkbot.core.errors import EX_CONFIG, LarkbotError

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset", "ToolSelectionError", "select_tools"]

DEFAULT_PRESET = "preset.default"


@dataclass(frozen=True, slots=True)
class Preset:
    """A named group of tools.

    ``tools`` empty means every tool there is. ``grants_writes``: naming the preset is
    consent to its write tools, as ``--allow-writes`` would be.
    """

    name: str
    summary: str
    tools: tuple[str, ...] = ()
    grants_writes: bool = False


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            DEFAULT_PRESET,
            "Every tool, plug-ins included; the ones that change data only with --allow-writes.",
        ),
        Preset(
            "preset.light",
            "A few tools for small context windows: search Base records and documents, look "
            "up a user, ask larkbot (and send a message, with --allow-writes).",
            (
                "search_base_records",
                "search_documents",
                "get_user_info",
                "ask_larkbot",
                "send_message",
            ),
        ),
        Preset(
            "preset.base",
            "Base: tables, fields and records; search, create, update and delete (writes "
            "included).",
            BASE_TOOLS,
            grants_writes=True,
        ),
        Preset(
            "preset.doc",
            "Documents and wiki: search, read, resolve wiki links; import markdown and share a "
            "document with --allow-writes.",
            (
                "search_documents",
                "read_document",
                "search_wiki",
                "get_wiki_node",
                "import_document",
                "grant_document_permission",
            ),
        ),
        Preset(
            "preset.im",
            "Messaging: chats and their history, members, sending, creating a group, looking "
            "up users (writes included).",
            MESSAGE_TOOLS,
            grants_writes=True,
        ),
    )
}


class ToolSelectionError(LarkbotError):
    """``--tools`` names something that does not exist or may not be exposed."""

    exit_code = EX_CONFIG


def select_tools(
    available: Sequence[Tool[Any]], wanted: Iterable[str], *, allow_writes: bool
) -> list[Tool[Any]]:
    """Return the tools of ``available`` that ``wanted`` (names and presets) exposes.

    The result keeps the order of ``available``. An empty ``wanted`` means
    ``preset.default``. Raises :class:`ToolSelectionError` for an unknown name and for a
    write tool named on its own without ``allow_writes``.
    """
    by_name = {tool.name: tool for tool in available}
    items = [item.strip() for item in wanted if item.strip()] or [DEFAULT_PRESET]
    chosen: set[str] = set()
    for item in items:
        preset = PRESETS.get(item.lower())
        if preset is not None:
            members = preset.tools or tuple(by_name)
            writes_ok = allow_writes or preset.grants_writes
            chosen.update(
                name
                for name in members
                if name in by_name and (writes_ok or not by_name[name].write)
            )
            continue
        tool = by_name.get(item)
        if tool is None:
            raise ToolSelectionError(_unknown(item, by_name))
        if tool.write and not allow_writes:
            raise ToolSelectionError(
                f"{item} changes data in Lark: add --allow-writes to expose it, or leave it out"
            )
        chosen.add(item)
    return [tool for tool in available if tool.name in chosen]


def _unknown(item: str, by_name: dict[str, Tool[Any]]) -> str:
    if item.lower().startswith("preset."):
        return f"there is no preset {item}: presets are {', '.join(PRESETS)}"
    return f"there is no tool {item}: tools are {', '.join(by_name)}, presets {', '.join(PRESETS)}"

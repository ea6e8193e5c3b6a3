"""The Lark scopes larkbot needs: the bot's own, and each tool's declared ``scopes``.

One list serves the README's table (``scripts/gen_docs.py``), ``larkbot doctor`` and the
local stand-in, so none of them can drift from what the tools declare.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

__all__ = ["BOT_SCOPES", "ScopeNeed", "missing_scopes", "scope_needs", "tools_needing"]

BOT = "the bot"

# What the daemon itself calls, beside the tools: the events it subscribes to and the
# OpenAPI routes of answering (Lark's "required scopes" of each, one of them sufficing).
BOT_SCOPES: dict[str, str] = {
    "im:message.p2p_msg:readonly": "receive one-to-one messages (`im.message.receive_v1`)",
    "im:message.group_at_msg:readonly": "receive group messages that @mention the bot",
    "im:message:send_as_bot": "reply",
    "im:message.reactions:write_only": 'the "working on it" reaction on slow answers',
}

# Broader scopes that grant a narrower one as well (besides ``x`` granting ``x:readonly``).
_ALSO_GRANTED_BY: dict[str, tuple[str, ...]] = {
    "im:message:send_as_bot": ("im:message",),
    "im:message.reactions:write_only": ("im:message",),
}
_NAMED_SCOPES = re.compile(r"\[([^\]]+)\]")


@dataclass(frozen=True, slots=True)
class ScopeNeed:
    """One scope and what stops working without it: the bot itself, or tools by name."""

    scope: str
    bot_needs: str | None
    tools: tuple[str, ...]

    @property
    def uses(self) -> str:
        """What needs the scope, for a person: ``reply`` or ``tools get_user_info, ...``."""
        parts = [self.bot_needs] if self.bot_needs else []
        if self.tools:
            shown = ", ".join(f"`{tool}`" for tool in self.tools)
            parts.append(f"tool{'s' if len(self.tools) > 1 else ''} {shown}")
        return "; ".join(parts)


def scope_needs() -> list[ScopeNeed]:
    """Every scope larkbot uses: the bot's first, then the tools' in registry order."""
    from larkbot.agent.tools.registry import default_registry

    tools: dict[str, list[str]] = {}
    for tool in default_registry():
        for scope in tool.scopes:
            tools.setdefault(scope, []).append(tool.name)
    order = [*BOT_SCOPES, *(scope for scope in tools if scope not in BOT_SCOPES)]
    return [ScopeNeed(scope, BOT_SCOPES.get(scope), tuple(tools.get(scope, ()))) for scope in order]


def missing_scopes(
    granted: Collection[str], needs: Iterable[ScopeNeed] | None = None
) -> list[ScopeNeed]:
    """The needs none of whose granting scopes is in ``granted``."""
    return [
        need
        for need in (scope_needs() if needs is None else needs)
        if not any(scope in granted for scope in _granting(need.scope))
    ]


def tools_needing(error_message: str) -> list[str]:
    """The tools that need the scopes a Lark "no permission" message names (``[a, b]``)."""
    named = _NAMED_SCOPES.search(error_message)
    if named is None:
        return []
    wanted = {part.strip() for part in named.group(1).split(",")}
    tools = (tool for need in scope_needs() if need.scope in wanted for tool in need.tools)
    return list(dict.fromkeys(tools))


def _granting(scope: str) -> tuple[str, ...]:
    broader = (scope.removesuffix(":readonly"),) if scope.endswith(":readonly") else ()
    return (scope, *broader, *_ALSO_GRANTED_BY.get(scope, ()))

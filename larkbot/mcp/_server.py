"""The MCP face of larkbot's tool registry: list the exposed tools, run calls through it.

Every call goes through one :class:`~larkbot.agent.tools.runner.ToolRunner`, the same
class the chat agent runs its tools with, so validation, write limits, the writers
policy, metrics, the audit log and every polite sentence are the chat's own. This module
adds what only an MCP caller needs: who the caller is (for limits and the user token),
the per-caller request limit, JSON Schemas and annotations, and the result's shape.
"""

from __future__ import annotations

import copy
import logging
import math
import uuid
from collections.abc import Sequence
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server

from larkbot import __version__
from larkbot.agent.i18n import MESSAGES, translate
from larkbot.agent.limits import RateLimiter
from larkbot.agent.timezone import LazyTimezone
from larkbot.agent.tools.base import Tool, ToolContext, ToolResult
from larkbot.agent.tools.registry import ToolRegistry
from larkbot.agent.tools.runner import ToolRunner
from larkbot.core.language import Language
from larkbot.mcp._agent_tool import AskLarkbot, PostAgentAnswer
from larkbot.mcp._auth import Caller, TokenMode, caller_of
from larkbot.mcp._presets import select_tools
from larkbot.ops.logging import log_context

if TYPE_CHECKING:
    from larkbot.agent.brain import Brain
    from larkbot.config.settings import Settings
    from larkbot.lark.client import LarkClient

__all__ = ["LarkToolServer", "available_tools"]

_log = logging.getLogger("larkbot.mcp")

_USE_USER_TOKEN = "use_user_token"
_USE_USER_TOKEN_SCHEMA = {
    "type": "boolean",
    "default": False,
    "description": "Act as the caller with their Lark user access token (the bearer token) "
    "instead of as the app.",
}
# Write tools whose names say they only add something; any other write tool is announced
# as possibly destructive, the protocol's safe default.
_ADDITIVE_PREFIXES = ("create_", "send_", "add_", "import_", "grant_", "post_")
# No tool is listed or callable under this name: it is how ask_larkbot posts.
_INTERNAL = frozenset({PostAgentAnswer.name})


class LarkToolServer:
    """larkbot's tools over MCP: a low-level ``Server`` whose handlers run the registry.

    :param settings: larkbot's configuration (tables, limits, writers, LLM).
    :param client: the app's Lark client (tenant token); user tokens derive from it.
    :param registry: the tools to choose from (plug-ins included).
    :param selection: ``--tools`` items (names and presets); empty: ``preset.default``.
    :param allow_writes: whether tools that change data may be exposed.
    :param token_mode: ``tenant``, ``user`` or ``auto`` (see :mod:`larkbot.mcp`).
    :param language: the language of descriptions and of the sentences callers read.
    :param brain: the brain ``ask_larkbot`` thinks with (``None``: the offline brain).
    :param timezone: the workspace zone the tools place dates in; ``None``: resolve
        ``agent.timezone`` in a worker thread on the first call (it reads the time zone
        database).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: LarkClient,
        registry: ToolRegistry,
        selection: Sequence[str] = (),
        allow_writes: bool = False,
        token_mode: TokenMode = "tenant",
        language: Language = "en",
        brain: Brain | None = None,
        timezone: tzinfo | None = None,
    ) -> None:
        self._settings = settings
        self._timezone = LazyTimezone(settings.agent.timezone, timezone)
        self._client = client
        self._token_mode: TokenMode = token_mode
        self._language: Language = language
        limits = settings.rate_limiting
        self._request_limiter = RateLimiter(limits.requests_per_minute) if limits.enabled else None
        write_limiter = RateLimiter(limits.write_requests_per_minute) if limits.enabled else None
        # The writers policy lists open_ids: it can only apply when callers are Lark users.
        writers = settings.policy.writers if token_mode == "user" else None
        ask = AskLarkbot(
            settings=settings,
            registry=registry,
            outer=lambda: self.runner,
            brain=brain,
        )
        self.tools: list[Tool[Any]] = select_tools(
            available_tools(registry, ask), selection, allow_writes=allow_writes
        )
        self._exposed = {tool.name: tool for tool in self.tools}
        self.runner = ToolRunner(
            ToolRegistry([*self.tools, PostAgentAnswer()]),
            write_limiter=write_limiter,
            writers=writers,
            # An MCP client reads right after it (or anyone) wrote, and expects to see it.
            cache_ttl_seconds=0,
        )
        self.server: Server[Any] = Server(
            "larkbot",
            version=__version__,
            title="larkbot",
            instructions=_instructions(settings),
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )

    # -- tools/list ---------------------------------------------------------------------

    def listed_tools(self) -> list[types.Tool]:
        """The exposed tools as MCP describes them (what ``tools/list`` answers)."""
        return [self._describe(tool) for tool in self.tools]

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.listed_tools())

    def _describe(self, tool: Tool[Any]) -> types.Tool:
        schema = copy.deepcopy(tool.input_model.model_json_schema())
        if self._token_mode == "auto":
            schema.setdefault("properties", {})[_USE_USER_TOKEN] = _USE_USER_TOKEN_SCHEMA
        if tool.write:
            destructive = not tool.name.startswith(_ADDITIVE_PREFIXES)
            annotations = types.ToolAnnotations(
                read_only_hint=False, destructive_hint=destructive, open_world_hint=True
            )
        elif isinstance(tool, AskLarkbot) and "send_message" in self._exposed:
            # It may post in a chat: a change, but one that only adds a message.
            annotations = types.ToolAnnotations(
                read_only_hint=False, destructive_hint=False, open_world_hint=True
            )
        else:
            annotations = types.ToolAnnotations(read_only_hint=True, open_world_hint=True)
        return types.Tool(
            name=tool.name,
            description=_description(tool, self._language),
            input_schema=schema,
            annotations=annotations,
        )

    # -- tools/call ---------------------------------------------------------------------

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        caller = caller_of(ctx.request)
        call_id = f"mcp-{uuid.uuid4().hex}"
        with log_context(message_id=call_id):
            try:
                return await self._run(params.name, dict(params.arguments or {}), caller, call_id)
            except Exception:
                # Never a traceback to the caller: the runner already catches what tools
                # raise, so this is larkbot's own fault, logged in full here.
                _log.exception("tool call %s (%s) failed", params.name, call_id)
                return _result(_failure(translate("error", self._language)))

    async def _run(
        self, name: str, arguments: dict[str, Any], caller: Caller, call_id: str
    ) -> types.CallToolResult:
        language = self._language
        tool = self._exposed.get(name)
        if tool is None:
            names = ", ".join(self._exposed)
            message = translate("mcp_unknown_tool", language, name=name, names=names)
            return _result(_failure(message))
        as_user = self._token_mode == "user"
        if self._token_mode == "auto":
            # A caller who signed in with a Lark user token acts as that user, always: only the
            # MCP token stands for the app, so a user can never borrow the app's permissions.
            asked = arguments.pop(_USE_USER_TOKEN, False) is True
            as_user = asked or caller.user_token is not None
        if as_user and caller.user_token is None:
            return _result(_failure(translate("needs_user_token", language)))
        if self._request_limiter is not None:
            wait = self._request_limiter.try_acquire(caller.key)
            if wait is not None:
                limit = self._request_limiter.per_minute
                seconds = max(1, math.ceil(wait))
                message = translate("rate_limited", language, limit=limit, seconds=seconds)
                return _result(_failure(message))
        client = self._client
        if as_user and caller.user_token is not None:
            client = client.as_user(caller.user_token)
        tool_ctx = ToolContext(
            client=client,
            user_open_id=caller.user_open_id,
            chat_id="",
            message_id=call_id,
            language=language,
            bases=dict(self._settings.bases),
            allowed_bases=_allowed(self._settings),
            caller=caller.key,
            timezone=await self._timezone.get(),
        )
        _log.info(
            "tool %s called by %s%s (%s)",
            name,
            caller.key,
            " as the user" if as_user else "",
            call_id,
            extra={"tool_name": name, "caller": caller.key},
        )
        return _result(await self.runner.run(name, arguments, tool_ctx))


def available_tools(registry: ToolRegistry, ask: Tool[Any]) -> list[Tool[Any]]:
    """Every tool ``larkbot mcp`` can expose: the registry's, then ``ask_larkbot``."""
    available = [tool for tool in registry if tool.name not in _INTERNAL]
    if ask.name not in registry:
        available.append(ask)
    return available


def _failure(message: str) -> ToolResult:
    return ToolResult(ok=False, error=message, text=message)


def _result(result: ToolResult) -> types.CallToolResult:
    """The MCP shape of a tool's outcome: its text, and its data as structured content."""
    text = (result.error or result.text) if not result.ok else result.text
    structured: Any = None
    if result.ok and result.data is not None:
        # Up to protocol 2025-11-25 structured content must be a JSON object.
        structured = result.data if isinstance(result.data, dict) else {"result": result.data}
    return types.CallToolResult(
        content=[types.TextContent(text=text or "")],
        structured_content=structured,
        is_error=not result.ok,
    )


def _description(tool: Tool[Any], language: Language) -> str:
    """The tool's description, led by its one-line summary in ``language`` when there is one.

    The full descriptions are written for models, in English; the summaries of ``help
    tools`` exist in every language larkbot speaks.
    """
    key = f"tool_{tool.name}"
    if language == "en" or key not in MESSAGES:
        return tool.description
    return f"{translate(key, language)}\n\n{tool.description}"


def _allowed(settings: Settings) -> frozenset[str] | None:
    allowed = settings.tools.allowed_bases
    return None if allowed is None else frozenset(allowed)


def _instructions(settings: Settings) -> str:
    """What the server tells a client up front: what it is, and the configured tables."""
    lines = [
        "larkbot's Lark tools: Base (bitable) records, messages, people, documents and the "
        "calendar, with the permissions of the Lark app (or of the caller's user access "
        "token). Tool errors are sentences meant for the user."
    ]
    if settings.bases:
        lines.append("Configured Base tables (use the name as 'table'):")
        for name, table in settings.bases.items():
            aliases = f" (also: {', '.join(table.aliases)})" if table.aliases else ""
            about = f": {table.description}" if table.description else ""
            lines.append(f"- {name}{aliases}{about}")
    else:
        lines.append("No Base tables are configured: give a Base link or app_token and table_id.")
    return "\n".join(lines)

"""Built-in commands: ``help``, ``status``, ``settings``, ``reset``, ``ping``, ``lang``, ``agent``.

A command is the whole message (after the bot mention is stripped), matched without
regard to case, with or without a leading ``/``, in English or by its Japanese and
Chinese aliases. Anything longer ("help me find the Q3 report") is not a command and
goes to the brain.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from larkbot.agent.i18n import MESSAGES, humanise_duration, join_list, translate
from larkbot.agent.profiles import Profile
from larkbot.core.agent import Reply, RuntimeStatus
from larkbot.core.conversation import Conversation
from larkbot.core.language import Language, parse_language
from larkbot.core.message import InboundMessage

if TYPE_CHECKING:
    from larkbot.agent.tools.base import Tool
    from larkbot.config.settings import Settings

__all__ = ["Command", "CommandContext", "parse_command", "run_command"]

# Command word (as typed, case-folded) -> command name and the language the word is in
# (``None`` for the English words, which everyone types whatever their language).
_WORDS: dict[str, tuple[str, Language | None]] = {
    "help": ("help", None),
    "ヘルプ": ("help", "ja"),
    "帮助": ("help", "zh"),
    "幫助": ("help", "zh"),
    "status": ("status", None),
    "ステータス": ("status", "ja"),
    "状态": ("status", "zh"),
    "狀態": ("status", "zh"),
    "settings": ("settings", None),
    "設定": ("settings", "ja"),
    "设置": ("settings", "zh"),
    "reset": ("reset", None),
    "リセット": ("reset", "ja"),
    "重置": ("reset", "zh"),
    "ping": ("ping", None),
    "lang": ("lang", None),
    "language": ("lang", None),
    "言語": ("lang", "ja"),
    "语言": ("lang", "zh"),
    "語言": ("lang", "zh"),
    "agent": ("agent", None),
    "profile": ("agent", None),
    "プロファイル": ("agent", "ja"),
}
# Second word of ``help`` -> the help topic it asks for.
_HELP_TOPICS: dict[str, str] = {
    "tools": "help_tools",
    "tool": "help_tools",
    "ツール": "help_tools",
    "工具": "help_tools",
    "permissions": "help_permissions",
    "permission": "help_permissions",
    "scopes": "help_permissions",
    "権限": "help_permissions",
    "权限": "help_permissions",
}
_TAKES_ARGUMENT = frozenset({"lang", "agent"})
_LEADING = re.compile(r"^[/／]\s*")
_TRAILING = re.compile(r"[\s.!?。！？]+$")
_USE_LANGUAGE = re.compile(r"^(?:use|switch to|answer in|speak)\s+(?:language\s+)?(\S+)$")


@dataclass(frozen=True, slots=True)
class Command:
    """A recognised command: its ``name`` and the rest of the line.

    ``language`` is the language of the command word (``ヘルプ`` is Japanese, ``帮助``
    Chinese); ``None`` for the English words, which tell nothing about their writer.
    """

    name: str
    argument: str = ""
    language: Language | None = None


def parse_command(text: str) -> Command | None:
    """Return the command ``text`` is, or ``None`` when it is an ordinary request."""
    original = _TRAILING.sub("", _LEADING.sub("", text.strip()))
    line = original.casefold()
    if not line:
        return None
    if (match := _USE_LANGUAGE.match(line)) and parse_language(match.group(1)):
        return Command("lang", match.group(1))
    word, _, rest = line.partition(" ")
    rest = rest.strip()
    if word not in _WORDS:
        return None
    name, language = _WORDS[word]
    if name == "help":
        if not rest:
            return Command("help", language=language)
        topic = _HELP_TOPICS.get(rest)
        return Command(topic, language=language) if topic else None
    if name in _TAKES_ARGUMENT:
        # Profile names keep the case the user typed; only the command word is folded.
        argument = original.split(maxsplit=1)[1].strip() if rest else ""
        return None if " " in argument else Command(name, argument, language)
    return None if rest else Command(name, language=language)


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What commands read and change: settings, live status, this conversation."""

    settings: Settings
    status: RuntimeStatus
    message: InboundMessage
    conversation: Conversation
    language: Language
    profile: Profile
    profiles: Mapping[str, Profile]
    tools: Sequence[type[Tool[Any]] | Tool[Any]]
    llm_model: str | None


def run_command(command: Command, ctx: CommandContext) -> Reply:
    """Answer ``command``; ``reset``, ``lang`` and ``agent`` change ``ctx.conversation``."""
    return _HANDLERS[command.name](command, ctx)


def _help(command: Command, ctx: CommandContext) -> Reply:
    examples = translate("examples", ctx.language)
    return Reply(translate("help", ctx.language, examples=examples), markdown=True)


def _tool_line(
    key: str, tool: type[Tool[Any]] | Tool[Any], language: Language, **values: str
) -> str:
    """One tool's line in a help list: message ``key`` with its name, kind and ``values``."""
    kind = translate("kind_write" if tool.write else "kind_read", language)
    return translate(key, language, name=tool.name, kind=kind, **values)


def _help_tools(command: Command, ctx: CommandContext) -> Reply:
    lang = ctx.language
    if not ctx.tools:
        return Reply(translate("help_tools_none", lang))
    lines = [translate("help_tools_header", lang)]
    for tool in ctx.tools:
        key = f"tool_{tool.name}"
        description = translate(key, lang) if key in MESSAGES else tool.description
        summary = description.splitlines()[0] if description else ""
        lines.append(_tool_line("help_tools_line", tool, lang, description=summary))
    if ctx.profile.tools is not None:
        allowed = [tool.name for tool in ctx.tools if ctx.profile.allows(tool.name)]
        lines.append("")
        lines.append(
            translate(
                "help_tools_profile",
                lang,
                profile=ctx.profile.name,
                tools=join_list(allowed, lang) or translate("unlimited", lang),
            )
        )
    return Reply("\n".join(lines), markdown=True)


def _help_permissions(command: Command, ctx: CommandContext) -> Reply:
    lang = ctx.language
    lines = [translate("help_permissions_header", lang)]
    for tool in ctx.tools:
        scopes = ", ".join(f"`{scope}`" for scope in tool.scopes)
        scopes = scopes or translate("help_permissions_no_scope", lang)
        lines.append(_tool_line("help_permissions_line", tool, lang, scopes=scopes))
    writers = ctx.settings.policy.writers
    lines.append("")
    if writers is None:
        lines.append(translate("help_permissions_writers_all", lang))
    elif not writers:
        lines.append(translate("help_permissions_writers_none", lang))
    else:
        listed = join_list([f"`{writer}`" for writer in writers], lang)
        lines.append(translate("help_permissions_writers_list", lang, writers=listed))
    return Reply("\n".join(lines), markdown=True)


def _status(command: Command, ctx: CommandContext) -> Reply:
    lang = ctx.language
    status = ctx.status
    # A status object written before ``conversations`` joined RuntimeStatus has no count.
    cached: int | None = getattr(status, "conversations", None)
    llm = (
        translate("llm_on", lang, model=ctx.llm_model)
        if ctx.llm_model
        else translate("llm_off", lang)
    )
    return Reply(
        translate(
            "status",
            lang,
            version=status.version,
            uptime=humanise_duration(status.uptime_seconds, lang),
            connection=translate("connected" if status.connected else "disconnected", lang),
            events=f"{status.events_handled:,}",
            conversations=f"{cached:,}" if cached is not None else translate("unknown", lang),
            llm=llm,
        ),
        markdown=True,
    )


def _per_minute(count: int, enabled: bool, language: Language) -> str:
    if not enabled:
        return translate("unlimited", language)
    return translate("per_minute", language, count=count)


def _settings(command: Command, ctx: CommandContext) -> Reply:
    lang = ctx.language
    settings = ctx.settings
    limits = settings.rate_limiting
    chosen = ctx.conversation.language
    if chosen is None:
        default = ctx.profile.language or settings.agent.default_language
        language = translate(
            "language_auto", lang, default=translate(f"language_name_{default}", lang)
        )
    else:
        language = translate(f"language_name_{chosen}", lang)
    return Reply(
        translate(
            "settings",
            lang,
            language=language,
            profile=ctx.profile.name,
            requests=_per_minute(limits.requests_per_minute, limits.enabled, lang),
            writes=_per_minute(limits.write_requests_per_minute, limits.enabled, lang),
            history=settings.agent.max_conversation_history,
        ),
        markdown=True,
    )


def _reset(command: Command, ctx: CommandContext) -> Reply:
    ctx.conversation.turns.clear()
    return Reply(translate("reset_done", ctx.language))


def _ping(command: Command, ctx: CommandContext) -> Reply:
    # The platform stamps the message when it is sent; clocks can disagree by a little.
    elapsed = datetime.now(UTC) - ctx.message.created_at
    ms = max(0, round(elapsed.total_seconds() * 1000))
    latency = translate("latency", ctx.language, ms=f"{ms:,}")
    return Reply(translate("pong", ctx.language, latency=latency))


def _lang(command: Command, ctx: CommandContext) -> Reply:
    argument = command.argument.casefold()
    if argument in ("auto", "自動", "自动"):
        ctx.conversation.language = None
        return Reply(translate("lang_auto", ctx.language))
    language = parse_language(argument)
    if language is None:
        return Reply(translate("lang_usage", ctx.language))
    ctx.conversation.language = language
    return Reply(translate("lang_set", language))


def _agent(command: Command, ctx: CommandContext) -> Reply:
    names = join_list([f"`{name}`" for name in ctx.profiles], ctx.language)
    if not command.argument:
        current = ctx.profile.name
        return Reply(translate("agent_list", ctx.language, profile=current, profiles=names))
    wanted = command.argument.casefold()
    profile = next((p for name, p in ctx.profiles.items() if name.casefold() == wanted), None)
    if profile is None:
        return Reply(
            translate("agent_unknown", ctx.language, name=command.argument, profiles=names)
        )
    ctx.conversation.profile = profile.name
    return Reply(translate("agent_switched", ctx.language, profile=profile.name))


_HANDLERS: dict[str, Callable[[Command, CommandContext], Reply]] = {
    "help": _help,
    "help_tools": _help_tools,
    "help_permissions": _help_permissions,
    "status": _status,
    "settings": _settings,
    "reset": _reset,
    "ping": _ping,
    "lang": _lang,
    "agent": _agent,
}

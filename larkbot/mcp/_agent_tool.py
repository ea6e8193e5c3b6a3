"""``ask_larkbot``: larkbot's own agent as one MCP tool, optionally posting its answer.

The question goes to the same :class:`~larkbot.agent.Assistant` the chat bot runs (the
offline brain, or the LLM brain when one is configured), with every read tool and the
write tools this server exposes. Posting the answer in a chat is a change, so it runs as
the write tool ``post_agent_answer`` through the caller's runner: write limits, the
writers policy, the audit log and the same polite sentences apply, as to ``send_message``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from larkbot import __version__
from larkbot.agent.assistant import Assistant
from larkbot.agent.i18n import translate
from larkbot.agent.tools.base import Tool, ToolContext, ToolResult
from larkbot.agent.tools.registry import ToolRegistry
from larkbot.agent.tools.runner import ToolRunner
from larkbot.core.agent import Reply
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.lark.client import reply_uuid
from larkbot.reply.render import render_reply

if TYPE_CHECKING:
    from larkbot.agent.brain import Brain
    from larkbot.config.settings import Settings

__all__ = [
    "ASK_TOOL",
    "POST_TOOL",
    "AskLarkbot",
    "AskLarkbotInput",
    "PostAgentAnswer",
    "PostAgentAnswerInput",
]

ASK_TOOL = "ask_larkbot"
POST_TOOL = "post_agent_answer"
# Posting is allowed where the server lets callers send messages themselves.
_SEND_TOOL = "send_message"
_MAX_QUESTION = 4000


class AskLarkbotInput(BaseModel):
    """Arguments of ``ask_larkbot``."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(
        min_length=1,
        max_length=_MAX_QUESTION,
        description="The question or request, in Japanese, English or Chinese, as a user "
        "would write it in a chat (for example 'customers contacted this month').",
    )
    chat_id: str | None = Field(
        None,
        min_length=1,
        description="A chat (oc_...) to post the answer in as well; posting needs the "
        "server to allow writes.",
    )


class PostAgentAnswerInput(BaseModel):
    """Arguments of ``post_agent_answer`` (internal: what ``ask_larkbot`` posts)."""

    model_config = ConfigDict(extra="forbid")

    chat_id: str = Field(min_length=1, description="The chat to post in (oc_...).")
    text: str = Field(min_length=1, description="The answer.")
    markdown: bool = Field(False, description="Whether the answer is markdown.")


class PostAgentAnswer(Tool[PostAgentAnswerInput]):
    """Post an agent's answer in a chat, rendered as the chat bot renders its replies."""

    name: ClassVar[str] = POST_TOOL
    description: ClassVar[str] = (
        "Post larkbot's answer in a chat (text, or a card for markdown, split when long)."
    )
    write: ClassVar[bool] = True
    scopes: ClassVar[tuple[str, ...]] = ("im:message:send_as_bot",)

    async def run(self, ctx: ToolContext, args: PostAgentAnswerInput) -> ToolResult:
        """Send every rendered part; each carries an idempotency key derived from the call."""
        message_ids: list[str] = []
        for chunk, outbound in enumerate(render_reply(Reply(args.text, args.markdown))):
            sent = await ctx.client.send(
                args.chat_id,
                receive_id_type="chat_id",
                msg_type=outbound.msg_type,
                content=outbound.content,
                uuid=reply_uuid(ctx.message_id, chunk),
            )
            message_ids.append(sent.message_id)
        return ToolResult(
            ok=True,
            data={"chat_id": args.chat_id, "message_ids": message_ids},
            text=translate("posted", ctx.language, chat_id=args.chat_id),
        )


@dataclass(slots=True)
class _Status:
    """What the agent's ``status`` command reports in MCP mode: no long connection here."""

    started: float

    @property
    def version(self) -> str:
        return __version__

    @property
    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def connected(self) -> bool:
        return False

    @property
    def events_handled(self) -> int:
        return 0


class _CallerRunner(ToolRunner):
    """The inner agent's runner: its calls count against the MCP caller who asked."""

    def __init__(self, registry: ToolRegistry, *, caller: str, **options: Any) -> None:
        super().__init__(registry, **options)
        self._caller = caller

    async def run(
        self, name: str, arguments: dict[str, Any] | str | BaseModel, ctx: ToolContext
    ) -> ToolResult:
        """Run ``name`` as the MCP caller (limits and the audit log name them)."""
        return await super().run(name, arguments, replace(ctx, caller=self._caller))


class AskLarkbot(Tool[AskLarkbotInput]):
    """Ask larkbot's own agent; with ``chat_id``, post its answer there too.

    :param settings: the configuration the agent answers with (tables, profiles, LLM).
    :param registry: the tools the agent reads with (every read tool there is).
    :param outer: returns the server's runner. The agent may write only with the write
        tools it runs, under its writers policy and write limiter (shared with direct
        tool calls), and the answer is posted through it when it runs ``send_message``
        (the server lets callers post in chats).
    :param brain: the brain shared by every call (``None``: the offline brain).
    """

    name: ClassVar[str] = ASK_TOOL
    description: ClassVar[str] = (
        "Ask larkbot, the team's Lark assistant, a question in plain words (Japanese, English "
        "or Chinese). It answers from the Lark workspace with its own tools: Base tables "
        "(customers, tasks...), people, documents and the calendar. Use it for open questions "
        "that would take several tool calls, or to have the answer posted in a chat: give "
        "'chat_id' to post it there (when the server allows writes). Returns the answer text."
    )
    write: ClassVar[bool] = False
    # An answer reads the workspace as it is now (and may post): never one from a cache.
    cacheable: ClassVar[bool] = False
    scopes: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        settings: Settings,
        registry: ToolRegistry,
        outer: Callable[[], ToolRunner],
        brain: Brain | None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._brain = brain
        self._outer = outer
        self._status = _Status(time.monotonic())

    async def run(self, ctx: ToolContext, args: AskLarkbotInput) -> ToolResult:
        """Let the agent answer; post the answer when asked and allowed."""
        outer = self._outer()
        if args.chat_id and _SEND_TOOL not in outer.registry:
            message = translate("posting_needs_writes", ctx.language)
            return ToolResult(ok=False, error=message, text=message)
        reply = await self._answer(ctx, args, outer)
        data: dict[str, Any] = {"answer": reply.text, "markdown": reply.markdown}
        if not args.chat_id:
            return ToolResult(ok=True, data=data, text=reply.text)
        posted = await outer.run(
            POST_TOOL,
            PostAgentAnswerInput(chat_id=args.chat_id, text=reply.text, markdown=reply.markdown),
            ctx,
        )
        if not posted.ok:
            error = posted.error or posted.text
            return ToolResult(ok=False, data=data, error=error, text=f"{error}\n\n{reply.text}")
        data["posted"] = posted.data
        return ToolResult(ok=True, data=data, text=f"{reply.text}\n\n{posted.text}")

    async def _answer(self, ctx: ToolContext, args: AskLarkbotInput, outer: ToolRunner) -> Reply:
        # Reading is always fine; writing only with what the server lets callers write.
        tools = [
            tool
            for tool in self._registry
            if tool.name not in (ASK_TOOL, POST_TOOL)
            and (not tool.write or tool.name in outer.registry)
        ]
        runner = _CallerRunner(
            ToolRegistry(tools),
            caller=ctx.limit_key,
            write_limiter=outer.write_limiter,
            writers=outer.writers,
            # Each question stands alone: nothing to gain from caching across questions.
            cache_ttl_seconds=0,
        )
        assistant = Assistant(
            self._settings,
            status=self._status,
            runner=runner,
            client=ctx.client,
            brain=self._brain,
            # The server's zone, resolved once: no time zone lookup per question.
            timezone=ctx.timezone,
        )
        message = InboundMessage(
            message_id=ctx.message_id,
            event_id=ctx.message_id,
            chat_id=args.chat_id or ctx.chat_id or "mcp",
            chat_type="p2p",
            message_type="text",
            text=args.question,
            sender_open_id=ctx.user_open_id,
            created_at=datetime.now(UTC),
        )
        conversation = Conversation(key=f"mcp:{ctx.limit_key}:{uuid.uuid4().hex}")
        return await assistant.respond(message, conversation)

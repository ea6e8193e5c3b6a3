"""The assistant: the one :class:`~larkbot.core.agent.Agent` the daemon talks to.

Per message: pick the answer language, answer built-in commands, apply the per-user
request limit, then let the brain (offline rules, or an LLM when configured) answer.
Whatever happens inside the brain, the user gets a polite reply in their language.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import tzinfo
from typing import TYPE_CHECKING

from larkbot.agent.brain import Brain, TurnContext
from larkbot.agent.commands import Command, CommandContext, parse_command, run_command
from larkbot.agent.i18n import translate
from larkbot.agent.limits import RateLimiter, UserLimiter
from larkbot.agent.offline import OfflineBrain
from larkbot.agent.profiles import DEFAULT_PROFILE, Profile, profiles_from_settings
from larkbot.agent.timezone import LazyTimezone
from larkbot.agent.tools.base import ToolContext
from larkbot.core.agent import Reply, RuntimeStatus
from larkbot.core.conversation import Conversation
from larkbot.core.language import Language, choose_language, detect_language
from larkbot.core.message import InboundMessage
from larkbot.ops.metrics import AGENT_RESPONSE_TIME, labelled

if TYPE_CHECKING:
    from larkbot.agent.tools.runner import ToolRunner
    from larkbot.config.settings import Settings
    from larkbot.lark.client import LarkClient

__all__ = ["Assistant"]

logger = logging.getLogger("larkbot.agent")

# Message types whose text the assistant reads; the rest get a polite "text only" reply.
_TEXT_TYPES = frozenset({"text", "post"})


class Assistant:
    """Answers chat messages: commands, limits and languages here, the thinking in a brain.

    ``status`` gives the live figures the ``status`` command shows. ``runner`` and
    ``client`` give the brain its Lark tools (without both it answers without tools);
    ``brain`` defaults to :class:`OfflineBrain`. ``timezone`` is the workspace zone that
    the brain and the tools place dates in; without it, ``agent.timezone`` is resolved
    (:func:`~larkbot.agent.timezone.resolve_timezone`) in a worker thread by
    :meth:`warm_up` or on the first message, since that reads the time zone database.
    ``limiter`` applies ``rate_limiting.requests_per_minute`` (default: this process's
    own :class:`RateLimiter`, driven by ``clock`` so tests move time instead of sleeping).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        status: RuntimeStatus,
        runner: ToolRunner | None = None,
        client: LarkClient | None = None,
        brain: Brain | None = None,
        timezone: tzinfo | None = None,
        limiter: UserLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._status = status
        self._runner = runner
        self._client = client
        self._brain: Brain = brain or OfflineBrain()
        self._timezone = LazyTimezone(settings.agent.timezone, timezone)
        self._profiles = profiles_from_settings(settings)
        limits = settings.rate_limiting
        self._limiter: UserLimiter | None = None
        if limits.enabled:
            self._limiter = limiter or RateLimiter(limits.requests_per_minute, clock=clock)

    async def respond(self, message: InboundMessage, conversation: Conversation) -> Reply:
        """Answer ``message``, recording the exchange in ``conversation`` when a brain answers."""
        started = time.perf_counter()
        intent = "fallback"
        try:
            reply, intent = await self._respond(message, conversation)
        finally:
            profile = self._profile_of(conversation)
            # The series looked up once (``labels`` validates and locks on every call).
            labelled(AGENT_RESPONSE_TIME, profile.name, intent).observe(
                time.perf_counter() - started
            )
        return reply

    async def _respond(
        self, message: InboundMessage, conversation: Conversation
    ) -> tuple[Reply, str]:
        profile = self._profile_of(conversation)
        default: Language = profile.language or self._settings.agent.default_language
        text = message.text.strip()
        if message.message_type not in _TEXT_TYPES:
            return Reply(translate("non_text", _language_so_far(conversation, default))), "non_text"
        if not text:
            return Reply(translate("empty", _language_so_far(conversation, default))), "empty"

        command = parse_command(text)
        if command is not None:
            # A command word's own language beats script detection: 設定 is Japanese here.
            language = conversation.language or command.language or default
            # Commands are about the bot, not the conversation: they are not recorded, so
            # ``reset`` leaves an empty history and the LLM never sees "status" as a turn.
            return self._command(command, message, conversation, language, profile), command.name

        # Text that says nothing of its language (a pasted link) follows the user's last words.
        language = choose_language(
            text,
            explicit=conversation.language,
            default=_language_so_far(conversation, default),
        )
        if self._limiter is not None:
            wait = await self._limiter.acquire(message.sender_open_id or message.chat_id)
            if wait is not None:
                logger.info(
                    "message %s: request limit reached for the sender, retry in %.0f s",
                    message.message_id,
                    wait,
                )
                sentence = translate(
                    "rate_limited",
                    language,
                    limit=self._limiter.per_minute,
                    seconds=max(1, math.ceil(wait)),
                )
                return Reply(sentence), "rate_limited"

        timezone = await self._timezone.get()
        turn = TurnContext(
            settings=self._settings,
            language=language,
            profile=profile,
            tool_ctx=self._tool_context(message, language, timezone),
            runner=self._runner if self._client is not None else None,
            timezone=timezone,
        )
        try:
            reply = await self._brain.think(message, conversation, turn)
            intent = turn.intent or self._brain.name
        except Exception:
            logger.exception(
                "message %s: the %s brain failed",
                message.message_id,
                self._brain.name,
            )
            reply, intent = Reply(translate("error", language)), "error"
        if not reply.text.strip():
            reply = Reply(translate("error", language))
        history = self._settings.agent.max_conversation_history
        conversation.add("user", text, history)
        conversation.add("assistant", reply.text, history)
        return reply, intent

    def _command(
        self,
        command: Command,
        message: InboundMessage,
        conversation: Conversation,
        language: Language,
        profile: Profile,
    ) -> Reply:
        llm = self._settings.llm
        uses_llm = llm.enabled and not isinstance(self._brain, OfflineBrain)
        ctx = CommandContext(
            settings=self._settings,
            status=self._status,
            message=message,
            conversation=conversation,
            language=language,
            profile=profile,
            profiles=self._profiles,
            tools=list(self._runner.registry) if self._runner is not None else [],
            llm_model=llm.model if uses_llm else None,
        )
        return run_command(command, ctx)

    def _profile_of(self, conversation: Conversation) -> Profile:
        for name in (conversation.profile, self._settings.agent.profile, DEFAULT_PROFILE):
            if name is not None and name in self._profiles:
                return self._profiles[name]
        return next(iter(self._profiles.values()))

    async def warm_up(self) -> None:
        """Resolve the time zone now rather than on the first message."""
        await self._timezone.get()

    async def timezone(self) -> tzinfo:
        """The workspace zone the brain and the tools place dates in."""
        return await self._timezone.get()

    def _tool_context(
        self, message: InboundMessage, language: Language, timezone: tzinfo
    ) -> ToolContext | None:
        if self._client is None or self._runner is None:
            return None
        return ToolContext(
            client=self._client,
            user_open_id=message.sender_open_id,
            chat_id=message.chat_id,
            message_id=message.message_id,
            language=language,
            bases=dict(self._settings.bases),
            allowed_bases=_allowed_bases(self._settings),
            timezone=timezone,
            conversation_key=message.conversation_key,
        )


def _allowed_bases(settings: Settings) -> frozenset[str] | None:
    """The Base app tokens writes may go to besides the configured tables; None: any."""
    allowed = settings.tools.allowed_bases
    return None if allowed is None else frozenset(allowed)


def _language_so_far(conversation: Conversation, default: Language) -> Language:
    """The language of a turn with no words of its own (an image, an empty message).

    The conversation's explicit choice, else the language the user last wrote in: someone
    chatting in English who sends a photo should be told in English that it cannot be read.
    """
    if conversation.language is not None:
        return conversation.language
    for turn in reversed(conversation.turns):
        if turn.role == "user" and (language := detect_language(turn.text)) is not None:
            return language
    return default

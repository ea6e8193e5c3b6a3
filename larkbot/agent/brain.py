"""The seam between the assistant and what decides an answer (offline rules or an LLM)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import TYPE_CHECKING, Protocol

from larkbot.agent.i18n import translate
from larkbot.agent.profiles import BUILTIN_PROFILES, DEFAULT_PROFILE, Profile
from larkbot.agent.timezone import FALLBACK_TIMEZONE
from larkbot.core.agent import Reply
from larkbot.core.conversation import Conversation
from larkbot.core.language import Language
from larkbot.core.message import InboundMessage

if TYPE_CHECKING:
    from larkbot.agent.tools.base import ToolContext
    from larkbot.agent.tools.runner import ToolRunner
    from larkbot.config.settings import Settings

__all__ = ["Brain", "TurnContext"]


@dataclass(slots=True)
class TurnContext:
    """What a brain needs besides the message: settings, language, profile, zone and tools.

    ``timezone`` is the workspace zone (``agent.timezone``) the brain places the times
    people say in. ``tool_ctx`` and ``runner`` are ``None`` when no Lark client is
    available; a brain then answers without tools. A brain sets ``intent`` to a short
    label of what it did (a tool name, ``"llm"``, ``"fallback"``...) so response times
    can be told apart.
    """

    settings: Settings
    language: Language
    profile: Profile
    tool_ctx: ToolContext | None = None
    runner: ToolRunner | None = None
    intent: str | None = None
    timezone: tzinfo = FALLBACK_TIMEZONE

    def refusal(self, tool_name: str) -> str | None:
        """The sentence refusing ``tool_name`` when this turn's profile may not use it.

        Both brains ask here before running a tool, so the rule and its wording live once.
        """
        if self.profile.allows(tool_name):
            return None
        suggestion = next(
            (name for name, profile in BUILTIN_PROFILES.items() if profile.allows(tool_name)),
            DEFAULT_PROFILE,
        )
        return translate(
            "tool_not_allowed",
            self.language,
            profile=self.profile.name,
            tool=tool_name,
            suggestion=suggestion,
        )


class Brain(Protocol):
    """Decides the answer to one message.

    ``conversation.turns`` holds the earlier turns only; the assistant records this
    message and the answer after :meth:`think` returns.
    """

    name: str

    async def think(
        self, message: InboundMessage, conversation: Conversation, turn: TurnContext
    ) -> Reply:
        """Answer ``message`` in ``turn.language``, calling tools through ``turn.runner``."""
        ...

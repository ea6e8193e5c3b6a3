"""Agent profiles: a persona's instructions, temperature, language and allowed tools.

Three profiles are built in; operators add or override profiles in the settings file
(``[[agent.profiles]]``). A conversation selects one with the ``agent NAME`` command.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from larkbot.agent.tools.lark_tools import BASE_TOOLS, MESSAGE_TOOLS
from larkbot.core.language import LANGUAGES, Language

if TYPE_CHECKING:
    from larkbot.config.settings import Settings

__all__ = ["BUILTIN_PROFILES", "DEFAULT_PROFILE", "Profile", "profiles_from_settings"]

DEFAULT_PROFILE = "LarkAssistant"


@dataclass(frozen=True, slots=True)
class Profile:
    """A persona the assistant can take.

    ``instructions`` is the system prompt the LLM brain sends; ``language``, when set, is
    the profile's default answer language; ``tools`` restricts which tools either brain
    may call (``None`` means every registered tool).
    """

    name: str
    instructions: str
    temperature: float = 0.7
    language: Language | None = None
    tools: frozenset[str] | None = None

    def allows(self, tool_name: str) -> bool:
        """True when this profile may call ``tool_name``."""
        return self.tools is None or tool_name in self.tools


BUILTIN_PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(
            name="LarkAssistant",
            instructions=(
                "You are a helpful assistant inside Lark. Answer concisely and accurately in "
                "the user's language. Use the available tools to look things up or act in "
                "Lark instead of guessing, and say plainly when you cannot do something."
            ),
            temperature=0.7,
        ),
        Profile(
            name="BaseExpert",
            instructions=(
                "You are a data assistant for Lark Base tables. Search, add, update and "
                "delete records with the tools; report exactly what the tools returned, "
                "never invent records or field values, and ask when a request is ambiguous."
            ),
            temperature=0.3,
            tools=frozenset(BASE_TOOLS) | {"get_user_info"},
        ),
        Profile(
            name="MessageBot",
            instructions=(
                "You are a messaging assistant inside Lark. Send messages, look up people "
                "and chat members with the tools, keep replies short, and confirm what "
                "you sent and to whom."
            ),
            temperature=0.5,
            tools=frozenset(MESSAGE_TOOLS),
        ),
    )
}


def _tools_of(raw: Iterable[str] | None) -> frozenset[str] | None:
    return None if raw is None else frozenset(str(name) for name in raw)


def _language_of(raw: Any) -> Language | None:
    return raw if raw in LANGUAGES else None


def profiles_from_settings(settings: Settings) -> dict[str, Profile]:
    """Return the built-in profiles overlaid with the ones configured in ``settings``.

    A configured profile named like a built-in one changes it: what it leaves unset
    (instructions, temperature, language, tools) stays as built in. A new profile without
    a temperature takes ``agent.temperature``, and without tools may use every tool.
    """
    profiles = dict(BUILTIN_PROFILES)
    for raw in settings.agent.profiles or ():
        base = BUILTIN_PROFILES.get(raw.name) or Profile(
            name=raw.name, instructions="", temperature=settings.agent.temperature
        )
        profiles[raw.name] = Profile(
            name=raw.name,
            instructions=raw.instructions or base.instructions,
            temperature=raw.temperature if raw.temperature is not None else base.temperature,
            language=_language_of(raw.language) or base.language,
            tools=_tools_of(raw.tools) if raw.tools is not None else base.tools,
        )
    return profiles

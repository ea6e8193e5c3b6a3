"""What a tool is: a named, typed, scoped action the agent can take in Lark.

Both brains (offline intents and the LLM) run tools only through
:class:`larkbot.agent.tools.runner.ToolRunner`, which applies policy, rate limits,
caching, metrics and the audit log in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from larkbot.config.settings import BaseTableSettings
    from larkbot.lark.client import LarkClient

__all__ = ["Tool", "ToolContext", "ToolError", "ToolResult"]

Language = Literal["ja", "en", "zh"]


class ToolError(Exception):
    """A failure the user should read: ``str(error)`` is a sentence in their language."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who is asking, where, and with which client."""

    client: LarkClient
    user_open_id: str
    chat_id: str
    message_id: str
    language: Language = "ja"
    bases: dict[str, BaseTableSettings] = field(default_factory=dict)
    # App tokens of the Bases writes may go to besides the configured tables; None: any.
    allowed_bases: frozenset[str] | None = None
    # Whom write limits and the audit log count the call against when it is not a chat
    # user (an MCP client, say); empty: ``user_open_id``.
    caller: str = ""

    @property
    def limit_key(self) -> str:
        """The key write limits count this call under: ``caller``, else ``user_open_id``."""
        return self.caller or self.user_open_id


class ToolResult(BaseModel):
    """The outcome of one tool call.

    ``data`` is JSON-serialisable (what the LLM sees); ``text`` is a readable rendering
    in the caller's language (what the offline brain shows the user); ``error`` is set
    when ``ok`` is false and is a sentence for the user, never a traceback.
    """

    ok: bool
    data: Any = None
    text: str = ""
    error: str | None = None


class Tool:
    """Base class of every tool: subclass, set the class attributes, implement ``run``."""

    name: ClassVar[str]
    description: ClassVar[str]
    input_model: ClassVar[type[BaseModel]]
    write: ClassVar[bool] = False
    scopes: ClassVar[tuple[str, ...]] = ()
    _openai_schema: ClassVar[dict[str, Any] | None] = None

    async def run(self, ctx: ToolContext, args: BaseModel) -> ToolResult:
        """Do the work; raise :class:`ToolError` for a failure the user should read."""
        raise NotImplementedError

    @classmethod
    def openai_schema(cls) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool (function calling).

        Built once per tool class: walking the pydantic model takes about a millisecond,
        too much to repeat for every message an LLM answers.
        """
        schema = cls.__dict__.get("_openai_schema")
        if schema is None:
            schema = {
                "type": "function",
                "function": {
                    "name": cls.name,
                    "description": cls.description,
                    "parameters": cls.input_model.model_json_schema(),
                },
            }
            cls._openai_schema = schema
        return schema

"""What a tool is: a named, typed, scoped action the agent can take in Lark.

Both brains (offline intents and the LLM) run tools only through
:class:`larkbot.agent.tools.runner.ToolRunner`, which applies policy, rate limits,
caching, metrics and the audit log in one place.

A tool is a subclass of ``Tool[InputModel]``: the runner validates the arguments against
the input model and hands :meth:`Tool.run` an instance of exactly that model. The class
statement says what the tool is (``name``, ``description``, ``write``, ``cacheable``,
``scopes``), as the built-in tools do. The description is data, never the docstring:
``python -OO`` strips docstrings, and a tool must describe itself under any interpreter
flag::

    class EchoInput(BaseModel):
        text: str

    class Echo(Tool[EchoInput], name="echo", description="Repeat the text back."):
        async def run(self, ctx: ToolContext, args: EchoInput) -> ToolResult:
            return ToolResult(ok=True, data={"text": args.text}, text=args.text)

Class attributes (``name = "echo"``) work as well as the class statement's keywords.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from pydantic import BaseModel

from larkbot.agent.timezone import FALLBACK_TIMEZONE
from larkbot.core.language import Language

if TYPE_CHECKING:
    from larkbot.config.settings import BaseTableSettings
    from larkbot.lark.client import LarkClient

__all__ = ["InputT", "Tool", "ToolContext", "ToolError", "ToolResult"]

InputT = TypeVar("InputT", bound=BaseModel)
"""The input model of a tool: what :meth:`Tool.run` receives, validated."""


class ToolError(Exception):
    """A failure the user should read: ``str(error)`` is a sentence in their language."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who is asking, where, with which client, and in which time zone.

    ``timezone`` places dates and times given without an offset, and says which day
    "today" or "this month" is; ``clock`` tells the current moment (tests fix it).
    """

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
    timezone: tzinfo = FALLBACK_TIMEZONE
    clock: Callable[[], datetime] = _utc_now
    # The conversation the call belongs to (chat, or chat and thread): where the outcome
    # of a write approved later is recorded. Empty: ``chat_id``.
    conversation_key: str = ""

    @property
    def limit_key(self) -> str:
        """The key write limits count this call under: ``caller``, else ``user_open_id``."""
        return self.caller or self.user_open_id

    def now(self) -> datetime:
        """The current moment in :attr:`timezone`."""
        return self.clock().astimezone(self.timezone)


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
    card: dict[str, Any] | None = None
    """A card to show the user instead of ``text`` (a write awaiting confirmation)."""


class Tool(Generic[InputT]):
    """Base class of every tool: subclass ``Tool[YourInput]``, set its attributes, write ``run``.

    ``name`` is what the LLM calls (letters, digits, ``_`` and ``-``); ``description``
    tells the LLM when to use it; ``write`` marks a tool that changes something in Lark
    (writers, the write limit and the audit log apply); ``scopes`` lists the Lark
    permissions it needs; ``cacheable`` lets the runner answer a repeated read from its
    cache (a tool whose answer changes without any write, such as a chat's history, sets
    it to ``False``). ``idempotent`` marks a write that, run again for the same message
    with the same arguments within the hour Lark honours idempotency keys, changes nothing
    more, undoes nothing others changed since, and answers as the first run did (an
    approved write whose process died is then run again; others are reported as of unknown
    outcome). ``input_model`` is taken from the type argument when not set.

    ``name``, ``description``, ``write``, ``cacheable``, ``idempotent`` and ``scopes`` may
    each be given as a keyword of the class statement or as a class attribute.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    input_model: type[InputT]
    write: ClassVar[bool] = False
    cacheable: ClassVar[bool] = True
    idempotent: ClassVar[bool] = False
    scopes: ClassVar[tuple[str, ...]] = ()
    _openai_schema: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(
        cls,
        *,
        name: str | None = None,
        description: str | None = None,
        write: bool | None = None,
        cacheable: bool | None = None,
        idempotent: bool | None = None,
        scopes: tuple[str, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        declared = {
            "name": name,
            "description": description,
            "write": write,
            "cacheable": cacheable,
            "idempotent": idempotent,
            "scopes": scopes,
        }
        for attribute, value in declared.items():
            if value is not None:
                setattr(cls, attribute, value)
        if "input_model" not in cls.__dict__:
            model = _input_model_of(cls)
            if model is not None:
                cls.input_model = cast("type[Any]", model)

    async def run(self, ctx: ToolContext, args: InputT) -> ToolResult:
        """Do the work; raise :class:`ToolError` for a failure the user should read."""
        raise NotImplementedError

    async def preview(self, ctx: ToolContext, args: InputT) -> list[tuple[str, str | None, str]]:
        """What a write would change, read from Lark now: ``(field, before, after)`` rows.

        ``before`` is ``None`` where there is nothing to compare with (a new record).
        The default lists the arguments as they are; a tool that can read the current
        values (an update) overrides it.
        """
        shown = args.model_dump(mode="json", exclude_none=True)
        return [(str(key), None, _shown(value)) for key, value in shown.items()]

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


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _input_model_of(cls: type) -> type[BaseModel] | None:
    """The concrete model ``cls`` gave as its type argument (``class X(Tool[XInput])``)."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        for argument in typing.get_args(base):
            if isinstance(argument, type) and issubclass(argument, BaseModel):
                return argument
    return None

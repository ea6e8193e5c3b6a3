"""Tool plug-ins, good and broken, as entry points in the ``larkbot.tools`` group name them."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from larkbot.agent.tools import Tool, ToolContext, ToolResult


class ShoutInput(BaseModel):
    """Arguments of ``shout``."""

    text: str


class Shout(Tool[ShoutInput]):
    """A plug-in tool named by its class."""

    name: ClassVar[str] = "shout"
    description: ClassVar[str] = "Repeat the text in capitals."
    scopes: ClassVar[tuple[str, ...]] = ("im:message:readonly",)

    async def run(self, ctx: ToolContext, args: ShoutInput) -> ToolResult:
        return ToolResult(ok=True, data={"text": args.text.upper()}, text=args.text.upper())


class Stamp(
    Tool[ShoutInput],
    name="stamp",
    description="Stamp the text as approved.",
    write=True,
    scopes=("im:message:send_as_bot",),
):
    """A plug-in write tool declared in its class statement."""

    async def run(self, ctx: ToolContext, args: ShoutInput) -> ToolResult:
        stamped = f"[approved] {args.text}"
        return ToolResult(ok=True, data={"text": stamped}, text=stamped)


class CountInput(BaseModel):
    """Arguments of ``count_words``."""

    text: str
    separator: str = " "


class CountWords(Tool[CountInput]):
    """A tool a factory builds with an argument."""

    name: ClassVar[str] = "count_words"
    description: ClassVar[str] = "Count the words of a text."

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    async def run(self, ctx: ToolContext, args: CountInput) -> ToolResult:
        words = max(self.minimum, len(args.text.split(args.separator)))
        return ToolResult(ok=True, data={"words": words}, text=str(words))


class Whisper(Shout):
    """A second tool of the factory below."""

    name: ClassVar[str] = "whisper"
    description: ClassVar[str] = "Repeat the text in small letters."

    async def run(self, ctx: ToolContext, args: ShoutInput) -> ToolResult:
        return ToolResult(ok=True, data={"text": args.text.lower()}, text=args.text.lower())


def make_tools() -> list[Tool[ShoutInput] | Tool[CountInput]]:
    """A factory returning several tools."""
    return [CountWords(minimum=0), Whisper()]


def failing_factory() -> list[Tool[ShoutInput]]:
    """A factory that breaks, as one whose service is down would."""
    raise RuntimeError("the CRM is unreachable\nsecond line of detail")


def returns_text() -> str:
    """A factory returning something other than tools."""
    return "not a tool"


class NotATool:
    """A class that is no Tool."""


class Nameless(Tool[ShoutInput]):
    """A tool that forgot its name."""

    description: ClassVar[str] = "No name."


class BadSchema(Tool[BaseModel]):
    """A tool whose input model pydantic cannot describe."""

    name: ClassVar[str] = "bad_schema"
    description: ClassVar[str] = "Its input model is the bare BaseModel."


class SendMessageAgain(Shout):
    """A plug-in tool whose name a built-in tool already has."""

    name: ClassVar[str] = "send_message"

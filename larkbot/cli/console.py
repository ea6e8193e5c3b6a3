"""``larkbot console``: the real daemon against an in-process local Lark.

Everything between the typed line and the printed reply is the production path: the
line becomes an ``im.message.receive_v1`` event on a real WebSocket, the daemon acks it,
the agent answers, and the reply goes through the OpenAPI client over real HTTP.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import anyio
from rich.console import Console
from rich.markdown import Markdown
from rich.text import Text

from larkbot.cli._terminal import StdinLines, cancel_on_signals, print_block
from larkbot.config import Settings
from larkbot.daemon import Daemon
from larkbot.testing import LarkStandIn, ReplyRecord
from larkbot.testing._records import readable_text
from larkbot.testing.sample_data import SAMPLE_BASES, sample_workspace
from larkbot.testing.workspace import workspace_routes

__all__ = ["reply_body", "run_console"]

_CHAT_ID = "oc_console"
_USER_OPEN_ID = "ou_console_user"
_REPLY_TIMEOUT = 120.0
_YOU = Text("you › ", style="bold green")
_BOT = Text("bot › ", style="bold magenta")
_INDENT = "      "


async def run_console(base: Settings) -> int:
    """Chat over standard input/output until end of input or Ctrl-C; return the exit status."""
    out = Console(highlight=False)
    lines = StdinLines()
    workspace = sample_workspace()
    quiet = _ChosenStoreFilter()
    logging.getLogger("larkbot.store").addFilter(quiet)
    try:
        async with (
            LarkStandIn(extra_routes=workspace_routes(workspace)) as lark,
            anyio.create_task_group() as outer,
        ):
            outer.start_soon(cancel_on_signals, outer.cancel_scope, lambda: _end_prompt(out, lines))
            settings = _console_settings(base, lark)
            daemon = Daemon(settings, env={}, working_reaction_after=None)
            async with anyio.create_task_group() as tg:
                await tg.start(daemon.run)
                with anyio.fail_after(15):
                    await daemon.ready.wait()
                await _chat(lark, daemon, out, lines)
                daemon.request_stop()
            outer.cancel_scope.cancel()
    finally:
        logging.getLogger("larkbot.store").removeFilter(quiet)
    return 0


@dataclass(frozen=True, slots=True)
class _Choice:
    """A button of the last card shown, picked by typing its number."""

    label: str
    value: dict[str, Any] | str
    message_id: str


async def _chat(lark: LarkStandIn, daemon: Daemon, out: Console, lines: StdinLines) -> None:
    if lines.interactive:
        out.print(
            "[bold]larkbot console[/]: a local Lark with sample data. "
            "Type [cyan]help[/]; Ctrl-C quits."
        )
    choices: list[_Choice] = []
    while True:
        if lines.interactive:
            out.print(_YOU, end="")
        line = await lines.readline()
        if line is None:
            break
        typed = line.strip()
        if typed.isdigit() and 1 <= int(typed) <= len(choices):
            choices = await _choose(lark, out, choices[int(typed) - 1])
        elif typed:
            choices = await _exchange(lark, daemon, out, typed)
    if lines.interactive:
        out.print()


def _end_prompt(out: Console, lines: StdinLines) -> None:
    # The terminal echoed ^C after the prompt: end that line so the shell's starts afresh.
    if lines.interactive:
        out.print()


class _ChosenStoreFilter(logging.Filter):
    """Drop the store's warning that memory forgets: the console chose memory on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but that one warning."""
        return not str(record.msg).startswith("store = memory")


def _console_settings(base: Settings, lark: LarkStandIn) -> Settings:
    """The user's settings, pointed at the local Lark, with nothing left on disk."""
    data = base.model_dump()
    data["app"] = {"id": lark.app_id, "secret": lark.app_secret}
    data["lark"]["domain"] = lark.url
    data["server"].update(port=0, host="127.0.0.1")
    data["store"]["backend"] = "memory"
    data["bases"] = data["bases"] or SAMPLE_BASES
    # Validated again (not model_copy) so the overrides get the same checks as any setting.
    return Settings.model_validate(data)


async def _exchange(lark: LarkStandIn, daemon: Daemon, out: Console, text: str) -> list[_Choice]:
    """Send ``text`` as the console user; print the replies; return the last card's buttons."""
    message_id = await lark.send_text(text, chat_id=_CHAT_ID, sender_open_id=_USER_OPEN_ID)
    try:
        # One budget for both waits: the ack, then the answer (the backlog drains).
        with anyio.fail_after(_REPLY_TIMEOUT):
            while not any(a.chat_message_id == message_id for a in lark.acks):  # noqa: ASYNC110
                await anyio.sleep(0.005)
            while daemon.backlog:  # noqa: ASYNC110
                await anyio.sleep(0.005)
    except TimeoutError:
        out.print("[red]no reply within two minutes[/]")
        return []
    choices: list[_Choice] = []
    for record in lark.replies:
        if record.to_message_id == message_id:
            if record.card is not None:
                # A card entity (a streamed answer): print the card as it ended.
                record = dataclasses.replace(record, content=record.card)
            _print_reply(out, record)
            if record.msg_type == "interactive":
                choices = _print_choices(out, record.content, record.message_id)
    return choices


async def _choose(lark: LarkStandIn, out: Console, choice: _Choice) -> list[_Choice]:
    """Click ``choice`` as the console user; print Lark's toast and the card it becomes."""
    ack = await lark.send_card_action(
        choice.value,
        open_message_id=choice.message_id,
        open_chat_id=_CHAT_ID,
        operator_open_id=_USER_OPEN_ID,
    )
    answer = ack.answer()
    toast = answer.get("toast")
    if isinstance(toast, dict) and toast.get("content"):
        print_block(out, Text(f"({toast['content']})"), first=_BOT, rest=_INDENT)
    card = answer.get("card")
    if isinstance(card, dict) and isinstance(card.get("data"), dict):
        content = card["data"]
        body = (
            Markdown(_card_markdown(content))
            if out.is_terminal
            else Text(readable_text("interactive", content))
        )
        print_block(out, body, first=_BOT, rest=_INDENT)
        return _print_choices(out, content, choice.message_id)
    return []


def _print_choices(out: Console, card: dict[str, Any], message_id: str) -> list[_Choice]:
    """Print a line per button of ``card`` (``[1] Approve``); return them in that order."""
    choices = [_Choice(label, value, message_id) for label, value in _buttons(card)]
    for number, choice in enumerate(choices, 1):
        out.print(Text(f"{_INDENT}[{number}] {choice.label}"))
    return choices


def _buttons(card: dict[str, Any]) -> list[tuple[str, dict[str, Any] | str]]:
    """The ``(label, callback value)`` of each button of a card (schema 2.0 and 1.0)."""
    body = card.get("body") if isinstance(card.get("body"), dict) else card
    elements = body.get("elements", []) if isinstance(body, dict) else []
    found: list[tuple[str, dict[str, Any] | str]] = []
    for element in elements:
        if not isinstance(element, dict) or element.get("tag") != "button":
            continue
        text = element.get("text")
        label = str(text.get("content", "")) if isinstance(text, dict) else ""
        value: Any = element.get("value")
        for behavior in element.get("behaviors") or []:
            if isinstance(behavior, dict) and behavior.get("type") == "callback":
                value = behavior.get("value")
        if isinstance(value, dict | str):
            found.append((label, value))
    return found


def _print_reply(out: Console, record: ReplyRecord) -> None:
    print_block(out, reply_body(record, rendered=out.is_terminal), first=_BOT, rest=_INDENT)


def reply_body(record: ReplyRecord, *, rendered: bool = True) -> Text | Markdown:
    """What a reply shows in Lark: text as is, cards rendered for a person at a terminal.

    Into a pipe (``rendered=False``) a card prints as the markdown Lark receives, so
    scripts see stable text rather than the terminal's bullets and rules.
    """
    if record.msg_type == "text":
        return Text(str(record.content.get("text", "")))
    if record.msg_type == "interactive":
        if not rendered:
            return Text(readable_text(record.msg_type, record.content))
        return Markdown(_card_markdown(record.content))
    if record.msg_type == "post":
        return Text(_post_text(record.content))
    return Text(f"[{record.msg_type}]")


def _card_markdown(card: dict[str, Any]) -> str:
    """The markdown text of a card's elements (schema 1.0 and 2.0)."""
    body = card.get("body") if isinstance(card.get("body"), dict) else card
    elements = body.get("elements", []) if isinstance(body, dict) else []
    parts = []
    for element in elements:
        if isinstance(element, dict):
            if element.get("tag") in ("markdown", "lark_md"):
                parts.append(str(element.get("content", "")))
            elif element.get("tag") != "button" and isinstance(element.get("text"), dict):
                parts.append(str(element["text"].get("content", "")))
    return _hard_breaks("\n\n".join(parts))


def _hard_breaks(markdown: str) -> str:
    """Keep single line breaks, as Lark renders them, outside code fences.

    CommonMark (and so rich) folds a single newline into a space; Lark's card markdown
    shows it as a line break, and the agent's lists rely on that.
    """
    lines, fenced = [], False
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        lines.append(line if fenced or not line.strip() else line + "  ")
    return "\n".join(lines)


def _post_text(post: dict[str, Any]) -> str:
    body = next((v for v in post.values() if isinstance(v, dict)), post)
    lines = []
    for paragraph in body.get("content", []):
        lines.append("".join(str(e.get("text", "")) for e in paragraph if isinstance(e, dict)))
    return "\n".join(lines)

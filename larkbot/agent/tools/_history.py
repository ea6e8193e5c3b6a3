"""Reading a chat's history: ``list_chat_messages``, and the text of each kind of message."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from larkbot.agent.i18n import translate
from larkbot.agent.tools._common import ToolInput
from larkbot.agent.tools.base import Tool, ToolContext, ToolError, ToolResult
from larkbot.lark.client import LarkAPIError

__all__ = ["ListChatMessages", "ListChatMessagesInput", "message_text"]

MESSAGES_ROUTE = "im/v1/messages"
USERS_BATCH_ROUTE = "contact/v3/users/batch"

_PAGE_SIZE = 50  # the most the platform returns per page
_PAGES = 10
_NAMES_PER_CALL = 50
_LINE_CHARS = 200
# A single message longer than this is cut: one pasted log must not take the whole budget.
_MESSAGE_CHARS = 2000

# What stands for a message that has no text of its own.
_PLACEHOLDERS = {
    "image": "[image]",
    "file": "[file]",
    "audio": "[audio]",
    "media": "[video]",
    "sticker": "[sticker]",
    "share_chat": "[shared chat]",
    "share_user": "[shared contact]",
    "merge_forward": "[forwarded messages]",
    "location": "[location]",
    "video_chat": "[video call]",
    "todo": "[task]",
    "hongbao": "[red packet]",
}


class ListChatMessagesInput(ToolInput):
    """Arguments of ``list_chat_messages``."""

    chat_id: str | None = Field(
        None, description="The chat (oc_...); leave it out for the chat the user is in."
    )
    thread_id: str | None = Field(
        None, description="A topic thread (omt_...) to read instead of the whole chat."
    )
    limit: int = Field(30, ge=1, le=200, description="How many messages to return at most.")
    token_budget: int = Field(
        3000,
        ge=200,
        le=20000,
        description="Stop before the messages' text exceeds about this many tokens, so a long "
        "history fits in the context; older messages can then be read with 'before'.",
    )
    before: int | None = Field(
        None,
        ge=0,
        description="Only messages sent at or before this time (epoch seconds): pass an earlier "
        "answer's next_before to read further back.",
    )
    exclude_bots: bool = Field(False, description="Leave out the messages bots sent.")


# Not cacheable: new messages arrive without any write, so a cached answer would be stale.
class ListChatMessages(
    Tool[ListChatMessagesInput],
    name="list_chat_messages",
    description=(
        "Read a chat's or a topic thread's recent messages, newest first: time, sender name and "
        "text (text, rich text and cards are turned into plain text). Use it to summarise a chat "
        "or thread, to catch up on a discussion, or to find what someone said. Without chat_id it "
        "reads the chat the user is in (the bot must be a member). The answer stops at 'limit' "
        "messages or 'token_budget' tokens; 'next_before' then pages further back."
    ),
    cacheable=False,
    scopes=("im:message.group_msg", "im:message.p2p_msg:readonly", "contact:user.base:readonly"),
):
    """Read a chat's or thread's recent messages."""

    async def run(self, ctx: ToolContext, args: ListChatMessagesInput) -> ToolResult:
        """Page back through the history until the limit or the token budget is reached."""
        thread_id = (args.thread_id or "").strip()
        chat_id = (args.chat_id or ("" if thread_id else ctx.chat_id)).strip()
        if not thread_id and not chat_id:
            raise ToolError(translate("ask_chat", ctx.language))
        params: dict[str, Any] = {
            "container_id_type": "thread" if thread_id else "chat",
            "container_id": thread_id or chat_id,
            "sort_type": "ByCreateTimeDesc",
            "page_size": min(_PAGE_SIZE, args.limit + 1),
        }
        if args.before is not None:
            params["end_time"] = str(args.before)
        kept: list[tuple[dict[str, Any], str]] = []
        spent = 0
        truncated = False
        for _ in range(_PAGES):
            data = await ctx.client.request(
                "GET", MESSAGES_ROUTE, route=MESSAGES_ROUTE, params=params
            )
            for item in data.get("items") or []:
                if item.get("deleted") or item.get("message_id") == ctx.message_id:
                    continue
                sender = item.get("sender") or {}
                if args.exclude_bots and sender.get("sender_type") != "user":
                    continue
                if len(kept) == args.limit:
                    truncated = True
                    break
                text = message_text(
                    str(item.get("msg_type") or ""),
                    str((item.get("body") or {}).get("content") or ""),
                    item.get("mentions") or [],
                )
                if len(text) > _MESSAGE_CHARS:
                    text = text[: _MESSAGE_CHARS - 1] + "…"
                # About what the message's id, time and sender cost once sent as JSON.
                cost = _tokens(text) + 30
                if kept and spent + cost > args.token_budget:
                    truncated = True
                    break
                spent += cost
                kept.append((item, text))
            if truncated or not data.get("has_more") or not data.get("page_token"):
                truncated = truncated or bool(data.get("has_more"))
                break
            params = {**params, "page_token": data["page_token"]}
        names = await _sender_names(ctx, [item for item, _ in kept])
        messages = [self._message(item, text, names, ctx) for item, text in kept]
        oldest = _seconds(kept[-1][0].get("create_time")) if kept else None
        result = {
            "chat_id": chat_id or None,
            "thread_id": thread_id or None,
            "count": len(messages),
            "messages": messages,
            "truncated": truncated,
            "next_before": oldest if truncated else None,
        }
        return ToolResult(
            ok=True, data=result, text=self._text(ctx, messages, truncated, thread_id)
        )

    def _message(
        self, item: dict[str, Any], text: str, names: dict[str, str], ctx: ToolContext
    ) -> dict[str, Any]:
        sender = item.get("sender") or {}
        sender_id = str(sender.get("id") or "")
        if sender.get("sender_type") == "user":
            name = names.get(sender_id) or sender_id
        else:
            name = translate("sender_bot", ctx.language)
        message = {
            "message_id": item.get("message_id", ""),
            "time": self._time(item.get("create_time"), ctx),
            "sender": name,
            "sender_id": sender_id,
            "text": text,
        }
        if item.get("thread_id"):
            message["thread_id"] = item["thread_id"]
        return message

    @staticmethod
    def _time(millis: Any, ctx: ToolContext) -> str:
        """When a message was sent, in the workspace time zone, to the minute."""
        seconds = _seconds(millis)
        if seconds is None:
            return ""
        moment = datetime.fromtimestamp(seconds, tz=UTC).astimezone(ctx.timezone)
        return moment.isoformat(timespec="minutes")

    @staticmethod
    def _text(
        ctx: ToolContext, messages: list[dict[str, Any]], truncated: bool, thread_id: str
    ) -> str:
        where = translate("in_thread" if thread_id else "in_chat", ctx.language)
        if not messages:
            return translate("no_messages", ctx.language, where=where)
        lines = [translate("messages_header", ctx.language, count=len(messages), where=where)]
        # Oldest first, as a conversation is read.
        for message in reversed(messages):
            when = message["time"][11:16]
            text = " ".join(message["text"].split())
            if len(text) > _LINE_CHARS:
                text = text[: _LINE_CHARS - 1] + "…"
            lines.append(f"- {when} **{message['sender']}**: {text}")
        if truncated:
            lines.append(translate("messages_older", ctx.language))
        return "\n".join(lines)


async def _sender_names(ctx: ToolContext, items: list[dict[str, Any]]) -> dict[str, str]:
    """Names of the people who sent ``items``: from their mentions, then from the directory."""
    names: dict[str, str] = {}
    for item in items:
        for mention in item.get("mentions") or []:
            mention_id = mention.get("id")
            if isinstance(mention_id, dict):
                mention_id = mention_id.get("open_id")
            if isinstance(mention_id, str) and mention_id.startswith("ou_") and mention.get("name"):
                names[mention_id] = str(mention["name"])
    wanted = list(
        dict.fromkeys(
            str(sender.get("id"))
            for item in items
            if (sender := item.get("sender") or {}).get("sender_type") == "user"
            and str(sender.get("id") or "").startswith("ou_")
            and str(sender.get("id")) not in names
        )
    )
    for start in range(0, len(wanted), _NAMES_PER_CALL):
        try:
            data = await ctx.client.request(
                "GET",
                USERS_BATCH_ROUTE,
                route=USERS_BATCH_ROUTE,
                params={
                    "user_ids": wanted[start : start + _NAMES_PER_CALL],
                    "user_id_type": "open_id",
                },
            )
        except LarkAPIError:
            # Names are a nicety: without the contact scope the history still reads, by id.
            break
        for user in data.get("items") or []:
            if user.get("open_id") and user.get("name"):
                names[str(user["open_id"])] = str(user["name"])
    return names


def message_text(msg_type: str, content: str, mentions: list[dict[str, Any]]) -> str:
    """The readable text of one message as the message APIs send it.

    Text and rich text read as written (``@_user_1`` placeholders become ``@name``), cards
    as the text of their elements, anything else as a short placeholder such as ``[image]``.
    """
    try:
        parsed = json.loads(content) if content else {}
    except json.JSONDecodeError:
        parsed = {}
    if msg_type == "text" and isinstance(parsed, dict):
        text = str(parsed.get("text") or "")
    elif msg_type == "post" and isinstance(parsed, dict):
        text = _post_text(parsed)
    elif msg_type == "interactive":
        text = "\n".join(_card_strings(parsed))
    else:
        return _PLACEHOLDERS.get(msg_type, f"[{msg_type or 'message'}]")
    for mention in mentions:
        key, name = mention.get("key"), mention.get("name")
        if isinstance(key, str) and key and name:
            text = text.replace(key, f"@{name}")
    return text.strip()


def _post_text(post: dict[str, Any]) -> str:
    body: Any = post
    if "content" not in post and "title" not in post:
        # Rich text may come wrapped in its locale: {"ja_jp": {"title", "content"}}.
        body = next((value for value in post.values() if isinstance(value, dict)), {})
    lines = [str(body.get("title") or "")]
    for paragraph in body.get("content") or []:
        if isinstance(paragraph, list):
            parts = (_element_text(element) for element in paragraph if isinstance(element, dict))
            lines.append("".join(parts))
    return "\n".join(line for line in lines if line)


def _element_text(element: dict[str, Any]) -> str:
    """What one element of a rich-text paragraph reads as."""
    tag = element.get("tag")
    if tag == "at":
        return "@" + str(element.get("user_name") or element.get("user_id") or "")
    if tag == "img":
        return "[image]"
    if tag == "media":
        return "[video]"
    return str(element.get("text") or element.get("href") or "")


def _card_strings(node: Any) -> list[str]:
    """Every piece of text in a card, in order: titles, markdown, plain text, buttons."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("content", "text", "title", "json_card") and isinstance(value, str):
                # The raw card content format nests the card as a JSON string.
                nested = _loads(value) if value.lstrip().startswith(("{", "[")) else None
                if isinstance(nested, dict | list):
                    found.extend(_card_strings(nested))
                elif value.strip() and key != "json_card":
                    found.append(value.strip())
            elif isinstance(value, dict | list):
                found.extend(_card_strings(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_card_strings(item))
    return found


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _tokens(text: str) -> int:
    """A rough token count: about four Latin characters or one CJK character per token."""
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return ascii_chars // 4 + (len(text) - ascii_chars) + 1


def _seconds(value: Any) -> int | None:
    """Epoch seconds of a message time given in milliseconds (as text or a number)."""
    try:
        millis = int(value)
    except (TypeError, ValueError):
        return None
    return millis // 1000

"""Tools over chats: send a message, list the members of a chat."""

from __future__ import annotations

import json
from typing import Any, Self

from pydantic import Field, model_validator

from larkbot.agent.i18n import translate
from larkbot.agent.tools._common import ToolInput, exactly_one, idempotency_key, path_segment
from larkbot.agent.tools._links import pages
from larkbot.agent.tools.base import Tool, ToolContext, ToolResult

__all__ = ["ListChatMembers", "ListChatMembersInput", "SendMessage", "SendMessageInput"]

SEND_ROUTE = "im/v1/messages"
MEMBERS_ROUTE = "im/v1/chats/{chat_id}/members"

_MEMBER_PAGES = 10
_MEMBERS_SHOWN = 30


class SendMessageInput(ToolInput):
    """Arguments of ``send_message``: the text and exactly one target."""

    text: str = Field(min_length=1, max_length=4000, description="The message text to send.")
    chat_id: str | None = Field(
        None, description="The chat to post in (oc_...). Give this or user_open_id, not both."
    )
    user_open_id: str | None = Field(
        None, description="The user to message directly (ou_...). Give this or chat_id."
    )

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        return exactly_one(self, "chat_id", "user_open_id")


class ListChatMembersInput(ToolInput):
    """Arguments of ``list_chat_members``."""

    chat_id: str | None = Field(
        None, description="The chat (oc_...); leave it out for the chat the user is in."
    )


class SendMessage(
    Tool[SendMessageInput],
    name="send_message",
    description=(
        "Send a text message as the bot to another chat (chat_id, oc_...) or directly to a user "
        "(user_open_id, ou_...). Use it when the user asks to tell, notify or remind someone else, "
        "or to post in another group. Do not use it to answer the user: the reply is sent anyway. "
        "Give exactly one target."
    ),
    write=True,
    # Lark sends one message per uuid (the call's idempotency key).
    idempotent=True,
    scopes=("im:message:send_as_bot",),
):
    """Post a text message as the bot in another chat."""

    async def run(self, ctx: ToolContext, args: SendMessageInput) -> ToolResult:
        """Send the message with an idempotency uuid derived from the triggering message."""
        if args.chat_id:
            receive_id, id_type, key = args.chat_id.strip(), "chat_id", "message_sent_chat"
        else:
            receive_id, id_type, key = (
                str(args.user_open_id).strip(),
                "open_id",
                "message_sent_user",
            )
        data = await ctx.client.request(
            "POST",
            SEND_ROUTE,
            route=SEND_ROUTE,
            params={"receive_id_type": id_type},
            json={
                "receive_id": receive_id,
                "msg_type": "text",
                "content": json.dumps({"text": args.text}, ensure_ascii=False),
                "uuid": idempotency_key(ctx, self.name, args),
            },
            write=True,
        )
        return ToolResult(
            ok=True,
            data={
                "message_id": data.get("message_id"),
                "chat_id": data.get("chat_id"),
                "receive_id": receive_id,
            },
            text=translate(key, ctx.language, target=receive_id),
        )


class ListChatMembers(
    Tool[ListChatMembersInput],
    name="list_chat_members",
    description=(
        "List the members of a chat (their names and open_ids). Use it when the user asks who is "
        "in this group or another group, or needs someone's open_id to message or invite them. "
        "Without chat_id it lists the current chat."
    ),
    scopes=("im:chat:readonly",),
):
    """List who is in a chat."""

    async def run(self, ctx: ToolContext, args: ListChatMembersInput) -> ToolResult:
        """Fetch every page of members (bounded) and list them."""
        chat_id = (args.chat_id or ctx.chat_id).strip()
        path = f"im/v1/chats/{path_segment(chat_id)}/members"
        members: list[dict[str, str]] = []
        total = 0
        params: dict[str, Any] = {"member_id_type": "open_id", "page_size": 100}
        async for data in pages(ctx, path, route=MEMBERS_ROUTE, params=params, limit=_MEMBER_PAGES):
            for item in data.get("items") or []:
                members.append(
                    {"open_id": str(item.get("member_id", "")), "name": item.get("name", "")}
                )
            total = int(data.get("member_total") or len(members))
        total = max(total, len(members))
        names = [m["name"] or m["open_id"] for m in members[:_MEMBERS_SHOWN]]
        lines = [translate("members", ctx.language, total=total, count=total), ", ".join(names)]
        if total > len(names):
            lines.append(translate("members_more", ctx.language, count=total - len(names)))
        return ToolResult(
            ok=True,
            data={"chat_id": chat_id, "total": total, "members": members},
            text="\n".join(lines),
        )

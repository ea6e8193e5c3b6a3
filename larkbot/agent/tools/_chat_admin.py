"""Tools over the bot's chats: list them, and create a group with chosen members."""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, model_validator

from larkbot.agent.i18n import translate
from larkbot.agent.tools._common import ToolInput, idempotency_key
from larkbot.agent.tools._links import call, pages
from larkbot.agent.tools._people import PersonResolver
from larkbot.agent.tools.base import Tool, ToolContext, ToolError, ToolResult

__all__ = ["CreateChat", "CreateChatInput", "ListChats", "ListChatsInput"]

CHATS_ROUTE = "im/v1/chats"

_CHAT_PAGES = 10
_SHOWN = 30
# Codes of a create refused because the bot may not see some of the people.
_INVISIBLE = {232043: "members_invisible", 232024: "members_invisible"}


class ListChatsInput(ToolInput):
    """Arguments of ``list_chats``."""

    query: str = Field(
        "", max_length=60, description="Only chats whose name contains this (any case)."
    )
    limit: int = Field(20, ge=1, le=100, description="How many chats to return at most.")


class CreateChatInput(ToolInput):
    """Arguments of ``create_chat``."""

    name: str = Field(min_length=1, max_length=60, description="The group's name.")
    members: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="People to add: open_ids (ou_...), email addresses, or the names of "
        "people in the current chat.",
    )
    owner: str | None = Field(
        None,
        description="Who owns the group (an open_id, email or name as for members); "
        "the user asking by default.",
    )
    description: str = Field("", max_length=100, description="A short description.")

    @model_validator(mode="after")
    def _names_given(self) -> Self:
        if not self.name.strip():
            raise ValueError("name must not be blank")
        return self


class ListChats(
    Tool[ListChatsInput],
    name="list_chats",
    description=(
        "List the group chats the bot is a member of, with their chat_id (oc_...), optionally only "
        "those whose name contains 'query'. Use it to find a group's chat_id before reading its "
        "messages, listing its members or posting in it."
    ),
    scopes=("im:chat:readonly",),
):
    """List the group chats the bot is in."""

    async def run(self, ctx: ToolContext, args: ListChatsInput) -> ToolResult:
        """Page through the bot's chats (bounded) and keep those matching the query."""
        wanted = args.query.strip().casefold()
        chats: list[dict[str, Any]] = []
        params: dict[str, Any] = {"page_size": 100, "sort_type": "ByActiveTimeDesc"}
        async for data in pages(
            ctx, CHATS_ROUTE, route=CHATS_ROUTE, params=params, limit=_CHAT_PAGES
        ):
            for item in data.get("items") or []:
                name = str(item.get("name") or "")
                if wanted and wanted not in name.casefold():
                    continue
                chats.append(
                    {
                        "chat_id": str(item.get("chat_id") or ""),
                        "name": name,
                        "description": str(item.get("description") or ""),
                        "external": bool(item.get("external")),
                    }
                )
        total = len(chats)
        chats = chats[: args.limit]
        result = {"query": args.query.strip(), "total": total, "chats": chats}
        if not chats:
            key = "no_chats_matching" if wanted else "no_chats"
            return ToolResult(
                ok=True, data=result, text=translate(key, ctx.language, query=args.query.strip())
            )
        key = "chats_matching" if wanted else "chats_found"
        lines = [translate(key, ctx.language, total=total, count=total, query=args.query.strip())]
        lines.extend(f"- **{c['name'] or c['chat_id']}** ({c['chat_id']})" for c in chats[:_SHOWN])
        if total > min(len(chats), _SHOWN):
            lines.append(translate("and_more", ctx.language, count=total - min(len(chats), _SHOWN)))
        return ToolResult(ok=True, data=result, text="\n".join(lines))


class CreateChat(
    Tool[CreateChatInput],
    name="create_chat",
    description=(
        "Create a new group chat with a name and members, the bot included. Members (and the "
        "owner) are given as open_ids (ou_...), email addresses, or names of people in the current "
        "chat; the owner is the user asking unless another is named. Use it when the user asks to "
        "make or set up a group for a project, an event or a team."
    ),
    write=True,
    # Lark creates one group per uuid (the call's idempotency key).
    idempotent=True,
    scopes=("im:chat:create", "im:chat:readonly", "contact:user.id:readonly"),
):
    """Create a group chat with the bot in it."""

    async def run(self, ctx: ToolContext, args: CreateChatInput) -> ToolResult:
        """Resolve every person to an open_id, then create the group once per turn."""
        people = PersonResolver(ctx)
        members = [await people.open_id(member) for member in args.members if member.strip()]
        if args.owner and args.owner.strip():
            owner = await people.open_id(args.owner)
        elif ctx.user_open_id.startswith("ou_"):
            owner = ctx.user_open_id
        else:
            owner = ""
        if people.unknown:
            raise ToolError(
                translate("member_unknown", ctx.language, names=", ".join(people.unknown))
            )
        everyone = list(dict.fromkeys([*([owner] if owner else []), *members]))
        body: dict[str, Any] = {
            "name": args.name.strip(),
            "chat_type": "private",
            "user_id_list": everyone,
        }
        if owner:
            body["owner_id"] = owner
        if args.description.strip():
            body["description"] = args.description.strip()
        data = await call(
            ctx,
            "POST",
            CHATS_ROUTE,
            route=CHATS_ROUTE,
            refusals=_INVISIBLE,
            params={
                "user_id_type": "open_id",
                "set_bot_manager": "true",
                # The platform creates one group per uuid, so a retried turn cannot make two.
                "uuid": idempotency_key(ctx, self.name, args),
            },
            json=body,
            write=True,
        )
        chat_id = str(data.get("chat_id") or "")
        names = [await people.name_of(open_id) for open_id in everyone]
        result = {
            "chat_id": chat_id,
            "name": str(data.get("name") or args.name.strip()),
            "owner_id": str(data.get("owner_id") or owner),
            "members": everyone,
        }
        text = translate(
            "chat_created",
            ctx.language,
            name=result["name"],
            chat_id=chat_id,
            members=", ".join(names) or "—",
        )
        return ToolResult(ok=True, data=result, text=text)

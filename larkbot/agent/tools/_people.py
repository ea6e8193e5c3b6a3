"""Tools and helpers that turn what people call a colleague (email, phone, name) into an open_id."""

from __future__ import annotations

import re
from typing import Any, Self

from pydantic import Field, model_validator

from larkbot.agent.i18n import translate
from larkbot.agent.tools._common import ToolInput, path_segment
from larkbot.agent.tools._links import pages
from larkbot.agent.tools.base import Tool, ToolContext, ToolResult
from larkbot.lark.client import LarkAPIError

__all__ = ["EMAIL", "LookupUserIds", "LookupUserIdsInput", "PersonResolver", "open_id_by_email"]

BATCH_GET_ID_ROUTE = "contact/v3/users/batch_get_id"
MEMBERS_ROUTE = "im/v1/chats/{chat_id}/members"

EMAIL = re.compile(r"^[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
_MOBILE = re.compile(r"^\+?[\d\s()-]{6,20}$")
_MEMBER_PAGES = 10
_PER_CALL = 50  # the most emails (and mobiles) one call takes


class LookupUserIdsInput(ToolInput):
    """Arguments of ``lookup_user_ids``: emails, mobile numbers, or both."""

    emails: list[str] = Field(
        default_factory=list, max_length=_PER_CALL, description="Email addresses to look up."
    )
    mobiles: list[str] = Field(
        default_factory=list,
        max_length=_PER_CALL,
        description="Mobile numbers to look up, with the country code for numbers outside "
        "mainland China (+81..., +44...).",
    )

    @model_validator(mode="after")
    def _something_given(self) -> Self:
        if not any(e.strip() for e in self.emails) and not any(m.strip() for m in self.mobiles):
            raise ValueError("give at least one email or mobile number")
        for email in self.emails:
            if email.strip() and not EMAIL.match(email.strip()):
                raise ValueError(f"{email!r} is not an email address")
        for mobile in self.mobiles:
            if mobile.strip() and not _MOBILE.match(mobile.strip()):
                raise ValueError(f"{mobile!r} is not a phone number")
        return self


class LookupUserIds(
    Tool[LookupUserIdsInput],
    name="lookup_user_ids",
    description=(
        "Turn email addresses and mobile numbers into user open_ids (ou_...), the id the other "
        "tools take to message, invite or share with someone. Use it when the user names people by "
        "email or phone. People outside the app's visible contacts are reported as not found."
    ),
    scopes=("contact:user.id:readonly",),
):
    """Turn emails and mobile numbers into open_ids."""

    async def run(self, ctx: ToolContext, args: LookupUserIdsInput) -> ToolResult:
        """Look every email and mobile number up in one call."""
        emails = [e.strip() for e in args.emails if e.strip()]
        mobiles = [m.strip() for m in args.mobiles if m.strip()]
        body: dict[str, Any] = {}
        if emails:
            body["emails"] = emails
        if mobiles:
            body["mobiles"] = mobiles
        found: dict[str, str] = {}
        for entry in await _user_ids(ctx, body):
            key = entry.get("email") or entry.get("mobile")
            if key and entry.get("user_id"):
                found[str(key).casefold()] = str(entry["user_id"])
        people = [
            {"query": given, "open_id": found.get(given.casefold())} for given in emails + mobiles
        ]
        lines = [
            f"- {p['query']} → {p['open_id']}"
            if p["open_id"]
            else f"- {p['query']} → {translate('not_found_short', ctx.language)}"
            for p in people
        ]
        hits = sum(1 for p in people if p["open_id"])
        header = translate("ids_found", ctx.language, found=hits, total=len(people))
        return ToolResult(
            ok=True, data={"people": people, "found": hits}, text="\n".join([header, *lines])
        )


async def _user_ids(ctx: ToolContext, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Lark's ``user_list`` for the ``emails`` and ``mobiles`` in ``body``: their open_ids."""
    data = await ctx.client.request(
        "POST",
        BATCH_GET_ID_ROUTE,
        route=BATCH_GET_ID_ROUTE,
        params={"user_id_type": "open_id"},
        json=body,
    )
    return list(data.get("user_list") or [])


async def open_id_by_email(ctx: ToolContext, email: str) -> str:
    """The open_id of the user with ``email``, or ``""`` when the app sees no such user."""
    users = await _user_ids(ctx, {"emails": [email]})
    return next((str(u["user_id"]) for u in users if u.get("user_id")), "")


class PersonResolver:
    """Turns what a user calls a person (open_id, email, a chat member's name) into an open_id.

    Names are looked up among the members of the chat the request came from, since a bot
    cannot search the directory by name; ``unknown`` collects what could not be resolved.
    """

    def __init__(self, ctx: ToolContext) -> None:
        """Resolve people for the request in ``ctx``."""
        self._ctx = ctx
        self.names: dict[str, str] = {}
        self.unknown: list[str] = []
        self._members: list[tuple[str, str]] | None = None

    async def open_id(self, given: str) -> str:
        """The open_id of ``given``, or ``""`` (and ``given`` noted as unknown)."""
        text = given.strip().removeprefix("@").strip()
        if text.startswith("ou_"):
            return text
        if EMAIL.match(text):
            found = await open_id_by_email(self._ctx, text)
            if found:
                self.names[found] = text
                return found
            self.unknown.append(text)
            return ""
        members = await self._chat_members()
        wanted = text.casefold()
        exact = [open_id for open_id, name in members if name.casefold() == wanted]
        # "田中" finds "田中 健" when only one member's name contains it.
        partial = [open_id for open_id, name in members if wanted and wanted in name.casefold()]
        matches = exact or (partial if len(partial) == 1 else [])
        if not matches:
            self.unknown.append(text)
            return ""
        self.names[matches[0]] = dict(members)[matches[0]]
        return matches[0]

    async def name_of(self, open_id: str) -> str:
        """What to call ``open_id`` in an answer: a name when one is known, else the id."""
        if open_id in self.names:
            return self.names[open_id]
        try:
            members = dict(await self._chat_members())
        except LarkAPIError:
            # Only for display: the action itself has already succeeded.
            return open_id
        return members.get(open_id) or open_id

    async def _chat_members(self) -> list[tuple[str, str]]:
        if self._members is not None:
            return self._members
        self._members = []
        if not self._ctx.chat_id.startswith("oc_"):
            return self._members
        path = f"im/v1/chats/{path_segment(self._ctx.chat_id)}/members"
        params: dict[str, Any] = {"member_id_type": "open_id", "page_size": 100}
        async for data in pages(
            self._ctx, path, route=MEMBERS_ROUTE, params=params, limit=_MEMBER_PAGES
        ):
            for item in data.get("items") or []:
                if item.get("member_id"):
                    self._members.append((str(item["member_id"]), str(item.get("name") or "")))
        return self._members

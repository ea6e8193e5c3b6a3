"""Tools over the directory and the documents: look up a user, search documents."""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, model_validator

from larkbot.agent.i18n import translate
from larkbot.agent.tools._common import (
    ToolInput,
    epoch_date,
    exactly_one,
    path_segment,
    search_hit_lines,
    unhighlight,
)
from larkbot.agent.tools._people import open_id_by_email
from larkbot.agent.tools.base import Tool, ToolContext, ToolError, ToolResult
from larkbot.lark.client import LarkAPIError

__all__ = ["GetUserInfo", "GetUserInfoInput", "SearchDocuments", "SearchDocumentsInput"]

USER_ROUTE = "contact/v3/users/{user_id}"
DEPARTMENT_ROUTE = "contact/v3/departments/{department_id}"
DOC_SEARCH_ROUTE = "search/v2/doc_wiki/search"

_DEPARTMENTS_LOOKED_UP = 3


class GetUserInfoInput(ToolInput):
    """Arguments of ``get_user_info``: exactly one way to name the user."""

    user_open_id: str | None = Field(None, description="The user's open_id (ou_...).")
    email: str | None = Field(None, description="The user's email address.")

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        return exactly_one(self, "user_open_id", "email")


class SearchDocumentsInput(ToolInput):
    """Arguments of ``search_documents``."""

    query: str = Field(min_length=1, max_length=50, description="Words to look for.")
    limit: int = Field(10, ge=1, le=20, description="How many documents to return at most.")


class GetUserInfo(
    Tool[GetUserInfoInput],
    name="get_user_info",
    description=(
        "Look up a person in the company directory by open_id (ou_...) or by email: name, English "
        "name, email, job title, department, city. Use it when the user asks who someone is, or "
        "needs a colleague's open_id from their email. Give exactly one of user_open_id and email."
    ),
    scopes=(
        "contact:user.base:readonly",
        "contact:user.email:readonly",
        "contact:user.id:readonly",
        "contact:department.base:readonly",
    ),
):
    """Look a person up in the directory."""

    async def run(self, ctx: ToolContext, args: GetUserInfoInput) -> ToolResult:
        """Resolve an email to an open_id when needed, then fetch the user and departments."""
        open_id = (args.user_open_id or "").strip()
        if not open_id:
            email = str(args.email).strip()
            open_id = await open_id_by_email(ctx, email)
            if not open_id:
                raise ToolError(translate("email_not_found", ctx.language, email=email))
        data = await ctx.client.request(
            "GET",
            f"contact/v3/users/{path_segment(open_id)}",
            route=USER_ROUTE,
            params={"user_id_type": "open_id", "department_id_type": "open_department_id"},
        )
        user: dict[str, Any] = data.get("user") or {}
        departments = [
            await self._department_name(ctx, str(d))
            for d in (user.get("department_ids") or [])[:_DEPARTMENTS_LOOKED_UP]
        ]
        info = {
            "open_id": user.get("open_id") or open_id,
            "name": user.get("name", ""),
            "en_name": user.get("en_name", ""),
            "email": user.get("email") or user.get("enterprise_email") or "",
            "job_title": user.get("job_title", ""),
            "departments": departments,
            "city": user.get("city", ""),
        }
        name = info["name"] or info["open_id"]
        if info["en_name"] and info["en_name"] != info["name"]:
            name = f"{name} ({info['en_name']})"
        rows = [
            ("label_name", name),
            ("label_email", info["email"]),
            ("label_department", ", ".join(departments)),
            ("label_job_title", info["job_title"]),
            ("label_city", info["city"]),
        ]
        text = "\n".join(
            f"- {translate(label, ctx.language)}: {value}" for label, value in rows if value
        )
        return ToolResult(ok=True, data=info, text=text)

    @staticmethod
    async def _department_name(ctx: ToolContext, department_id: str) -> str:
        # A department name is a nicety: without the department scope the id still says
        # something, and the user lookup itself succeeded.
        try:
            data = await ctx.client.request(
                "GET",
                f"contact/v3/departments/{path_segment(department_id)}",
                route=DEPARTMENT_ROUTE,
                params={"department_id_type": "open_department_id"},
            )
        except LarkAPIError:
            return department_id
        department = data.get("department") or {}
        return str(department.get("name") or department_id)


class SearchDocuments(
    Tool[SearchDocumentsInput],
    name="search_documents",
    description=(
        "Search Lark documents, sheets, Bases and wiki pages by keyword and return their titles, "
        "types, owners and links. Use it when the user looks for a document, a spec, minutes or a "
        "manual. Results are limited to what the bot can see: documents shared with the app (the "
        "platform answers this search for the app's own identity; a user's private documents are "
        "not visible)."
    ),
    scopes=("search:docs:read",),
):
    """Find documents, sheets, Bases and wiki pages by keyword."""

    async def run(self, ctx: ToolContext, args: SearchDocumentsInput) -> ToolResult:
        """Run the search and list the hits."""
        query = args.query.strip()
        data = await ctx.client.request(
            "POST",
            DOC_SEARCH_ROUTE,
            route=DOC_SEARCH_ROUTE,
            json={"query": query, "page_size": args.limit, "doc_filter": {}, "wiki_filter": {}},
        )
        documents: list[dict[str, Any]] = []
        for unit in (data.get("res_units") or [])[: args.limit]:
            meta: dict[str, Any] = unit.get("result_meta") or {}
            kind = meta.get("doc_types") or unit.get("entity_type") or ""
            if isinstance(kind, list):
                kind = ",".join(str(k) for k in kind)
            documents.append(
                {
                    "title": unhighlight(unit.get("title_highlighted")),
                    "type": str(kind).lower(),
                    "url": meta.get("url", ""),
                    "owner": meta.get("owner_name", ""),
                    "updated": epoch_date(meta.get("update_time"), ctx.timezone),
                    "snippet": unhighlight(unit.get("summary_highlighted")),
                    "token": meta.get("token", ""),
                }
            )
        total = max(int(data.get("total") or 0), len(documents))
        if not documents:
            return ToolResult(
                ok=True,
                data={"query": query, "total": 0, "documents": []},
                text=translate("no_docs", ctx.language, query=query),
            )
        header = translate("docs_found", ctx.language, query=query, total=total, count=total)
        return ToolResult(
            ok=True,
            data={"query": query, "total": total, "documents": documents},
            text=search_hit_lines(header, documents),
        )

"""Tools over the wiki: search its pages, and resolve a page to the object it holds."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from larkbot.agent.i18n import translate
from larkbot.agent.tools._common import ToolInput, epoch_date, search_hit_lines, unhighlight
from larkbot.agent.tools._links import LarkLink, call, parse_reference
from larkbot.agent.tools.base import Tool, ToolContext, ToolError, ToolResult
from larkbot.core.language import Language

__all__ = [
    "GetWikiNode",
    "GetWikiNodeInput",
    "SearchWiki",
    "SearchWikiInput",
    "held_object",
    "kind_name",
    "wiki_node",
]

GET_NODE_ROUTE = "wiki/v2/spaces/get_node"
SEARCH_ROUTE = "search/v2/doc_wiki/search"

_WIKI_REFUSALS = {131005: "wiki_not_found", 131006: "wiki_forbidden"}
# Object types with a name of their own in the catalogue (``object_<type>``).
_KINDS = frozenset({"docx", "doc", "sheet", "bitable", "mindnote", "file", "slides"})
# Which tool reads the object a wiki page holds, and the argument it takes.
_NEXT_TOOL = {"docx": ("read_document", "document"), "bitable": ("list_base_tables", "base")}


class SearchWikiInput(ToolInput):
    """Arguments of ``search_wiki``."""

    query: str = Field(min_length=1, max_length=50, description="Words to look for.")
    space_id: str | None = Field(None, description="Search only this wiki space (its id).")
    limit: int = Field(10, ge=1, le=20, description="How many pages to return at most.")


class GetWikiNodeInput(ToolInput):
    """Arguments of ``get_wiki_node``."""

    node: str = Field(
        min_length=1,
        description="A wiki link (https://.../wiki/...) or node token; a document, sheet or "
        "Base link finds the wiki page that holds it.",
    )


def kind_name(language: Language, obj_type: str) -> str:
    """What ``obj_type`` (``docx``, ``sheet``, ``bitable``...) is called in ``language``."""
    return translate(f"object_{obj_type}", language) if obj_type in _KINDS else obj_type


async def wiki_node(ctx: ToolContext, ref: LarkLink) -> dict[str, Any]:
    """Fetch the wiki node ``ref`` names (a wiki token, or the token of the object it holds)."""
    data = await call(
        ctx,
        "GET",
        GET_NODE_ROUTE,
        route=GET_NODE_ROUTE,
        refusals=_WIKI_REFUSALS,
        params={"token": ref.token, "obj_type": ref.kind},
    )
    node = data.get("node")
    if not isinstance(node, dict) or not node.get("node_token"):
        raise ToolError(translate("wiki_not_found", ctx.language))
    return node


async def held_object(
    ctx: ToolContext, ref: LarkLink, obj_type: str, refusal: str
) -> tuple[str, dict[str, Any] | None]:
    """The token of the ``obj_type`` object ``ref`` names, and the wiki node that holds it.

    ``ref`` is the object's own link (no node then) or a wiki page holding it; any other
    kind of object is refused with the catalogue sentence ``refusal``.
    """
    node: dict[str, Any] | None = None
    kind, token = ref.kind, ref.token
    if ref.kind == "wiki":
        node = await wiki_node(ctx, ref)
        kind, token = str(node.get("obj_type") or "?"), str(node.get("obj_token") or "")
    if kind != obj_type:
        kind = kind_name(ctx.language, kind)
        raise ToolError(translate(refusal, ctx.language, kind=kind, token=token))
    return token, node


class SearchWiki(
    Tool[SearchWikiInput],
    name="search_wiki",
    description=(
        "Search the wiki (knowledge base) pages the app can see by keyword: titles, links, node "
        "tokens and a snippet. Use it when the user looks for a wiki or knowledge-base page (an "
        "onboarding guide, a how-to, a policy); then read a page with get_wiki_node and "
        "read_document."
    ),
    scopes=("search:docs:read",),
):
    """Find wiki pages by keyword."""

    async def run(self, ctx: ToolContext, args: SearchWikiInput) -> ToolResult:
        """Search with only the wiki filter, so documents outside the wiki are left out."""
        query = args.query.strip()
        wiki_filter: dict[str, Any] = {}
        if args.space_id:
            wiki_filter["space_ids"] = [args.space_id.strip()]
        data = await ctx.client.request(
            "POST",
            SEARCH_ROUTE,
            route=SEARCH_ROUTE,
            json={"query": query, "page_size": args.limit, "wiki_filter": wiki_filter},
        )
        pages: list[dict[str, Any]] = []
        for unit in (data.get("res_units") or [])[: args.limit]:
            meta: dict[str, Any] = unit.get("result_meta") or {}
            pages.append(
                {
                    "title": unhighlight(unit.get("title_highlighted")),
                    "url": meta.get("url", ""),
                    "node_token": meta.get("token", ""),
                    "type": str(meta.get("doc_types") or "").lower(),
                    "owner": meta.get("owner_name", ""),
                    "updated": epoch_date(meta.get("update_time"), ctx.timezone),
                    "snippet": unhighlight(unit.get("summary_highlighted")),
                }
            )
        total = max(int(data.get("total") or 0), len(pages))
        result = {"query": query, "total": total, "pages": pages}
        if not pages:
            return ToolResult(
                ok=True, data=result, text=translate("no_wiki", ctx.language, query=query)
            )
        header = translate("wiki_found", ctx.language, query=query, total=total, count=total)
        return ToolResult(ok=True, data=result, text=search_hit_lines(header, pages))


class GetWikiNode(
    Tool[GetWikiNodeInput],
    name="get_wiki_node",
    description=(
        "Look up a wiki page from its link or node token: its title, space, and the object it "
        "holds (obj_type docx, sheet, bitable...; obj_token). Use it whenever the user pastes a "
        "wiki link: a docx page is then read with read_document(document=obj_token), a bitable "
        "page with list_base_tables(base=obj_token). 'next' names that call."
    ),
    scopes=("wiki:wiki:readonly",),
):
    """Look a wiki page up by link or node token."""

    async def run(self, ctx: ToolContext, args: GetWikiNodeInput) -> ToolResult:
        """Fetch the node and say which tool reads what it holds."""
        ref = parse_reference(args.node, default_kind="wiki")
        if ref is None:
            raise ToolError(translate("bad_wiki_ref", ctx.language, value=args.node.strip()))
        node = await wiki_node(ctx, ref)
        obj_type = str(node.get("obj_type") or "")
        obj_token = str(node.get("obj_token") or "")
        result: dict[str, Any] = {
            "node_token": str(node.get("node_token") or ""),
            "space_id": str(node.get("space_id") or ""),
            "title": str(node.get("title") or ""),
            "obj_type": obj_type,
            "obj_token": obj_token,
            "has_child": bool(node.get("has_child")),
            "parent_node_token": str(node.get("parent_node_token") or ""),
            "url": ref.url,
            "next": None,
        }
        if obj_type in _NEXT_TOOL:
            tool, argument = _NEXT_TOOL[obj_type]
            result["next"] = {"tool": tool, "arguments": {argument: obj_token}}
        kind = kind_name(ctx.language, obj_type)
        text = translate(
            "wiki_node",
            ctx.language,
            title=result["title"] or result["node_token"],
            kind=kind,
            token=obj_token,
        )
        return ToolResult(ok=True, data=result, text=text)

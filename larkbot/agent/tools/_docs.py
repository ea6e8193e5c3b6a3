"""Tools over documents: read a docx document, import markdown as one, share a document."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from larkbot.agent.i18n import translate
from larkbot.agent.tools._common import CreatedObjects, ToolInput, idempotency_key, path_segment
from larkbot.agent.tools._links import LarkLink, call, parse_reference
from larkbot.agent.tools._people import EMAIL, PersonResolver
from larkbot.agent.tools._wiki import held_object
from larkbot.agent.tools.base import Tool, ToolContext, ToolError, ToolResult
from larkbot.lark.client import LarkAPIError

__all__ = [
    "GrantDocumentPermission",
    "GrantDocumentPermissionInput",
    "ImportDocument",
    "ImportDocumentInput",
    "ReadDocument",
    "ReadDocumentInput",
    "matching_paragraphs",
]

DOCUMENT_ROUTE = "docx/v1/documents/{document_id}"
RAW_CONTENT_ROUTE = "docx/v1/documents/{document_id}/raw_content"
CREATE_ROUTE = "docx/v1/documents"
CONVERT_ROUTE = "docx/v1/documents/blocks/convert"
DESCENDANT_ROUTE = "docx/v1/documents/{document_id}/blocks/{block_id}/descendant"
PERMISSION_ROUTE = "drive/v1/permissions/{token}/members"

# Lark codes of a document that is missing or shut to the app.
_DOC_REFUSALS = {1770002: "doc_not_found", 1770003: "doc_not_found", 1770032: "doc_forbidden"}
_FOLDER_REFUSALS = {
    1770002: "folder_not_found",
    1061044: "folder_not_found",
    1770032: "folder_forbidden",
}
_SHARE_REFUSALS = {
    1063005: "doc_not_found",
    1061007: "doc_not_found",
    1063002: "share_forbidden",
    1063004: "share_forbidden",
}
# "Invalid operation": among its causes, a member who already holds more than is asked
# (others are a collaborator limit, a tenant policy, visibility, the document's owner).
_INVALID_OPERATION = 1063003
_PERM_RANKS = {"view": 0, "edit": 1, "full_access": 2}
_TABLE_BLOCK = 31
_MAX_BLOCKS = 1000  # the most blocks one descendant call inserts
_MATCHES_SHOWN = 10
_FOLDER_LINK = re.compile(r"/folder/(?P<token>[A-Za-z0-9_-]{6,})")
# Words that carry no meaning of their own in "what does it say about the budget".
_STOP_WORDS = frozenset(
    {"the", "a", "an", "of", "about", "on", "for", "and", "or", "in", "to", "our", "its", "this"}
)
_TERM_SPLIT = re.compile(r"[\s,、，/・]+|(?<=[\u3040-\u9fff])(?:の|的|と|和)(?=[\u3040-\u9fff])")


class ReadDocumentInput(ToolInput):
    """Arguments of ``read_document``."""

    document: str = Field(
        min_length=1,
        description="The document's link (https://.../docx/... or a wiki link to a document) "
        "or its token.",
    )
    query: str = Field(
        "",
        max_length=100,
        description="Only the paragraphs that mention these words (any of them); empty for "
        "the text itself.",
    )
    offset: int = Field(0, ge=0, description="Where to start reading, in characters.")
    max_chars: int = Field(
        6000, ge=200, le=20000, description="How many characters to return at most."
    )


class ImportDocumentInput(ToolInput):
    """Arguments of ``import_document``."""

    title: str = Field(min_length=1, max_length=200, description="The new document's title.")
    markdown: str = Field(
        min_length=1,
        max_length=100_000,
        description="The content, as Markdown (headings, lists, tables, code, links).",
    )
    folder: str | None = Field(
        None,
        description="The folder to put it in (a folder link or token); the app's own space "
        "when left out.",
    )


class GrantDocumentPermissionInput(ToolInput):
    """Arguments of ``grant_document_permission``."""

    document: str = Field(
        min_length=1,
        description="The document, sheet, Base or wiki page: its link, or its token with 'kind'.",
    )
    member: str = Field(
        min_length=1,
        description="Who gets access: a user's open_id (ou_...) or email, a chat (oc_...), or "
        "the name of someone in the current chat.",
    )
    permission: Literal["view", "edit"] = Field(
        "view", description="view (read only) or edit (change the content)."
    )
    kind: Literal["docx", "doc", "sheet", "bitable", "wiki", "file", "mindnote", "slides"] = Field(
        "docx", description="What a bare token names; links carry their own kind."
    )


class ReadDocument(
    Tool[ReadDocumentInput],
    name="read_document",
    description=(
        "Read a Lark document (docx) by link or token: its title and plain text. With 'query' it "
        "returns only the paragraphs mentioning those words, which is how to answer 'what does "
        "this document say about X' (answer with a short quote). Long documents come in parts: "
        "'next_offset' says where to continue. A wiki link to a document works too."
    ),
    scopes=("docx:document:readonly", "wiki:wiki:readonly"),
):
    """Read a docx document's title and text."""

    async def run(self, ctx: ToolContext, args: ReadDocumentInput) -> ToolResult:
        """Resolve the reference, fetch the title and the raw text, then cut or filter it."""
        ref = parse_reference(args.document, default_kind="docx")
        if ref is None:
            raise ToolError(translate("bad_doc_ref", ctx.language, value=args.document.strip()))
        document_id, title = await _docx_of(ctx, ref)
        segment = path_segment(document_id)
        if not title:
            data = await call(
                ctx,
                "GET",
                f"docx/v1/documents/{segment}",
                route=DOCUMENT_ROUTE,
                refusals=_DOC_REFUSALS,
            )
            title = str((data.get("document") or {}).get("title") or "")
        data = await call(
            ctx,
            "GET",
            f"docx/v1/documents/{segment}/raw_content",
            route=RAW_CONTENT_ROUTE,
            refusals=_DOC_REFUSALS,
            params={"lang": 0},
        )
        content = str(data.get("content") or "")
        title = title or document_id
        base = {"document_id": document_id, "title": title, "url": ref.url}
        if args.query.strip():
            return self._matches(ctx, base, content, args)
        return self._slice(ctx, base, content, args)

    @staticmethod
    def _matches(
        ctx: ToolContext, base: dict[str, Any], content: str, args: ReadDocumentInput
    ) -> ToolResult:
        query = args.query.strip()
        found = matching_paragraphs(content, query)
        kept: list[str] = []
        used = 0
        for paragraph in found:
            if kept and used + len(paragraph) > args.max_chars:
                break
            kept.append(paragraph)
            used += len(paragraph)
        result = {**base, "query": query, "match_count": len(found), "matches": kept}
        if not found:
            beginning = " ".join(content.split())[:300]
            result["beginning"] = beginning
            text = translate("doc_no_match", ctx.language, title=base["title"], query=query)
            if beginning:
                text += "\n" + translate("doc_begins", ctx.language, text=beginning)
            return ToolResult(ok=True, data=result, text=text)
        lines = [
            translate(
                "doc_matches",
                ctx.language,
                title=base["title"],
                query=query,
                count=len(found),
            )
        ]
        shown = kept[:_MATCHES_SHOWN]
        lines.extend(f"> {paragraph}" for paragraph in shown)
        if len(found) > len(shown):
            lines.append(translate("and_more", ctx.language, count=len(found) - len(shown)))
        return ToolResult(ok=True, data=result, text="\n".join(lines))

    @staticmethod
    def _slice(
        ctx: ToolContext, base: dict[str, Any], content: str, args: ReadDocumentInput
    ) -> ToolResult:
        total = len(content)
        start = min(args.offset, total)
        end = min(total, start + args.max_chars)
        if end < total:
            # End at a paragraph when one ends in the second half of the part.
            cut = content.rfind("\n", start + args.max_chars // 2, end)
            end = cut + 1 if cut > start else end
        part = content[start:end]
        next_offset = end if end < total else None
        result = {
            **base,
            "content": part,
            "offset": start,
            "total_chars": total,
            "next_offset": next_offset,
        }
        text = f"**{base['title']}**\n\n{part.strip()}"
        if next_offset is not None or start > 0:
            note = translate("doc_part", ctx.language, start=start, end=end, total=total)
            if next_offset is not None:
                note += translate("doc_more", ctx.language, offset=next_offset)
            text += f"\n\n({note})"
        return ToolResult(ok=True, data=result, text=text)


class ImportDocument(
    Tool[ImportDocumentInput],
    name="import_document",
    description=(
        "Create a new Lark document (docx) from Markdown: title, content and optionally the folder "
        "to put it in. Use it when the user asks to write up, save or publish notes, minutes, a "
        "plan or a summary as a document. The user asking gets full access to it."
    ),
    write=True,
    scopes=("docx:document", "docx:document.block:convert", "docs:permission.member:create"),
):
    """Create a docx document from Markdown."""

    def __init__(self) -> None:
        """Create the tool, with nothing created yet."""
        self._created: CreatedObjects[_Import] = CreatedObjects()

    async def run(self, ctx: ToolContext, args: ImportDocumentInput) -> ToolResult:
        """Create the document, convert the Markdown to blocks, insert them, share it.

        Creating a document takes no client token, so the call's idempotency key keeps
        what it made: a repeat returns the same document, and a repeat of a call that
        failed after the document was made fills and shares that one rather than making
        another (the insert's own client token keeps its blocks from landing twice).
        """
        key = idempotency_key(ctx, self.name, args)
        async with self._created.hold(key):
            made = self._created.get(key)
            if made is not None and made.result is not None:
                return made.result.model_copy(deep=True)
            body: dict[str, Any] = {"title": args.title.strip()}
            if args.folder and args.folder.strip():
                body["folder_token"] = _folder_token(ctx, args.folder)
            converted = await ctx.client.request(
                "POST",
                CONVERT_ROUTE,
                route=CONVERT_ROUTE,
                json={"content_type": "markdown", "content": args.markdown},
            )
            blocks: list[dict[str, Any]] = list(converted.get("blocks") or [])
            children = [str(block_id) for block_id in converted.get("first_level_block_ids") or []]
            if len(blocks) > _MAX_BLOCKS:
                raise ToolError(translate("doc_too_long", ctx.language, count=len(blocks)))
            if made is None:
                data = await call(
                    ctx,
                    "POST",
                    CREATE_ROUTE,
                    route=CREATE_ROUTE,
                    refusals=_FOLDER_REFUSALS,
                    json=body,
                    write=True,
                )
                document = data.get("document") or {}
                made = _Import(
                    document_id=str(document.get("document_id") or ""),
                    title=str(document.get("title") or args.title.strip()),
                )
                self._created.remember(key, made)
            if children:
                for block in blocks:
                    _strip_merge_info(block)
                segment = path_segment(made.document_id)
                await ctx.client.request(
                    "POST",
                    f"docx/v1/documents/{segment}/blocks/{segment}/descendant",
                    route=DESCENDANT_ROUTE,
                    params={"document_revision_id": -1, "client_token": key},
                    json={"children_id": children, "index": 0, "descendants": blocks},
                    write=True,
                )
            shared = await _share_with_requester(ctx, made.document_id)
            result = {
                "document_id": made.document_id,
                "title": made.title,
                "blocks": len(blocks),
                "shared_with_requester": shared,
            }
            text = translate(
                "doc_created", ctx.language, title=made.title, document_id=made.document_id
            )
            if shared is False:
                text += "\n" + translate("doc_not_shared", ctx.language)
            made.result = ToolResult(ok=True, data=result, text=text)
            return made.result.model_copy(deep=True)


@dataclass(slots=True)
class _Import:
    """A document ``import_document`` created; ``result`` once it was filled and shared."""

    document_id: str
    title: str
    result: ToolResult | None = None


class GrantDocumentPermission(
    Tool[GrantDocumentPermissionInput],
    name="grant_document_permission",
    description=(
        "Share a Lark document, sheet, Base or wiki page with a person or a chat: view or edit "
        "access. The member is an open_id (ou_...), an email, a chat (oc_...) or the name of "
        "someone in the current chat. Use it when the user asks to share a document with someone "
        "or to let them edit it. The app must be able to manage the document."
    ),
    write=True,
    # Granting a member the same permission again changes nothing more.
    idempotent=True,
    scopes=(
        "docs:permission.member:create",
        "docs:permission.member:retrieve",
        "im:chat:readonly",
    ),
):
    """Share a document with a person or a chat."""

    async def run(self, ctx: ToolContext, args: GrantDocumentPermissionInput) -> ToolResult:
        """Resolve the member, then add them as a collaborator."""
        ref = parse_reference(args.document, default_kind=args.kind)
        if ref is None:
            raise ToolError(translate("bad_doc_ref", ctx.language, value=args.document.strip()))
        member = args.member.strip().removeprefix("@").strip()
        shown = member
        if member.startswith("oc_"):
            member_type, member_id, kind = "openchat", member, "chat"
        elif EMAIL.match(member):
            member_type, member_id, kind = "email", member, "user"
        else:
            people = PersonResolver(ctx)
            member_id = await people.open_id(member)
            if not member_id:
                raise ToolError(translate("member_unknown", ctx.language, names=member))
            member_type, kind = "openid", "user"
            shown = people.names.get(member_id, member)
        already = False
        try:
            await call(
                ctx,
                "POST",
                f"drive/v1/permissions/{path_segment(ref.token)}/members",
                route=PERMISSION_ROUTE,
                refusals=_SHARE_REFUSALS,
                params={"type": ref.kind},
                json={
                    "member_type": member_type,
                    "member_id": member_id,
                    "perm": args.permission,
                    "type": kind,
                },
                write=True,
            )
        except LarkAPIError as exc:
            # A rerun of a grant whose first attempt went through, or a member given more
            # since: they hold what was asked, which is what the grant is for.
            if exc.code != _INVALID_OPERATION or not await _holds(
                ctx, ref, member_type, member_id, args.permission
            ):
                raise
            already = True
        result = {
            "token": ref.token,
            "kind": ref.kind,
            "member_type": member_type,
            "member_id": member_id,
            "permission": args.permission,
            "already_held": already,
        }
        text = translate(
            "access_already_held" if already else "access_granted",
            ctx.language,
            member=shown,
            permission=translate(f"perm_{args.permission}", ctx.language),
            document=ref.url or ref.token,
        )
        return ToolResult(ok=True, data=result, text=text)


async def _holds(
    ctx: ToolContext, ref: LarkLink, member_type: str, member_id: str, permission: str
) -> bool:
    """Whether the member already holds ``permission`` or more on the document ``ref``.

    Read from the document's member list (scope ``docs:permission.member:retrieve``); a
    list that cannot be read proves nothing, and the refusal stands.
    """
    try:
        data = await ctx.client.request(
            "GET",
            f"drive/v1/permissions/{path_segment(ref.token)}/members",
            route=PERMISSION_ROUTE,
            params={"type": ref.kind},
        )
    except LarkAPIError:
        return False
    for item in data.get("items") or []:
        if (item.get("member_type"), item.get("member_id")) == (member_type, member_id):
            return _PERM_RANKS.get(str(item.get("perm")), -1) >= _PERM_RANKS[permission]
    return False


def matching_paragraphs(content: str, query: str) -> list[str]:
    """The paragraphs of ``content`` that mention a word of ``query``, best matches first.

    Words are split on spaces and, in Japanese and Chinese, on の/的/と/和, so "予算の内訳"
    finds paragraphs about 予算 too; paragraphs with more of the words come first, ties
    in document order.
    """
    terms = [
        term
        for term in (t.strip("?？。.!！「」“”\"'").casefold() for t in _TERM_SPLIT.split(query))
        if term and term not in _STOP_WORDS and (len(term) > 1 or not term.isascii())
    ]
    whole = query.strip().casefold()
    if whole and whole not in terms and whole not in _STOP_WORDS:
        terms.append(whole)
    scored: list[tuple[int, int, str]] = []
    for index, paragraph in enumerate(line.strip() for line in content.splitlines()):
        if not paragraph:
            continue
        folded = paragraph.casefold()
        hits = sum(1 for term in terms if term in folded)
        if hits:
            scored.append((-hits, index, paragraph))
    return [paragraph for _, _, paragraph in sorted(scored)]


async def _docx_of(ctx: ToolContext, ref: LarkLink) -> tuple[str, str]:
    """The docx document id ``ref`` names, and its title when a wiki page gave it."""
    token, node = await held_object(ctx, ref, "docx", "not_a_docx")
    return token, str(node.get("title") or "") if node else ""


def _folder_token(ctx: ToolContext, folder: str) -> str:
    text = folder.strip()
    if match := _FOLDER_LINK.search(text):
        return match["token"]
    if re.fullmatch(r"[A-Za-z0-9_-]{6,}", text):
        return text
    raise ToolError(translate("bad_folder_ref", ctx.language, value=text))


def _strip_merge_info(block: dict[str, Any]) -> None:
    # The converter describes table cell merges, which the insert call refuses to take.
    if block.get("block_type") == _TABLE_BLOCK and isinstance(block.get("table"), dict):
        prop = block["table"].get("property")
        if isinstance(prop, dict):
            prop.pop("merge_info", None)


async def _share_with_requester(ctx: ToolContext, document_id: str) -> bool | None:
    """Give the user who asked full access; ``None`` when there is no user to give it to.

    A document the app creates belongs to the app, so without this the user who asked
    could not even open it.
    """
    if not ctx.user_open_id.startswith("ou_") or not document_id:
        return None
    try:
        await ctx.client.request(
            "POST",
            f"drive/v1/permissions/{path_segment(document_id)}/members",
            route=PERMISSION_ROUTE,
            params={"type": "docx"},
            json={
                "member_type": "openid",
                "member_id": ctx.user_open_id,
                "perm": "full_access",
                "type": "user",
            },
            write=True,
        )
    except LarkAPIError:
        return False
    return True

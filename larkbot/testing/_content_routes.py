"""Stand-in routes over chat history, chats, documents, the wiki, sharing and Base tables.

``content_routes(ws)`` serves these parts of a :class:`~larkbot.testing.workspace.Workspace`
with Lark's routes and answer shapes; ``workspace_routes`` includes them. Choices where the
platform's behaviour is not pinned down:

- The message history of a chat is the workspace's ``messages`` plus every message the
  stand-in delivered with its event or was sent by the bot, merged by time. A chat the
  bot is not in, or one nobody wrote in, answers 230002 (the bot is not in the chat).
- Markdown conversion covers headings, paragraphs, bullet and numbered lists, quotes,
  code, dividers and tables; inline marks are dropped. A table comes back with
  ``merge_info``, which the insert call refuses (1770001), as the platform does.
- Unknown documents answer 1770002, unknown wiki nodes 131005, an unknown folder 1061044,
  sharing an unknown object 1063005, an unknown Base 1254040, a taken table name 1254013,
  and a group with someone the bot cannot see 232043. Sharing with a member who holds more
  than asked answers 1063003 (Invalid operation, as Lark documents it); asking again for
  what they hold is granted.
- A route listed in ``ws.denied_routes`` (as ``"<METHOD> <template>"``, or the template
  alone for every method) answers 99991672 naming the scope it needs.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from larkbot.testing._content import ChatMessage, DocxDocument, PermissionMember
from larkbot.testing._objects import BaseField, BaseTable, Chat, Document
from larkbot.testing._openapi import ApiError, ApiRequest, OpenApiRoute
from larkbot.testing._scoped_routes import RouteTable, WorkspaceHandlers

if TYPE_CHECKING:
    from larkbot.testing.workspace import Workspace

__all__ = ["content_routes"]

MESSAGES = "im/v1/messages"
CHATS = "im/v1/chats"
USERS_BATCH = "contact/v3/users/batch"
DOCUMENT = "docx/v1/documents/{document_id}"
RAW_CONTENT = "docx/v1/documents/{document_id}/raw_content"
DOCUMENTS = "docx/v1/documents"
CONVERT = "docx/v1/documents/blocks/convert"
DESCENDANT = "docx/v1/documents/{document_id}/blocks/{block_id}/descendant"
GET_NODE = "wiki/v2/spaces/get_node"
PERMISSION_MEMBERS = "drive/v1/permissions/{token}/members"
TABLES = "bitable/v1/apps/{app_token}/tables"

_FIELD_VALIDATION = 99992402
_BOT_NOT_IN_CHAT = 230002
_INVISIBLE_USERS = 232043
_DOC_INVALID = 1770001
_DOC_NOT_FOUND = 1770002
_FOLDER_NOT_FOUND = 1061044
_WIKI_NOT_FOUND = 131005
_SHARE_INVALID = 1063001
_SHARE_NOT_FOUND = 1063005
# "Invalid operation": among its causes, a member who already holds more than is asked.
_SHARE_INVALID_OPERATION = 1063003
_WRONG_REQUEST_BODY = 1254001
_TABLE_NAME_TAKEN = 1254013

_KNOWN_FIELD_TYPES = frozenset({1, 2, 3, 4, 5, 7, 11, 13, 15})
_SHARE_TYPES = frozenset(
    {"doc", "docx", "sheet", "bitable", "wiki", "file", "folder", "mindnote", "slides"}
)
_PERMS = frozenset({"view", "edit", "full_access"})
_PERM_RANKS = {"view": 0, "edit": 1, "full_access": 2}

# Block types of the docx block API.
_TEXT, _CODE, _QUOTE, _DIVIDER, _TABLE, _TABLE_CELL = 2, 14, 15, 22, 31, 32
_BULLET, _ORDERED = 12, 13
_BLOCK_KEYS = {
    _TEXT: "text",
    _BULLET: "bullet",
    _ORDERED: "ordered",
    _CODE: "code",
    _QUOTE: "quote",
    **{2 + level: f"heading{level}" for level in range(1, 10)},
}
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET_LINE = re.compile(r"^\s*[-*+]\s+(.*)$")
_ORDERED_LINE = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_INLINE_MARKS = re.compile(r"\*\*|__|`|~~")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")


def content_routes(ws: Workspace) -> list[OpenApiRoute]:
    """Return the routes serving ``ws``'s history, documents, wiki, sharing and tables."""
    return _Handlers(ws).serve(_routes)


def _page(items: list[Any], query: Any, default: int, maximum: int) -> dict[str, Any]:
    """One page of ``items`` per ``page_size``/``page_token`` (an opaque offset)."""
    try:
        size = max(1, min(int(query.get("page_size") or default), maximum))
    except ValueError:
        raise ApiError(_FIELD_VALIDATION, "page_size must be an integer") from None
    token = str(query.get("page_token") or "")
    if token and not (token.startswith("pt") and token[2:].isdigit()):
        raise ApiError(_FIELD_VALIDATION, "page_token is invalid")
    offset = int(token[2:]) if token else 0
    chunk = items[offset : offset + size]
    more = offset + size < len(items)
    page: dict[str, Any] = {"items": chunk, "has_more": more}
    if more:
        page["page_token"] = f"pt{offset + size}"
    return page


def _elements(text: str) -> dict[str, Any]:
    return {"elements": [{"text_run": {"content": text, "text_element_style": {}}}], "style": {}}


def _block_text(block: dict[str, Any]) -> str:
    key = _BLOCK_KEYS.get(int(block.get("block_type") or 0))
    body = block.get(key) if key else None
    if not isinstance(body, dict):
        return ""
    return "".join(
        str((element.get("text_run") or {}).get("content") or "")
        for element in body.get("elements") or []
        if isinstance(element, dict)
    )


class _Converter:
    """Markdown to docx blocks, the way ``blocks/convert`` answers."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, Any]] = []
        self.first_level: list[str] = []
        self._ids = 0

    def _new(self, block_type: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self._ids += 1
        block: dict[str, Any] = {"block_id": f"tmpblk{self._ids:05d}", "block_type": block_type}
        key = _BLOCK_KEYS.get(block_type)
        if key is not None:
            block[key] = body or _elements("")
        elif block_type == _DIVIDER:
            block["divider"] = {}
        self.blocks.append(block)
        return block

    def _top(self, block_type: int, text: str | None = None) -> dict[str, Any]:
        block = self._new(block_type, None if text is None else _elements(text))
        self.first_level.append(block["block_id"])
        return block

    def convert(self, markdown: str) -> None:
        lines = markdown.splitlines()
        index = 0
        while index < len(lines):
            line = lines[index].rstrip()
            index += 1
            if not line.strip():
                continue
            if line.lstrip().startswith("```"):
                code: list[str] = []
                while index < len(lines) and not lines[index].lstrip().startswith("```"):
                    code.append(lines[index])
                    index += 1
                index += 1
                self._top(_CODE, "\n".join(code))
            elif match := _HEADING.match(line):
                self._top(2 + len(match[1]), _plain(match[2]))
            elif line.strip() in ("---", "***", "___"):
                self._top(_DIVIDER)
            elif line.lstrip().startswith("|"):
                rows = [line]
                while index < len(lines) and lines[index].lstrip().startswith("|"):
                    rows.append(lines[index].rstrip())
                    index += 1
                self._table([r for r in rows if not _TABLE_RULE.match(r.strip())])
            elif line.lstrip().startswith(">"):
                self._top(_QUOTE, _plain(line.lstrip()[1:].strip()))
            elif match := _BULLET_LINE.match(line):
                self._top(_BULLET, _plain(match[1]))
            elif match := _ORDERED_LINE.match(line):
                self._top(_ORDERED, _plain(match[1]))
            else:
                self._top(_TEXT, _plain(line.strip()))

    def _table(self, rows: list[str]) -> None:
        cells = [[_plain(c.strip()) for c in row.strip().strip("|").split("|")] for row in rows]
        columns = max(len(row) for row in cells)
        table = self._top(_TABLE)
        table["table"] = {
            "cells": [],
            "property": {
                "row_size": len(cells),
                "column_size": columns,
                "merge_info": [{"row_span": 1, "col_span": 1}] * (len(cells) * columns),
            },
        }
        table["children"] = []
        for row in cells:
            for column in range(columns):
                cell = self._new(_TABLE_CELL)
                cell["table_cell"] = {}
                text = self._new(_TEXT, _elements(row[column] if column < len(row) else ""))
                cell["children"] = [text["block_id"]]
                table["children"].append(cell["block_id"])
                table["table"]["cells"].append(cell["block_id"])


def _plain(text: str) -> str:
    return _INLINE_MARKS.sub("", text)


# Filled by the ``@_routes.route`` lines above each handler.
_routes = RouteTable()


class _Handlers(WorkspaceHandlers):
    """The route handlers, over one workspace."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        self._done: dict[str, dict[str, Any]] = {}

    # ---------------------------------------------------------------------- messages

    def _item(self, message: ChatMessage) -> dict[str, Any]:
        user = message.sender_type == "user"
        item: dict[str, Any] = {
            "message_id": message.message_id,
            "root_id": message.root_id,
            "parent_id": message.root_id,
            "thread_id": message.thread_id,
            "msg_type": message.msg_type,
            "create_time": str(message.create_time_ms),
            "update_time": str(message.create_time_ms),
            "deleted": False,
            "updated": False,
            "chat_id": message.chat_id,
            "sender": {
                "id": message.sender_id,
                "id_type": "open_id" if user else "app_id",
                "sender_type": message.sender_type,
                "tenant_key": self.ws.tenant_key,
            },
            "body": {"content": json.dumps(message.content, ensure_ascii=False)},
            "mentions": [
                {
                    "key": f"@_user_{index}",
                    "id": open_id,
                    "id_type": "open_id",
                    "name": name,
                    "tenant_key": self.ws.tenant_key,
                }
                for index, (open_id, name) in enumerate(message.mentions, start=1)
            ],
        }
        return {key: value for key, value in item.items() if value is not None}

    @_routes.route("GET", MESSAGES, "im:message.group_msg")
    def list_messages(self, request: ApiRequest) -> dict[str, Any]:
        query = request.query
        kind = query.get("container_id_type")
        container = query.get("container_id") or ""
        if kind not in ("chat", "thread") or not container:
            raise ApiError(
                _FIELD_VALIDATION, "field validation failed: container_id_type and container_id"
            )
        field = "thread_id" if kind == "thread" else "chat_id"
        items = {
            m.message_id: self._item(m) for m in self.ws.messages if getattr(m, field) == container
        }
        for item in request.lark.chat_messages(kind, container):
            items[item["message_id"]] = item
        chat = self.ws.chats.get(container) if kind == "chat" else None
        if (chat is not None and not chat.bot_is_member) or (chat is None and not items):
            raise ApiError(_BOT_NOT_IN_CHAT, "Bot is not in the chat.")
        start = _seconds(query.get("start_time"), 0)
        end = _seconds(query.get("end_time"), 1 << 62)
        listed = [
            item for item in items.values() if start <= int(item["create_time"]) // 1000 <= end
        ]
        descending = query.get("sort_type") == "ByCreateTimeDesc"
        listed.sort(key=lambda item: int(item["create_time"]), reverse=descending)
        return _page(listed, query, 20, 50)

    # ------------------------------------------------------------------------- chats

    @_routes.route("GET", CHATS, "im:chat:readonly")
    def list_chats(self, request: ApiRequest) -> dict[str, Any]:
        chats = [
            {
                "chat_id": chat.chat_id,
                "avatar": "",
                "name": chat.name,
                "description": chat.description,
                "owner_id": chat.owner_open_id,
                "owner_id_type": "open_id",
                "external": False,
                "tenant_key": self.ws.tenant_key,
                "chat_status": "normal",
            }
            for chat in self.ws.chats.values()
            if chat.bot_is_member
        ]
        return _page(chats, request.query, 20, 100)

    @_routes.route("POST", CHATS, "im:chat:create")
    def create_chat(self, request: ApiRequest) -> dict[str, Any]:
        key = request.query.get("uuid")
        if key and f"chat:{key}" in self._done:
            return self._done[f"chat:{key}"]
        body = request.body
        users = body.get("user_id_list") or []
        owner = body.get("owner_id") or ""
        if not isinstance(users, list) or len(users) > 50:
            raise ApiError(_FIELD_VALIDATION, "user_id_list must be a list of at most 50")
        unknown = [u for u in [*users, *([owner] if owner else [])] if u not in self.ws.users]
        if unknown:
            raise ApiError(_INVISIBLE_USERS, "The bot is invisible to some of the users.")
        chat = Chat(
            chat_id=self.ws.new_id("oc_"),
            name=str(body.get("name") or ""),
            member_open_ids=list(dict.fromkeys([*([owner] if owner else []), *users])),
            description=str(body.get("description") or ""),
            owner_open_id=owner,
        )
        self.ws.chats[chat.chat_id] = chat
        self.record_write(request)
        answer = {
            "chat_id": chat.chat_id,
            "name": chat.name,
            "description": chat.description,
            "owner_id": owner,
            "owner_id_type": "open_id",
            "chat_mode": "group",
            "chat_type": str(body.get("chat_type") or "private"),
            "external": False,
            "tenant_key": self.ws.tenant_key,
        }
        if key:
            self._done[f"chat:{key}"] = answer
        return answer

    @_routes.route("GET", USERS_BATCH, "contact:user.base:readonly")
    def users_batch(self, request: ApiRequest) -> dict[str, Any]:
        getlist = getattr(request.query, "getlist", None)
        ids = list(getlist("user_ids")) if getlist else [request.query.get("user_ids")]
        if len(ids) > 50 or request.query.get("user_id_type", "open_id") != "open_id":
            raise ApiError(_FIELD_VALIDATION, "at most 50 user_ids, as open_ids")
        items = [
            {"open_id": user.open_id, "name": user.name, "en_name": user.en_name}
            for open_id in ids
            if (user := self.ws.users.get(str(open_id))) is not None
        ]
        return {"items": items}

    # --------------------------------------------------------------------- documents

    def _document(self, request: ApiRequest) -> DocxDocument:
        document = self.ws.docx.get(request.path_params["document_id"])
        if document is None:
            raise ApiError(_DOC_NOT_FOUND, "not found")
        return document

    @_routes.route("GET", DOCUMENT, "docx:document:readonly")
    def get_document(self, request: ApiRequest) -> dict[str, Any]:
        document = self._document(request)
        return {
            "document": {
                "document_id": document.document_id,
                "revision_id": document.revision_id,
                "title": document.title,
            }
        }

    @_routes.route("GET", RAW_CONTENT, "docx:document:readonly")
    def raw_content(self, request: ApiRequest) -> dict[str, Any]:
        return {"content": self._document(request).raw_content}

    @_routes.route("POST", DOCUMENTS, "docx:document")
    def create_document(self, request: ApiRequest) -> dict[str, Any]:
        folder = str(request.body.get("folder_token") or "")
        if folder and folder not in self.ws.folders:
            raise ApiError(_FOLDER_NOT_FOUND, "parent node not exist")
        title = str(request.body.get("title") or "")
        document = DocxDocument(
            document_id=self.ws.new_id("doxcn"), title=title, paragraphs=[], folder_token=folder
        )
        self.ws.docx[document.document_id] = document
        self.ws.documents.append(
            Document(
                document.document_id,
                title,
                "docx",
                "",
                f"https://example.feishu.cn/docx/{document.document_id}",
            )
        )
        self.record_write(request)
        return {"document": {"document_id": document.document_id, "revision_id": 1, "title": title}}

    @_routes.route("POST", CONVERT, "docx:document.block:convert")
    def convert(self, request: ApiRequest) -> dict[str, Any]:
        content = request.body.get("content")
        if request.body.get("content_type") not in ("markdown", "html") or not isinstance(
            content, str
        ):
            raise ApiError(_DOC_INVALID, "invalid param: content_type and content")
        converter = _Converter()
        converter.convert(content)
        return {
            "first_level_block_ids": converter.first_level,
            "blocks": converter.blocks,
            "block_id_to_image_urls": [],
        }

    @_routes.route("POST", DESCENDANT, "docx:document")
    def insert_blocks(self, request: ApiRequest) -> dict[str, Any]:
        document = self._document(request)
        if request.path_params["block_id"] != document.document_id:
            raise ApiError(_DOC_INVALID, "invalid param: only the page block is modelled")
        token = request.query.get("client_token")
        if token and f"blocks:{token}" in self._done:
            return self._done[f"blocks:{token}"]
        children = request.body.get("children_id") or []
        descendants = request.body.get("descendants") or []
        by_id = {
            block.get("block_id"): block
            for block in descendants
            if isinstance(block, dict) and block.get("block_id")
        }
        if not children or any(child not in by_id for child in children):
            raise ApiError(_DOC_INVALID, "invalid param: children_id must name descendants")
        for block in by_id.values():
            if "merge_info" in ((block.get("table") or {}).get("property") or {}):
                raise ApiError(_DOC_INVALID, "invalid param: merge_info is read-only")
        relations = []
        for temporary in by_id:
            relations.append({"temporary_block_id": temporary, "block_id": self.ws.new_id("blk")})
        for child in children:
            document.paragraphs.extend(_texts(by_id, str(child)))
        document.blocks.extend(by_id.values())
        document.revision_id += 1
        self.record_write(request)
        answer = {
            "children": [by_id[child] for child in children],
            "document_revision_id": document.revision_id,
            "client_token": token or "",
            "block_id_relations": relations,
        }
        if token:
            self._done[f"blocks:{token}"] = answer
        return answer

    # -------------------------------------------------------------------------- wiki

    @_routes.route("GET", GET_NODE, "wiki:wiki:readonly")
    def get_node(self, request: ApiRequest) -> dict[str, Any]:
        token = request.query.get("token") or ""
        obj_type = request.query.get("obj_type") or "wiki"
        if obj_type == "wiki":
            node = self.ws.wiki_nodes.get(token)
        else:
            node = next(
                (
                    n
                    for n in self.ws.wiki_nodes.values()
                    if n.obj_token == token and n.obj_type == obj_type
                ),
                None,
            )
        if node is None:
            raise ApiError(_WIKI_NOT_FOUND, "not found")
        created = str(node.created_at)
        return {
            "node": {
                "space_id": node.space_id,
                "node_token": node.node_token,
                "obj_token": node.obj_token,
                "obj_type": node.obj_type,
                "parent_node_token": node.parent_node_token,
                "node_type": "origin",
                "origin_node_token": node.node_token,
                "origin_space_id": node.space_id,
                "has_child": node.has_child,
                "title": node.title,
                "obj_create_time": created,
                "obj_edit_time": created,
                "node_create_time": created,
                "creator": node.owner_open_id,
                "owner": node.owner_open_id,
            }
        }

    # ----------------------------------------------------------------------- sharing

    def _shareable(self, token: str) -> bool:
        ws = self.ws
        return (
            token in ws.docx
            or token in ws.apps
            or token in ws.wiki_nodes
            or token in ws.folders
            or any(d.token == token for d in ws.documents)
        )

    @_routes.route("POST", PERMISSION_MEMBERS, "docs:permission.member:create")
    def add_member(self, request: ApiRequest) -> dict[str, Any]:
        token = request.path_params["token"]
        body = request.body
        if request.query.get("type") not in _SHARE_TYPES or body.get("perm") not in _PERMS:
            raise ApiError(_SHARE_INVALID, "Invalid parameter: type or perm")
        if not self._shareable(token):
            raise ApiError(_SHARE_NOT_FOUND, "resource is deleted or does not exist")
        member_type, member_id = body.get("member_type"), str(body.get("member_id") or "")
        known = {
            "openid": member_id in self.ws.users,
            "email": any(
                u.email.casefold() == member_id.casefold() for u in self.ws.users.values()
            ),
            "openchat": member_id in self.ws.chats,
        }
        if not known.get(str(member_type), False):
            raise ApiError(_SHARE_INVALID, "Invalid parameter: member")
        member = PermissionMember(
            str(member_type), member_id, str(body["perm"]), str(body.get("type") or "user")
        )
        held = self.ws.permissions.get(token, [])
        same = [m for m in held if (m.member_type, m.member_id) == (member_type, member_id)]
        # Asking again for what a member holds is granted; asking for less is refused.
        if same and _PERM_RANKS[same[0].perm] > _PERM_RANKS[member.perm]:
            raise ApiError(_SHARE_INVALID_OPERATION, "Invalid operation")
        members = [m for m in held if m not in same]
        self.ws.permissions[token] = [*members, member]
        self.record_write(request)
        return {
            "member": {
                "member_type": member.member_type,
                "member_id": member.member_id,
                "perm": member.perm,
                "perm_type": "container",
                "type": member.type,
            }
        }

    @_routes.route("GET", PERMISSION_MEMBERS, "docs:permission.member:retrieve")
    def list_members(self, request: ApiRequest) -> dict[str, Any]:
        token = request.path_params["token"]
        if request.query.get("type") not in _SHARE_TYPES:
            raise ApiError(_SHARE_INVALID, "Invalid parameter: type")
        if not self._shareable(token):
            raise ApiError(_SHARE_INVALID, "Invalid parameter: token")
        return {
            "items": [
                {
                    "member_type": m.member_type,
                    "member_id": m.member_id,
                    "perm": m.perm,
                    "perm_type": "container",
                    "type": m.type,
                }
                for m in self.ws.permissions.get(token, [])
            ]
        }

    # ------------------------------------------------------------------------ tables

    @_routes.route("GET", TABLES, "bitable:app:readonly")
    def list_tables(self, request: ApiRequest) -> dict[str, Any]:
        app = self.base_app(request)
        tables = [
            {"table_id": t.table_id, "revision": 1, "name": t.name} for t in app.tables.values()
        ]
        return {**_page(tables, request.query, 20, 100), "total": len(tables)}

    @_routes.route("POST", TABLES, "bitable:app")
    def create_table(self, request: ApiRequest) -> dict[str, Any]:
        app = self.base_app(request)
        spec = request.body.get("table")
        if not isinstance(spec, dict) or not str(spec.get("name") or "").strip():
            raise ApiError(_WRONG_REQUEST_BODY, "WrongRequestBody: table.name", status=200)
        name = str(spec["name"]).strip()
        if any(t.name == name for t in app.tables.values()):
            raise ApiError(_TABLE_NAME_TAKEN, "TableNameDuplicated", status=200)
        fields: list[BaseField] = []
        for index, raw in enumerate(spec.get("fields") or []):
            if not isinstance(raw, dict) or raw.get("type") not in _KNOWN_FIELD_TYPES:
                raise ApiError(_WRONG_REQUEST_BODY, "WrongRequestBody: field type", status=200)
            options = [
                str(o.get("name"))
                for o in ((raw.get("property") or {}).get("options") or [])
                if isinstance(o, dict) and o.get("name")
            ]
            fields.append(
                BaseField(
                    str(raw.get("field_name") or ""),
                    int(raw["type"]),
                    self.ws.new_id("fld"),
                    options,
                    is_primary=index == 0,
                )
            )
        table = BaseTable(self.ws.new_id("tbl"), name, fields)
        app.tables[table.table_id] = table
        self.record_write(request)
        return {
            "table_id": table.table_id,
            "default_view_id": self.ws.new_id("vew"),
            "field_id_list": [f.field_id for f in fields],
        }


def _texts(blocks: dict[Any, dict[str, Any]], block_id: str) -> list[str]:
    """The paragraphs a block adds to the raw content: its text, a table row per line."""
    block = blocks.get(block_id) or {}
    if block.get("block_type") == _TABLE:
        columns = int(((block.get("table") or {}).get("property") or {}).get("column_size") or 1)
        cells = [" ".join(_texts(blocks, str(cell))) for cell in block.get("children") or []]
        return ["\t".join(cells[i : i + columns]) for i in range(0, len(cells), columns)]
    text = _block_text(block)
    lines = [text] if text else []
    for child in block.get("children") or []:
        lines.extend(_texts(blocks, str(child)))
    return lines


def _seconds(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default

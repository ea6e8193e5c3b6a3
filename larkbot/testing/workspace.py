"""An in-memory Lark workspace served by the stand-in: Base tables, people, chats, docs, calendar.

Chat history, docx documents, the wiki, sharing and table creation are served by
:mod:`larkbot.testing._content_routes`, which ``workspace_routes`` includes.

``Workspace`` holds the data; ``workspace_routes(ws)`` returns the ``OpenApiRoute`` objects
that serve it with Lark's routes and answer shapes, for
``LarkStandIn(extra_routes=workspace_routes(ws))``. Every write is kept in ``ws.writes``
so tests can assert on what the bot changed.

Modelled after Lark's documented behaviour, with these choices where it is not pinned down:

- Record values are stored plain (text as ``str``, people as open_ids, dates as epoch
  milliseconds) and sent the way the search API sends them (text as rich-text segments,
  people as objects with names).
- Writes are strict about types, as the platform is: a number field takes a JSON number,
  a date field epoch milliseconds, a person field ``[{"id": "ou_..."}]``. A value that
  does not fit answers one of the ``12540xx`` "...FieldConvFail" codes.
- Date filter values ``Today``, ``Yesterday``, ``Tomorrow``, ``CurrentWeek`` (Monday to
  Sunday), ``LastWeek``, ``CurrentMonth``, ``LastMonth`` and ``["ExactDate", ms]`` are
  evaluated in ``ws.timezone``.
- A route template listed in ``ws.denied_routes`` answers 99991672 (the app lacks the
  scope), to test how a missing permission reads.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from larkbot.testing._content import ChatMessage, DocxDocument, PermissionMember, WikiNode
from larkbot.testing._content_routes import content_routes
from larkbot.testing._objects import BaseField, BaseTable, Chat, Document, WorkspaceWrite
from larkbot.testing._openapi import ApiError, ApiRequest, OpenApiRoute
from larkbot.testing._scoped_routes import RouteTable, WorkspaceHandlers

__all__ = [
    "BaseApp",
    "BaseField",
    "BaseTable",
    "CalendarEvent",
    "Chat",
    "ChatMessage",
    "Document",
    "DocxDocument",
    "FieldType",
    "PermissionMember",
    "User",
    "WikiNode",
    "Workspace",
    "WorkspaceWrite",
    "workspace_routes",
]

_TOKYO = ZoneInfo("Asia/Tokyo")


class FieldType:
    """Bitable field type numbers (the ``type`` of a field)."""

    TEXT = 1
    NUMBER = 2
    SINGLE_SELECT = 3
    MULTI_SELECT = 4
    DATE = 5
    CHECKBOX = 7
    PERSON = 11
    PHONE = 13
    URL = 15


_UI_TYPES = {
    FieldType.TEXT: "Text",
    FieldType.NUMBER: "Number",
    FieldType.SINGLE_SELECT: "SingleSelect",
    FieldType.MULTI_SELECT: "MultiSelect",
    FieldType.DATE: "DateTime",
    FieldType.CHECKBOX: "Checkbox",
    FieldType.PERSON: "User",
    FieldType.PHONE: "Phone",
    FieldType.URL: "Url",
}

# Route templates, relative to /open-apis/.
_APP = "bitable/v1/apps/{app_token}/tables/{table_id}"
FIELDS = f"{_APP}/fields"
RECORDS_SEARCH = f"{_APP}/records/search"
RECORDS = f"{_APP}/records"
RECORD = f"{_APP}/records/{{record_id}}"
USER = "contact/v3/users/{user_id}"
USERS_BATCH_GET_ID = "contact/v3/users/batch_get_id"
DEPARTMENT = "contact/v3/departments/{department_id}"
CHAT_MEMBERS = "im/v1/chats/{chat_id}/members"
DOC_SEARCH = "search/v2/doc_wiki/search"
PRIMARY_CALENDAR = "calendar/v4/calendars/primary"
EVENTS = "calendar/v4/calendars/{calendar_id}/events"
ATTENDEES = "calendar/v4/calendars/{calendar_id}/events/{event_id}/attendees"

# Lark error codes the workspace answers.
_WRONG_REQUEST_BODY = 1254001
_INVALID_FILTER = 1254018
_TABLE_NOT_FOUND = 1254041
_RECORD_NOT_FOUND = 1254043
_FIELD_NAME_NOT_FOUND = 1254045
_CONV_FAIL = {
    FieldType.TEXT: (1254060, "TextFieldConvFail"),
    FieldType.NUMBER: (1254061, "NumberFieldConvFail"),
    FieldType.SINGLE_SELECT: (1254062, "SingleSelectFieldConvFail"),
    FieldType.MULTI_SELECT: (1254063, "MultiSelectFieldConvFail"),
    FieldType.DATE: (1254064, "DatetimeFieldConvFail"),
    FieldType.CHECKBOX: (1254065, "CheckboxFieldConvFail"),
    FieldType.PERSON: (1254066, "UserFieldConvFail"),
    FieldType.URL: (1254068, "URLFieldConvFail"),
    FieldType.PHONE: (1254060, "TextFieldConvFail"),
}
_NO_USER_AUTHORITY = 41050
_NO_DEPT_AUTHORITY = 40004
_INVALID_CHAT_ID = 232006
_BOT_NOT_IN_CHAT = 232011
_CALENDAR_BAD_REQUEST = 190002
_CALENDAR_NOT_FOUND = 191001
_EVENT_NOT_FOUND = 193001

_RECORD_PAGE_DEFAULT, _RECORD_PAGE_MAX = 20, 500
_FIELD_PAGE_DEFAULT, _FIELD_PAGE_MAX = 20, 100
_MEMBER_PAGE_DEFAULT, _MEMBER_PAGE_MAX = 20, 100
_DOC_PAGE_DEFAULT, _DOC_PAGE_MAX = 20, 20


@dataclass(slots=True)
class BaseApp:
    """A Base (bitable app) and its tables by id."""

    app_token: str
    name: str
    tables: dict[str, BaseTable] = field(default_factory=dict)


@dataclass(slots=True)
class User:
    """A person in the directory."""

    open_id: str
    name: str
    email: str
    department: str = ""
    job_title: str = ""
    en_name: str = ""
    city: str = ""
    mobile: str = ""

    @property
    def department_id(self) -> str:
        """The open department id the directory gives the user's department."""
        return _department_id(self.department)


@dataclass(slots=True)
class CalendarEvent:
    """An event of the bot's primary calendar; times are epoch seconds."""

    event_id: str
    calendar_id: str
    summary: str
    description: str
    start: int
    end: int
    attendee_open_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Workspace:
    """Everything the workspace routes serve, and the log of writes made to it."""

    apps: dict[str, BaseApp] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    chats: dict[str, Chat] = field(default_factory=dict)
    documents: list[Document] = field(default_factory=list)
    calendar_id: str = "feishu.cn_bot@group.calendar.feishu.cn"
    events: dict[str, CalendarEvent] = field(default_factory=dict)
    timezone: tzinfo = _TOKYO
    tenant_key: str = "tenant"
    denied_routes: set[str] = field(default_factory=set)
    writes: list[WorkspaceWrite] = field(default_factory=list)
    messages: list[ChatMessage] = field(default_factory=list)
    docx: dict[str, DocxDocument] = field(default_factory=dict)
    wiki_nodes: dict[str, WikiNode] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)
    permissions: dict[str, list[PermissionMember]] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _client_tokens: dict[str, str] = field(default_factory=dict, repr=False)

    def table(self, name: str) -> BaseTable:
        """Return the table called ``name`` in any app (a test convenience)."""
        for app in self.apps.values():
            for table in app.tables.values():
                if table.name == name:
                    return table
        raise KeyError(name)

    def new_id(self, prefix: str) -> str:
        """Return a fresh id such as ``rec0000000001``."""
        return f"{prefix}{next(self._ids):010d}"


def workspace_routes(ws: Workspace) -> list[OpenApiRoute]:
    """Return the stand-in routes serving ``ws`` (the stand-in checks the tenant token)."""
    # Content routes first: ``contact/v3/users/batch`` must win over ``users/{user_id}``.
    return [*content_routes(ws), *_Handlers(ws).serve(_routes)]


def _digits(phone: str) -> str:
    """The last ten digits of a phone number, so "+81 90-…" and "090-…" compare equal."""
    return "".join(ch for ch in phone if ch.isdigit())[-10:]


def _department_id(name: str) -> str:
    return "od-" + hashlib.sha1(name.encode()).hexdigest()[:24]


def _page(query: Any, default: int, maximum: int) -> tuple[int, int]:
    """Return (offset, size) from ``page_token``/``page_size``; tokens are opaque offsets."""
    try:
        size = int(query.get("page_size") or default)
    except ValueError:
        raise ApiError(_WRONG_REQUEST_BODY, "page_size must be an integer") from None
    size = max(1, min(size, maximum))
    token = query.get("page_token") or ""
    if not token:
        return 0, size
    if not token.startswith("pt") or not token[2:].isdigit():
        raise ApiError(_WRONG_REQUEST_BODY, "page_token is invalid")
    return int(token[2:]), size


def _page_reply(items: list[Any], offset: int, size: int) -> tuple[list[Any], dict[str, Any]]:
    chunk = items[offset : offset + size]
    more = offset + size < len(items)
    extra: dict[str, Any] = {"has_more": more}
    if more:
        extra["page_token"] = f"pt{offset + size}"
    return chunk, extra


# Filled by the ``@_routes.route`` lines above each handler.
_routes = RouteTable()


class _Handlers(WorkspaceHandlers):
    """The route handlers, over one workspace."""

    # ------------------------------------------------------------------------- bitable

    def _table(self, request: ApiRequest) -> BaseTable:
        table = self.base_app(request).tables.get(request.path_params["table_id"])
        if table is None:
            raise ApiError(_TABLE_NOT_FOUND, "TableIdNotFound", status=200)
        return table

    @_routes.route("GET", FIELDS, "bitable:app:readonly")
    def list_fields(self, request: ApiRequest) -> dict[str, Any]:
        table = self._table(request)
        offset, size = _page(request.query, _FIELD_PAGE_DEFAULT, _FIELD_PAGE_MAX)
        items = [self._describe_field(f) for f in table.fields]
        chunk, extra = _page_reply(items, offset, size)
        return {"items": chunk, "total": len(items), **extra}

    @staticmethod
    def _describe_field(f: BaseField) -> dict[str, Any]:
        prop: dict[str, Any] | None = None
        if f.type in (FieldType.SINGLE_SELECT, FieldType.MULTI_SELECT):
            prop = {
                "options": [
                    {"name": o, "id": f"opt{i:06d}", "color": i % 10}
                    for i, o in enumerate(f.options)
                ]
            }
        elif f.type == FieldType.DATE:
            prop = {"date_formatter": "yyyy/MM/dd", "auto_fill": False}
        elif f.type == FieldType.NUMBER:
            prop = {"formatter": "0"}
        return {
            "field_id": f.field_id,
            "field_name": f.name,
            "type": f.type,
            "property": prop,
            "is_primary": f.is_primary,
            "ui_type": _UI_TYPES.get(f.type, "Text"),
        }

    @_routes.route("POST", RECORDS_SEARCH, "bitable:app:readonly")
    def search_records(self, request: ApiRequest) -> dict[str, Any]:
        table = self._table(request)
        offset, size = _page(request.query, _RECORD_PAGE_DEFAULT, _RECORD_PAGE_MAX)
        spec = request.body.get("filter")
        matches = [
            (record_id, values)
            for record_id, values in table.records.items()
            if spec is None or self._passes(table, values, spec)
        ]
        wanted = request.body.get("field_names")
        chunk, extra = _page_reply(matches, offset, size)
        items = [self._encode_record(table, rid, values, wanted) for rid, values in chunk]
        return {"items": items, "total": len(matches), **extra}

    def _passes(self, table: BaseTable, values: dict[str, Any], spec: Any) -> bool:
        if not isinstance(spec, dict):
            raise ApiError(_INVALID_FILTER, "InvalidFilter")
        conjunction = spec.get("conjunction", "and")
        if conjunction not in ("and", "or"):
            raise ApiError(_INVALID_FILTER, "InvalidFilter: conjunction must be and/or")
        results = [self._condition(table, values, c) for c in spec.get("conditions") or []]
        results += [self._passes(table, values, child) for child in spec.get("children") or []]
        if not results:
            return True
        return all(results) if conjunction == "and" else any(results)

    def _condition(self, table: BaseTable, values: dict[str, Any], cond: Any) -> bool:
        if not isinstance(cond, dict):
            raise ApiError(_INVALID_FILTER, "InvalidFilter")
        f = table.field(str(cond.get("field_name")))
        if f is None:
            raise ApiError(_FIELD_NAME_NOT_FOUND, "FieldNameNotFound", status=200)
        op = cond.get("operator")
        wanted = [str(v) for v in cond.get("value") or []]
        value = values.get(f.name)
        if op == "isEmpty":
            return _empty(value)
        if op == "isNotEmpty":
            return not _empty(value)
        if f.type == FieldType.DATE:
            return self._date_condition(op, wanted, value)
        if f.type == FieldType.NUMBER:
            return _number_condition(op, wanted, value)
        if f.type == FieldType.CHECKBOX:
            if op not in ("is", "isNot") or not wanted:
                raise ApiError(_INVALID_FILTER, "InvalidFilter")
            result = bool(value) == (wanted[0].lower() == "true")
            return result if op == "is" else not result
        if f.type in (FieldType.MULTI_SELECT, FieldType.PERSON):
            have = {str(v).casefold() for v in value or []}
            given = {w.casefold() for w in wanted}
            if op in ("is", "contains"):
                return bool(have & given) if op == "contains" else have == given
            if op in ("isNot", "doesNotContain"):
                return not (have & given) if op == "doesNotContain" else have != given
            raise ApiError(_INVALID_FILTER, f"InvalidFilter: {op} is not supported here")
        text = _flat(value).casefold()
        target = wanted[0].casefold() if wanted else ""
        if op == "is":
            return text == target
        if op == "isNot":
            return text != target
        if op == "contains":
            return any(w.casefold() in text for w in wanted)
        if op == "doesNotContain":
            return all(w.casefold() not in text for w in wanted)
        raise ApiError(_INVALID_FILTER, f"InvalidFilter: {op} is not supported for text")

    def _date_condition(self, op: Any, wanted: list[str], value: Any) -> bool:
        if op not in ("is", "isGreater", "isLess") or not wanted:
            raise ApiError(_INVALID_FILTER, f"InvalidFilter: {op} is not supported for dates")
        start, end = self._date_span(wanted)
        if not isinstance(value, int | float):
            return False
        if op == "is":
            return start <= value < end
        return value >= end if op == "isGreater" else value < start

    def _date_span(self, wanted: list[str]) -> tuple[int, int]:
        """Return the [start, end) span in epoch ms that a date filter value names."""
        tz = self.ws.timezone
        today = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        kind = wanted[0]
        if kind == "ExactDate":
            try:
                moment = datetime.fromtimestamp(int(wanted[1]) / 1000, tz=UTC).astimezone(tz)
            except (IndexError, ValueError):
                raise ApiError(_INVALID_FILTER, "InvalidFilter: ExactDate needs ms") from None
            first = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            last = first + timedelta(days=1)
        elif kind in ("Today", "Yesterday", "Tomorrow"):
            first = today + timedelta(days={"Today": 0, "Yesterday": -1, "Tomorrow": 1}[kind])
            last = first + timedelta(days=1)
        elif kind in ("CurrentWeek", "LastWeek"):
            first = today - timedelta(days=today.weekday())
            if kind == "LastWeek":
                first -= timedelta(days=7)
            last = first + timedelta(days=7)
        elif kind in ("CurrentMonth", "LastMonth"):
            first = today.replace(day=1)
            if kind == "LastMonth":
                first = (first - timedelta(days=1)).replace(day=1)
            last = (first + timedelta(days=32)).replace(day=1)
        else:
            raise ApiError(_INVALID_FILTER, f"InvalidFilter: unknown date value {kind}")
        return int(first.timestamp() * 1000), int(last.timestamp() * 1000)

    def _encode_record(
        self,
        table: BaseTable,
        record_id: str,
        values: dict[str, Any],
        wanted: list[str] | None = None,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for f in table.fields:
            if wanted and f.name not in wanted:
                continue
            value = values.get(f.name)
            if _empty(value) or value is False:
                continue
            fields[f.name] = self._encode_value(f, value)
        return {"record_id": record_id, "fields": fields}

    def _encode_value(self, f: BaseField, value: Any) -> Any:
        if f.type == FieldType.TEXT:
            return [{"type": "text", "text": str(value)}]
        if f.type == FieldType.PERSON:
            people = []
            for open_id in value:
                user = self.ws.users.get(open_id)
                people.append(
                    {
                        "id": open_id,
                        "name": user.name if user else "",
                        "en_name": user.en_name if user else "",
                        "email": user.email if user else "",
                    }
                )
            return people
        return value

    def _decode_fields(self, table: BaseTable, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise ApiError(_WRONG_REQUEST_BODY, "WrongRequestBody: fields must be an object")
        decoded: dict[str, Any] = {}
        for name, value in raw.items():
            f = table.field(name)
            if f is None:
                raise ApiError(_FIELD_NAME_NOT_FOUND, "FieldNameNotFound", status=200)
            decoded[name] = self._decode_value(f, value)
        return decoded

    def _decode_value(self, f: BaseField, value: Any) -> Any:
        if value is None:
            return None
        code, msg = _CONV_FAIL.get(f.type, (_WRONG_REQUEST_BODY, "WrongRequestBody"))
        fail = ApiError(code, f"{msg}: field {f.name}", status=200)
        t = f.type
        if t in (FieldType.TEXT, FieldType.PHONE):
            if isinstance(value, str):
                return value
            if isinstance(value, list) and all(isinstance(s, dict) for s in value):
                return "".join(str(s.get("text", "")) for s in value)
            raise fail
        if t == FieldType.NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise fail
            return value
        if t == FieldType.SINGLE_SELECT:
            if not isinstance(value, str):
                raise fail
            if value and value not in f.options:
                f.options.append(value)
            return value
        if t == FieldType.MULTI_SELECT:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise fail
            f.options.extend(v for v in value if v not in f.options)
            return list(value)
        if t == FieldType.DATE:
            if isinstance(value, bool) or not isinstance(value, int):
                raise fail
            return value
        if t == FieldType.CHECKBOX:
            if not isinstance(value, bool):
                raise fail
            return value
        if t == FieldType.PERSON:
            if not isinstance(value, list):
                raise fail
            ids = [p.get("id") if isinstance(p, dict) else None for p in value]
            if not all(isinstance(i, str) and i in self.ws.users for i in ids):
                raise fail
            return ids
        if t == FieldType.URL:
            if not isinstance(value, dict) or not isinstance(value.get("link"), str):
                raise fail
            return {"link": value["link"], "text": str(value.get("text") or value["link"])}
        return value

    @_routes.route("POST", RECORDS, "bitable:app")
    def create_record(self, request: ApiRequest) -> dict[str, Any]:
        table = self._table(request)
        token = request.query.get("client_token")
        key = f"{request.path}:{token}"
        if token and key in self.ws._client_tokens:
            # The same client_token again: the platform answers the first result.
            record_id = self.ws._client_tokens[key]
            if record_id in table.records:
                return {"record": self._encode_record(table, record_id, table.records[record_id])}
        values = self._decode_fields(table, request.body.get("fields"))
        record_id = self.ws.new_id("rec")
        table.records[record_id] = {k: v for k, v in values.items() if v is not None}
        if token:
            self.ws._client_tokens[key] = record_id
        self.record_write(request)
        return {"record": self._encode_record(table, record_id, table.records[record_id])}

    def _record(self, request: ApiRequest) -> tuple[BaseTable, str, dict[str, Any]]:
        """The table, id and values of the record the path names; 1254043 if none."""
        table = self._table(request)
        record_id = request.path_params["record_id"]
        record = table.records.get(record_id)
        if record is None:
            raise ApiError(_RECORD_NOT_FOUND, "RecordIdNotFound", status=200)
        return table, record_id, record

    @_routes.route("GET", RECORD, "bitable:app")
    def get_record(self, request: ApiRequest) -> dict[str, Any]:
        table, record_id, record = self._record(request)
        return {"record": self._encode_record(table, record_id, record)}

    @_routes.route("PUT", RECORD, "bitable:app")
    def update_record(self, request: ApiRequest) -> dict[str, Any]:
        table, record_id, record = self._record(request)
        values = self._decode_fields(table, request.body.get("fields"))
        for name, value in values.items():
            if value is None:
                record.pop(name, None)
            else:
                record[name] = value
        self.record_write(request)
        return {"record": self._encode_record(table, record_id, record)}

    @_routes.route("DELETE", RECORD, "bitable:app")
    def delete_record(self, request: ApiRequest) -> dict[str, Any]:
        table = self._table(request)
        record_id = request.path_params["record_id"]
        if table.records.pop(record_id, None) is None:
            raise ApiError(_RECORD_NOT_FOUND, "RecordIdNotFound", status=200)
        self.record_write(request)
        return {"deleted": True, "record_id": record_id}

    # ------------------------------------------------------------------------- contact

    def _describe_user(self, user: User) -> dict[str, Any]:
        return {
            "open_id": user.open_id,
            "union_id": "on_" + user.open_id.removeprefix("ou_"),
            "name": user.name,
            "en_name": user.en_name,
            "email": user.email,
            "enterprise_email": user.email,
            "job_title": user.job_title,
            "city": user.city,
            "department_ids": [user.department_id] if user.department else [],
            "status": {"is_activated": True, "is_frozen": False, "is_resigned": False},
        }

    @_routes.route("GET", USER, "contact:user.base:readonly")
    def get_user(self, request: ApiRequest) -> dict[str, Any]:
        user = self.ws.users.get(request.path_params["user_id"])
        if user is None or request.query.get("user_id_type", "open_id") != "open_id":
            raise ApiError(_NO_USER_AUTHORITY, "no user authority error")
        return {"user": self._describe_user(user)}

    @_routes.route("POST", USERS_BATCH_GET_ID, "contact:user.id:readonly")
    def batch_get_id(self, request: ApiRequest) -> dict[str, Any]:
        emails = request.body.get("emails") or []
        mobiles = request.body.get("mobiles") or []
        for given in (emails, mobiles):
            if not isinstance(given, list) or len(given) > 50:
                raise ApiError(_WRONG_REQUEST_BODY, "emails and mobiles: lists of at most 50")
        by_email = {u.email.casefold(): u for u in self.ws.users.values()}
        by_mobile = {_digits(u.mobile): u for u in self.ws.users.values() if u.mobile}
        found: list[dict[str, Any]] = []
        for kind, value, user in [
            *(("email", e, by_email.get(str(e).casefold())) for e in emails),
            *(("mobile", m, by_mobile.get(_digits(str(m)))) for m in mobiles),
        ]:
            entry: dict[str, Any] = {kind: value}
            if user is not None:
                entry["user_id"] = user.open_id
                entry["status"] = {"is_activated": True, "is_resigned": False}
            found.append(entry)
        return {"user_list": found}

    @_routes.route("GET", DEPARTMENT, "contact:department.base:readonly")
    def get_department(self, request: ApiRequest) -> dict[str, Any]:
        wanted = request.path_params["department_id"]
        name = next(
            (u.department for u in self.ws.users.values() if u.department_id == wanted), None
        )
        if name is None:
            raise ApiError(_NO_DEPT_AUTHORITY, "no dept authority error")
        return {"department": {"name": name, "open_department_id": wanted}}

    # ------------------------------------------------------------------------------ im

    @_routes.route("GET", CHAT_MEMBERS, "im:chat:readonly")
    def chat_members(self, request: ApiRequest) -> dict[str, Any]:
        chat = self.ws.chats.get(request.path_params["chat_id"])
        if chat is None:
            raise ApiError(_INVALID_CHAT_ID, "Your request specifies a chat_id which is invalid.")
        if not chat.bot_is_member:
            raise ApiError(_BOT_NOT_IN_CHAT, "Operator can NOT be out of the chat.")
        offset, size = _page(request.query, _MEMBER_PAGE_DEFAULT, _MEMBER_PAGE_MAX)
        members = [
            {
                "member_id_type": "open_id",
                "member_id": open_id,
                "name": user.name if (user := self.ws.users.get(open_id)) else "",
                "tenant_key": self.ws.tenant_key,
            }
            for open_id in chat.member_open_ids
        ]
        chunk, extra = _page_reply(members, offset, size)
        return {"items": chunk, "member_total": len(members), **extra}

    # ---------------------------------------------------------------------------- docs

    @_routes.route("POST", DOC_SEARCH, "search:docs:read")
    def search_docs(self, request: ApiRequest) -> dict[str, Any]:
        query = str(request.body.get("query") or "")
        terms = [t.casefold() for t in query.split()]
        offset, size = _page(
            {
                "page_size": request.body.get("page_size"),
                "page_token": request.body.get("page_token"),
            },
            _DOC_PAGE_DEFAULT,
            _DOC_PAGE_MAX,
        )
        # Like the platform, search only the kinds whose filter the request carries.
        body = request.body
        kinds = {"doc": "doc_filter" in body, "wiki": "wiki_filter" in body}
        if not any(kinds.values()):
            kinds = {"doc": True, "wiki": True}
        hits = [
            d
            for d in self.ws.documents
            if kinds["wiki" if d.wiki else "doc"]
            and all(t in f"{d.title} {d.snippet}".casefold() for t in terms)
        ]
        hits.sort(key=lambda d: d.updated_at, reverse=True)
        chunk, extra = _page_reply(hits, offset, size)
        units = [
            {
                "title_highlighted": _highlight(d.title, terms),
                "summary_highlighted": _highlight(d.snippet, terms),
                "entity_type": "WIKI" if d.wiki else "DOC",
                "result_meta": {
                    "token": d.token,
                    "url": d.url,
                    "doc_types": d.doc_type.upper(),
                    "owner_id": d.owner_open_id,
                    "owner_name": u.name if (u := self.ws.users.get(d.owner_open_id)) else "",
                    "update_time": d.updated_at,
                    "create_time": d.updated_at,
                    "is_cross_tenant": False,
                },
            }
            for d in chunk
        ]
        return {"res_units": units, "total": len(hits), **extra}

    # ------------------------------------------------------------------------ calendar

    @_routes.route("POST", PRIMARY_CALENDAR, "calendar:calendar")
    def primary_calendar(self, request: ApiRequest) -> dict[str, Any]:
        calendar = {
            "calendar_id": self.ws.calendar_id,
            "summary": "larkbot",
            "description": "",
            "permissions": "private",
            "type": "primary",
            "role": "owner",
        }
        return {"calendars": [{"calendar": calendar, "user_id": ""}]}

    def _describe_event(self, event: CalendarEvent) -> dict[str, Any]:
        tz = str(self.ws.timezone)
        return {
            "event_id": event.event_id,
            "organizer_calendar_id": event.calendar_id,
            "summary": event.summary,
            "description": event.description,
            "start_time": {"timestamp": str(event.start), "timezone": tz},
            "end_time": {"timestamp": str(event.end), "timezone": tz},
            "status": "confirmed",
            "visibility": "default",
            "app_link": "https://applink.feishu.cn/client/calendar/event/detail?"
            f"calendarId={event.calendar_id}&key={event.event_id}",
        }

    @_routes.route("POST", EVENTS, "calendar:calendar")
    def create_event(self, request: ApiRequest) -> dict[str, Any]:
        calendar_id = request.path_params["calendar_id"]
        if calendar_id != self.ws.calendar_id:
            raise ApiError(_CALENDAR_NOT_FOUND, "calendar not found")
        key = request.query.get("idempotency_key")
        if key and f"event:{key}" in self.ws._client_tokens:
            return {
                "event": self._describe_event(
                    self.ws.events[self.ws._client_tokens[f"event:{key}"]]
                )
            }
        body = request.body
        try:
            start = int(body["start_time"]["timestamp"])
            end = int(body["end_time"]["timestamp"])
        except (KeyError, TypeError, ValueError):
            raise ApiError(_CALENDAR_BAD_REQUEST, "invalid start_time or end_time") from None
        if end <= start:
            raise ApiError(_CALENDAR_BAD_REQUEST, "end_time must be after start_time")
        event = CalendarEvent(
            event_id=self.ws.new_id("evt"),
            calendar_id=calendar_id,
            summary=str(body.get("summary") or ""),
            description=str(body.get("description") or ""),
            start=start,
            end=end,
        )
        self.ws.events[event.event_id] = event
        if key:
            self.ws._client_tokens[f"event:{key}"] = event.event_id
        self.record_write(request)
        return {"event": self._describe_event(event)}

    @_routes.route("POST", ATTENDEES, "calendar:calendar")
    def add_attendees(self, request: ApiRequest) -> dict[str, Any]:
        event = self.ws.events.get(request.path_params["event_id"])
        if event is None or event.calendar_id != request.path_params["calendar_id"]:
            raise ApiError(_EVENT_NOT_FOUND, "event not found")
        if request.query.get("user_id_type", "open_id") != "open_id":
            raise ApiError(_CALENDAR_BAD_REQUEST, "only open_id is modelled")
        added = []
        for attendee in request.body.get("attendees") or []:
            open_id = attendee.get("user_id") if isinstance(attendee, dict) else None
            user = self.ws.users.get(str(open_id))
            if attendee.get("type") != "user" or user is None:
                raise ApiError(_CALENDAR_BAD_REQUEST, f"invalid attendee {open_id}")
            if open_id not in event.attendee_open_ids:
                event.attendee_open_ids.append(user.open_id)
            added.append(
                {
                    "type": "user",
                    "attendee_id": "user_" + user.open_id.removeprefix("ou_"),
                    "user_id": user.open_id,
                    "rsvp_status": "needs_action",
                    "display_name": user.name,
                    "is_optional": False,
                }
            )
        self.record_write(request)
        return {"attendees": added}


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("text") or value.get("link") or "")
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def _number_condition(op: Any, wanted: list[str], value: Any) -> bool:
    try:
        target = float(wanted[0])
    except (IndexError, ValueError):
        raise ApiError(_INVALID_FILTER, "InvalidFilter: a number is expected") from None
    if not isinstance(value, int | float) or isinstance(value, bool):
        return op == "isNot"
    checks: dict[str, Callable[[float, float], bool]] = {
        "is": lambda a, b: a == b,
        "isNot": lambda a, b: a != b,
        "isGreater": lambda a, b: a > b,
        "isGreaterEqual": lambda a, b: a >= b,
        "isLess": lambda a, b: a < b,
        "isLessEqual": lambda a, b: a <= b,
    }
    check = checks.get(str(op))
    if check is None:
        raise ApiError(_INVALID_FILTER, f"InvalidFilter: {op} is not supported for numbers")
    return check(float(value), target)


def _highlight(text: str, terms: list[str]) -> str:
    """Wrap the first hit of each term in ``<h>...</h>``, as the search API marks hits."""
    for term in terms:
        at = text.casefold().find(term)
        if at >= 0 and term:
            end = at + len(term)
            text = f"{text[:at]}<h>{text[at:end]}</h>{text[end:]}"
    return text

"""Tools over Lark Base (bitable) tables: search, create, update and delete records."""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

from cachetools import TTLCache
from pydantic import Field, model_validator

from larkbot.agent.i18n import translate
from larkbot.agent.tools._common import (
    FIELD_NOT_FOUND_CODES,
    ToolInput,
    format_number,
    idempotency_key,
    parse_when,
    path_segment,
    resolve_table,
)
from larkbot.agent.tools._links import pages
from larkbot.agent.tools.base import InputT, Tool, ToolContext, ToolError, ToolResult
from larkbot.lark.client import LarkAPIError

__all__ = [
    "BaseFieldCache",
    "CreateBaseRecord",
    "CreateBaseRecordInput",
    "DeleteBaseRecord",
    "DeleteBaseRecordInput",
    "SearchBaseRecords",
    "SearchBaseRecordsInput",
    "UpdateBaseRecord",
    "UpdateBaseRecordInput",
]

_APP = "bitable/v1/apps/{app_token}/tables/{table_id}"
FIELDS_ROUTE = f"{_APP}/fields"
SEARCH_ROUTE = f"{_APP}/records/search"
RECORDS_ROUTE = f"{_APP}/records"
RECORD_ROUTE = f"{_APP}/records/{{record_id}}"

# Field types of the bitable API (``type`` of a field).
_TEXT, _NUMBER, _SELECT, _MULTI_SELECT, _DATE, _CHECKBOX = 1, 2, 3, 4, 5, 7
_PERSON, _PHONE, _URL = 11, 13, 15
_CREATED_TIME, _MODIFIED_TIME = 1001, 1002
_COMPUTED = frozenset({19, 20, 1001, 1002, 1003, 1004, 1005})  # lookup, formula, automatic

# Bitable has no full-text search, so a free-text query is matched here over at most this
# many records, fetched page by page with the filters Lark can apply applied server-side.
_SCAN_PAGE_SIZE = 200
_SCAN_LIMIT = 600
_SHOWN_IN_TEXT = 10
_OTHER_FIELDS_SHOWN = 3
_FIELD_PAGES = 5

# How long a table's field list is reused: long enough that a conversation does not fetch
# it for every request, short enough that a field added in Lark shows up soon. A name not
# in the cached list, or Lark saying a field is gone, refetches it at once.
_FIELD_LIST_TTL_SECONDS = 60.0
_FIELD_LISTS_KEPT = 256

# Field names people use for the same thing in Japanese, English and Chinese, compared
# without case, spaces, "_" or "-". A name matches a field of the table when exactly one
# field carries a name of the same group ("状態" finds "Status"); the table's own names
# always win.
_FIELD_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("name", "title", "名前", "氏名", "名称", "タイトル", "件名", "姓名", "名字", "标题", "標題"),
    ("company", "会社", "会社名", "企業", "企業名", "取引先", "公司", "公司名称", "企业"),
    ("status", "state", "状態", "ステータス", "状况", "状态", "狀態"),
    ("amount", "金額", "金额"),
    ("owner", "担当", "担当者", "所有者", "负责人", "負責人"),
    ("assignee", "担当", "担当者", "负责人", "負責人", "执行人", "執行人"),
    ("email", "mail", "メール", "メールアドレス", "邮箱", "郵箱", "电子邮件", "電子郵件"),
    ("phone", "tel", "telephone", "電話", "電話番号", "电话", "電話號碼", "电话号码"),
    ("last contact", "最終連絡日", "最終連絡", "最終接触日", "最后联系", "最近联系", "上次联系"),
    ("due", "due date", "deadline", "期限", "期日", "締切", "締め切り", "截止日期", "到期日"),
    ("priority", "優先度", "優先順位", "优先级", "優先級"),
    ("done", "completed", "完了", "済み", "完成", "已完成"),
    ("task", "タスク", "任务", "任務"),
    ("description", "説明", "描述", "说明", "說明"),
    ("notes", "note", "memo", "メモ", "備考", "备注", "備註"),
    ("address", "住所", "地址"),
    ("category", "type", "カテゴリ", "種類", "分类", "類別", "类型"),
    ("quantity", "qty", "数量", "數量"),
)
_TRUE = frozenset({"true", "yes", "y", "1", "on", "はい", "是", "✓", "✔"})
_FALSE = frozenset({"false", "no", "n", "0", "off", "いいえ", "否", "✗", ""})
_LIST_SPLIT = re.compile(r"\s*[,、，]\s*")

_TABLE_HELP = (
    "The table: a configured Base table name or one of its aliases, in any language "
    "(for example 'customers' or '顧客'), or a Base link "
    "(https://…/base/<app_token>?table=<table_id>). Leave it empty when giving app_token "
    "and table_id."
)
_APP_TOKEN_HELP = "The Base's app token (from its link: …/base/<app_token>), with table_id."
_TABLE_ID_HELP = "The table's id (tbl…, the table= part of a Base link), with app_token."


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    type: int
    is_primary: bool


@dataclass(frozen=True, slots=True)
class _Target:
    """The table a call is about: what to call it in answers, and where it lives."""

    label: str
    app_token: str
    table_id: str


def _normal(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", unicodedata.normalize("NFKC", name)).casefold()


def _synonym_groups() -> dict[str, frozenset[int]]:
    groups: dict[str, frozenset[int]] = {}
    for index, words in enumerate(_FIELD_SYNONYMS):
        for word in words:
            groups[_normal(word)] = groups.get(_normal(word), frozenset()) | {index}
    return groups


_SYNONYM_GROUPS = _synonym_groups()
# The group that names a record itself: a table without such a field means its primary one.
_RECORD_NAME_GROUPS = _SYNONYM_GROUPS[_normal("name")]


def _match_field(fields: list[_Field], name: str) -> _Field | None:
    """The field ``name`` means: its own name (any case or spacing), else a synonym."""
    wanted = name.strip().casefold()
    if found := next((f for f in fields if f.name.casefold() == wanted), None):
        return found
    normal = _normal(name)
    if found := next((f for f in fields if _normal(f.name) == normal), None):
        return found
    groups = _SYNONYM_GROUPS.get(normal, frozenset())
    candidates = [f for f in fields if _SYNONYM_GROUPS.get(_normal(f.name), frozenset()) & groups]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates and groups & _RECORD_NAME_GROUPS:
        return next((f for f in fields if f.is_primary), None)
    return None


class BaseFieldCache:
    """The field lists of Base tables, each reused for a short while.

    Shared by the Base tools of one registry. ``clock`` drives expiry (tests move it).
    """

    def __init__(
        self,
        ttl_seconds: float = _FIELD_LIST_TTL_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create an empty cache whose entries live ``ttl_seconds``."""
        self._lists: TTLCache[tuple[str, str], list[_Field]] = TTLCache(
            maxsize=_FIELD_LISTS_KEPT, ttl=ttl_seconds, timer=clock
        )

    def get(self, app_token: str, table_id: str) -> list[_Field] | None:
        """The cached field list of a table, or ``None``."""
        return self._lists.get((app_token, table_id))

    def put(self, app_token: str, table_id: str, fields: list[_Field]) -> None:
        """Remember the field list of a table."""
        self._lists[(app_token, table_id)] = fields

    def forget(self, app_token: str, table_id: str) -> None:
        """Drop a table's field list, so the next call fetches it again."""
        self._lists.pop((app_token, table_id), None)


def _period(now: datetime, date_range: str) -> tuple[datetime, datetime]:
    """The ``[start, end)`` of today, this week (from Monday) or this month, in ``now``'s zone."""
    tz = now.tzinfo
    today = now.date()
    if date_range == "today":
        first, last = today, today + timedelta(days=1)
    elif date_range == "this_week":
        first = today - timedelta(days=today.weekday())
        last = first + timedelta(days=7)
    else:
        first = today.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1)
    return _midnight(first, tz), _midnight(last, tz)


def _midnight(day: date, tz: tzinfo | None) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class _TableInput(ToolInput):
    """The table of a Base tool: a configured name, a Base link, or app_token + table_id."""

    table: str = Field("", description=_TABLE_HELP)
    app_token: str | None = Field(None, min_length=1, description=_APP_TOKEN_HELP)
    table_id: str | None = Field(None, min_length=1, description=_TABLE_ID_HELP)

    @model_validator(mode="after")
    def _one_table(self) -> Self:
        by_id = self.app_token is not None or self.table_id is not None
        if by_id and (self.app_token is None or self.table_id is None):
            raise ValueError("give app_token and table_id together")
        if by_id and self.table.strip():
            raise ValueError("give either table or app_token and table_id, not both")
        if not by_id and not self.table.strip():
            raise ValueError("give table (a name or a Base link), or app_token and table_id")
        return self


class SearchBaseRecordsInput(_TableInput):
    """Arguments of ``search_base_records``."""

    query: str = Field(
        "",
        description="Free text to look for in any text field of a record (case-insensitive; "
        "several words must all appear). Empty to list records.",
    )
    field_filters: dict[str, str] = Field(
        default_factory=dict,
        description="Exact conditions by field name, e.g. {'status': 'won'}. Text fields "
        "match when they contain the value; numbers, options, dates (YYYY-MM-DD) and "
        "checkboxes (true/false) must be equal.",
    )
    date_range: Literal["today", "this_week", "this_month"] | None = Field(
        None, description="Keep only records whose date field falls in this period."
    )
    limit: int = Field(20, ge=1, le=100, description="How many records to return at most.")


class CreateBaseRecordInput(_TableInput):
    """Arguments of ``create_base_record``."""

    fields: dict[str, Any] = Field(
        min_length=1,
        description="Field name -> value. Dates as YYYY-MM-DD or ISO date-time, numbers as "
        "numbers, options as their label, people as open_ids (ou_...).",
    )


class UpdateBaseRecordInput(_TableInput):
    """Arguments of ``update_base_record``."""

    record_id: str = Field(min_length=1, description="The record's id (rec...), from a search.")
    fields: dict[str, Any] = Field(
        min_length=1, description="Only the fields to change: field name -> new value."
    )


class DeleteBaseRecordInput(_TableInput):
    """Arguments of ``delete_base_record``."""

    record_id: str = Field(min_length=1, description="The record's id (rec...), from a search.")


class _BaseTool(Tool[InputT]):
    """What the Base tools share: the field list, value conversion and rendering."""

    def __init__(self, *, field_cache: BaseFieldCache | None = None) -> None:
        """Create the tool; Base tools built together share one ``field_cache``."""
        self._field_cache = field_cache or BaseFieldCache()

    def _target(self, ctx: ToolContext, args: _TableInput) -> _Target:
        """Resolve the table named by ``args``: ids, a Base link, or a configured name."""
        if args.app_token is not None and args.table_id is not None:
            return self._by_ids(ctx, args.app_token.strip(), args.table_id.strip())
        table = args.table.strip()
        if "://" in table or table.startswith("www.") or "/base/" in table:
            ids = _base_link_ids(table)
            if ids is None:
                raise ToolError(translate("bad_base_link", ctx.language, link=table))
            return self._by_ids(ctx, *ids)
        name, settings = resolve_table(ctx, table)
        return _Target(name, str(settings.app_token), str(settings.table_id))

    @staticmethod
    def _by_ids(ctx: ToolContext, app_token: str, table_id: str) -> _Target:
        # A configured table keeps its name in answers, however it was reached.
        for name, settings in ctx.bases.items():
            if (settings.app_token, settings.table_id) == (app_token, table_id):
                return _Target(name, app_token, table_id)
        return _Target(table_id, app_token, table_id)

    async def _fields(
        self, ctx: ToolContext, app_token: str, table_id: str, *, fresh: bool = False
    ) -> tuple[list[_Field], bool]:
        """The table's fields, and whether they came from the cache."""
        if not fresh and (cached := self._field_cache.get(app_token, table_id)) is not None:
            return cached, True
        fields = await self._fetch_fields(ctx, app_token, table_id)
        self._field_cache.put(app_token, table_id, fields)
        return fields, False

    async def _fields_named(
        self, ctx: ToolContext, table: str, app_token: str, table_id: str, names: Iterable[str]
    ) -> tuple[list[_Field], dict[str, _Field]]:
        """The table's fields and the field each of ``names`` means.

        A name missing from a cached list may be a field added since: the list is fetched
        again once before the name is refused.
        """
        names = list(names)
        fields, cached = await self._fields(ctx, app_token, table_id)
        if cached and any(_match_field(fields, name) is None for name in names):
            fields, _ = await self._fields(ctx, app_token, table_id, fresh=True)
        return fields, {name: self._field(ctx, table, fields, name) for name in names}

    async def _request(
        self, ctx: ToolContext, app_token: str, table_id: str, *args: Any, **kwargs: Any
    ) -> Any:
        """``ctx.client.request`` for a call that names fields.

        Lark saying a field does not exist means the cached list is out of date: it is
        dropped, so the next call fetches it again.
        """
        try:
            return await ctx.client.request(*args, **kwargs)
        except LarkAPIError as exc:
            if exc.code in FIELD_NOT_FOUND_CODES:
                self._field_cache.forget(app_token, table_id)
            raise

    async def _fetch_fields(self, ctx: ToolContext, app_token: str, table_id: str) -> list[_Field]:
        path = f"bitable/v1/apps/{path_segment(app_token)}/tables/{path_segment(table_id)}/fields"
        fields: list[_Field] = []
        params: dict[str, Any] = {"page_size": 100}
        async for data in pages(ctx, path, route=FIELDS_ROUTE, params=params, limit=_FIELD_PAGES):
            for item in data.get("items") or []:
                fields.append(
                    _Field(
                        name=str(item.get("field_name", "")),
                        type=int(item.get("type") or 0),
                        is_primary=bool(item.get("is_primary")),
                    )
                )
        return fields

    def _field(self, ctx: ToolContext, table: str, fields: list[_Field], name: str) -> _Field:
        if (field := _match_field(fields, name)) is not None:
            return field
        raise ToolError(
            translate(
                "unknown_field",
                ctx.language,
                table=table,
                field=name,
                fields=", ".join(f.name for f in fields),
            )
        )

    def _to_lark(self, ctx: ToolContext, field: _Field, value: Any) -> Any:
        """Convert a value given by a user or a model to what bitable expects for ``field``."""
        lang = ctx.language

        def bad(kind: str) -> ToolError:
            return ToolError(
                translate(
                    "bad_value", lang, field=field.name, value=value, kind=translate(kind, lang)
                )
            )

        if field.type in _COMPUTED:
            raise ToolError(translate("read_only_field", lang, field=field.name))
        if value is None:
            return None
        if field.type == _NUMBER:
            if isinstance(value, bool):
                raise bad("kind_number")
            if isinstance(value, int | float):
                return value
            text = re.sub(r"[,\s¥$€円元]", "", str(value))
            try:
                number = float(text)
            except ValueError:
                raise bad("kind_number") from None
            return int(number) if number.is_integer() else number
        if field.type == _DATE:
            when = parse_when(value, ctx.timezone)
            if when is None:
                raise bad("kind_date")
            return int(when.timestamp() * 1000)
        if field.type == _CHECKBOX:
            if isinstance(value, bool):
                return value
            text = str(value).strip().casefold()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise bad("kind_checkbox")
        if field.type == _MULTI_SELECT:
            items = value if isinstance(value, list) else _LIST_SPLIT.split(str(value).strip())
            if not all(isinstance(item, str | int | float) for item in items):
                raise bad("kind_options")
            return [str(item) for item in items if str(item)]
        if field.type == _PERSON:
            items = value if isinstance(value, list) else _LIST_SPLIT.split(str(value).strip())
            people: list[dict[str, str]] = []
            for item in items:
                open_id = item.get("id") if isinstance(item, dict) else item
                if not isinstance(open_id, str) or not open_id.startswith("ou_"):
                    raise bad("kind_person")
                people.append({"id": open_id})
            return people
        if field.type == _URL:
            if isinstance(value, dict) and value.get("link"):
                return {"link": str(value["link"]), "text": str(value.get("text") or value["link"])}
            if not isinstance(value, str) or not value.strip():
                raise bad("kind_link")
            return {"link": value.strip(), "text": value.strip()}
        if field.type in (_TEXT, _SELECT, _PHONE):
            return _plain_text(value) if isinstance(value, list) else str(value)
        return value

    def _record(self, fields: list[_Field], item: dict[str, Any], tz: tzinfo) -> dict[str, Any]:
        """Return a record as ``{"record_id", "fields"}`` with plain values, in field order."""
        values: dict[str, Any] = item.get("fields") or {}
        plain: dict[str, Any] = {}
        for field in fields:
            if _is_empty(values.get(field.name)):
                continue
            plain[field.name] = _plain(field.type, values[field.name], tz)
        # Fields the listing did not describe (added since) are still shown.
        for name, value in values.items():
            if name not in plain and not _is_empty(value):
                plain[name] = _plain(0, value, tz)
        return {"record_id": item.get("record_id", ""), "fields": plain}

    def _line(
        self, fields: list[_Field], item: dict[str, Any], tz: tzinfo, first: _Field | None = None
    ) -> str:
        """Render one record: primary field, then ``first`` when given, then a few others."""
        values: dict[str, Any] = item.get("fields") or {}
        primary = next((f for f in fields if f.is_primary), fields[0] if fields else None)
        head = _display(primary.type, values.get(primary.name), tz) if primary else ""
        others: list[str] = []
        ordered = fields if first is None else [first, *(f for f in fields if f is not first)]
        for field in ordered:
            if field is primary or _is_empty(values.get(field.name)):
                continue
            others.append(f"{field.name}: {_display(field.type, values[field.name], tz)}")
            if len(others) == _OTHER_FIELDS_SHOWN:
                break
        line = f"- **{head or '—'}** ({item.get('record_id', '')})"
        return f"{line} — {', '.join(others)}" if others else line

    @staticmethod
    def _records_path(app_token: str, table_id: str) -> str:
        return f"bitable/v1/apps/{path_segment(app_token)}/tables/{path_segment(table_id)}/records"


class SearchBaseRecords(
    _BaseTool[SearchBaseRecordsInput],
    name="search_base_records",
    description=(
        "Search or list records of a Lark Base (bitable) table, such as customers or tasks. Use it "
        "whenever the user asks what is in a table, looks for a record, or wants records of today, "
        "this week or this month. 'table' is a configured table name or alias, or a Base link (or "
        "give 'app_token' and 'table_id' of any table the app can read); 'query' is free text "
        "matched in every text field; 'field_filters' are exact conditions by field name; "
        "'date_range' filters on the table's date field. Returns the matching records with their "
        "record_id (needed to update or delete one) and their fields."
    ),
    scopes=("bitable:app:readonly",),
):
    """Search or list the records of a Base table."""

    async def run(self, ctx: ToolContext, args: SearchBaseRecordsInput) -> ToolResult:
        """Search the table; filters Lark understands are applied server-side."""
        target = self._target(ctx, args)
        table, app_token, table_id = target.label, target.app_token, target.table_id
        fields, by_name = await self._fields_named(
            ctx, table, app_token, table_id, args.field_filters
        )
        conditions: list[dict[str, Any]] = []
        local_filters: list[tuple[_Field, str]] = []
        for name, value in args.field_filters.items():
            field = by_name[name]
            condition = self._condition(ctx, field, value)
            if condition is None:
                local_filters.append((field, value))
            else:
                conditions.append(condition)
        date_field: _Field | None = None
        period: tuple[_Field, int, int] | None = None
        if args.date_range is not None:
            date_field = next((f for f in fields if f.type == _DATE), None) or next(
                (f for f in fields if f.type == _CREATED_TIME), None
            )
            if date_field is None:
                raise ToolError(translate("no_date_field", ctx.language, table=table))
            start, end = _period(ctx.now(), args.date_range)
            period = (date_field, _millis(start), _millis(end))
            conditions.extend(_around(date_field, start, end))
        terms = [t.casefold() for t in args.query.split()]
        scan = bool(terms or local_filters or period)
        body: dict[str, Any] = {"automatic_fields": False}
        if conditions:
            body["filter"] = {"conjunction": "and", "conditions": conditions}
        path = f"{self._records_path(app_token, table_id)}/search"
        matches: list[dict[str, Any]] = []
        scanned = 0
        total = 0
        scan_limited = False
        params: dict[str, Any] = {"page_size": _SCAN_PAGE_SIZE if scan else args.limit}
        tz = ctx.timezone
        while True:
            data = await self._request(
                ctx, app_token, table_id, "POST", path, route=SEARCH_ROUTE, params=params, json=body
            )
            items = data.get("items") or []
            scanned += len(items)
            if not scan:
                matches = items
                total = int(data.get("total") or len(items))
                break
            matches.extend(
                item for item in items if _matches(fields, item, terms, local_filters, period, tz)
            )
            more = bool(data.get("has_more")) and bool(data.get("page_token"))
            if not more:
                break
            if scanned >= _SCAN_LIMIT:
                scan_limited = True
                break
            params = {"page_size": _SCAN_PAGE_SIZE, "page_token": data["page_token"]}
        if scan:
            total = len(matches)
        returned = matches[: args.limit]
        records = [self._record(fields, item, tz) for item in returned]
        result_data = {
            "table": table,
            "total": total,
            "records": records,
            "scan_limited": scan_limited,
        }
        if not returned:
            text = translate("no_records", ctx.language, table=table)
        else:
            shown = returned[:_SHOWN_IN_TEXT]
            lines = [
                translate("records_found", ctx.language, table=table, total=total, count=total)
            ]
            # The date a period was asked about is worth showing before other fields.
            lines.extend(self._line(fields, item, tz, first=date_field) for item in shown)
            if total > len(shown):
                lines.append(translate("and_more", ctx.language, count=total - len(shown)))
            text = "\n".join(lines)
        if scan_limited:
            text = f"{text}\n{translate('scan_limited', ctx.language, scanned=scanned)}"
        return ToolResult(ok=True, data=result_data, text=text)

    def _condition(self, ctx: ToolContext, field: _Field, value: str) -> dict[str, Any] | None:
        """Return the server-side condition for ``field == value``, or None to match locally."""
        if field.type in (_TEXT, _PHONE, _URL, _MULTI_SELECT):
            return {"field_name": field.name, "operator": "contains", "value": [value]}
        if field.type in (_SELECT, _CHECKBOX, _NUMBER):
            converted = self._to_lark(ctx, field, value)
            text = str(converted).lower() if isinstance(converted, bool) else str(converted)
            return {"field_name": field.name, "operator": "is", "value": [text]}
        if field.type == _DATE:
            millis = self._to_lark(ctx, field, value)
            return {"field_name": field.name, "operator": "is", "value": ["ExactDate", str(millis)]}
        if field.type == _PERSON and value.strip().startswith("ou_"):
            return {"field_name": field.name, "operator": "is", "value": [value.strip()]}
        return None


class _WriteTool(_BaseTool[InputT], write=True, scopes=("bitable:app",)):
    """What the Base write tools share: the write scope, the writable check and the write."""

    def _writable_target(self, ctx: ToolContext, args: _TableInput) -> _Target:
        """Resolve the table and check that writes may go to its Base.

        The tables configured under ``bases`` are always writable; other Bases only when
        ``tools.allowed_bases`` is unset or lists them.
        """
        target = self._target(ctx, args)
        if ctx.allowed_bases is None or target.app_token in ctx.allowed_bases:
            return target
        if any(settings.app_token == target.app_token for settings in ctx.bases.values()):
            return target
        raise ToolError(translate("base_not_allowed", ctx.language, app_token=target.app_token))

    async def _converted(
        self, ctx: ToolContext, table: str, app_token: str, table_id: str, values: dict[str, Any]
    ) -> tuple[list[_Field], dict[str, Any]]:
        fields, by_name = await self._fields_named(ctx, table, app_token, table_id, values)
        converted = {
            by_name[name].name: self._to_lark(ctx, by_name[name], v) for name, v in values.items()
        }
        return fields, converted

    async def _write_fields(
        self,
        ctx: ToolContext,
        args: CreateBaseRecordInput | UpdateBaseRecordInput,
        record_id: str | None,
    ) -> ToolResult:
        """Write ``args.fields`` to a new record (``record_id`` None) or an existing one.

        A retried turn reuses the same client token, so the platform applies it once.
        """
        target = self._writable_target(ctx, args)
        table, app_token, table_id = target.label, target.app_token, target.table_id
        fields, converted = await self._converted(ctx, table, app_token, table_id, args.fields)
        path = self._records_path(app_token, table_id)
        if record_id is not None:
            path = f"{path}/{path_segment(record_id)}"
        data = await self._request(
            ctx,
            app_token,
            table_id,
            "POST" if record_id is None else "PUT",
            path,
            route=RECORDS_ROUTE if record_id is None else RECORD_ROUTE,
            params={"client_token": idempotency_key(ctx, self.name, args)},
            json={"fields": converted},
            write=True,
        )
        record = data.get("record") or {}
        summary = self._summary(fields, record, set(converted), ctx.timezone)
        done_key = "record_created" if record_id is None else "record_updated"
        return ToolResult(
            ok=True,
            data={"table": table, **self._record(fields, record, ctx.timezone)},
            text=translate(done_key, ctx.language, table=table, summary=summary),
        )

    def _summary(
        self, fields: list[_Field], record: dict[str, Any], written: set[str], tz: tzinfo
    ) -> str:
        values: dict[str, Any] = record.get("fields") or {}
        primary = next((f for f in fields if f.is_primary), fields[0] if fields else None)
        parts = [
            f"{f.name}: {_display(f.type, values[f.name], tz)}"
            for f in fields
            if f.name in written and f is not primary and not _is_empty(values.get(f.name))
        ]
        head = _display(primary.type, values.get(primary.name), tz) if primary else ""
        line = f"**{head or '—'}** ({record.get('record_id', '')})"
        return f"{line} — {', '.join(parts)}" if parts else line


class CreateBaseRecord(
    _WriteTool[CreateBaseRecordInput],
    name="create_base_record",
    # Lark makes one record per client_token (the call's idempotency key).
    idempotent=True,
    description=(
        "Create a new record in a Lark Base (bitable) table (a configured name, a Base link, or "
        "'app_token' and 'table_id'). Use it when the user asks to add or register something (a "
        "customer, a task...). 'fields' maps field names to values; unknown field names are "
        "refused with the list of valid ones. Returns the new record with its record_id."
    ),
):
    """Add a record to a Base table."""

    async def preview(
        self, ctx: ToolContext, args: CreateBaseRecordInput
    ) -> list[tuple[str, str | None, str]]:
        """The new record's fields, under the table's own field names."""
        target = self._writable_target(ctx, args)
        _, by_name = await self._fields_named(
            ctx, target.label, target.app_token, target.table_id, args.fields
        )
        return [(by_name[name].name, None, str(value)) for name, value in args.fields.items()]

    async def run(self, ctx: ToolContext, args: CreateBaseRecordInput) -> ToolResult:
        """Create the record; a retried turn reuses the same client token."""
        return await self._write_fields(ctx, args, record_id=None)


class UpdateBaseRecord(
    _WriteTool[UpdateBaseRecordInput],
    name="update_base_record",
    # Not idempotent: a rerun of a dead attempt (up to an hour later) would overwrite what
    # others changed in the record since, so such an attempt is settled as unknown instead.
    description=(
        "Update fields of an existing record in a Lark Base (bitable) table (a configured name, a "
        "Base link, or 'app_token' and 'table_id'). Use it when the user asks to change, correct "
        "or set something on a record; find the record_id first with search_base_records. Only the "
        "given fields change."
    ),
):
    """Change fields of a Base record."""

    async def preview(
        self, ctx: ToolContext, args: UpdateBaseRecordInput
    ) -> list[tuple[str, str | None, str]]:
        """Each field to change, with its value read from Lark just now."""
        target = self._writable_target(ctx, args)
        app_token, table_id = target.app_token, target.table_id
        _, by_name = await self._fields_named(ctx, target.label, app_token, table_id, args.fields)
        data = await self._request(
            ctx,
            app_token,
            table_id,
            "GET",
            f"{self._records_path(app_token, table_id)}/{path_segment(args.record_id.strip())}",
            route=RECORD_ROUTE,
        )
        current: dict[str, Any] = (data.get("record") or {}).get("fields") or {}
        rows: list[tuple[str, str | None, str]] = []
        for name, value in args.fields.items():
            field = by_name[name]
            before = current.get(field.name)
            shown = "—" if _is_empty(before) else _display(field.type, before, ctx.timezone)
            rows.append((field.name, shown, str(value)))
        return rows

    async def run(self, ctx: ToolContext, args: UpdateBaseRecordInput) -> ToolResult:
        """Update the record with the converted field values."""
        return await self._write_fields(ctx, args, record_id=args.record_id.strip())


class DeleteBaseRecord(
    _WriteTool[DeleteBaseRecordInput],
    name="delete_base_record",
    description=(
        "Delete a record from a Lark Base (bitable) table (a configured name, a Base link, or "
        "'app_token' and 'table_id'). Use it only when the user clearly asks to delete or remove a "
        "specific record; find its record_id first with search_base_records. This cannot be undone."
    ),
):
    """Delete a Base record."""

    async def run(self, ctx: ToolContext, args: DeleteBaseRecordInput) -> ToolResult:
        """Delete the record."""
        target = self._writable_target(ctx, args)
        table, app_token, table_id = target.label, target.app_token, target.table_id
        record_id = args.record_id.strip()
        data = await ctx.client.request(
            "DELETE",
            f"{self._records_path(app_token, table_id)}/{path_segment(record_id)}",
            route=RECORD_ROUTE,
            write=True,
        )
        deleted_id = str(data.get("record_id") or record_id)
        return ToolResult(
            ok=True,
            data={
                "table": table,
                "record_id": deleted_id,
                "deleted": bool(data.get("deleted", True)),
            },
            text=translate("record_deleted", ctx.language, table=table, record_id=deleted_id),
        )


def _around(field: _Field, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Server-side conditions keeping a little more than ``[start, end)`` on ``field``.

    Lark compares dates by whole days in the tenant's own time zone, which need not be
    the workspace zone the period is in; two days of margin either side cover any pair of
    zones, and :func:`_matches` then keeps exactly the period.
    """
    margin = timedelta(days=2)
    return [
        {
            "field_name": field.name,
            "operator": "isGreater",
            "value": ["ExactDate", str(_millis(start - margin))],
        },
        {
            "field_name": field.name,
            "operator": "isLess",
            "value": ["ExactDate", str(_millis(end + margin))],
        },
    ]


def _matches(
    fields: list[_Field],
    item: dict[str, Any],
    terms: list[str],
    local_filters: list[tuple[_Field, str]],
    period: tuple[_Field, int, int] | None,
    tz: tzinfo,
) -> bool:
    """Whether a scanned record is in the period, passes the filters and has the terms."""
    values: dict[str, Any] = item.get("fields") or {}
    if period is not None:
        field, start, end = period
        moment = values.get(field.name)
        if isinstance(moment, bool) or not isinstance(moment, int | float):
            return False
        if not start <= moment < end:
            return False
    types = {f.name: f.type for f in fields}
    for field, wanted in local_filters:
        if wanted.casefold() not in _display(field.type, values.get(field.name), tz).casefold():
            return False
    if not terms:
        return True
    haystack = " ".join(
        _display(types.get(name, 0), value, tz).casefold()
        for name, value in values.items()
        if not _is_empty(value)
    )
    return all(term in haystack for term in terms)


def _plain(field_type: int, value: Any, tz: tzinfo) -> Any:
    """Return a compact JSON value for the model (dates as ISO text in ``tz``, text flattened)."""
    if field_type in (_DATE, _CREATED_TIME, _MODIFIED_TIME) and isinstance(value, int | float):
        return _date_text(value, tz)
    if isinstance(value, list):
        if all(isinstance(item, dict) for item in value):
            return _plain_text(value)
        return [str(item) for item in value]
    if isinstance(value, dict):
        return str(value.get("text") or value.get("link") or value.get("name") or value)
    return value


def _display(field_type: int, value: Any, tz: tzinfo) -> str:
    """Return ``value`` as a short readable string."""
    plain = _plain(field_type, value, tz)
    if isinstance(plain, bool):
        return "✓" if plain else "✗"
    if isinstance(plain, int | float):
        return format_number(plain)
    if isinstance(plain, list):
        return ", ".join(plain)
    return str(plain)


def _date_text(millis: float, tz: tzinfo) -> str:
    when = datetime.fromtimestamp(millis / 1000, tz=UTC).astimezone(tz)
    if (when.hour, when.minute) == (0, 0):
        return when.date().isoformat()
    return when.strftime("%Y-%m-%d %H:%M")


def _base_link_ids(link: str) -> tuple[str, str] | None:
    """Return ``(app_token, table_id)`` of a Base table link, or None if it is not one.

    Base links read ``https://<tenant>.feishu.cn/base/<app_token>?table=<table_id>``
    (often with ``&view=…``); the host varies by tenant and deployment, so only the path
    and the query are read.
    """
    parts = urlsplit(link if "://" in link else f"https://{link}")
    segments = [segment for segment in parts.path.split("/") if segment]
    if "base" not in segments or segments.index("base") + 1 >= len(segments):
        return None
    app_token = segments[segments.index("base") + 1]
    table_ids = parse_qs(parts.query).get("table") or []
    if not app_token or not table_ids or not table_ids[0].strip():
        return None
    return app_token, table_ids[0].strip()


def _plain_text(value: list[Any]) -> str:
    """Flatten bitable's rich text segments or people (lists of dicts) to plain text."""
    parts: list[str] = []
    for item in value:
        if isinstance(item, dict):
            parts.append(str(item.get("text") or item.get("name") or item.get("link") or ""))
        else:
            parts.append(str(item))
    joiner = "" if value and isinstance(value[0], dict) and "type" in value[0] else ", "
    return joiner.join(p for p in parts if p)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}

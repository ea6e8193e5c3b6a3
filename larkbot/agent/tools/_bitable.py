"""Tools over Lark Base (bitable) tables: search, create, update and delete records."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, ClassVar, Literal, Self
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from larkbot.agent.tools._common import (
    DEFAULT_TIMEZONE,
    format_number,
    idempotency_key,
    parse_when,
    path_segment,
    resolve_table,
)
from larkbot.agent.tools._messages import say
from larkbot.agent.tools.base import Tool, ToolContext, ToolError, ToolResult

__all__ = [
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

_DATE_RANGES: dict[str, str] = {
    "today": "Today",
    "this_week": "CurrentWeek",
    "this_month": "CurrentMonth",
}
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


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _TableInput(_Input):
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


class _BaseTool(Tool):
    """What the Base tools share: the field list, value conversion and rendering."""

    def __init__(self, *, timezone: tzinfo = DEFAULT_TIMEZONE) -> None:
        self._tz = timezone

    def _target(self, ctx: ToolContext, args: _TableInput) -> _Target:
        """Resolve the table named by ``args``: ids, a Base link, or a configured name."""
        if args.app_token is not None and args.table_id is not None:
            return self._by_ids(ctx, args.app_token.strip(), args.table_id.strip())
        table = args.table.strip()
        if "://" in table or table.startswith("www.") or "/base/" in table:
            ids = _base_link_ids(table)
            if ids is None:
                raise ToolError(say(ctx.language, "bad_base_link", link=table))
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

    async def _fields(self, ctx: ToolContext, app_token: str, table_id: str) -> list[_Field]:
        path = f"bitable/v1/apps/{path_segment(app_token)}/tables/{path_segment(table_id)}/fields"
        fields: list[_Field] = []
        params: dict[str, Any] = {"page_size": 100}
        for _ in range(_FIELD_PAGES):
            data = await ctx.client.request("GET", path, route=FIELDS_ROUTE, params=params)
            for item in data.get("items") or []:
                fields.append(
                    _Field(
                        name=str(item.get("field_name", "")),
                        type=int(item.get("type") or 0),
                        is_primary=bool(item.get("is_primary")),
                    )
                )
            if not data.get("has_more") or not data.get("page_token"):
                break
            params = {"page_size": 100, "page_token": data["page_token"]}
        return fields

    def _field(self, ctx: ToolContext, table: str, fields: list[_Field], name: str) -> _Field:
        wanted = name.strip().casefold()
        for field in fields:
            if field.name.casefold() == wanted:
                return field
        raise ToolError(
            say(
                ctx.language,
                "unknown_field",
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
                say(lang, "bad_value", field=field.name, value=value, kind=say(lang, kind))
            )

        if field.type in _COMPUTED:
            raise ToolError(say(lang, "read_only_field", field=field.name))
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
            when = parse_when(value, self._tz)
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

    def _plain(self, field_type: int, value: Any) -> Any:
        """Return a compact JSON value for the model (dates as ISO text, text flattened)."""
        if field_type in (_DATE, _CREATED_TIME, _MODIFIED_TIME) and isinstance(value, int | float):
            return self._date_text(value)
        if isinstance(value, list):
            if all(isinstance(item, dict) for item in value):
                return _plain_text(value)
            return [str(item) for item in value]
        if isinstance(value, dict):
            return str(value.get("text") or value.get("link") or value.get("name") or value)
        return value

    def _display(self, field_type: int, value: Any) -> str:
        """Return ``value`` as a short readable string."""
        plain = self._plain(field_type, value)
        if isinstance(plain, bool):
            return "✓" if plain else "✗"
        if isinstance(plain, int | float):
            return format_number(plain)
        if isinstance(plain, list):
            return ", ".join(plain)
        return str(plain)

    def _date_text(self, millis: float) -> str:
        when = datetime.fromtimestamp(millis / 1000, tz=UTC).astimezone(self._tz)
        if (when.hour, when.minute) == (0, 0):
            return when.date().isoformat()
        return when.strftime("%Y-%m-%d %H:%M")

    def _record(self, fields: list[_Field], item: dict[str, Any]) -> dict[str, Any]:
        """Return a record as ``{"record_id", "fields"}`` with plain values, in field order."""
        values: dict[str, Any] = item.get("fields") or {}
        plain: dict[str, Any] = {}
        for field in fields:
            if _is_empty(values.get(field.name)):
                continue
            plain[field.name] = self._plain(field.type, values[field.name])
        # Fields the listing did not describe (added since) are still shown.
        for name, value in values.items():
            if name not in plain and not _is_empty(value):
                plain[name] = self._plain(0, value)
        return {"record_id": item.get("record_id", ""), "fields": plain}

    def _line(self, fields: list[_Field], item: dict[str, Any], first: _Field | None = None) -> str:
        """Render one record: primary field, then ``first`` when given, then a few others."""
        values: dict[str, Any] = item.get("fields") or {}
        primary = next((f for f in fields if f.is_primary), fields[0] if fields else None)
        head = self._display(primary.type, values.get(primary.name)) if primary else ""
        others: list[str] = []
        ordered = fields if first is None else [first, *(f for f in fields if f is not first)]
        for field in ordered:
            if field is primary or _is_empty(values.get(field.name)):
                continue
            others.append(f"{field.name}: {self._display(field.type, values[field.name])}")
            if len(others) == _OTHER_FIELDS_SHOWN:
                break
        line = f"- **{head or '—'}** ({item.get('record_id', '')})"
        return f"{line} — {', '.join(others)}" if others else line

    @staticmethod
    def _records_path(app_token: str, table_id: str) -> str:
        return f"bitable/v1/apps/{path_segment(app_token)}/tables/{path_segment(table_id)}/records"


class SearchBaseRecords(_BaseTool):
    """Find records in a Base table."""

    name: ClassVar[str] = "search_base_records"
    description: ClassVar[str] = (
        "Search or list records of a Lark Base (bitable) table, such as customers or tasks. "
        "Use it whenever the user asks what is in a table, looks for a record, or wants "
        "records of today, this week or this month. 'table' is a configured table name or "
        "alias, or a Base link (or give 'app_token' and 'table_id' of any table the app can "
        "read); 'query' is free text matched in every text field; 'field_filters' "
        "are exact conditions by field name; 'date_range' filters on the table's date field. "
        "Returns the matching records with their record_id (needed to update or delete one) "
        "and their fields."
    )
    input_model: ClassVar[type[BaseModel]] = SearchBaseRecordsInput
    write: ClassVar[bool] = False
    scopes: ClassVar[tuple[str, ...]] = ("bitable:app:readonly",)

    async def run(self, ctx: ToolContext, args: BaseModel) -> ToolResult:
        """Search the table; filters Lark understands are applied server-side."""
        assert isinstance(args, SearchBaseRecordsInput)
        target = self._target(ctx, args)
        table, app_token, table_id = target.label, target.app_token, target.table_id
        fields = await self._fields(ctx, app_token, table_id)
        conditions: list[dict[str, Any]] = []
        local_filters: list[tuple[_Field, str]] = []
        for name, value in args.field_filters.items():
            field = self._field(ctx, table, fields, name)
            condition = self._condition(ctx, field, value)
            if condition is None:
                local_filters.append((field, value))
            else:
                conditions.append(condition)
        date_field: _Field | None = None
        if args.date_range is not None:
            date_field = next((f for f in fields if f.type == _DATE), None) or next(
                (f for f in fields if f.type == _CREATED_TIME), None
            )
            if date_field is None:
                raise ToolError(say(ctx.language, "no_date_field", table=table))
            conditions.append(
                {
                    "field_name": date_field.name,
                    "operator": "is",
                    "value": [_DATE_RANGES[args.date_range]],
                }
            )
        terms = [t.casefold() for t in args.query.split()]
        scan = bool(terms or local_filters)
        body: dict[str, Any] = {"automatic_fields": False}
        if conditions:
            body["filter"] = {"conjunction": "and", "conditions": conditions}
        path = f"{self._records_path(app_token, table_id)}/search"
        matches: list[dict[str, Any]] = []
        scanned = 0
        total = 0
        scan_limited = False
        params: dict[str, Any] = {"page_size": _SCAN_PAGE_SIZE if scan else args.limit}
        while True:
            data = await ctx.client.request(
                "POST", path, route=SEARCH_ROUTE, params=params, json=body
            )
            items = data.get("items") or []
            scanned += len(items)
            if not scan:
                matches = items
                total = int(data.get("total") or len(items))
                break
            matches.extend(
                item for item in items if self._matches(fields, item, terms, local_filters)
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
        records = [self._record(fields, item) for item in returned]
        result_data = {
            "table": table,
            "total": total,
            "records": records,
            "scan_limited": scan_limited,
        }
        if not returned:
            text = say(ctx.language, "no_records", table=table)
        else:
            shown = returned[:_SHOWN_IN_TEXT]
            lines = [say(ctx.language, "records_found", table=table, total=total, count=total)]
            # The date a period was asked about is worth showing before other fields.
            lines.extend(self._line(fields, item, first=date_field) for item in shown)
            if total > len(shown):
                lines.append(say(ctx.language, "and_more", count=total - len(shown)))
            text = "\n".join(lines)
        if scan_limited:
            text = f"{text}\n{say(ctx.language, 'scan_limited', scanned=scanned)}"
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

    def _matches(
        self,
        fields: list[_Field],
        item: dict[str, Any],
        terms: list[str],
        local_filters: list[tuple[_Field, str]],
    ) -> bool:
        values: dict[str, Any] = item.get("fields") or {}
        types = {f.name: f.type for f in fields}
        for field, wanted in local_filters:
            if (
                wanted.casefold()
                not in self._display(field.type, values.get(field.name)).casefold()
            ):
                return False
        if not terms:
            return True
        haystack = " ".join(
            self._display(types.get(name, 0), value).casefold()
            for name, value in values.items()
            if not _is_empty(value)
        )
        return all(term in haystack for term in terms)


class _WriteTool(_BaseTool):
    write: ClassVar[bool] = True
    scopes: ClassVar[tuple[str, ...]] = ("bitable:app",)

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
        raise ToolError(say(ctx.language, "base_not_allowed", app_token=target.app_token))

    async def _converted(
        self, ctx: ToolContext, table: str, app_token: str, table_id: str, values: dict[str, Any]
    ) -> tuple[list[_Field], dict[str, Any]]:
        fields = await self._fields(ctx, app_token, table_id)
        converted: dict[str, Any] = {}
        for name, value in values.items():
            field = self._field(ctx, table, fields, name)
            converted[field.name] = self._to_lark(ctx, field, value)
        return fields, converted

    async def _write_fields(
        self,
        ctx: ToolContext,
        args: _TableInput,
        *,
        values: dict[str, Any],
        method: str,
        record_id: str | None,
        done_key: str,
    ) -> ToolResult:
        """Write ``values`` to a new record (``record_id`` None) or an existing one.

        A retried turn reuses the same client token, so the platform applies it once.
        """
        target = self._writable_target(ctx, args)
        table, app_token, table_id = target.label, target.app_token, target.table_id
        fields, converted = await self._converted(ctx, table, app_token, table_id, values)
        path = self._records_path(app_token, table_id)
        if record_id is not None:
            path = f"{path}/{path_segment(record_id)}"
        data = await ctx.client.request(
            method,
            path,
            route=RECORDS_ROUTE if record_id is None else RECORD_ROUTE,
            params={"client_token": idempotency_key(ctx, self.name, args)},
            json={"fields": converted},
            write=True,
        )
        record = data.get("record") or {}
        summary = self._summary(fields, record, set(converted))
        return ToolResult(
            ok=True,
            data={"table": table, **self._record(fields, record)},
            text=say(ctx.language, done_key, table=table, summary=summary),
        )

    def _summary(self, fields: list[_Field], record: dict[str, Any], written: set[str]) -> str:
        values: dict[str, Any] = record.get("fields") or {}
        primary = next((f for f in fields if f.is_primary), fields[0] if fields else None)
        parts = [
            f"{f.name}: {self._display(f.type, values[f.name])}"
            for f in fields
            if f.name in written and f is not primary and not _is_empty(values.get(f.name))
        ]
        head = self._display(primary.type, values.get(primary.name)) if primary else ""
        line = f"**{head or '—'}** ({record.get('record_id', '')})"
        return f"{line} — {', '.join(parts)}" if parts else line


class CreateBaseRecord(_WriteTool):
    """Add a record to a Base table."""

    name: ClassVar[str] = "create_base_record"
    description: ClassVar[str] = (
        "Create a new record in a Lark Base (bitable) table (a configured name, a Base link, "
        "or 'app_token' and 'table_id'). Use it when the user asks to add or register "
        "something (a customer, a task...). 'fields' maps field "
        "names to values; unknown field names are refused with the list of valid ones. "
        "Returns the new record with its record_id."
    )
    input_model: ClassVar[type[BaseModel]] = CreateBaseRecordInput

    async def run(self, ctx: ToolContext, args: BaseModel) -> ToolResult:
        """Create the record; a retried turn reuses the same client token."""
        assert isinstance(args, CreateBaseRecordInput)
        return await self._write_fields(
            ctx,
            args,
            values=args.fields,
            method="POST",
            record_id=None,
            done_key="record_created",
        )


class UpdateBaseRecord(_WriteTool):
    """Change fields of one record in a Base table."""

    name: ClassVar[str] = "update_base_record"
    description: ClassVar[str] = (
        "Update fields of an existing record in a Lark Base (bitable) table (a configured "
        "name, a Base link, or 'app_token' and 'table_id'). Use it when the user asks to "
        "change, correct or set something on a record; find the "
        "record_id first with search_base_records. Only the given fields change."
    )
    input_model: ClassVar[type[BaseModel]] = UpdateBaseRecordInput

    async def run(self, ctx: ToolContext, args: BaseModel) -> ToolResult:
        """Update the record with the converted field values."""
        assert isinstance(args, UpdateBaseRecordInput)
        return await self._write_fields(
            ctx,
            args,
            values=args.fields,
            method="PUT",
            record_id=args.record_id.strip(),
            done_key="record_updated",
        )


class DeleteBaseRecord(_WriteTool):
    """Remove one record from a Base table."""

    name: ClassVar[str] = "delete_base_record"
    description: ClassVar[str] = (
        "Delete a record from a Lark Base (bitable) table (a configured name, a Base link, or "
        "'app_token' and 'table_id'). Use it only when the user clearly asks to delete or "
        "remove a specific record; find its record_id first "
        "with search_base_records. This cannot be undone."
    )
    input_model: ClassVar[type[BaseModel]] = DeleteBaseRecordInput

    async def run(self, ctx: ToolContext, args: BaseModel) -> ToolResult:
        """Delete the record."""
        assert isinstance(args, DeleteBaseRecordInput)
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
            text=say(ctx.language, "record_deleted", table=table, record_id=deleted_id),
        )


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

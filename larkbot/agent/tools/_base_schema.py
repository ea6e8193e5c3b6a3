"""Tools over the shape of a Base (bitable): its tables, their fields, and new tables.

Any Base can be named: by its link (``https://.../base/<app_token>?table=<table_id>``), a
wiki link to it, its ``app_token``, or a configured table's name or alias.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field

from larkbot.agent.i18n import translate
from larkbot.agent.tools._common import (
    CreatedObjects,
    ToolInput,
    idempotency_key,
    path_segment,
    resolve_table,
)
from larkbot.agent.tools._links import TABLE_ID, call, pages, parse_reference
from larkbot.agent.tools._wiki import held_object
from larkbot.agent.tools.base import Tool, ToolContext, ToolError, ToolResult

__all__ = [
    "CreateBaseTable",
    "CreateBaseTableInput",
    "FieldSpec",
    "ListBaseFields",
    "ListBaseFieldsInput",
    "ListBaseTables",
    "ListBaseTablesInput",
]

TABLES_ROUTE = "bitable/v1/apps/{app_token}/tables"
FIELDS_ROUTE = "bitable/v1/apps/{app_token}/tables/{table_id}/fields"

_PAGES = 10
_SHOWN = 30
_OPTIONS_SHOWN = 10
_BASE_REFUSALS = {
    1254040: "base_not_found",
    1254003: "base_not_found",
    1254041: "base_table_not_found",
    1254004: "base_table_not_found",
    1254013: "table_name_taken",
}
# Field type numbers of the bitable API, by the names the tools use.
_TYPES: dict[str, int] = {
    "text": 1,
    "number": 2,
    "single_select": 3,
    "multi_select": 4,
    "date": 5,
    "checkbox": 7,
    "person": 11,
    "phone": 13,
    "url": 15,
    "attachment": 17,
    "link": 18,
    "formula": 20,
    "created_time": 1001,
    "modified_time": 1002,
    "created_by": 1003,
    "modified_by": 1004,
    "auto_number": 1005,
}
_TYPE_NAMES = {number: name for name, number in _TYPES.items()}
_SELECTS = frozenset({3, 4})
_BASE_HELP = (
    "The Base: its link (https://.../base/...), a wiki link to it, its app_token, or the name "
    "of a configured table in it."
)

FieldKind = Literal[
    "text", "number", "single_select", "multi_select", "date", "checkbox", "person", "phone", "url"
]


class ListBaseTablesInput(ToolInput):
    """Arguments of ``list_base_tables``."""

    base: str = Field(min_length=1, description=_BASE_HELP)


class ListBaseFieldsInput(ToolInput):
    """Arguments of ``list_base_fields``."""

    table: str = Field(
        "",
        description="The table: its table_id (tbl...), its name in the Base, or a configured "
        "table's name or alias. May be left out when 'base' is a link naming a table.",
    )
    base: str | None = Field(None, description=_BASE_HELP + " Leave it out for a configured table.")


class FieldSpec(ToolInput):
    """One field of a new table."""

    name: str = Field(min_length=1, max_length=100, description="The field's name.")
    type: FieldKind = Field("text", description="The field's type.")
    options: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="The choices of a single_select or multi_select field.",
    )


class CreateBaseTableInput(ToolInput):
    """Arguments of ``create_base_table``."""

    base: str = Field(min_length=1, description=_BASE_HELP)
    name: str = Field(min_length=1, max_length=100, description="The new table's name.")
    fields: list[FieldSpec] = Field(
        min_length=1,
        max_length=50,
        description="The table's fields, in order; the first is the primary field (text, "
        "number, date, phone or url).",
    )


async def _app_token(ctx: ToolContext, base: str) -> tuple[str, str | None]:
    """The app_token a Base reference names, and the table its link names (if any)."""
    wanted = base.strip().casefold()
    for name, settings in ctx.bases.items():
        if any(alias.strip().casefold() == wanted for alias in [name, *settings.aliases]):
            return str(settings.app_token), str(settings.table_id)
    ref = parse_reference(base, default_kind="bitable")
    if ref is None:
        raise ToolError(translate("bad_base_ref", ctx.language, value=base.strip()))
    token, node = await held_object(ctx, ref, "bitable", "not_a_base")
    return token, None if node else ref.table_id


async def _tables(ctx: ToolContext, app_token: str) -> list[dict[str, str]]:
    path = f"bitable/v1/apps/{path_segment(app_token)}/tables"
    tables: list[dict[str, str]] = []
    async for data in _pages(ctx, path, route=TABLES_ROUTE):
        for item in data.get("items") or []:
            tables.append(
                {"table_id": str(item.get("table_id") or ""), "name": str(item.get("name") or "")}
            )
    return tables


def _pages(ctx: ToolContext, path: str, *, route: str) -> AsyncIterator[dict[str, Any]]:
    """The pages of a Base list endpoint, a missing Base or table said as such."""
    return pages(
        ctx, path, route=route, params={"page_size": 100}, limit=_PAGES, refusals=_BASE_REFUSALS
    )


class ListBaseTables(
    Tool[ListBaseTablesInput],
    name="list_base_tables",
    description=(
        "List the tables of any Lark Base (bitable), named by its link, a wiki link to it, its "
        "app_token or a configured table: each table's name and table_id. Use it when the user "
        "asks which tables a Base has, or pastes a Base link."
    ),
    scopes=("bitable:app:readonly", "wiki:wiki:readonly"),
):
    """List the tables of a Base."""

    async def run(self, ctx: ToolContext, args: ListBaseTablesInput) -> ToolResult:
        """Resolve the Base and page through its tables."""
        app_token, _ = await _app_token(ctx, args.base)
        tables = await _tables(ctx, app_token)
        result = {"app_token": app_token, "total": len(tables), "tables": tables}
        if not tables:
            return ToolResult(ok=True, data=result, text=translate("no_base_tables", ctx.language))
        lines = [translate("base_tables", ctx.language, count=len(tables))]
        lines.extend(f"- **{t['name']}** ({t['table_id']})" for t in tables[:_SHOWN])
        if len(tables) > _SHOWN:
            lines.append(translate("and_more", ctx.language, count=len(tables) - _SHOWN))
        return ToolResult(ok=True, data=result, text="\n".join(lines))


class ListBaseFields(
    Tool[ListBaseFieldsInput],
    name="list_base_fields",
    description=(
        "List the fields (columns) of a Lark Base table: name, type (text, number, single_select, "
        "date, person...), the choices of select fields, and which is primary. The table is a "
        "configured table, or any table given by Base link/app_token plus table_id or name. Use it "
        "before writing records or when the user asks what a table holds."
    ),
    scopes=("bitable:app:readonly", "wiki:wiki:readonly"),
):
    """List a Base table's fields and their types."""

    async def run(self, ctx: ToolContext, args: ListBaseFieldsInput) -> ToolResult:
        """Resolve the table, then page through its fields."""
        app_token, table_id, table_name = await self._table(ctx, args)
        path = f"bitable/v1/apps/{path_segment(app_token)}/tables/{path_segment(table_id)}/fields"
        fields: list[dict[str, Any]] = []
        async for data in _pages(ctx, path, route=FIELDS_ROUTE):
            for item in data.get("items") or []:
                type_id = int(item.get("type") or 0)
                prop = item.get("property") or {}
                options = [
                    str(o.get("name"))
                    for o in (prop.get("options") or [] if isinstance(prop, dict) else [])
                    if isinstance(o, dict) and o.get("name")
                ]
                field: dict[str, Any] = {
                    "name": str(item.get("field_name") or ""),
                    "type": _TYPE_NAMES.get(type_id, str(item.get("ui_type") or type_id)),
                    "primary": bool(item.get("is_primary")),
                }
                if type_id in _SELECTS:
                    field["options"] = options
                fields.append(field)
        shown = table_name or table_id
        result = {
            "app_token": app_token,
            "table_id": table_id,
            "table": shown,
            "fields": fields,
        }
        lines = [translate("base_fields", ctx.language, table=shown, count=len(fields))]
        for field in fields:
            kind = (
                translate(f"field_type_{field['type']}", ctx.language)
                if field["type"] in _TYPES
                else field["type"]
            )
            line = f"- **{field['name']}** — {kind}"
            if field.get("options"):
                options = field["options"]
                line += ": " + ", ".join(options[:_OPTIONS_SHOWN])
                if len(options) > _OPTIONS_SHOWN:
                    line += ", …"
            if field["primary"]:
                line += f" ({translate('primary_field', ctx.language)})"
            lines.append(line)
        return ToolResult(ok=True, data=result, text="\n".join(lines))

    @staticmethod
    async def _table(ctx: ToolContext, args: ListBaseFieldsInput) -> tuple[str, str, str]:
        """(app_token, table_id, a name to show) for the table the arguments name."""
        table = args.table.strip()
        base = (args.base or "").strip()
        if not base and "://" in table:
            # A Base link given as the table: the link names both.
            base, table = table, ""
        if not base:
            if not table:
                raise ToolError(translate("ask_base_table", ctx.language))
            name, settings = resolve_table(ctx, table)
            return str(settings.app_token), str(settings.table_id), name
        app_token, linked = await _app_token(ctx, base)
        tables = await _tables(ctx, app_token)
        wanted_id = table if TABLE_ID.match(table) else ("" if table else linked or "")
        if wanted_id:
            # Named by id: its name, when the Base lists it, reads better in the answer.
            name = next((t["name"] for t in tables if t["table_id"] == wanted_id), "")
            return app_token, wanted_id, name
        if not table:
            if len(tables) == 1:
                return app_token, tables[0]["table_id"], tables[0]["name"]
            raise ToolError(translate("ask_base_table", ctx.language))
        wanted = table.casefold()
        for candidate in tables:
            if candidate["name"].casefold() == wanted:
                return app_token, candidate["table_id"], candidate["name"]
        raise ToolError(
            translate(
                "no_such_base_table",
                ctx.language,
                table=table,
                tables=", ".join(t["name"] for t in tables) or "—",
            )
        )


class CreateBaseTable(
    Tool[CreateBaseTableInput],
    name="create_base_table",
    description=(
        "Create a new table in a Lark Base (bitable) with a name and fields (name, type, and the "
        "choices of select fields). The Base is named by its link, a wiki link, its app_token or a "
        "configured table in it. Use it when the user asks to add a table, a list or a tracker to "
        "a Base."
    ),
    write=True,
    scopes=("bitable:app", "wiki:wiki:readonly"),
):
    """Create a table in a Base."""

    def __init__(self) -> None:
        """Create the tool, with nothing created yet."""
        self._created: CreatedObjects[ToolResult] = CreatedObjects()

    async def run(self, ctx: ToolContext, args: CreateBaseTableInput) -> ToolResult:
        """Create the table with every field in one call, once per call's idempotency key.

        Creating a table takes no client token: a repeat of the same call (same message,
        same arguments) answers the table the first one made, where the platform would
        otherwise refuse the now taken name.
        """
        key = idempotency_key(ctx, self.name, args)
        async with self._created.hold(key):
            made = self._created.get(key)
            if made is None:
                made = await self._create(ctx, args)
                self._created.remember(key, made)
            return made.model_copy(deep=True)

    @staticmethod
    async def _create(ctx: ToolContext, args: CreateBaseTableInput) -> ToolResult:
        names = [f.name.strip() for f in args.fields]
        if len(set(map(str.casefold, names))) != len(names):
            raise ToolError(translate("duplicate_field_names", ctx.language))
        app_token, _ = await _app_token(ctx, args.base)
        fields: list[dict[str, Any]] = []
        for spec in args.fields:
            field: dict[str, Any] = {"field_name": spec.name.strip(), "type": _TYPES[spec.type]}
            if spec.type in ("single_select", "multi_select") and spec.options:
                field["property"] = {"options": [{"name": o} for o in dict.fromkeys(spec.options)]}
            fields.append(field)
        data = await call(
            ctx,
            "POST",
            f"bitable/v1/apps/{path_segment(app_token)}/tables",
            route=TABLES_ROUTE,
            refusals=_BASE_REFUSALS,
            json={"table": {"name": args.name.strip(), "fields": fields}},
            write=True,
            name=args.name.strip(),
        )
        table_id = str(data.get("table_id") or "")
        result = {
            "app_token": app_token,
            "table_id": table_id,
            "name": args.name.strip(),
            "fields": [{"name": f.name.strip(), "type": f.type} for f in args.fields],
        }
        listed = ", ".join(
            f"{f.name.strip()} ({translate(f'field_type_{f.type}', ctx.language)})"
            for f in args.fields
        )
        text = translate(
            "base_table_created",
            ctx.language,
            name=result["name"],
            table_id=table_id,
            fields=listed,
        )
        return ToolResult(ok=True, data=result, text=text)

"""Helpers shared by the Lark tools: tables, paths, idempotency keys, time, search hits."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, tzinfo
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote

import anyio
from cachetools import TTLCache
from pydantic import BaseModel, ConfigDict

from larkbot.agent.i18n import translate
from larkbot.agent.tools.base import ToolContext, ToolError

if TYPE_CHECKING:
    from larkbot.config.settings import BaseTableSettings

__all__ = [
    "FIELD_NOT_FOUND_CODES",
    "CreatedObjects",
    "ToolInput",
    "epoch_date",
    "exactly_one",
    "format_number",
    "idempotency_key",
    "parse_when",
    "path_segment",
    "resolve_table",
    "search_hit_lines",
    "unhighlight",
]


FIELD_NOT_FOUND_CODES = frozenset({1254044, 1254045})
"""Lark's codes for a field name the table does not have (FieldNameNotFound)."""

# The tags the search API wraps matched words in.
_HIGHLIGHT = re.compile(r"</?h[b]?>")


class ToolInput(BaseModel):
    """Base of the tools' argument models: an argument a model does not define is refused."""

    model_config = ConfigDict(extra="forbid")


_Model = TypeVar("_Model", bound=BaseModel)


def exactly_one(model: _Model, first: str, second: str) -> _Model:
    """Return ``model`` if exactly one of its fields ``first`` and ``second`` is given.

    :raises ValueError: both or neither are (pydantic reports it as a validation error).
    """
    if bool(getattr(model, first)) == bool(getattr(model, second)):
        raise ValueError(f"give exactly one of {first} and {second}")
    return model


def path_segment(value: str) -> str:
    """Quote ``value`` for use as one path segment (ids come from users and models)."""
    return quote(value, safe="")


def idempotency_key(ctx: ToolContext, tool_name: str, args: BaseModel) -> str:
    """Return a UUID-shaped key that is the same whenever the same turn repeats the same call.

    Derived from the triggering message id, the tool and its arguments, so a turn that is
    retried after a crash or a redelivery cannot create or send the same thing twice,
    while two different calls in one turn still get different keys.
    """
    canonical = json.dumps(args.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(f"{ctx.message_id}\x00{tool_name}\x00{canonical}".encode()).digest()
    # Version 4 layout: some endpoints validate the UUID format, not its randomness.
    return str(uuid.UUID(bytes=digest[:16], version=4))


_T = TypeVar("_T")

# How long a creation is remembered: the hour the platform honours its own idempotency
# keys (message uuids, client tokens) for.
_CREATED_TTL_SECONDS = 3600.0
_CREATED_MAX = 4096


class CreatedObjects(Generic[_T]):
    """What a create call made, by its :func:`idempotency_key`, for endpoints with no token.

    Lark takes a client token for records, messages, groups and events, but not for a new
    docx document or a Base table, so for those a repeat of the same call (the model asking
    twice in a turn, a turn run again after it failed part way) would make a second one.
    A tool keeps here what it created under the call's key, and a repeat finds it instead.
    Calls with the same key run one at a time, so two at once cannot both create. Kept in
    memory for an hour, the platform's own idempotency window.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float = _CREATED_TTL_SECONDS,
        max_size: int = _CREATED_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Remember up to ``max_size`` creations for ``ttl_seconds`` each."""
        self._made: TTLCache[str, _T] = TTLCache(maxsize=max_size, ttl=ttl_seconds, timer=clock)
        self._locks: dict[str, anyio.Lock] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Run the body alone among the calls with ``key``: look up, create, remember."""
        lock = self._locks.setdefault(key, anyio.Lock())
        try:
            async with lock:
                yield
        finally:
            # A released lock with a waiter passes straight to it, so it is still locked.
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._locks.pop(key, None)

    def get(self, key: str) -> _T | None:
        """What the call with ``key`` created, if it did within the last hour."""
        return self._made.get(key)

    def remember(self, key: str, made: _T) -> None:
        """Note that the call with ``key`` created ``made``."""
        self._made[key] = made


def resolve_table(ctx: ToolContext, table: str) -> tuple[str, BaseTableSettings]:
    """Find the configured Base table called ``table`` (its name or an alias, any case)."""
    wanted = table.strip().casefold()
    for name, settings in ctx.bases.items():
        aliases = [name, *settings.aliases]
        if any(alias.strip().casefold() == wanted for alias in aliases):
            return name, settings
    if not ctx.bases:
        raise ToolError(translate("no_tables_configured", ctx.language))
    listed = ", ".join(
        f"{name} ({', '.join(aliases)})"
        if (aliases := list(getattr(s, "aliases", None) or []))
        else name
        for name, s in ctx.bases.items()
    )
    raise ToolError(translate("unknown_table", ctx.language, table=table, tables=listed))


def parse_when(value: Any, tz: tzinfo) -> datetime | None:
    """Read a date or date-time given as ISO text or epoch seconds/milliseconds.

    Naive values are taken in ``tz``. Returns ``None`` when ``value`` is not a date.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= 1e11 else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=tz)
    if not isinstance(value, str):
        return None
    text = value.strip().replace("/", "-")
    if text.isdigit():
        return parse_when(int(text), tz)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def format_number(value: float) -> str:
    """Render a number the way a spreadsheet would: thousands separators, no stray ``.0``."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{int(value):,}"


def epoch_date(seconds: Any, tz: tzinfo) -> str:
    """The ISO date in ``tz`` of a time given in epoch seconds; empty when there is none."""
    try:
        value = int(seconds)
    except (TypeError, ValueError):
        return ""
    if value <= 0:
        return ""
    return datetime.fromtimestamp(value, tz=UTC).astimezone(tz).date().isoformat()


def unhighlight(text: Any) -> str:
    """A search result's title or summary without the tags marking the matched words."""
    return _HIGHLIGHT.sub("", str(text or ""))


def search_hit_lines(header: str, hits: list[dict[str, Any]]) -> str:
    """``header`` and one line per search hit: its linked title, then type, owner and date."""
    lines = [header]
    for hit in hits:
        details = ", ".join(v for v in (hit["type"], hit["owner"], hit["updated"]) if v)
        title = f"[{hit['title']}]({hit['url']})" if hit["url"] else hit["title"]
        lines.append(f"- {title}" + (f" ({details})" if details else ""))
    return "\n".join(lines)

"""Lark links and tokens as people paste them, and calls whose refusals name a missing object.

A document, wiki page or Base is named in a chat by its link
(``https://example.feishu.cn/docx/<token>``, ``.../wiki/<token>``,
``.../base/<app_token>?table=<table_id>``) or by its bare token; the tools accept both.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from larkbot.agent.i18n import translate
from larkbot.agent.tools.base import ToolContext, ToolError
from larkbot.lark.client import LarkAPIError

__all__ = ["TABLE_ID", "LarkLink", "call", "find_links", "pages", "parse_reference"]

_log = logging.getLogger("larkbot.agent")

# The path segment of a link, by the object type the OpenAPI calls it.
_KINDS = {
    "docx": "docx",
    "docs": "doc",
    "doc": "doc",
    "wiki": "wiki",
    "base": "bitable",
    "sheets": "sheet",
    "file": "file",
    "mindnotes": "mindnote",
    "slides": "slides",
}
_LINK = re.compile(
    r"https?://[^\s/]+/(?P<kind>" + "|".join(_KINDS) + r")/(?P<token>[A-Za-z0-9_-]{6,})"
    r"(?P<rest>[A-Za-z0-9_\-./?=&%#~+]*)"
)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{6,}$")
TABLE_ID = re.compile(r"^tbl[A-Za-z0-9]+$")
"""A Base table id as Lark writes it (``tbl...``)."""


@dataclass(frozen=True, slots=True)
class LarkLink:
    """One object of Lark's cloud space: its type (``docx``, ``wiki``, ``bitable``...) and token.

    ``table_id`` is set for a Base link that names a table (``?table=tbl...``); ``url`` is
    the link as given, empty for a bare token.
    """

    kind: str
    token: str
    table_id: str | None = None
    url: str = ""


def _link_of(match: re.Match[str]) -> LarkLink:
    query = parse_qs(urlsplit(match["rest"]).query if "?" in match["rest"] else "")
    table = next(iter(query.get("table", [])), None)
    url = match.group(0).rstrip(".,;:!?。、，")
    return LarkLink(
        kind=_KINDS[match["kind"]],
        token=match["token"],
        table_id=table if table and TABLE_ID.match(table) else None,
        url=url,
    )


def find_links(text: str) -> list[LarkLink]:
    """Return every Lark cloud link in ``text``, in order."""
    return [_link_of(match) for match in _LINK.finditer(text)]


def parse_reference(value: str, *, default_kind: str) -> LarkLink | None:
    """Read a link or a bare token; a bare token is taken to be of ``default_kind``.

    Returns ``None`` when ``value`` is neither.
    """
    text = value.strip()
    if match := _LINK.search(text):
        return _link_of(match)
    if _TOKEN.match(text):
        return LarkLink(kind=default_kind, token=text)
    return None


async def call(
    ctx: ToolContext,
    method: str,
    path: str,
    *,
    route: str,
    refusals: Mapping[int, str],
    params: dict[str, Any] | None = None,
    json: dict[str, Any] | None = None,
    write: bool = False,
    **values: object,
) -> dict[str, Any]:
    """Make an OpenAPI call; a refusal whose code is in ``refusals`` becomes that sentence.

    ``refusals`` maps a Lark code to a catalogue key, said with ``values``. Other
    refusals propagate to the runner, which explains them (a missing scope, a busy
    platform...) the same way for every tool.
    """
    try:
        return await ctx.client.request(
            method, path, route=route, params=params, json=json, write=write
        )
    except LarkAPIError as exc:
        key = refusals.get(exc.code)
        if key is None:
            raise
        _log.info(
            "Lark answered code %s on %s (message %s)",
            exc.code,
            route,
            ctx.message_id,
            extra={"lark_code": exc.code},
        )
        raise ToolError(translate(key, ctx.language, **values)) from None


async def pages(
    ctx: ToolContext,
    path: str,
    *,
    route: str,
    params: dict[str, Any],
    limit: int,
    refusals: Mapping[int, str] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The pages of a Lark list endpoint, ``limit`` at most, following its ``page_token``.

    Each page is a GET of ``path`` with ``params`` and the page token; refusals are turned
    into sentences as by :func:`call`.
    """
    for _ in range(limit):
        data = await call(ctx, "GET", path, route=route, refusals=refusals or {}, params=params)
        yield data
        if not data.get("has_more") or not data.get("page_token"):
            return
        params = {**params, "page_token": data["page_token"]}

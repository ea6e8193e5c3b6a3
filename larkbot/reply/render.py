"""Turning an agent's :class:`~larkbot.core.agent.Reply` into Lark messages.

Replies without markup become ``text`` messages. Replies with markdown (flagged by the
agent, or found in the text: emphasis, code, links, lists, headings, tables) become
interactive cards (card JSON 2.0, whose ``markdown`` element renders all of it), since a
``text`` message would show the asterisks and backticks literally. Long replies are split
into several messages at the most natural boundary that fits: a paragraph, then a line,
then a sentence, then a word, and only then a hard cut that never separates a character
from the marks joined to it. Markdown is split between
blocks, so a fenced code block or a table is only cut when it cannot fit one message on
its own, and then each piece is again a complete code block or a table with its header.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, NamedTuple

from markdown_it import MarkdownIt

from larkbot.core.agent import Reply

__all__ = ["OutboundMessage", "render_reply"]

# About two screens of chat on a phone: beyond this a single bubble is scrolled past
# rather than read, so a long answer reads better as a few consecutive messages.
DEFAULT_MAX_CHARS = 4_000
# Measured as the content takes up in the request body (JSON string, escaped). Lark caps
# a card request at 30 KB and a text request at 150 KB; 20 KB keeps a card well clear of
# its cap together with the rest of the request. With ``DEFAULT_MAX_CHARS`` this only
# binds for text heavy in escapes (quotes, control characters).
DEFAULT_MAX_BYTES = 20_000
# Lark renders at most five tables in one card.
DEFAULT_MAX_TABLES = 5

_MIN_CHARS = 32
_MIN_BYTES = 256
# A natural boundary is used only if it keeps at least this share of what would fit;
# otherwise the next finer kind of boundary is tried, to avoid a string of tiny messages.
_MIN_FILL = 1 / 3

_MARKDOWN = MarkdownIt("commonmark").enable("table")

_BOUNDARIES = (
    re.compile(r"\n[^\S\n]*\n(?:[^\S\n]*\n)*"),  # blank lines: end of a paragraph
    re.compile(r"\n"),  # end of a line; the indentation after it stays with its line
    re.compile(r"(?:[.!?…](?=\s)|[。！？；])[^\S\n]*"),  # end of a sentence
    re.compile(r"[^\S\n]+"),  # between words
)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[^\S\n]*\n)+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_FENCE_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})")
_ZWJ = "\u200d"
# What may make a text with digits (and none of the usual marks) render as more than plain
# text: an ordered list item's number, an indented code block, an autolink or HTML, an
# escape or entity, a setext heading's underline, a "+" list item. A line starts after
# "\n" or a lone "\r", as it does for the parser.
_MAYBE_MARKUP = re.compile(r"(?:^|(?<=\r))(?: {0,3}[0-9]{1,9}[.)]| {4})|[<\\&=+\t]", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to send: its ``msg_type`` and its ``content`` object (not yet JSON)."""

    msg_type: str
    content: dict[str, Any]


def render_reply(
    reply: Reply,
    *,
    max_text_bytes: int = DEFAULT_MAX_BYTES,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_tables: int = DEFAULT_MAX_TABLES,
) -> list[OutboundMessage]:
    """Render ``reply`` as one or more messages, in reading order.

    Each message's content takes at most ``max_text_bytes`` in the request body and holds
    at most ``max_chars`` characters of the reply; a card holds at most ``max_tables``
    tables. Splitting only drops whitespace at the cuts, so no other character of the
    reply is lost. A reply with nothing but whitespace renders to no message.
    """
    if max_chars < _MIN_CHARS:
        raise ValueError(f"max_chars must be at least {_MIN_CHARS}")
    if max_text_bytes < _MIN_BYTES:
        raise ValueError(f"max_text_bytes must be at least {_MIN_BYTES}")
    if max_tables < 1:
        raise ValueError("max_tables must be at least 1")
    if reply.card is not None:
        return [OutboundMessage("interactive", dict(reply.card))]
    text = _normalize(reply.text)
    if reply.markdown or _has_markup(text):
        return _render_markdown(text, max_chars, max_text_bytes, max_tables)
    return _render_text(text, max_chars, max_text_bytes)


class _Budget(NamedTuple):
    """What one piece of text may take: characters, and bytes in the request body."""

    chars: int
    bytes: int

    def fits(self, text: str) -> bool:
        return len(text) <= self.chars and _body_bytes(text) <= self.bytes


def _render_text(text: str, max_chars: int, max_bytes: int) -> list[OutboundMessage]:
    budget = _Budget(max_chars, max_bytes - _EMPTY_TEXT_BYTES)
    return [OutboundMessage("text", _text_content(piece)) for piece in _split_plain(text, budget)]


def _render_markdown(
    text: str, max_chars: int, max_bytes: int, max_tables: int
) -> list[OutboundMessage]:
    budget = _Budget(max_chars, max_bytes - _EMPTY_CARD_BYTES)
    messages: list[OutboundMessage] = []
    for chunk in _split_markdown(text, budget, max_tables):
        card = _card(chunk)
        if (
            len(chunk) <= max_chars
            and _wire_size(card) <= max_bytes
            and _count_tables(chunk) <= max_tables
        ):
            messages.append(OutboundMessage("interactive", card))
        else:
            # A card the platform would refuse must not cost the answer: send it as text.
            messages.extend(_render_text(chunk, max_chars, max_bytes))
    return messages


# Tokens that plain text also produces; anything else is markup a text message would show
# literally.
_PLAIN_BLOCKS = frozenset({"paragraph_open", "paragraph_close", "inline"})
_PLAIN_INLINE = frozenset({"text", "softbreak", "hardbreak"})


def _has_markup(text: str) -> bool:
    """Whether ``text`` holds markdown that only renders right in a card."""
    # The common case, decided without parsing. Digits need the parser only where they
    # could number an ordered list item or sit beside other syntax: "pong (12 ms)" is plain.
    if not any(mark in text for mark in "*_`[#|>-~") and (
        not any(digit in text for digit in "0123456789") or not _MAYBE_MARKUP.search(text)
    ):
        return False
    for token in _MARKDOWN.parse(text):
        if token.type not in _PLAIN_BLOCKS:
            return True
        if token.children and any(c.type not in _PLAIN_INLINE for c in token.children):
            return True
    return False


def _text_content(text: str) -> dict[str, Any]:
    return {"text": text}


def _card(markdown: str) -> dict[str, Any]:
    # JSON 2.0, because only its markdown element renders tables and headings; Lark
    # clients older than 7.20 show an upgrade notice in its place.
    return {"schema": "2.0", "body": {"elements": [{"tag": "markdown", "content": markdown}]}}


def _wire_size(content: dict[str, Any]) -> int:
    """Bytes ``content`` takes in the request body: JSON, then a JSON string in the body."""
    inner = json.dumps(content, ensure_ascii=False)
    return len(json.dumps(inner, ensure_ascii=False).encode("utf-8"))


# What an empty message's content takes: the part of the budget no text can have (computed
# once, not for every reply: two JSON encodings were a third of rendering an echo).
_EMPTY_TEXT_BYTES = _wire_size(_text_content(""))
_EMPTY_CARD_BYTES = _wire_size(_card(""))


def _char_body_bytes(char: str) -> int:
    inner = json.dumps(char, ensure_ascii=False)[1:-1]
    return len(json.dumps(inner, ensure_ascii=False)[1:-1].encode("utf-8"))


# Escaping only ever touches ASCII; any other character costs its UTF-8 length.
_ASCII_BODY_BYTES = tuple(_char_body_bytes(chr(code)) for code in range(128))
# The most any one character takes (a control character escaped twice, or 4 UTF-8 bytes).
_MAX_CHAR_BODY_BYTES = max(*_ASCII_BODY_BYTES, 4)


def _body_bytes(text: str) -> int:
    """Bytes ``text`` adds to a content once escaped twice (content JSON, request body)."""
    inner = json.dumps(text, ensure_ascii=False)[1:-1]
    return len(json.dumps(inner, ensure_ascii=False).encode("utf-8")) - 2


def _fitting_prefix(text: str, budget: _Budget) -> int:
    """Return the length of the longest prefix of ``text`` within ``budget``."""
    if len(text) <= budget.chars and len(text) * _MAX_CHAR_BODY_BYTES <= budget.bytes:
        # Fits whatever its characters are: the common short answer is not walked
        # character by character (an eighth of rendering an echo).
        return len(text)
    used = 0
    for index, char in enumerate(text[: budget.chars]):
        code = ord(char)
        used += _ASCII_BODY_BYTES[code] if code < 128 else len(char.encode("utf-8"))
        if used > budget.bytes:
            return index
    return min(len(text), budget.chars)


def _normalize(text: str) -> str:
    """Use ``\\n`` line ends, join surrogate pairs, replace lone surrogates."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _SURROGATE.search(text):
        # A pair becomes the one character it encodes, so no cut can fall between its
        # halves; a lone half cannot be sent as UTF-8 at all.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _trim(piece: str) -> str:
    """Drop the blank lines a piece starts with and the whitespace it ends with."""
    return _LEADING_BLANK_LINES.sub("", piece).rstrip()


def _split_plain(text: str, budget: _Budget) -> list[str]:
    """Split ``text`` into trimmed, non-empty pieces, each within ``budget``."""
    pieces: list[str] = []
    rest = text
    while rest:
        fit = max(1, _fitting_prefix(rest, budget))
        cut = len(rest) if fit == len(rest) else _best_cut(rest, fit)
        piece = _trim(rest[:cut])
        if piece:
            pieces.append(piece)
        rest = rest[cut:]
    return pieces


def _best_cut(text: str, fit: int) -> int:
    """Return where to end a piece of ``text`` whose first ``fit`` characters fit."""
    window = text[:fit]
    floor = max(1, int(fit * _MIN_FILL))
    for boundary in _BOUNDARIES:
        last = None
        for match in boundary.finditer(window):
            if match.end() >= floor:
                last = match
        if last is not None:
            return last.end()
    cut = fit
    while cut > 1 and _inseparable(text[cut - 1], text[cut]):
        cut -= 1
    # A run of joined characters longer than a whole piece has to be cut somewhere.
    return cut if cut > 1 or not _inseparable(text[0], text[1]) else fit


def _inseparable(before: str, after: str) -> bool:
    """Tell whether a cut between ``before`` and ``after`` would break a character."""
    if before == _ZWJ or after == _ZWJ:
        return True
    if "\ud800" <= before <= "\udbff" and "\udc00" <= after <= "\udfff":
        return True
    code = ord(after)
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:  # variation selectors
        return True
    if 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:  # skin tones, tag chars
        return True
    return unicodedata.category(after) in ("Mn", "Mc", "Me")


@dataclass(slots=True)
class _Block:
    """A top-level markdown block: source lines ``[start, end)``."""

    start: int
    end: int
    kind: str
    tables: int = 0


def _split_markdown(text: str, budget: _Budget, max_tables: int) -> list[str]:
    """Split markdown between top-level blocks; cut a block only if it alone is too big."""
    lines = text.split("\n")
    line_chars = [len(line) for line in lines]
    line_bytes = [_body_bytes(line) for line in lines]
    newline_bytes = _body_bytes("\n")

    def fits(start: int, end: int) -> bool:
        count = end - start - 1
        return (
            sum(line_chars[start:end]) + count <= budget.chars
            and sum(line_bytes[start:end]) + count * newline_bytes <= budget.bytes
        )

    chunks: list[str] = []
    open_start: int | None = None
    open_end = 0
    open_tables = 0

    def close() -> None:
        nonlocal open_start
        if open_start is not None:
            chunk = _trim("\n".join(lines[open_start:open_end]))
            if chunk:
                chunks.append(chunk)
            open_start = None

    for block in _blocks(text, lines):
        if (
            open_start is not None
            and open_tables + block.tables <= max_tables
            and fits(open_start, block.end)
        ):
            open_end = block.end
            open_tables += block.tables
            continue
        close()
        if block.tables <= max_tables and fits(block.start, block.end):
            open_start, open_end, open_tables = block.start, block.end, block.tables
        else:
            chunks.extend(_split_block(lines[block.start : block.end], block.kind, budget))
    close()
    return chunks


def _blocks(text: str, lines: list[str]) -> list[_Block]:
    """Return the top-level blocks of ``text``, covering every line that is not blank."""
    blocks: list[_Block] = []
    current: _Block | None = None
    for token in _MARKDOWN.parse(text):
        if token.level == 0 and token.map is not None and token.nesting >= 0:
            start, end = token.map
            current = _Block(start, end, token.type.removesuffix("_open"))
            blocks.append(current)
        if token.type == "table_open" and current is not None:
            current.tables += 1
    # Lines no block claims (link reference definitions, for one) still belong to the
    # reply: keep each such run as a block of its own.
    covered = 0
    gaps: list[_Block] = []
    for block in [*blocks, _Block(len(lines), len(lines), "end")]:
        if block.start > covered and any(line.strip() for line in lines[covered : block.start]):
            gaps.append(_Block(covered, block.start, "other"))
        covered = max(covered, block.end)
    return sorted(blocks + gaps, key=lambda block: block.start)


def _split_block(block_lines: list[str], kind: str, budget: _Budget) -> list[str]:
    """Split one block too big for a message, keeping code blocks and tables whole-formed."""
    if kind == "fence":
        pieces = _split_fence(block_lines, budget)
    elif kind == "table":
        pieces = _split_table(block_lines, budget)
    else:
        pieces = None
    if pieces is None:
        pieces = _split_plain("\n".join(block_lines), budget)
    return pieces


def _split_fence(block_lines: list[str], budget: _Budget) -> list[str] | None:
    """Split a fenced code block into several complete code blocks, or ``None``."""
    match = _FENCE_OPEN.match(block_lines[0])
    if match is None:
        return None
    indent, marker = match.groups()
    closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$")
    if len(block_lines) > 1 and closing.match(block_lines[-1]):
        opening, body, closer = block_lines[0], block_lines[1:-1], block_lines[-1]
    else:
        opening, body, closer = block_lines[0], block_lines[1:], indent + marker
    return _pack_lines(opening + "\n", body, "\n" + closer, budget)


def _split_table(block_lines: list[str], budget: _Budget) -> list[str] | None:
    """Split a table into several tables that each repeat the header, or ``None``."""
    if len(block_lines) < 3:
        return None
    header = "\n".join(block_lines[:2]) + "\n"
    return _pack_lines(header, block_lines[2:], "", budget)


def _pack_lines(head: str, body: list[str], tail: str, budget: _Budget) -> list[str] | None:
    """Pack ``body`` lines into pieces framed by ``head`` and ``tail``, each within budget.

    A line too long for a frame of its own is itself split into several lines. Returns
    ``None`` when the frame leaves no useful room.
    """
    frame = head + tail
    room = _Budget(budget.chars - len(frame), budget.bytes - _body_bytes(frame))
    if room.chars < _MIN_CHARS // 2 or room.bytes < _MIN_CHARS:
        return None
    fitted: list[str] = []
    for line in body:
        if room.fits(line):
            fitted.append(line)
        else:
            fitted.extend(_split_plain(line, room) or [""])
    pieces: list[str] = []
    current: list[str] = []
    chars = size = 0
    newline_bytes = _body_bytes("\n")
    for line in fitted:
        line_chars, line_bytes = len(line), _body_bytes(line)
        if current and (
            chars + 1 + line_chars > room.chars or size + newline_bytes + line_bytes > room.bytes
        ):
            pieces.append(head + "\n".join(current) + tail)
            current, chars, size = [], 0, 0
        elif current:
            chars += 1
            size += newline_bytes
        current.append(line)
        chars += line_chars
        size += line_bytes
    if current or not pieces:
        pieces.append(head + "\n".join(current) + tail)
    return [piece for piece in (_trim(piece) for piece in pieces) if piece]


def _count_tables(markdown: str) -> int:
    return sum(1 for token in _MARKDOWN.parse(markdown) if token.type == "table_open")

"""Rendering agent replies into Lark messages: text, cards, and splitting long answers."""

from __future__ import annotations

import json
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings, target
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from larkbot.core.agent import Reply
from larkbot.reply import OutboundMessage, render_reply
from larkbot.reply.render import _has_markup

_TABLES = MarkdownIt("commonmark").enable("table")
FAMILY = "👩\u200d👩\u200d👧\u200d👦"


def body_bytes(message: OutboundMessage) -> int:
    """Bytes the content takes in the request body: a JSON string holding its JSON."""
    inner = json.dumps(message.content, ensure_ascii=False)
    return len(json.dumps(inner, ensure_ascii=False).encode("utf-8"))


def text_of(message: OutboundMessage) -> str:
    """The reply text a message carries, whether it is a text message or a card."""
    if message.msg_type == "text":
        return message.content["text"]
    assert message.msg_type == "interactive"
    assert message.content["schema"] == "2.0"
    (element,) = message.content["body"]["elements"]
    assert element["tag"] == "markdown"
    return element["content"]


def visible(text: str) -> str:
    return "".join(char for char in text if not char.isspace())


def is_subsequence(needle: str, haystack: str) -> bool:
    remaining = iter(haystack)
    return all(char in remaining for char in needle)


def table_count(markdown: str) -> int:
    return sum(1 for token in _TABLES.parse(markdown) if token.type == "table_open")


def table(rows: int, columns: int = 2, width: int = 6) -> str:
    header = "| " + " | ".join(f"h{c}" for c in range(columns)) + " |"
    rule = "|" + "---|" * columns
    body = ["| " + " | ".join(f"{r:0{width}d}" for _ in range(columns)) + " |" for r in range(rows)]
    return "\n".join([header, rule, *body])


def test_short_plain_reply_is_one_text_message() -> None:
    messages = render_reply(Reply("Hello, 世界 👋"))
    assert messages == [OutboundMessage("text", {"text": "Hello, 世界 👋"})]


def test_plain_text_with_numbers_is_a_text_message_and_a_numbered_list_a_card() -> None:
    assert render_reply(Reply("pong (latency 12 ms)"))[0].msg_type == "text"
    assert render_reply(Reply("3 files, 2 folders: 5 in all."))[0].msg_type == "text"
    assert render_reply(Reply("Steps:\n1. open\n2. save"))[0].msg_type == "interactive"
    assert render_reply(Reply("see <https://example.com/1>"))[0].msg_type == "interactive"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="ab 19.)\n\r\t<\\&=+:", max_size=16))
@example("intro\r1. a")
def test_the_quick_plain_text_check_agrees_with_the_parser(text: str) -> None:
    # Texts with digits but none of the usual marks skip the markdown parser; whenever
    # they do, the parser would have found plain text too. Regression: a line after a
    # lone "\r" ("intro\r1. a") was not seen as a line by the quick check.
    assume(any(char.isdigit() for char in text))
    parsed = any(
        token.type not in ("paragraph_open", "paragraph_close", "inline")
        or any(c.type not in ("text", "softbreak", "hardbreak") for c in token.children or ())
        for token in MarkdownIt("commonmark").enable("table").parse(text)
    )
    assert _has_markup(text) == parsed  # also for text that was not normalised first
    kind = render_reply(Reply(text))[0].msg_type if text.strip() else None
    if kind == "text":
        assert not parsed
    elif kind is not None:
        assert parsed


def test_blank_reply_renders_no_message() -> None:
    assert render_reply(Reply(" \n\t ")) == []
    assert render_reply(Reply("", markdown=True)) == []


def test_long_text_splits_at_paragraphs() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 180 for i in range(12)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    messages = render_reply(Reply(text), max_chars=2_000)
    assert len(messages) > 1
    pieces = [text_of(m) for m in messages]
    assert all(len(piece) <= 2_000 for piece in pieces)
    # Every message is a run of whole paragraphs.
    for piece in pieces:
        assert piece.startswith("Paragraph ") and piece.endswith("word")
    assert "\n\n".join(pieces) == text


def test_text_without_paragraphs_splits_at_lines_then_sentences() -> None:
    lines = "\n".join(f"line {i} " + "x" * 60 for i in range(100))
    pieces = [text_of(m) for m in render_reply(Reply(lines), max_chars=500)]
    assert "\n".join(pieces) == lines

    prose = " ".join(f"Sentence number {i} is here." for i in range(200))
    pieces = [text_of(m) for m in render_reply(Reply(prose), max_chars=500)]
    assert len(pieces) > 1
    assert all(piece.endswith(".") for piece in pieces)
    assert " ".join(pieces) == prose

    chinese = "这是一个句子。" * 300
    pieces = [text_of(m) for m in render_reply(Reply(chinese), max_chars=500)]
    assert all(piece.endswith("。") for piece in pieces)
    assert "".join(pieces) == chinese


def test_a_word_longer_than_a_message_is_cut_hard() -> None:
    word = "a" * 10_000
    pieces = [text_of(m) for m in render_reply(Reply(word), max_chars=4_000)]
    assert [len(piece) for piece in pieces] == [4_000, 4_000, 2_000]
    assert "".join(pieces) == word


@pytest.mark.parametrize("unit", [FAMILY, "e\u0301", "👍🏽", "🏳️\u200d🌈", "ก\u0e34"])
def test_hard_cuts_never_break_a_joined_character(unit: str) -> None:
    text = unit * 400
    pieces = [text_of(m) for m in render_reply(Reply(text), max_chars=101)]
    assert len(pieces) > 1
    for piece in pieces:
        assert piece == unit * (len(piece) // len(unit))
    assert "".join(pieces) == text


def test_surrogates_are_joined_or_replaced() -> None:
    pair = "\ud83d\ude00"  # 😀 as two UTF-16 halves
    messages = render_reply(Reply(f"smile {pair} and a lone \udc00 half"))
    assert text_of(messages[0]) == "smile 😀 and a lone \ufffd half"
    json.dumps(messages[0].content, ensure_ascii=False).encode("utf-8")


def test_byte_limit_binds_for_text_heavy_in_escapes() -> None:
    text = '"\\' * 3_000 + "\x01" * 500
    messages = render_reply(Reply(text), max_text_bytes=2_000)
    assert len(messages) > 1
    assert all(body_bytes(m) <= 2_000 for m in messages)
    assert "".join(text_of(m) for m in messages) == text


def test_markdown_reply_is_a_card_with_a_markdown_element() -> None:
    text = "**Bold**, a [link](https://example.com) and\n\n- one\n- two"
    (message,) = render_reply(Reply(text, markdown=True))
    assert message.msg_type == "interactive"
    assert text_of(message) == text


def test_code_block_that_fits_is_never_split() -> None:
    code = "```python\n" + "\n".join(f"value_{i} = {i}" for i in range(60)) + "\n```"
    intro = "Intro paragraph. " * 40
    text = f"{intro}\n\n{code}\n\nAfterword."
    pieces = [text_of(m) for m in render_reply(Reply(text, markdown=True), max_chars=1_500)]
    assert len(pieces) > 1
    assert sum(code in piece for piece in pieces) == 1
    assert all(piece.count("```") % 2 == 0 for piece in pieces)


def test_huge_code_block_becomes_several_complete_code_blocks() -> None:
    lines = [f"print({i})  # {'x' * (i % 50)}" for i in range(800)]
    text = "Here is the script:\n\n~~~~python\n" + "\n".join(lines) + "\n~~~~\n\nDone."
    messages = render_reply(Reply(text, markdown=True))
    pieces = [text_of(m) for m in messages]
    code_pieces = [piece for piece in pieces if "print(" in piece]
    assert len(code_pieces) > 1
    for piece in code_pieces:
        assert piece.startswith("~~~~python\n") and piece.endswith("\n~~~~")
    seen = [line for piece in code_pieces for line in piece.split("\n")[1:-1]]
    assert seen == lines
    assert all(m.msg_type == "interactive" and body_bytes(m) <= 20_000 for m in messages)


def test_overlong_code_line_is_wrapped_inside_the_code_block() -> None:
    text = "```\n" + "z" * 9_000 + "\n```"
    pieces = [text_of(m) for m in render_reply(Reply(text, markdown=True))]
    assert len(pieces) == 3
    assert all(piece.startswith("```\n") and piece.endswith("\n```") for piece in pieces)
    assert "".join(piece[4:-4] for piece in pieces) == "z" * 9_000


def test_big_table_is_split_into_tables_that_repeat_the_header() -> None:
    text = table(400)
    header = "\n".join(text.split("\n")[:2])
    pieces = [text_of(m) for m in render_reply(Reply(text, markdown=True))]
    assert len(pieces) > 1
    assert all(piece.startswith(header + "\n") for piece in pieces)
    assert all(table_count(piece) == 1 for piece in pieces)
    rows = [line for piece in pieces for line in piece.split("\n")[2:]]
    assert rows == text.split("\n")[2:]


def test_a_card_holds_at_most_five_tables() -> None:
    text = "\n\n".join(f"Table {i}\n\n{table(2)}" for i in range(12))
    messages = render_reply(Reply(text, markdown=True))
    counts = [table_count(text_of(m)) for m in messages]
    assert counts == [5, 5, 2]
    assert render_reply(Reply(text, markdown=True), max_tables=3)[0] is not None
    assert [
        table_count(text_of(m)) for m in render_reply(Reply(text, markdown=True), max_tables=3)
    ] == [3, 3, 3, 3]


def test_lines_markdown_gives_no_block_are_kept() -> None:
    text = "See [the docs][d].\n\n[d]: https://example.com/docs\n\nThanks."
    (message,) = render_reply(Reply(text, markdown=True))
    assert text_of(message) == text
    pieces = [
        text_of(m)
        for m in render_reply(Reply("a " * 30 + "\n\n" + text, markdown=True), max_chars=40)
    ]
    assert "[d]: https://example.com/docs" in "\n".join(pieces)


def test_limits_too_small_to_be_useful_are_refused() -> None:
    with pytest.raises(ValueError):
        render_reply(Reply("x"), max_chars=5)
    with pytest.raises(ValueError):
        render_reply(Reply("x"), max_text_bytes=10)
    with pytest.raises(ValueError):
        render_reply(Reply("x", markdown=True), max_tables=0)


_TOKENS = [
    "word",
    "Wort",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\n \n",
    "\t",
    ". ",
    "! ",
    "? ",
    "…",
    "中文",
    "日本語の文",
    "。",
    "！",
    "😀",
    FAMILY,
    "👍🏽",
    "e\u0301",
    '"',
    "\\",
    "\x01",
    "\u2028",
    "\u3000",
    "x" * 70,
    "长" * 40,
]
prose = st.lists(st.sampled_from(_TOKENS), max_size=200).map("".join)
any_text = st.one_of(prose, st.text(max_size=600))

_fence = st.builds(
    lambda marker, lang, body: f"{marker}{lang}\n{body}\n{marker}",
    st.sampled_from(["```", "~~~", "````"]),
    st.sampled_from(["", "python", "json"]),
    any_text,
)
_table = st.builds(table, st.integers(1, 30), st.integers(1, 3), st.integers(1, 12))
_block = st.one_of(
    any_text,
    _fence,
    _table,
    st.sampled_from(["# Heading", "- one\n- two\n  - nested", "> quoted", "---", "[r]: /x"]),
)
markdown = st.builds(
    lambda blocks, separator: separator.join(blocks),
    st.lists(_block, max_size=10),
    st.sampled_from(["\n", "\n\n", "\n\n\n"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=any_text, max_chars=st.integers(32, 300), max_bytes=st.integers(256, 1_500))
def test_plain_text_loses_nothing_and_every_message_fits(
    text: str, max_chars: int, max_bytes: int
) -> None:
    messages = render_reply(Reply(text), max_chars=max_chars, max_text_bytes=max_bytes)
    # Steer generation towards replies long enough to need splitting.
    target(float(min(len(messages), 20)), label="messages")
    event(f"messages: {min(len(messages), 3)}+")
    assert all(m.msg_type == "text" for m in messages)
    pieces = [text_of(m) for m in messages]
    assert all(piece and piece == piece.rstrip() for piece in pieces)
    assert all(len(piece) <= max_chars for piece in pieces)
    assert all(body_bytes(m) <= max_bytes for m in messages)
    assert visible("".join(pieces)) == visible(text)
    for piece in pieces:
        # No cut lands between a character and a mark joined to it, nor after a ZWJ.
        assert not piece.endswith("\u200d")
        if len(piece) < max_chars and piece is not pieces[-1]:
            assert not unicodedata.combining(piece[0])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=markdown, max_chars=st.integers(64, 600), max_tables=st.integers(1, 3))
def test_markdown_loses_nothing_and_every_card_fits(
    text: str, max_chars: int, max_tables: int
) -> None:
    max_bytes = 2_000
    messages = render_reply(
        Reply(text, markdown=True),
        max_chars=max_chars,
        max_text_bytes=max_bytes,
        max_tables=max_tables,
    )
    # Steer generation towards replies long enough to need splitting.
    target(float(min(len(messages), 20)), label="messages")
    event(f"messages: {min(len(messages), 3)}+")
    event(f"types: {sorted({m.msg_type for m in messages})}")
    pieces = [text_of(m) for m in messages]
    assert all(piece.strip() for piece in pieces)
    assert all(len(piece) <= max_chars for piece in pieces)
    assert all(body_bytes(m) <= max_bytes for m in messages)
    for message, piece in zip(messages, pieces, strict=True):
        if message.msg_type == "interactive":
            assert table_count(piece) <= max_tables
    # Splitting may repeat a fence or a table header, never drop a character.
    assert is_subsequence(visible(text), visible("".join(pieces)))


@settings(deadline=None)
@given(
    word=st.text(
        alphabet=st.characters(exclude_categories=["Z", "Cc", "Cs"]), min_size=300, max_size=900
    )
)
def test_very_long_words_in_any_script_are_cut_without_loss(word: str) -> None:
    messages = render_reply(Reply(word), max_chars=100)
    pieces = [text_of(m) for m in messages]
    assert all(len(piece) <= 100 for piece in pieces)
    assert visible("".join(pieces)) == visible(word)
    assert not any(re.search("[\ud800-\udfff]", piece) for piece in pieces)


@pytest.mark.parametrize(
    "text",
    [
        "- **John Smith** (recCust000002) — Company: Acme",
        "Send `help` for the list of commands.",
        "See [the record](https://example.feishu.cn/base/x).",
        "## Customers\n\n1. Acme",
    ],
)
def test_markup_in_a_plain_reply_renders_as_a_card_not_literal_asterisks(text: str) -> None:
    # Regression: offline answers with markdown went out as text messages, which Lark shows
    # with their asterisks and backticks.
    (message,) = render_reply(Reply(text))
    assert message.msg_type == "interactive"
    assert message.content["body"]["elements"][0]["content"] == text


@pytest.mark.parametrize("text", ["pong", "I will answer in English from now on.", "3 - 2 = 1"])
def test_a_reply_without_markup_stays_a_text_message(text: str) -> None:
    (message,) = render_reply(Reply(text))
    assert message.msg_type == "text"
    assert message.content == {"text": text}

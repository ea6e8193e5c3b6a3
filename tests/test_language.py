"""Language detection, the per-turn language choice, and the message table."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

import larkbot
from larkbot.agent.i18n import MESSAGES, humanise_duration, translate
from larkbot.core.language import LANGUAGES, choose_language, detect_language, parse_language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("顧客テーブルから今月の案件を検索して", "ja"),
        ("明日15時に会議を予約", "ja"),
        ("ヘルプ", "ja"),
        ("what can you do?", "en"),
        ("search customers for Acme", "en"),
        ("你能做什么", "zh"),
        ("在客户表中搜索 Acme", "zh"),
        ("明天下午3点预约会议", "zh"),
        # A name in another script does not change the sentence's language.
        ("search customers for 田中", "en"),
        ("find documents about 予算", "en"),
        # Mentions say nothing about the language around them.
        ("@田中 who is this", "en"),
        ("@Tom さんの情報", "ja"),
        ("who is @小王", "en"),
        ("12345 !!!", None),
        ("👍", None),
        ("", None),
    ],
)
def test_detect_language_by_script(text: str, expected: str | None) -> None:
    assert detect_language(text) == expected


def test_explicit_language_wins_over_everything() -> None:
    assert choose_language("hello there", explicit="zh", default="ja") == "zh"
    assert choose_language("help", explicit="en", default="ja", bare_command=True) == "en"


def test_bare_command_word_uses_the_default() -> None:
    assert choose_language("help", explicit=None, default="ja", bare_command=True) == "ja"
    assert choose_language("status", explicit=None, default="zh", bare_command=True) == "zh"


def test_text_language_then_default() -> None:
    assert choose_language("what can you do?", explicit=None, default="ja") == "en"
    assert choose_language("你能做什么", explicit=None, default="ja") == "zh"
    assert choose_language("???", explicit=None, default="en") == "en"


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("ja", "ja"),
        ("EN", "en"),
        ("zh", "zh"),
        ("日本語", "ja"),
        ("English", "en"),
        ("中文", "zh"),
        ("fr", None),
        ("", None),
    ],
)
def test_parse_language(word: str, expected: str | None) -> None:
    assert parse_language(word) == expected


def test_every_message_exists_in_every_language_with_the_same_placeholders() -> None:
    for key, variants in MESSAGES.items():
        assert set(variants) == set(LANGUAGES), key
        fields = {
            language: {name for _, name, _, _ in string.Formatter().parse(text) if name}
            for language, text in variants.items()
        }
        assert fields["ja"] == fields["en"] == fields["zh"], key
        for text in variants.values():
            assert text.strip(), key


@pytest.mark.parametrize("key", ["empty", "non_text", "error", "reset_done", "ask_time"])
def test_each_variant_is_written_in_its_own_language(key: str) -> None:
    for language in LANGUAGES:
        assert detect_language(translate(key, language)) == language


def test_translate_fills_values_and_rejects_unknown_keys() -> None:
    text = translate("rate_limited", "en", limit=5, seconds=12)
    assert "5" in text and "12 s" in text
    with pytest.raises(KeyError):
        translate("no_such_message", "en")


@pytest.mark.parametrize(
    ("seconds", "ja", "en", "zh"),
    [
        (0, "0秒", "0 s", "0秒"),
        (45, "45秒", "45 s", "45秒"),
        (3725, "1時間2分", "1 h 2 min", "1小时2分钟"),
        (2 * 86400 + 3 * 3600 + 59, "2日3時間", "2 d 3 h", "2天3小时"),
        (86400 + 30, "1日", "1 d", "1天"),
    ],
)
def test_humanise_duration(seconds: int, ja: str, en: str, zh: str) -> None:
    assert humanise_duration(seconds, "ja") == ja
    assert humanise_duration(seconds, "en") == en
    assert humanise_duration(seconds, "zh") == zh


def test_the_english_singular_has_only_the_placeholders_of_the_plural() -> None:
    singular = {key: m for key, m in MESSAGES.items() if m.en_one is not None}
    assert {"records_found", "docs_found", "members"} <= set(singular)
    for key, message in singular.items():
        assert message.en_one is not None
        names = {name for _, name, _, _ in string.Formatter().parse(message.en_one) if name}
        plural = {name for _, name, _, _ in string.Formatter().parse(message.en) if name}
        assert names <= plural, key


def test_a_count_picks_the_english_singular_and_fills_count() -> None:
    assert translate("records_found", "en", table="t", total=1, count=1) == ("Found 1 record in t:")
    assert translate("records_found", "en", table="t", total=2, count=2) == (
        "Found 2 records in t:"
    )
    assert (
        translate("records_found", "ja", table="t", total=1, count=1) == "t で 1 件見つかりました:"
    )
    assert translate("and_more", "zh", count=3) == "……另外还有 3 条"


def test_every_message_the_code_names_is_in_the_catalogue() -> None:
    # Keys are named as literals in calls to translate() and in _Ask(...) questions.
    used: set[tuple[str, str]] = set()
    for path in sorted(Path(larkbot.__file__).parent.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            callee = node.func.id if isinstance(node.func, ast.Name) else None
            first = node.args[0]
            if callee in ("translate", "_Ask") and isinstance(first, ast.Constant):
                used.add((str(first.value), path.name))
    assert len(used) > 60
    missing = sorted((key, where) for key, where in used if key not in MESSAGES)
    assert missing == []


def test_language_is_defined_once_in_core() -> None:
    definitions = [
        path.relative_to(Path(larkbot.__file__).parent).as_posix()
        for path in Path(larkbot.__file__).parent.rglob("*.py")
        if "Language = Literal" in path.read_text(encoding="utf-8")
    ]
    assert definitions == ["core/language.py"]

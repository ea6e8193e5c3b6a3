"""Which language to answer in: detection by script, and the per-turn choice.

Detection looks only at the writing system, which is reliable for the three languages
the bot speaks and needs no model: kana means Japanese; otherwise Han characters are
weighed against Latin words (a Han character carries roughly a word), so "在客户表中搜索
Acme" is Chinese while "search customers for 田中" stays English. ``@mentions`` and
links are ignored because a name or a URL says nothing about the language of the
sentence around it.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

__all__ = ["LANGUAGES", "Language", "choose_language", "detect_language", "parse_language"]

Language = Literal["ja", "en", "zh"]
LANGUAGES: tuple[Language, ...] = get_args(Language)

_KANA = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")
_MENTION = re.compile(r"@\S+")
_URL = re.compile(r"\b(?:https?|ftp)://\S+", re.IGNORECASE)

# Names people type for a language, mapped to its code ("lang 日本語", "use language english").
_LANGUAGE_NAMES: dict[str, Language] = {
    "ja": "ja",
    "jp": "ja",
    "japanese": "ja",
    "日本語": "ja",
    "にほんご": "ja",
    "日语": "ja",
    "en": "en",
    "english": "en",
    "英語": "en",
    "英语": "en",
    "えいご": "en",
    "zh": "zh",
    "cn": "zh",
    "chinese": "zh",
    "中文": "zh",
    "中国語": "zh",
    "汉语": "zh",
    "zh-cn": "zh",
    "zh_cn": "zh",
}


def detect_language(text: str) -> Language | None:
    """Return the language ``text`` is written in, or ``None`` when the script says nothing.

    Kana -> ``"ja"``; else more Han characters than Latin words -> ``"zh"``; else any
    Latin word -> ``"en"``; digits, emoji and punctuation alone -> ``None``.
    """
    text = _MENTION.sub(" ", _URL.sub(" ", text))
    if _KANA.search(text):
        return "ja"
    han = len(_HAN.findall(text))
    latin = len(_LATIN_WORD.findall(text))
    if han and han >= latin:
        return "zh"
    if latin:
        return "en"
    return None


def parse_language(word: str) -> Language | None:
    """Map what a user typed for a language (``ja``, ``English``, ``中文``...) to its code."""
    return _LANGUAGE_NAMES.get(word.strip().lower())


def choose_language(
    text: str,
    *,
    explicit: Language | None,
    default: Language,
    bare_command: bool = False,
) -> Language:
    """Pick the language of this turn's answer.

    An ``explicit`` choice (the conversation's ``lang`` setting) wins; a bare command word
    such as ``help`` says nothing about its writer, so it gets ``default``; otherwise the
    language the text is written in, falling back to ``default``.
    """
    if explicit is not None:
        return explicit
    if bare_command:
        return default
    return detect_language(text) or default

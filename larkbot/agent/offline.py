"""The offline brain: requests in Japanese, English or Chinese mapped to Lark tools by rules.

It understands a fixed set of phrasings (the tables below), calls one tool through the
runner and shows the tool's own readable answer. When a detail is missing it asks for
it; when it cannot tell what is wanted it says what it can do. It never pretends.

How a request is read:

1. The text is NFKC-normalised (full-width ``＝``, ``：`` and digits become ASCII) and
   quoted parts (``"..."``, ``'...'``, ``「...」``, ``“...”``) are set aside, so words
   inside them neither trigger an intent nor get cut.
2. The intent is chosen: a Base request when a configured table is named next to a Base
   verb (the earliest Base verb wins), else calendar, send, a pasted document, wiki or
   Base link, a summary of the chat, members, user, documents, else a Base verb whose
   table can be inferred.
3. Known parts (record id, table, dates, verb, generic nouns) are cut out of the text;
   ``field=value`` pairs become fields or filters and what remains is the search query.
4. A person typed as ``@name`` without mention data (pasted text, a name typed by hand)
   is looked up by display name in the chat's member list: the full name, a part of it
   (``@田中`` finds "田中 健") or its beginning, when exactly one member matches.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from larkbot.agent.brain import TurnContext
from larkbot.agent.i18n import join_list, translate
from larkbot.agent.tools._links import LarkLink, find_links
from larkbot.core.agent import Reply
from larkbot.core.conversation import Conversation
from larkbot.core.language import Language
from larkbot.core.message import InboundMessage, Mention, UserId

if TYPE_CHECKING:
    from larkbot.config.settings import BaseTableSettings

__all__ = ["OfflineBrain", "ToolCall"]

logger = logging.getLogger("larkbot.agent")

_I = re.IGNORECASE


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool the brain decided to call, with its arguments.

    ``question`` is what the user asked about the object the call finds: for a wiki page,
    the words to look for in the document it holds.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    question: str = ""


@dataclass(frozen=True, slots=True)
class _Ask:
    """A question back to the user (an i18n key and its values)."""

    key: str
    values: dict[str, Any] = field(default_factory=dict)


# --- the rule tables ------------------------------------------------------------------
# Each entry is one language's phrasing; they are joined into one pattern per intent, since
# people mix languages ("Acme を search").

_BASE_VERBS: dict[str, dict[Language, str]] = {
    "delete_base_record": {
        "en": r"\b(?:delete|remove|erase)\b",
        "ja": r"(?:を)?(?:削除|消去|消)(?:して|する|し)?(?:ください|下さい)?",
        "zh": r"(?:删除|删掉|刪除|刪掉|移除)",
    },
    "update_base_record": {
        "en": r"\b(?:update|change|modify|edit|set)\b",
        "ja": r"(?:を|に)?(?:更新|変更|修正|編集)(?:して|する|し)?(?:ください|下さい)?",
        "zh": r"(?:更新|修改|更改|编辑|編輯)",
    },
    "create_base_record": {
        "en": r"\b(?:add|create|insert|register)\b",
        "ja": r"(?:を)?(?:新規作成|追加|登録|作成)(?:して|する|し)?(?:ください|下さい)?",
        "zh": r"(?:添加|新增|创建|創建|新建|加入|登记|登記|增加)",
    },
    "search_base_records": {
        "en": r"\b(?:search(?:\s+for)?|find|look\s+up|look\s+for|lookup|show(?:\s+me)?|list"
        r"|query|get|fetch|pull\s+up)\b",
        "ja": r"(?:を)?(?:検索|探|調べ|一覧表示|一覧|表示|見せ|教え|抽出|出し)(?:して|て|す|る)?"
        r"(?:ください|下さい)?",
        "zh": r"(?:搜索|搜尋|查找|查询|查詢|查一下|查看|查|找一下|找|列出|显示|顯示|看看|看一下)",
    },
}

_CALENDAR_NOUN: dict[Language, str] = {
    "en": r"\b(?:meeting|call|event|appointment|sync|standup|interview|1:1)s?\b",
    "ja": r"(?:会議|ミーティング|打ち合わせ|打合せ|面談|予定|MTG)",
    "zh": r"(?:会议|會議|开会|開會|日程|面谈|面談)",
}
_CALENDAR_VERB: dict[Language, str] = {
    "en": r"\b(?:book|schedule|set\s+up|arrange|create|add|plan|organi[sz]e|put)\b",
    "ja": r"(?:予約|入れ|設定|作成|登録|追加|組ん|組み|セット|押さえ)",
    "zh": r"(?:预约|預約|预定|預定|安排|创建|創建|添加|约|約|订|訂)",
}
_SEND_VERB: dict[Language, str] = {
    "en": r"\b(?:send|post|dm|message|notify)\b|\btell\b(?!\s+me\b)",
    "ja": r"(?:と|って)?(?:送って|送信|送る|送り|伝えて|連絡して|投稿して|通知して)"
    r"(?:ください|下さい)?",
    "zh": r"(?:发送|發送|发给|發給|发到|發到|发消息|告诉|告訴|通知|转告|轉告|发|發)",
}
_MESSAGE_NOUN: dict[Language, str] = {
    "en": r"\b(?:a\s+)?message\b(?:\s+saying)?",
    "ja": r"(?:という)?メッセージ(?:を)?",
    "zh": r"(?:一条|一條)?(?:消息|訊息|信息)",
}
_MEMBERS: dict[Language, str] = {
    "en": r"\bwho(?:'s|\s+is|\s+are)\s+(?:in|on)\s+(?:this|the|our)\s+(?:chat|group|channel|room)\b"
    r"|\bmembers?\b|\bparticipants\b",
    "ja": r"メンバー|参加者|(?:誰|だれ)が(?:いる|いま)",
    "zh": r"成员|成員|群里有谁|群裡有誰|参与者|參與者|有哪些人",
}
# A strong user trigger asks about a person by itself; a weak one needs a person named.
_USER_STRONG: dict[Language, str] = {
    "en": r"\bwho(?:'s|\s+is|\s+are)\b",
    "ja": r"(?:は|って)(?:誰|だれ|どなた)|(?:さん|様|氏)の(?:情報|プロフィール|連絡先|詳細)",
    "zh": r"是谁|是誰|(?:的)?(?:个人信息|個人信息|用户信息|用戶信息|联系方式|聯繫方式)",
}
_USER_WEAK: dict[Language, str] = {
    "en": r"\b(?:info|information|details|profile|contact|look\s*up|about)\b",
    "ja": r"情報|プロフィール|連絡先|詳細|について",
    "zh": r"信息|资料|資料|详情|詳情",
}
_DOCUMENTS: dict[Language, str] = {
    "en": r"\b(?:docs?|documents?|wikis?|files?|spreadsheets?|notes)\b"
    r"(?:\s+(?:about|on|for|regarding|titled|called|named|mentioning|with))?",
    "ja": r"(?:の|に関する|についての|関連の)?(?:ドキュメント|文書|資料|ファイル|ウィキ|wiki)"
    r"(?:を|で)?",
    "zh": r"(?:的)?(?:文档|文檔|文件|资料|知识库|知識庫)",
}
_SUMMARISE: dict[Language, str] = {
    "en": r"\b(?:summari[sz]e|summary|recap|tl;?\s?dr|catch\s+(?:me\s+)?up|what\s+did\s+i\s+miss"
    r"|what(?:'s|\s+has|\s+was)\s+been\s+(?:said|discussed|going\s+on))\b",
    "ja": r"要約|まとめて|まとめを|サマリー|振り返って|何の話"
    r"|これまでの(?:話|会話|流れ|やりとり|やり取り)",
    "zh": r"总结|總結|摘要|概括|汇总|彙總|回顾|回顧|说了什么|說了什麼|聊了什么|聊了什麼"
    r"|讨论了什么|討論了什麼",
}
# Naming the whole chat makes a summary asked inside a thread cover the chat instead.
_WHOLE_CHAT: dict[Language, str] = {
    "en": r"\b(?:chat|group|channel|room)\b",
    "ja": r"チャット|グループ",
    "zh": r"群聊|群里|群裡|群组|群組|整个群|整個群",
}
_MESSAGE_COUNT = re.compile(
    r"\b(?P<a>\d{1,3})\s+(?:messages?|posts?)\b|(?P<b>\d{1,3})\s*(?:件|条|條)", _I
)
_SUMMARY_MESSAGES = 20
# "what does <link> say about X": the X, in each language.
_ABOUT = (
    re.compile(
        r"\b(?:about|regarding|concerning|mentions?|mentioning)\s+(?:the\s+|our\s+|its\s+)?"
        r"(?P<q>[^?!.。？！]+?)\s*[?!.。？！]*$",
        _I,
    ),
    re.compile(r"(?P<q>[^\s、。?？!！]+?)\s*(?:について|に関して|に関する|のこと|って何|とは)"),
    re.compile(
        r"(?:关于|關於|有关|有關)\s*(?P<q>[^\s,，。?？!！]+?)\s*(?:的内容|的部分|的信息|的情况)?\s*"
        r"(?:说了什么|說了什麼|写了什么|寫了什麼|怎么说|怎麼說|是什么|是什麼|有什么|有什麼"
        r"|[,，?？。!！]|$)"
    ),
    re.compile(
        r"(?P<q>[^\s,，。?？!！]+?)\s*(?:是怎么说的|是怎麼說的|怎么说|怎麼說|说了什么|說了什麼"
        r"|写了什么|寫了什麼)"
    ),
)
# What is left in front of the X once the link is cut out: "には", "この資料の", "里".
_QUESTION_LEAD = re.compile(
    r"^(?:(?:この|その|あの)?(?:ドキュメント|文書|資料|ページ)|(?:这个|這個|该|該)?"
    r"(?:文档|文檔|文件|页面|頁面)|には|では|から|[にはでのをがも]|里|裡|中|的)+"
)
# The kinds of pasted link the brain follows, and the intent each starts.
_LINK_INTENTS = {"docx": "read_document", "wiki": "get_wiki_node", "bitable": "list_base_tables"}
_DATE_RANGES: dict[str, dict[Language, str]] = {
    "today": {"en": r"\btoday(?:'s)?\b", "ja": r"(?:今日|本日)の?", "zh": r"今天的?"},
    "this_week": {
        "en": r"\bthis\s+week(?:'s)?\b",
        "ja": r"今週の?",
        "zh": r"(?:本周|这周|這週|这个星期|這個星期|本星期)的?",
    },
    "this_month": {
        "en": r"\bthis\s+month(?:'s)?\b",
        "ja": r"今月の?",
        "zh": r"(?:本月|这个月|這個月)的?",
    },
}
# Words that name "records" in general and so are never a search term.
_GENERIC: dict[Language, str] = {
    "en": r"\b(?:all|records?|rows?|entries|entry|items?|data|deals?|cases?|everything|results?)\b",
    "ja": r"(?:の|な)?(?:案件|レコード|データ|全部|すべて|全て|全件|一覧)",
    "zh": r"(?:的)?(?:记录|記錄|数据|數據|条目|條目|案件|所有|全部)",
}
_LIMIT = re.compile(
    r"\b(?:top|first|limit)\s+(?P<a>\d{1,3})\b|\b(?P<b>\d{1,3})\s+(?:records|results|rows|entries)\b"
    r"|(?P<c>\d{1,3})\s*(?:件|条|條)",
    _I,
)
# Trimmed from the ends of a leftover phrase (a query, a message, a title). Cutting a part
# out leaves a space, so a filler next to a cut part stands alone; requiring that space
# keeps names such as 中村 or 在庫 whole. Japanese particles and 的 attach to the word
# before them ("Acmeを"), so those are also trimmed when glued on at the end.
_LEADING_JUNK = re.compile(
    r"^(?:please|pls|can\s+you|could\s+you|would\s+you|will\s+you|for\s+me|for|me|the|a|an"
    r"|in|from|with|that|which|where|whose|containing|matching|named|called|about|to|of|and"
    r"|一下|在|把|给|給|中|里|的|吧|ください|下さい|お願いします|お願い|して|[をにでのはがとへもや])"
    r"(?:\s+|$)"
    r"|^(?:请|請|帮我|幫我|帮忙|关于|關於|有关|有關)",
    _I,
)
_TRAILING_JUNK = re.compile(
    r"(?:^|\s+)(?:please|pls|for\s+me|and|请|請|一下|吧|中|里)$"
    r"|(?:ください|下さい|お願いします|お願い|して|的|[をにでのはがとへもや])$",
    _I,
)
_PUNCTUATION = " \t\n,，、。.!！?？:：;；~〜"

_QUOTED = re.compile(
    r"\"([^\"]*)\"|“([^”]*)”|「([^」]*)」|『([^』]*)』|‘([^’]*)’|(?<![\w'])'([^']*)'(?![\w])"
)
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_MARKS = re.compile("[\ue000-\ue002]")
_RECORD_ID = re.compile(r"(?<![A-Za-z0-9_])rec[A-Za-z0-9]{4,}(?![A-Za-z0-9_])")
_CHAT_ID = re.compile(r"(?<![A-Za-z0-9_])oc_[A-Za-z0-9]+")
_OPEN_ID = re.compile(r"(?<![A-Za-z0-9_])ou_[A-Za-z0-9]+")
_EMAIL = re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_TARGET_LEAD = r"(?:\bto\s+|\bfor\s+|\bwith\s+|给|給|向|跟|和)?"
_TARGET_TAIL = r"\s*(?:さん|様|氏|くん|ちゃん)?\s*(?:宛てに|宛に|に|へ|と|の)?"
# A typed @name with no mention data: where it ends is a guess (Japanese has no spaces),
# so stop at the first honorific or particle.
_UNKNOWN_MENTION = re.compile(
    _TARGET_LEAD
    + r"(?P<name>@[^\s@、,，。]+?)(?=さん|様|氏|に|へ|の|を|は|と|是|的|发|發|[\s、,，。?？]|$)"
    + _TARGET_TAIL,
    _I,
)
# ``key=value`` / ``key: value``: a key starts the text or follows a separator.
_PAIR_KEY = re.compile(r"(?:^|(?<=[\s,;、，；]))(?P<key>[^\s=:,;、，；]+?)\s*[=:](?!//)\s*")
_PAIR_SEPARATORS = " \t\n,;、，；。"
# A particle glued to the front of a key ("を状態=成約") belongs to the sentence.
_KEY_PARTICLES = re.compile(r"^[をにでのはがとへもや]+")

# --- dates and times -------------------------------------------------------------------

_DAY_AFTER_TOMORROW = re.compile(r"\bday\s+after\s+tomorrow\b|明後日|あさって|后天|後天", _I)
_TOMORROW = re.compile(r"\btomorrow\b|明日|あした|明天", _I)
_TODAY = re.compile(r"\btoday\b|今日|本日|きょう|今天", _I)
_WEEKDAY_WORDS = {
    "mon": 0,
    "tue": 1,
    "wed": 2,
    "thu": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
    "月": 0,
    "火": 1,
    "水": 2,
    "木": 3,
    "金": 4,
    "土": 5,
    "日": 6,
    "一": 0,
    "二": 1,
    "三": 2,
    "四": 3,
    "五": 4,
    "六": 5,
    "天": 6,
}
_WEEKDAY_EN = re.compile(
    r"\b(?:on\s+)?(?P<next>next\s+|this\s+)?(?P<wd>mon|tue|wed|thu|fri|sat|sun)"
    r"(?:day|s|sday|nesday|rsday|urday|r|rs|t)?\b",
    _I,
)
_WEEKDAY_JA = re.compile(r"(?P<next>来週の?|今週の?)?(?P<wd>[月火水木金土日])曜(?:日)?")
_WEEKDAY_ZH = re.compile(
    r"(?P<next>下个?|下個?|这个?|這個?|本)?(?:周|週|星期|礼拜|禮拜)(?P<wd>[一二三四五六日天])"
)
_DATE_ISO = re.compile(r"\b(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})\b")
_DATE_MD = re.compile(
    r"(?<![\d:])(?P<mo>\d{1,2})\s*(?:/|月)\s*(?P<d>\d{1,2})\s*(?:日|号|號)?(?![\d:])"
)

_CN_DIGITS = "零一二三四五六七八九"
_MAX_MEETING_MINUTES = 24 * 60
_NUMBER = r"\d{1,2}|[零一二两兩三四五六七八九十]{1,3}"
_TIMES = (
    re.compile(
        r"(?:\bat\s+|\bfrom\s+)?(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ap>a\.?m\.?|p\.?m\.?)(?![a-z])",
        _I,
    ),
    re.compile(
        r"(?P<ap>午前|午後|朝|夕方|夜|上午|早上|早晨|中午|下午|傍晚|晚上)?\s*"
        rf"(?P<h>{_NUMBER})\s*(?:時(?!間)|时(?!间)|点|點)\s*"
        rf"(?:(?P<half>半)|(?P<m>{_NUMBER})\s*分(?!钟|鐘|間))?"
    ),
    re.compile(r"(?:\bat\s+|\bfrom\s+)?(?<![\d/])(?P<h>\d{1,2}):(?P<m>\d{2})(?![\d/])", _I),
    re.compile(r"(?P<noon>\bnoon\b|\bmidday\b|正午)", _I),
)
_PM = frozenset({"pm", "p.m.", "p.m", "午後", "夕方", "夜", "下午", "傍晚", "晚上"})
_AM = frozenset({"am", "a.m.", "a.m", "午前", "朝", "上午", "早上", "早晨"})
_DURATIONS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], float]], ...] = (
    (
        re.compile(r"\b(?:for\s+)?half\s+an?\s+hour\b|半時間|半(?:个|個)?(?:小时|小時)", _I),
        lambda m: 30,
    ),
    (re.compile(r"\b(?:for\s+)?(?:an|one)\s+hour\b", _I), lambda m: 60),
    (
        re.compile(
            r"(?:\bfor\s+)?(?P<n>\d+(?:\.\d+)?)\s*(?:hours?\b|hrs?\b|h\b|時間|(?:个|個)?(?:小时|小時|钟头))"
            r"(?P<half>半)?",
            _I,
        ),
        lambda m: float(m["n"]) * 60 + (30 if m["half"] else 0),
    ),
    (
        re.compile(r"(?:\bfor\s+)?(?P<n>\d+)\s*(?:minutes?\b|mins?\b|m\b|分間|分钟|分鐘|分)", _I),
        lambda m: float(m["n"]),
    ),
)
# A meeting's title: quoted, or "about X", or "X の会議", or "关于X的会议".
_SUMMARY = (
    re.compile(r"\b(?:about|regarding|re|on|titled|called)\s*:?\s+(?P<s>.+)$", _I),
    re.compile(
        r"(?P<s>[^\s]+?)(?:について|に関する|に関して|の件で?|の)(?:会議|ミーティング|打ち合わせ|打合せ|面談|MTG)"
    ),
    re.compile(r"(?:关于|關於)(?P<s>.+?)(?:的)?(?:会议|會議|会|會|讨论|討論)"),
)


def _union(table: Mapping[Language, str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{pattern})" for pattern in table.values()), _I)


_BASE_PATTERNS = {intent: _union(table) for intent, table in _BASE_VERBS.items()}
_CALENDAR_NOUN_RE = _union(_CALENDAR_NOUN)
_CALENDAR_VERB_RE = _union(_CALENDAR_VERB)
_SEND_RE = _union(_SEND_VERB)
_MESSAGE_NOUN_RE = _union(_MESSAGE_NOUN)
_MEMBERS_RE = _union(_MEMBERS)
_USER_STRONG_RE = _union(_USER_STRONG)
_USER_WEAK_RE = _union(_USER_WEAK)
_DOCUMENTS_RE = _union(_DOCUMENTS)
_SUMMARISE_RE = _union(_SUMMARISE)
_WHOLE_CHAT_RE = _union(_WHOLE_CHAT)
_DATE_RANGE_RES = {name: _union(table) for name, table in _DATE_RANGES.items()}
_GENERIC_RE = _union(_GENERIC)


# --- reading the text ------------------------------------------------------------------


class _Draft:
    """The text being read: quoted parts set aside, known parts cut out as they are found."""

    def __init__(self, text: str) -> None:
        self.quotes: list[str] = []
        # The private-use marks this class uses as placeholders must not come from the user.
        text = _MARKS.sub("", unicodedata.normalize("NFKC", text))
        self.body = _QUOTED.sub(self._stash, text)

    def _stash(self, match: re.Match[str]) -> str:
        self.quotes.append(next(group for group in match.groups() if group is not None))
        return f" \ue000{len(self.quotes) - 1}\ue001 "

    def take(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        """Cut the first match of ``pattern`` out of the body and return it."""
        match = pattern.search(self.body)
        if match:
            self.body = f"{self.body[: match.start()]} {self.body[match.end() :]}"
        return match

    def take_all(self, pattern: re.Pattern[str]) -> list[re.Match[str]]:
        """Cut every match of ``pattern`` out of the body."""
        matches = list(pattern.finditer(self.body))
        if matches:
            self.body = pattern.sub(" ", self.body)
        return matches

    def restore(self, text: str) -> str:
        """Put the quoted parts back into ``text``."""
        return _PLACEHOLDER.sub(lambda m: self.quotes[int(m.group(1))], text)

    def leftover(self) -> str:
        """What remains of the body, trimmed of fillers, with quotes restored."""
        return self.restore(_trim(self.body))


def _trim(text: str) -> str:
    text = " ".join(text.split())
    previous = None
    while text != previous:
        previous = text
        text = _LEADING_JUNK.sub("", text.strip(_PUNCTUATION))
        text = _TRAILING_JUNK.sub("", text.strip(_PUNCTUATION)).strip(_PUNCTUATION)
    return text


def _pairs(text: str) -> tuple[dict[str, str], str]:
    """Split ``key=value`` pairs out of ``text``; return them and the text before the first."""
    keys = list(_PAIR_KEY.finditer(text))
    pairs: dict[str, str] = {}
    for index, match in enumerate(keys):
        end = keys[index + 1].start() if index + 1 < len(keys) else len(text)
        value = text[match.end() : end].strip(_PAIR_SEPARATORS)
        key = _KEY_PARTICLES.sub("", match["key"].strip(_PAIR_SEPARATORS))
        if key and value:
            pairs[key] = value
    return pairs, text[: keys[0].start()] if keys else text


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    pattern: re.Pattern[str]


def _table_patterns(bases: Mapping[str, BaseTableSettings]) -> list[_Table]:
    """One pattern per table name or alias, longest first, swallowing "table"/"から"/"在…中"."""
    lead = (
        r"(?:\b(?:in|from|on|into|to|of|for)\s+(?:the\s+|my\s+|our\s+)?"
        r"|(?:在|从|從|向|往|给|給|把)\s*)?"
    )
    tail = (
        r"(?:\s*\b(?:table|base|sheet|list)s?\b)?(?:テーブル|表格|表|シート|台帳|リスト)?"
        r"(?:の中|中|里|裡|内|內)?(?:から|で|に|へ|の|的)?"
    )
    words: list[tuple[str, str]] = []
    for name, table in bases.items():
        for word in (name, *table.aliases):
            if word.strip():
                words.append((word.strip(), name))
    words.sort(key=lambda item: len(item[0]), reverse=True)
    tables: list[_Table] = []
    for word, name in words:
        if word.isascii():
            stem = word[:-1] if word.lower().endswith("s") and len(word) > 3 else word
            core = rf"(?<![A-Za-z0-9_]){re.escape(stem)}(?:s|es)?(?![A-Za-z0-9_])"
        else:
            core = re.escape(word)
        tables.append(_Table(name, re.compile(lead + core + tail, _I)))
    return tables


def _find_table(draft: _Draft, tables: list[_Table]) -> str | None:
    for table in tables:
        if table.pattern.search(draft.body):
            return table.name
    return None


def _take_table(draft: _Draft, tables: list[_Table]) -> str | None:
    for table in tables:
        if draft.take(table.pattern):
            return table.name
    return None


def _take_record_id(draft: _Draft) -> str | None:
    for match in _RECORD_ID.finditer(draft.body):
        word = match.group(0)
        # All-lowercase letters is an English word ("record", "recent"), not an id.
        if not (word.isalpha() and word.islower()):
            draft.body = f"{draft.body[: match.start()]} {draft.body[match.end() :]}"
            return word
    return None


def _mentions(draft: _Draft, message: InboundMessage) -> tuple[list[str], list[str]]:
    """Cut @mentions out of the body: the open_ids found (in text order), and unknown names.

    Longer names go first so "@Tom Smith" is not taken for "@Tom".
    """
    found: list[tuple[int, str]] = []
    for mention in sorted(message.mentions, key=lambda m: len(m.name), reverse=True):
        if not mention.name or not mention.id.open_id:
            continue
        pattern = re.compile(_TARGET_LEAD + re.escape(f"@{mention.name}") + _TARGET_TAIL, _I)
        if match := draft.take(pattern):
            found.append((match.start(), mention.id.open_id))
    unknown = [match["name"] for match in draft.take_all(_UNKNOWN_MENTION)]
    return [open_id for _, open_id in sorted(found)], unknown


# --- dates and times -------------------------------------------------------------------


def _number(text: str) -> int | None:
    """Read ``15``, ``三`` or ``十二``; ``None`` for what is not a number (``十十``)."""
    if text.isdigit():
        return int(text)
    text = text.replace("两", "二").replace("兩", "二")
    tens, ten, ones = text.partition("十")
    if not ten:
        tens, ones = "", text
    elif not tens:
        tens = "一"
    if len(tens) > 1 or len(ones) > 1 or not set(tens + ones) <= set(_CN_DIGITS):
        return None
    value = _CN_DIGITS.index(ones) if ones else 0
    return value + (_CN_DIGITS.index(tens) * 10 if ten else 0)


@dataclass(frozen=True, slots=True)
class _Clock:
    hour: int
    minute: int
    ambiguous: bool


def _read_time(match: re.Match[str]) -> _Clock | None:
    groups = match.groupdict()
    if groups.get("noon"):
        return _Clock(12, 0, ambiguous=False)
    hour = _number(groups["h"])
    minute = 30 if groups.get("half") else _number(groups["m"]) if groups.get("m") else 0
    period = (groups.get("ap") or "").lower()
    if hour is None or minute is None or hour > 23 or minute > 59:
        return None
    if (period in _PM and hour < 12) or (period == "中午" and hour < 11):
        hour += 12
    elif period in _AM and hour == 12:
        hour = 0
    # "3時" or "3点" alone could be 3 am or 3 pm; ask rather than guess.
    return _Clock(hour, minute, ambiguous=not period and 1 <= hour <= 6)


def _take_times(draft: _Draft) -> list[_Clock | None]:
    found: list[tuple[int, _Clock | None]] = []
    for pattern in _TIMES:
        while match := pattern.search(draft.body):
            found.append((match.start(), _read_time(match)))
            # Same-length filler keeps the positions of earlier finds comparable.
            filler = "\ue002" * (match.end() - match.start())
            draft.body = f"{draft.body[: match.start()]}{filler}{draft.body[match.end() :]}"
    draft.body = draft.body.replace("\ue002", " ")
    return [clock for _, clock in sorted(found, key=lambda item: item[0])]


@dataclass(frozen=True, slots=True)
class _Day:
    """The day a request names: ``named`` is what was typed (``None`` when no day was)."""

    day: date | None = None
    named: str | None = None
    bare_weekday: bool = False


def _take_day(draft: _Draft, today: date) -> _Day:
    """Cut the day named in the body out of it; ``day`` is ``None`` for an impossible date."""
    for pattern, offset in ((_DAY_AFTER_TOMORROW, 2), (_TOMORROW, 1), (_TODAY, 0)):
        if match := draft.take(pattern):
            return _Day(today + timedelta(days=offset), match.group(0))
    if match := draft.take(_DATE_ISO):
        return _Day(_date(int(match["y"]), int(match["mo"]), int(match["d"])), match.group(0))
    if match := draft.take(_DATE_MD):
        day = _date(today.year, int(match["mo"]), int(match["d"]))
        if day is not None and day < today:
            day = _date(today.year + 1, day.month, day.day)
        return _Day(day, match.group(0).strip())
    for pattern in (_WEEKDAY_EN, _WEEKDAY_JA, _WEEKDAY_ZH):
        if match := draft.take(pattern):
            word = match["wd"]
            weekday = _WEEKDAY_WORDS[word.lower()[:3] if word.isascii() else word]
            marker = (match["next"] or "").strip().lower()
            if marker.startswith(("next", "来週", "下")):
                monday = today - timedelta(days=today.weekday()) + timedelta(days=7)
                return _Day(monday + timedelta(days=weekday), match.group(0))
            ahead = (weekday - today.weekday()) % 7
            return _Day(today + timedelta(days=ahead), match.group(0), bare_weekday=True)
    return _Day()


def _date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _take_duration(draft: _Draft) -> float | None:
    for pattern, minutes in _DURATIONS:
        if match := draft.take(pattern):
            found = minutes(match)
            # Nothing books a meeting of no length or of more than a day.
            return found if 0 < found <= _MAX_MEETING_MINUTES else None
    return None


# --- the brain -------------------------------------------------------------------------


class OfflineBrain:
    """Answers by rules: commands are handled before it, requests map to one tool call.

    The times people say ("tomorrow 3pm") are placed in ``turn.timezone``. ``now`` tells
    the current moment; tests inject it to fix the date.
    """

    name = "offline"

    def __init__(self, *, now: Callable[[], datetime] | None = None) -> None:
        self._now = now or (lambda: datetime.now(UTC))

    async def think(
        self, message: InboundMessage, conversation: Conversation, turn: TurnContext
    ) -> Reply:
        """Work out the tool call ``message`` asks for, run it and show its answer."""
        language = turn.language
        planned = self._plan(message, turn)
        if isinstance(planned, _Ask) and planned.key == "mention_unresolved":
            found = await _with_members_named(message, turn)
            if isinstance(found, _Ask):
                planned = found
            elif found is not None:
                planned = self._plan(found, turn)
        if planned is None:
            examples = translate("examples", language)
            return Reply(translate("fallback", language, examples=examples))
        if isinstance(planned, _Ask):
            return Reply(translate(planned.key, language, **planned.values))
        if (refusal := turn.refusal(planned.name)) is not None:
            return Reply(refusal)
        if turn.runner is None or turn.tool_ctx is None:
            return Reply(translate("no_tools", language))
        logger.info(
            "message %s: offline brain calls %s",
            message.message_id,
            planned.name,
        )
        result = await turn.runner.run(planned.name, planned.arguments, turn.tool_ctx)
        if not result.ok:
            return Reply(result.error or translate("error", language))
        if result.card is not None:
            return Reply(result.text, card=result.card)
        if planned.name == "get_wiki_node":
            return await self._follow_wiki_page(planned, result.data, result.text, turn)
        return Reply(result.text or translate("done", language))

    async def _follow_wiki_page(
        self, planned: ToolCall, node: Any, text: str, turn: TurnContext
    ) -> Reply:
        """Read what a wiki page holds (its document, its Base's tables) after the page itself."""
        follow = node.get("next") if isinstance(node, dict) else None
        if not isinstance(follow, dict) or not turn.profile.allows(str(follow.get("tool"))):
            return Reply(text)
        assert turn.runner is not None and turn.tool_ctx is not None
        arguments = dict(follow.get("arguments") or {})
        if planned.question and follow.get("tool") == "read_document":
            arguments["query"] = planned.question
        result = await turn.runner.run(str(follow["tool"]), arguments, turn.tool_ctx)
        return Reply(f"{text}\n\n{result.text if result.ok else result.error}")

    def plan(self, message: InboundMessage, turn: TurnContext) -> ToolCall | str | None:
        """Return the tool call ``message`` asks for, a question, or ``None``.

        A question (already in ``turn.language``) comes back when a detail is missing;
        ``None`` when the request is not understood. Sets ``turn.intent`` to the tool the
        request is about, or ``"fallback"``. Reads the text only: a typed ``@name`` is
        looked up in the chat's members by :meth:`think`, not here.
        """
        planned = self._plan(message, turn)
        if isinstance(planned, _Ask):
            return translate(planned.key, turn.language, **planned.values)
        return planned

    def _plan(self, message: InboundMessage, turn: TurnContext) -> ToolCall | _Ask | None:
        bases = turn.settings.bases
        tables = _table_patterns(bases)
        draft = _Draft(message.text)
        intent = _choose_intent(draft, tables, bases)
        turn.intent = intent or "fallback"
        if intent is None:
            return None
        return _PLANNERS[intent](self, draft, message, turn, tables)

    # Each planner cuts the parts of its request out of the draft in a fixed order: ids
    # and tables first (they may contain words that look like verbs), then verbs.

    def _plan_search(
        self, draft: _Draft, message: InboundMessage, turn: TurnContext, tables: list[_Table]
    ) -> ToolCall | _Ask:
        table = _take_table(draft, tables) or _only_table(turn)
        if table is None:
            return _ask_table(turn)
        date_range = next(
            (name for name, pattern in _DATE_RANGE_RES.items() if draft.take(pattern)), None
        )
        limit_match = draft.take(_LIMIT)
        draft.take(_BASE_PATTERNS["search_base_records"])
        draft.take_all(_GENERIC_RE)
        filters, rest = _pairs(draft.body)
        query = draft.restore(_trim(rest))
        arguments: dict[str, Any] = {"table": table, "query": query}
        if filters:
            arguments["field_filters"] = {
                draft.restore(k): draft.restore(_trim(v)) for k, v in filters.items()
            }
        if date_range:
            arguments["date_range"] = date_range
        if limit_match:
            arguments["limit"] = min(100, max(1, int(next(g for g in limit_match.groups() if g))))
        return ToolCall("search_base_records", arguments)

    def _plan_create(
        self, draft: _Draft, message: InboundMessage, turn: TurnContext, tables: list[_Table]
    ) -> ToolCall | _Ask:
        table = _take_table(draft, tables) or _only_table(turn)
        if table is None:
            return _ask_table(turn)
        draft.take(_BASE_PATTERNS["create_base_record"])
        fields = _fields(draft)
        if not fields:
            return _Ask("ask_fields")
        return ToolCall("create_base_record", {"table": table, "fields": fields})

    def _plan_update(
        self, draft: _Draft, message: InboundMessage, turn: TurnContext, tables: list[_Table]
    ) -> ToolCall | _Ask:
        record = _record_target(draft, turn, tables)
        if isinstance(record, _Ask):
            return record
        draft.take(_BASE_PATTERNS["update_base_record"])
        fields = _fields(draft)
        if not fields:
            return _Ask("ask_fields")
        return ToolCall("update_base_record", {**record, "fields": fields})

    def _plan_delete(
        self, draft: _Draft, message: InboundMessage, turn: TurnContext, tables: list[_Table]
    ) -> ToolCall | _Ask:
        record = _record_target(draft, turn, tables)
        return record if isinstance(record, _Ask) else ToolCall("delete_base_record", record)

    def _plan_send(
        self, draft: _Draft, message: InboundMessage, turn: TurnContext, tables: list[_Table]
    ) -> ToolCall | _Ask:
        target: dict[str, str] = {}
        if match := draft.take(re.compile(_TARGET_LEAD + _CHAT_ID.pattern + _TARGET_TAIL, _I)):
            target["chat_id"] = _CHAT_ID.search(match.group(0)).group(0)  # type: ignore[union-attr]
        elif match := draft.take(re.compile(_TARGET_LEAD + _OPEN_ID.pattern + _TARGET_TAIL, _I)):
            target["user_open_id"] = _OPEN_ID.search(match.group(0)).group(0)  # type: ignore[union-attr]
        open_ids, unknown = _mentions(draft, message)
        if not target and open_ids:
            target["user_open_id"] = open_ids[0]
        if draft.quotes:
            text = draft.quotes[0]
        else:
            draft.take(_MESSAGE_NOUN_RE)
            draft.take(_SEND_RE)
            # Only punctuation is trimmed: every word left is part of the message.
            text = draft.restore(" ".join(draft.body.split()).strip(_PUNCTUATION))
        if not target:
            if unknown:
                return _Ask("mention_unresolved", {"name": unknown[0]})
            return _Ask("ask_message_target")
        if not text.strip():
            return _Ask("ask_message_text")
        return ToolCall("send_message", {"text": text, **target})

    def _plan_members(
        self, draft: _Draft, message: InboundMessage, turn: TurnContext, tables: list[_Table]
    ) -> ToolCall | _Ask:
        match = _CHAT_ID.search(draft.body)
        return ToolCall("list_chat_members", {"chat_id": match.group(0)} if match else {})

    def _plan_user(
        self, draft: _Draft, message: InboundMessage, turn: TurnContext, tables: list[_Table]
    ) -> ToolCall | _Ask:
        if match := draft.take(_EMAIL):
            return ToolCall("get_user_info", {"email": match.group(0)})
        if match := _OPEN_ID.search(draft.body):
            return ToolCall("get_user_info", {"user_open_id": match.group(0)})
        open_ids, unknown = _mentions(draft, message)
        if open_ids:
            return ToolCall("get_user_info", {"user_open_id": open_ids[0]})
        if unknown:
            return _Ask("mention_unresolved", {"name": unknown[0]})
        return _Ask("ask_user")

    def _plan_documents(
        self, draft: _Draft, message: InboundMessage, turn: TurnContext, tables: list[_Table]
    ) -> ToolCall | _Ask:
        draft.take(_DOCUMENTS_RE)
        draft.take(_BASE_PATTERNS["search_base_records"])
        query = draft.leftover()
        if not query:
            return _Ask("ask_doc_query")
        return ToolCall("search_documents", {"query": query})

    def _plan_link(
        self, draft: _Draft, message: InboundMessage, turn: TurnContext, tables: list[_Table]
    ) -> ToolCall | _Ask:
        link = _followed_link(draft)
        assert link is not None  # the intent is chosen only when there is one
        draft.body = draft.body.replace(link.url, " ")
        question = _question(draft)
        if link.kind == "docx":
            arguments = {"document": link.url}
            if question:
                arguments["query"] = question
            return ToolCall("read_document", arguments)
        if link.kind == "wiki":
            return ToolCall("get_wiki_node", {"node": link.url}, question=question)
        if link.table_id:
            return ToolCall("list_base_fields", {"base": link.url})
        return ToolCall("list_base_tables", {"base": link.url})

    def _plan_summary(
        self, draft: _Draft, message: InboundMessage, turn: TurnContext, tables: list[_Table]
    ) -> ToolCall | _Ask:
        count = draft.take(_MESSAGE_COUNT)
        limit = int(next(g for g in count.groups() if g)) if count else _SUMMARY_MESSAGES
        arguments: dict[str, Any] = {"limit": min(200, max(1, limit)), "exclude_bots": True}
        if message.thread_id and not _WHOLE_CHAT_RE.search(draft.body):
            arguments["thread_id"] = message.thread_id
        return ToolCall("list_chat_messages", arguments)

    def _plan_calendar(
        self, draft: _Draft, message: InboundMessage, turn: TurnContext, tables: list[_Table]
    ) -> ToolCall | _Ask:
        tz = turn.timezone
        now = self._now().astimezone(tz)
        attendees, unknown = _mentions(draft, message)
        attendees += [m.group(0) for m in draft.take_all(_OPEN_ID)]
        clocks = _take_times(draft)
        named = _take_day(draft, now.date())
        minutes = _take_duration(draft)
        if unknown:
            return _Ask("mention_unresolved", {"name": unknown[0]})
        if named.named is not None and named.day is None:
            return _Ask("bad_date", {"date": named.named})
        if not clocks or clocks[0] is None or clocks[0].ambiguous:
            return _Ask("ask_time")
        first = clocks[0]
        start = datetime.combine(named.day or now.date(), time(first.hour, first.minute), tz)
        if start <= now and named.bare_weekday:
            start += timedelta(days=7)
        elif start <= now:
            shown = f"{first.hour}:{first.minute:02d}"
            if named.day is None or named.day == now.date():
                return _Ask("time_passed", {"time": shown})
            return _Ask("date_passed", {"when": f"{start.date().isoformat()} {shown}"})
        end: datetime | None = None
        if minutes:
            end = start + timedelta(minutes=minutes)
        elif len(clocks) > 1 and clocks[1] is not None:
            candidate = start.replace(hour=clocks[1].hour, minute=clocks[1].minute)
            end = candidate if candidate > start else None
        draft.take_all(_CALENDAR_VERB_RE)
        summary = _summary(draft) or translate("meeting", turn.language)
        arguments: dict[str, Any] = {"summary": summary, "start": start.isoformat()}
        if end is not None:
            arguments["end"] = end.isoformat()
        if attendees:
            arguments["attendee_open_ids"] = list(dict.fromkeys(attendees))
        return ToolCall("create_calendar_event", arguments)


_Planner = Callable[
    [OfflineBrain, _Draft, InboundMessage, TurnContext, list[_Table]], ToolCall | _Ask
]
_PLANNERS: dict[str, _Planner] = {
    "search_base_records": OfflineBrain._plan_search,
    "create_base_record": OfflineBrain._plan_create,
    "update_base_record": OfflineBrain._plan_update,
    "delete_base_record": OfflineBrain._plan_delete,
    "send_message": OfflineBrain._plan_send,
    "list_chat_members": OfflineBrain._plan_members,
    "get_user_info": OfflineBrain._plan_user,
    "search_documents": OfflineBrain._plan_documents,
    "create_calendar_event": OfflineBrain._plan_calendar,
    "read_document": OfflineBrain._plan_link,
    "get_wiki_node": OfflineBrain._plan_link,
    "list_base_tables": OfflineBrain._plan_link,
    "list_chat_messages": OfflineBrain._plan_summary,
}


def _choose_intent(
    draft: _Draft, tables: list[_Table], bases: Mapping[str, BaseTableSettings]
) -> str | None:
    body = draft.body
    base_verbs = sorted(
        (match.start(), intent)
        for intent, pattern in _BASE_PATTERNS.items()
        if (match := pattern.search(body))
    )
    if base_verbs and _find_table(draft, tables):
        return base_verbs[0][1]
    if _CALENDAR_NOUN_RE.search(body) and _CALENDAR_VERB_RE.search(body):
        return "create_calendar_event"
    has_target = bool(_CHAT_ID.search(body) or _OPEN_ID.search(body) or "@" in body)
    if _SEND_RE.search(body) and (draft.quotes or has_target or _MESSAGE_NOUN_RE.search(body)):
        return "send_message"
    if (link := _followed_link(draft)) is not None:
        return _LINK_INTENTS[link.kind]
    if _SUMMARISE_RE.search(body):
        return "list_chat_messages"
    if _MEMBERS_RE.search(body):
        return "list_chat_members"
    if _USER_STRONG_RE.search(body) or (_USER_WEAK_RE.search(body) and has_target):
        return "get_user_info"
    if _DOCUMENTS_RE.search(body):
        return "search_documents"
    if base_verbs:
        intent = base_verbs[0][1]
        if intent in ("update_base_record", "delete_base_record") and _RECORD_ID.search(body):
            return intent
        if intent == "create_base_record" and _pairs(body)[0]:
            return intent
        if intent == "search_base_records" and bases:
            return intent
    return None


def _followed_link(draft: _Draft) -> LarkLink | None:
    """The first pasted link of a kind the brain follows (document, wiki page, Base)."""
    return next((link for link in find_links(draft.body) if link.kind in _LINK_INTENTS), None)


def _question(draft: _Draft) -> str:
    """What a question about a document asks about ("予算" of "…には予算について…"), or ``""``."""
    body = " ".join(draft.body.split())
    for pattern in _ABOUT:
        if match := pattern.search(body):
            question = _QUESTION_LEAD.sub("", draft.restore(match["q"]).strip())
            question = _trim(question)
            if question:
                return question
    return ""


def _fields(draft: _Draft) -> dict[str, str]:
    pairs, _ = _pairs(draft.body)
    return {draft.restore(key): draft.restore(_trim(value)) for key, value in pairs.items()}


def _summary(draft: _Draft) -> str:
    if draft.quotes:
        return draft.quotes[0]
    body = " ".join(draft.body.split())
    for pattern in _SUMMARY:
        if match := pattern.search(body):
            summary = draft.restore(_trim(_CALENDAR_NOUN_RE.sub(" ", match["s"])))
            if summary:
                return summary
    return ""


def _only_table(turn: TurnContext) -> str | None:
    bases = turn.settings.bases
    return next(iter(bases)) if len(bases) == 1 else None


def _ask_table(turn: TurnContext) -> _Ask:
    bases = turn.settings.bases
    if not bases:
        return _Ask("no_tables")
    listed = [
        f"{name} ({', '.join(table.aliases)})" if table.aliases else name
        for name, table in bases.items()
    ]
    return _Ask("ask_table", {"tables": join_list(listed, turn.language)})


def _record_target(draft: _Draft, turn: TurnContext, tables: list[_Table]) -> dict[str, str] | _Ask:
    """The table and record id an update or a delete names, or what to ask for first."""
    record_id = _take_record_id(draft)
    table = _take_table(draft, tables) or _only_table(turn)
    if table is None:
        return _ask_table(turn)
    if record_id is None:
        return _Ask("ask_record_id")
    return {"table": table, "record_id": record_id}


# --- people typed by name ----------------------------------------------------------------


async def _with_members_named(
    message: InboundMessage, turn: TurnContext
) -> InboundMessage | _Ask | None:
    """``message`` with its typed ``@name``s resolved against the chat's member list.

    Returns the message with a mention added for each name exactly one member matches,
    a question when a name matches several, or ``None`` when nothing could be resolved
    (no tools, the list unavailable, or no member by that name). The list is read with
    ``list_chat_members`` through the runner whatever the profile allows: it only tells
    who is in the chat the user is writing in.
    """
    if turn.runner is None or turn.tool_ctx is None:
        return None
    _, typed = _mentions(_Draft(message.text), message)
    if not typed:
        return None
    result = await turn.runner.run("list_chat_members", {}, turn.tool_ctx)
    members = _member_names(result.data) if result.ok else []
    added: list[Mention] = []
    written = _fold(message.text)
    for name in dict.fromkeys(typed):
        found = _members_matching(name.removeprefix("@"), members)
        # "@田中 一郎": the name typed in full after the "@" picks one of several matches.
        spelled = [member for member in found if f"@{_fold(member[1])}" in written]
        if len(spelled) == 1:
            found = spelled
        if len(found) > 1:
            listed = join_list([member_name for _, member_name in found], turn.language)
            return _Ask("mention_ambiguous", {"name": name, "candidates": listed})
        if found:
            open_id, member_name = found[0]
            # The full name when it was typed ("@Emma Wilson"), so all of it is cut out.
            typed_text = unicodedata.normalize("NFKC", message.text)
            shown = member_name if f"@{member_name}" in typed_text else name.removeprefix("@")
            added.append(
                Mention(key=f"@_typed_{len(added)}", id=UserId(open_id=open_id), name=shown)
            )
    if not added:
        return None
    return message.model_copy(update={"mentions": (*message.mentions, *added)})


def _member_names(data: Any) -> list[tuple[str, str]]:
    members = data.get("members") if isinstance(data, dict) else None
    return [
        (str(m["open_id"]), str(m["name"]))
        for m in members or []
        if isinstance(m, dict) and m.get("open_id") and m.get("name")
    ]


def _fold(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def _members_matching(typed: str, members: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Members whose display name is ``typed``, else has it as a part, else starts with it."""
    wanted = _fold(typed)
    if not wanted:
        return []
    tiers: tuple[Callable[[str], bool], ...] = (
        lambda name: _fold(name) == wanted,
        lambda name: wanted in {_fold(part) for part in name.split()},
        lambda name: _fold(name).startswith(wanted),
    )
    for matches in tiers:
        found = {open_id: name for open_id, name in members if matches(name)}
        if found:
            return list(found.items())
    return []

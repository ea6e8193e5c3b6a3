"""The assistant's own answers: built-in commands, limits, languages, odd messages."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from larkbot.agent.assistant import Assistant
from larkbot.agent.brain import TurnContext
from larkbot.agent.commands import Command, parse_command
from larkbot.agent.i18n import translate
from larkbot.agent.profiles import BUILTIN_PROFILES, profiles_from_settings
from larkbot.agent.tools.registry import default_registry
from larkbot.agent.tools.runner import ToolRunner
from larkbot.config.settings import Settings
from larkbot.core.agent import Reply
from larkbot.core.conversation import Conversation
from larkbot.core.language import LANGUAGES
from larkbot.core.message import InboundMessage
from larkbot.ops.logging import log_context
from larkbot.ops.metrics import AGENT_RESPONSE_TIME
from larkbot.store.conversations import ConversationCache
from larkbot.testing.sample_data import SAMPLE_BASES
from tests._factories import REQUEST_PIECES, FakeClock, Status, inbound

pytestmark = pytest.mark.anyio


class FailingBrain:
    """A brain that breaks, as a buggy plug-in or a lost LLM connection would."""

    name = "llm"

    async def think(
        self, message: InboundMessage, conversation: Conversation, turn: TurnContext
    ) -> Reply:
        raise RuntimeError("connection reset by peer")


class EchoBrain:
    """A brain that repeats the message, to see what the assistant hands it."""

    name = "llm"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    async def think(
        self, message: InboundMessage, conversation: Conversation, turn: TurnContext
    ) -> Reply:
        self.seen.append((message.text, turn.language, len(conversation.turns)))
        turn.intent = "llm"
        return Reply(f"echo: {message.text}")


def message(
    text: str,
    *,
    message_type: str = "text",
    sender: str = "ou_user",
    chat: str = "oc_chat",
    created_at: datetime | None = None,
) -> InboundMessage:
    return inbound(
        chat,
        text,
        message_id=f"om_{abs(hash((text, sender, message_type)))}",
        message_type=message_type,
        sender=sender,
        created_at=created_at,
    )


def runner(writers: list[str] | None = None) -> ToolRunner:
    return ToolRunner(default_registry(), write_limiter=None, writers=writers, cache_ttl_seconds=0)


def assistant(settings: Settings | None = None, **kwargs: Any) -> Assistant:
    return Assistant(settings or Settings(bases=SAMPLE_BASES), status=Status(), **kwargs)


async def ask(bot: Assistant, text: str, conversation: Conversation | None = None) -> str:
    reply = await bot.respond(message(text), conversation or Conversation("oc_chat"))
    return reply.text


def observations(profile: str, intent: str) -> float:
    for family in AGENT_RESPONSE_TIME.collect():
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels == {
                "agent_name": profile,
                "intent_type": intent,
            }:
                return sample.value
    return 0.0


# --- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("help", Command("help")),
        ("/HELP", Command("help")),
        ("  Help!  ", Command("help")),
        ("ヘルプ", Command("help", language="ja")),
        ("帮助", Command("help", language="zh")),
        ("help tools", Command("help_tools")),
        ("/help permissions", Command("help_permissions")),
        ("ヘルプ 権限", Command("help_permissions", language="ja")),
        ("ステータス", Command("status", language="ja")),
        ("状态", Command("status", language="zh")),
        ("設定", Command("settings", language="ja")),
        ("设置", Command("settings", language="zh")),
        ("リセット", Command("reset", language="ja")),
        ("重置", Command("reset", language="zh")),
        ("ping", Command("ping")),
        ("lang en", Command("lang", "en")),
        ("言語 en", Command("lang", "en", "ja")),
        ("语言 zh", Command("lang", "zh", "zh")),
        ("use language ja", Command("lang", "ja")),
        ("agent BaseExpert", Command("agent", "BaseExpert")),
        ("／settings", Command("settings")),
    ],
)
def test_commands_are_recognised(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "help me find the Q3 report",
        "status of the Acme deal",
        "reset the password for Tom",
        "use customers table",
        "agent smith is here",
        "ping @Tom about lunch",
        "helpful",
        "",
    ],
)
def test_longer_requests_are_not_commands(text: str) -> None:
    assert parse_command(text) is None


# --- help -----------------------------------------------------------------------------


async def test_help_answers_in_japanese_by_default() -> None:
    bot = assistant()
    for text in ("help", "/HELP", "ヘルプ"):
        reply = await bot.respond(message(text), Conversation("oc_chat"))
        assert reply.markdown
        assert "**使い方**" in reply.text
        assert "`help tools`" in reply.text and "`lang ja|en|zh|auto`" in reply.text
        assert "顧客テーブルから今月の案件を検索して" in reply.text


async def test_help_in_english_and_chinese() -> None:
    assert "**使用方法**" in await ask(assistant(), "帮助")
    assert "在客户表中搜索 Acme" in await ask(assistant(), "帮助")
    english = assistant(Settings(agent={"default_language": "en"}))
    text = await ask(english, "help")
    assert "**How to use me**" in text and "search customers for Acme" in text


async def test_help_tools_lists_every_tool_with_read_or_write() -> None:
    bot = assistant(runner=runner())
    ja = await ask(bot, "help tools")
    assert "**使えるツール**" in ja
    assert "• `search_base_records`（読み取り）— Base のテーブルからレコードを検索" in ja
    assert "• `delete_base_record`（書き込み）— Base のレコードを削除" in ja
    assert ja.count("• `") == 21
    assert "• `read_document`（読み取り）— ドキュメントを読む" in ja
    en = await ask(bot, "help tools", Conversation("c", language="en"))
    assert "• `send_message` (write) — send a message to a chat or a user" in en
    zh = await ask(bot, "帮助 工具")
    assert "• `list_chat_members`（读取）— 列出群成员" in zh


async def test_help_tools_without_tools_says_so() -> None:
    assert await ask(assistant(), "help tools") == "現在使えるツールはありません。"


async def test_help_tools_shows_what_the_current_profile_allows() -> None:
    bot = assistant(runner=runner())
    conversation = Conversation("c", language="en", profile="MessageBot")
    text = await ask(bot, "help tools", conversation)
    assert "Allowed for the current profile (MessageBot): send_message, get_user_info, " in text


async def test_help_permissions_names_scopes_and_writers() -> None:
    bot = assistant(Settings(policy={"writers": ["ou_boss"]}), runner=runner())
    text = await ask(bot, "help permissions", Conversation("c", language="en"))
    assert "• `create_base_record` (write): `bitable:app`" in text
    assert "• `search_base_records` (read): `bitable:app:readonly`" in text
    assert "`contact:user.base:readonly`, `contact:user.email:readonly`" in text
    assert "Write tools can be used only by: `ou_boss`" in text
    everyone = assistant(runner=runner())
    assert "書き込みツールは、このボットを使える全員が実行できます。" in await ask(
        everyone, "help permissions"
    )
    nobody = assistant(Settings(policy={"writers": []}), runner=runner())
    assert "写入工具已对所有用户禁用。" in await ask(nobody, "帮助 权限")


# --- status, settings, ping -----------------------------------------------------------


async def test_status_in_three_languages() -> None:
    cache = ConversationCache()
    for key in ("a", "b"):
        cache.get(key)
    conversation = cache.get("oc_chat")
    # The daemon reports what its conversation store holds.
    bot = Assistant(Settings(bases=SAMPLE_BASES), status=Status(conversations=len(cache)))
    ja = await ask(bot, "status", conversation)
    assert "• バージョン: 1.2.3" in ja
    assert "• 稼働時間: 1時間2分" in ja
    assert "• Lark との接続: 接続中" in ja
    assert "• 処理したイベント: 1,234" in ja
    assert "• キャッシュ中の会話: 3" in ja
    assert "• LLM: オフ" in ja
    conversation.language = "en"
    en = await ask(bot, "status", conversation)
    assert "• Uptime: 1 h 2 min" in en and "• Connection to Lark: connected" in en
    assert "• Conversations cached: 3" in en and "• LLM: off" in en
    zh = await ask(bot, "状态", cache.get("other"))
    assert "• 运行时间：1小时2分钟" in zh and "• 与 Lark 的连接：已连接" in zh


async def test_status_shows_a_dropped_connection_and_the_llm_model() -> None:
    settings = Settings(llm={"api_key": "sk-test", "model": "gpt-test"})
    bot = Assistant(settings, status=Status(connected=False), brain=EchoBrain())
    text = await ask(bot, "status", Conversation("c", language="en"))
    assert "• Connection to Lark: disconnected" in text
    assert "• LLM: on (model: gpt-test)" in text


async def test_settings_command_describes_this_chat() -> None:
    bot = assistant(Settings(rate_limiting={"requests_per_minute": 30}))
    text = await ask(bot, "settings", Conversation("c", language="en", profile="BaseExpert"))
    assert "• Language: English" in text
    assert "• Profile: BaseExpert" in text
    assert "• Request limit: 30 a minute" in text
    assert "• Change limit: 10 a minute" in text
    assert "• Conversation history kept: 50 turns" in text
    ja = await ask(bot, "設定")
    assert "• 言語: 自動（メッセージに合わせる。既定: 日本語）" in ja
    assert "• プロファイル: LarkAssistant" in ja
    off = assistant(Settings(rate_limiting={"enabled": False}))
    assert "• 请求上限：无" in await ask(off, "设置")


async def test_ping_answers_pong_with_the_latency() -> None:
    bot = assistant()
    sent = datetime.now(UTC) - timedelta(milliseconds=250)
    reply = await bot.respond(message("ping", created_at=sent), Conversation("c"))
    assert reply.text.startswith("pong（メッセージ受信まで ")
    shown = int(reply.text.split("まで ")[1].split(" ms")[0].replace(",", ""))
    assert 250 <= shown < 5000


# --- conversation commands ------------------------------------------------------------


async def test_reset_clears_the_conversation_in_each_language() -> None:
    bot = assistant(brain=EchoBrain())
    conversation = Conversation("c")
    await ask(bot, "こんにちは", conversation)
    assert len(conversation.turns) == 2
    assert await ask(bot, "reset", conversation) == "会話の履歴を消去しました。"
    assert conversation.turns == []
    await ask(bot, "hello", conversation)
    assert await ask(bot, "重置", conversation) == "已清除本次对话的记录。"
    assert conversation.turns == []
    conversation.language = "en"
    assert await ask(bot, "/reset", conversation) == "I have cleared this conversation's history."


async def test_lang_switch_persists_in_the_conversation() -> None:
    bot = assistant()
    conversation = Conversation("c")
    assert await ask(bot, "lang en", conversation) == "I will answer in English from now on."
    assert conversation.language == "en"
    # The pinned language wins over the language of the text.
    assert "**How to use me**" in await ask(bot, "ヘルプ", conversation)
    assert await ask(bot, "言語 zh", conversation) == "今后我将用中文回答。"
    assert await ask(bot, "use language ja", conversation) == "これからは日本語でお答えします。"
    assert conversation.language == "ja"
    assert "lang auto" in await ask(bot, "lang fr", conversation)
    assert conversation.language == "ja"
    assert "言語の固定を解除しました" in await ask(bot, "lang auto", conversation)
    assert conversation.language is None
    assert "I could not tell what you would like me to do" in await ask(
        bot, "what can you do?", conversation
    )


async def test_agent_switch_persists_and_unknown_names_list_the_choices() -> None:
    settings = Settings(
        agent={"profiles": [{"name": "Support", "instructions": "Be kind.", "tools": []}]}
    )
    bot = assistant(settings)
    conversation = Conversation("c")
    assert await ask(bot, "agent BaseExpert", conversation) == (
        "プロファイルを BaseExpert に切り替えました。"
    )
    assert conversation.profile == "BaseExpert"
    switched = await ask(bot, "agent support", conversation)
    assert switched == "プロファイルを Support に切り替えました。"
    assert conversation.profile == "Support"
    unknown = await ask(bot, "agent Nobody", conversation)
    assert unknown.startswith("「Nobody」というプロファイルはありません。")
    for name in ("LarkAssistant", "BaseExpert", "MessageBot", "Support"):
        assert f"`{name}`" in unknown
    assert conversation.profile == "Support"
    listing = await ask(bot, "agent", Conversation("d", language="en", profile="MessageBot"))
    assert listing.startswith("Current profile: MessageBot. Available profiles: `LarkAssistant`")


def test_configured_profiles_change_or_extend_the_built_in_ones() -> None:
    settings = Settings(
        agent={
            "temperature": 0.2,
            "profiles": [
                {"name": "BaseExpert", "tools": ["search_base_records"]},
                {"name": "Support", "instructions": "Be kind.", "language": "en"},
            ],
        }
    )
    profiles = profiles_from_settings(settings)
    expert = profiles["BaseExpert"]
    assert expert.tools == frozenset({"search_base_records"})
    assert expert.instructions == BUILTIN_PROFILES["BaseExpert"].instructions
    assert expert.temperature == 0.3
    support = profiles["Support"]
    assert (support.instructions, support.language, support.temperature) == ("Be kind.", "en", 0.2)
    assert support.tools is None and support.allows("delete_base_record")
    assert profiles["LarkAssistant"] == BUILTIN_PROFILES["LarkAssistant"]
    assert not profiles["MessageBot"].allows("search_base_records")


async def test_a_profile_language_is_its_default_answer_language() -> None:
    settings = Settings(agent={"profiles": [{"name": "Global", "language": "en"}]})
    conversation = Conversation("c", profile="Global")
    assert "**How to use me**" in await ask(assistant(settings), "help", conversation)


async def test_profile_restricts_the_tools_the_brain_may_use() -> None:
    bot = assistant()
    conversation = Conversation("c", profile="MessageBot")
    text = await ask(bot, "顧客テーブルから今月の案件を検索して", conversation)
    assert text == (
        "現在のプロファイル（MessageBot）では `search_base_records` を使えません。"
        "`agent LarkAssistant` で切り替えられます。"
    )


# --- limits and odd messages ----------------------------------------------------------


async def test_request_limit_reply_says_when_to_retry() -> None:
    clock = FakeClock()
    settings = Settings(rate_limiting={"requests_per_minute": 2})
    bot = assistant(settings, clock=clock, brain=EchoBrain())
    conversation = Conversation("c")
    assert await ask(bot, "一つ目", conversation) == "echo: 一つ目"
    clock.now += 10
    assert await ask(bot, "二つ目", conversation) == "echo: 二つ目"
    clock.now += 5
    limited = await ask(bot, "三つ目", conversation)
    assert limited == "リクエストが多すぎます（1分間に2件まで）。45秒後にもう一度お試しください。"
    english = await ask(bot, "third one", conversation)
    assert english == (
        "You are sending requests too quickly (up to 2 a minute). Please try again in 45 s."
    )
    # Commands stay available, and other users have their own allowance.
    assert "pong" in await ask(bot, "ping", conversation)
    other = await bot.respond(message("hello", sender="ou_other"), Conversation("d"))
    assert other.text == "echo: hello"
    clock.now += 46  # the first request has left the one-minute window
    assert await ask(bot, "四つ目", conversation) == "echo: 四つ目"


async def test_no_limit_when_rate_limiting_is_off() -> None:
    bot = assistant(
        Settings(rate_limiting={"enabled": False, "requests_per_minute": 1}), brain=EchoBrain()
    )
    for index in range(5):
        assert await ask(bot, f"message {index}") == f"echo: message {index}"


@pytest.mark.parametrize(
    ("message_type", "language", "expected"),
    [
        ("image", None, "申し訳ありません。今のところテキストのメッセージしか読めません。"),
        ("file", "en", "Sorry, I can only read text messages for now."),
        ("sticker", "zh", "抱歉，目前我只能读取文字消息。"),
        ("audio", None, "テキストのメッセージしか読めません"),
        ("merge_forward", "en", "I can only read text messages"),
        ("interactive", "en", "I can only read text messages"),
    ],
)
async def test_non_text_messages_get_a_polite_text_only_reply(
    message_type: str, language: str | None, expected: str
) -> None:
    brain = EchoBrain()
    bot = assistant(brain=brain)
    conversation = Conversation("c", language=language)  # type: ignore[arg-type]
    reply = await bot.respond(message("", message_type=message_type), conversation)
    assert expected in reply.text
    assert brain.seen == [] and conversation.turns == []


@pytest.mark.parametrize("text", ["", "   ", "\n"])
async def test_empty_or_mention_only_text_gets_a_prompt(text: str) -> None:
    reply = await assistant().respond(message(text), Conversation("c"))
    assert reply.text == "何かお手伝いできることはありますか？ `help` で使い方を表示します。"
    en = await assistant().respond(message(text), Conversation("c", language="en"))
    assert en.text == "How can I help? Send `help` to see what I can do."


async def test_post_messages_are_read_like_text() -> None:
    brain = EchoBrain()
    reply = await assistant(brain=brain).respond(
        message("議事録を探して", message_type="post"), Conversation("c")
    )
    assert reply.text == "echo: 議事録を探して"


async def test_a_failing_brain_yields_an_apology_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = assistant(brain=FailingBrain())
    conversation = Conversation("c")
    before = observations("LarkAssistant", "error")
    inbound = message("明日の予定は？")
    # The responder sets the message's log context around the agent.
    with (
        caplog.at_level(logging.ERROR, logger="larkbot.agent"),
        log_context(inbound.message_id, inbound.chat_id),
    ):
        reply = await bot.respond(inbound, conversation)
    assert reply.text == (
        "申し訳ありません。処理中に問題が発生しました。しばらくしてからもう一度お試しください。"
    )
    assert await ask(bot, "what is on today?") == (
        "Sorry, something went wrong while handling your request. Please try again in a moment."
    )
    record = next(r for r in caplog.records if r.name == "larkbot.agent")
    assert record.message_id == inbound.message_id  # type: ignore[attr-defined]
    assert inbound.message_id in record.getMessage()
    assert record.exc_info is not None
    assert [t.role for t in conversation.turns] == ["user", "assistant"]
    assert observations("LarkAssistant", "error") == before + 2


async def test_the_brain_sees_earlier_turns_only_and_both_turns_are_recorded() -> None:
    brain = EchoBrain()
    bot = assistant(Settings(agent={"max_conversation_history": 3}), brain=brain)
    conversation = Conversation("c")
    await ask(bot, "first", conversation)
    await ask(bot, "status", conversation)  # a command: answered, not recorded
    await ask(bot, "second", conversation)
    assert brain.seen == [("first", "en", 0), ("second", "en", 2)]
    assert [(t.role, t.text) for t in conversation.turns] == [
        ("assistant", "echo: first"),
        ("user", "second"),
        ("assistant", "echo: second"),
    ]


async def test_response_time_is_observed_per_profile_and_intent() -> None:
    bot = assistant()
    before_help = observations("BaseExpert", "help")
    before_fallback = observations("LarkAssistant", "fallback")
    await ask(bot, "help", Conversation("c", profile="BaseExpert"))
    await ask(bot, "what can you do?")
    assert observations("BaseExpert", "help") == before_help + 1
    assert observations("LarkAssistant", "fallback") == before_fallback + 1


# --- anything goes --------------------------------------------------------------------

_PHRASES = st.sampled_from(REQUEST_PIECES)
_TEXT = st.lists(st.one_of(_PHRASES, st.text(max_size=12)), max_size=8).map("".join)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=_TEXT, message_type=st.sampled_from(["text", "post", "image"]))
async def test_any_text_gets_a_non_empty_reply(text: str, message_type: str) -> None:
    bot = assistant(Settings(bases=SAMPLE_BASES, rate_limiting={"enabled": False}))
    conversation = Conversation("c")
    reply = await bot.respond(message(text, message_type=message_type), conversation)
    assert reply.text.strip()
    # The apology would mean the brain raised: reading a request must never fail.
    assert reply.text not in {translate("error", language) for language in LANGUAGES}

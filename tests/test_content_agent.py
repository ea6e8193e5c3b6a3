"""The agent over chat history, documents, wiki and Base links, in Japanese, English, Chinese.

Plans are checked as the offline brain makes them; scenarios run the real assistant, the
real runner and the OpenAPI client against the local Lark stand-in, the LLM brain
against the local OpenAI stand-in, and ``larkbot console`` as a user runs it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from larkbot.agent.assistant import Assistant
from larkbot.agent.brain import TurnContext
from larkbot.agent.llm import LLMBrain
from larkbot.agent.offline import OfflineBrain, ToolCall
from larkbot.agent.profiles import BUILTIN_PROFILES
from larkbot.agent.tools.registry import default_registry
from larkbot.agent.tools.runner import ToolRunner
from larkbot.config.settings import Settings
from larkbot.core.conversation import Conversation
from larkbot.core.language import Language, detect_language
from larkbot.core.message import InboundMessage
from larkbot.testing import OpenAIStandIn
from larkbot.testing._sample_content import LAUNCH_PLAN_URL, ONBOARDING_URL, SALES_THREAD_ID
from larkbot.testing.sample_data import CUSTOMERS_APP_TOKEN, SAMPLE_BASES
from tests._factories import Sample, Status, add_history, chat_message, console_message
from tests._proc import run_larkbot

pytestmark = pytest.mark.anyio

BASE_URL = f"https://example.feishu.cn/base/{CUSTOMERS_APP_TOKEN}"
BASE_WIKI_URL = "https://example.feishu.cn/wiki/wikcnCustomerBase01"
API_KEY = "sk-test-content-0123456789"

# The oldest message of the sample console chat.
FIRST_MESSAGE = f"おはようございます。Sakura Cloud のローンチ計画をまとめました: {LAUNCH_PLAN_URL}"
# The budget paragraph of the sample launch plan, in each language.
BUDGET = {
    "en": "Budget: the total budget is ¥12,000,000: ¥6,000,000 for advertising",
    "ja": "予算: 総予算は 1,200 万円。内訳は広告 600 万円",
    "zh": "预算：总预算为 1,200 万日元，其中广告 600 万日元",
}


def message(
    text: str, *, index: int = 0, chat: str = "oc_console", thread_id: str | None = None
) -> InboundMessage:
    return console_message(text, message_id=f"om_agent_{index}", chat=chat, thread_id=thread_id)


def plan(text: str, *, thread_id: str | None = None) -> ToolCall | str | None:
    turn = TurnContext(
        settings=Settings(bases=SAMPLE_BASES),
        language=detect_language(text) or "ja",
        profile=BUILTIN_PROFILES["LarkAssistant"],
    )
    return OfflineBrain().plan(message(text, thread_id=thread_id), turn)


# --- what each request plans ------------------------------------------------------------


def _recap(limit: int) -> ToolCall:
    """The call that reads the chat's last ``limit`` messages, bots left out."""
    return ToolCall("list_chat_messages", {"limit": limit, "exclude_bots": True})


def _read_plan(query: str) -> ToolCall:
    """The call that reads the launch plan for what it says about ``query``."""
    return ToolCall("read_document", {"document": LAUNCH_PLAN_URL, "query": query})


PLANS: list[tuple[str, ToolCall]] = [
    ("summarise this chat", _recap(20)),
    ("catch me up", _recap(20)),
    ("recap the last 50 messages", _recap(50)),
    ("このチャットを要約して", _recap(20)),
    ("直近10件をまとめて", _recap(10)),
    ("总结一下这个群聊", _recap(20)),
    ("群里最近30条说了什么", _recap(30)),
    (f"what does {LAUNCH_PLAN_URL} say about the budget?", _read_plan("budget")),
    (f"does {LAUNCH_PLAN_URL} mention the launch date?", _read_plan("launch date")),
    (f"{LAUNCH_PLAN_URL} には予算について何と書いてありますか？", _read_plan("予算")),
    (f"この資料 {LAUNCH_PLAN_URL} のスケジュールについて教えて", _read_plan("スケジュール")),
    (f"{LAUNCH_PLAN_URL} 里关于预算说了什么？", _read_plan("预算")),
    (f"关于预算，{LAUNCH_PLAN_URL} 里写了什么", _read_plan("预算")),
    (f"{LAUNCH_PLAN_URL} 预算是怎么说的", _read_plan("预算")),
    (LAUNCH_PLAN_URL, ToolCall("read_document", {"document": LAUNCH_PLAN_URL})),
    (ONBOARDING_URL, ToolCall("get_wiki_node", {"node": ONBOARDING_URL})),
    (
        f"what does {ONBOARDING_URL} say about tools?",
        ToolCall("get_wiki_node", {"node": ONBOARDING_URL}, question="tools"),
    ),
    (
        f"{BASE_URL}?table=tblCustomers0001&view=vewAll",
        ToolCall("list_base_fields", {"base": f"{BASE_URL}?table=tblCustomers0001&view=vewAll"}),
    ),
    (f"このBaseのテーブルは？ {BASE_URL}", ToolCall("list_base_tables", {"base": BASE_URL})),
]


@pytest.mark.parametrize(("text", "expected"), PLANS)
def test_requests_plan_these_calls(text: str, expected: ToolCall) -> None:
    assert plan(text) == expected


def test_a_summary_asked_in_a_thread_covers_the_thread_unless_the_chat_is_named() -> None:
    in_thread = plan("summarise this", thread_id=SALES_THREAD_ID)
    assert isinstance(in_thread, ToolCall)
    assert in_thread.arguments["thread_id"] == SALES_THREAD_ID
    whole = plan("summarise the whole chat", thread_id=SALES_THREAD_ID)
    assert isinstance(whole, ToolCall) and "thread_id" not in whole.arguments
    assert plan("スレッドを要約して", thread_id=SALES_THREAD_ID) == ToolCall(
        "list_chat_messages",
        {"limit": 20, "exclude_bots": True, "thread_id": SALES_THREAD_ID},
    )


def test_a_link_in_a_message_to_send_is_sent_not_read() -> None:
    planned = plan(f"send 'read {LAUNCH_PLAN_URL} first' to ou_emma")
    assert planned == ToolCall(
        "send_message", {"text": f"read {LAUNCH_PLAN_URL} first", "user_open_id": "ou_emma"}
    )


def test_a_link_says_nothing_about_the_language_of_its_message() -> None:
    assert detect_language(ONBOARDING_URL) is None
    assert detect_language(f"{LAUNCH_PLAN_URL} 预算是怎么说的") == "zh"
    assert detect_language(f"what does {LAUNCH_PLAN_URL} say") == "en"


# --- the offline brain against the stand-in ------------------------------------------------


@dataclass
class Env(Sample):
    def assistant(self, settings: Settings | None = None, brain: Any = None) -> Assistant:
        runner = ToolRunner(
            default_registry(), write_limiter=None, writers=None, cache_ttl_seconds=60
        )
        return Assistant(
            settings or Settings(bases=SAMPLE_BASES),
            status=Status(),
            runner=runner,
            client=self.client,
            brain=brain,
        )

    async def ask(
        self,
        text: str,
        conversation: Conversation | None = None,
        *,
        index: int = 0,
        thread_id: str | None = None,
        assistant: Assistant | None = None,
    ) -> str:
        bot = assistant or self.assistant()
        msg = message(text, index=index, thread_id=thread_id)
        reply = await bot.respond(msg, conversation or Conversation("oc_console"))
        return reply.text


@pytest.fixture
def env(sample: Sample) -> Env:
    return Env(sample.ws, sample.lark, sample.client)


@pytest.mark.parametrize(
    ("request_text", "header"),
    [
        ("summarise this chat", "The last 4 messages in this chat (oldest first):"),
        ("このチャットを要約して", "このチャットの直近のメッセージ 4 件（古い順）:"),
        ("总结一下这个群聊", "本群聊最近的 4 条消息（按时间顺序）："),
    ],
)
async def test_summary_lists_what_people_said_in_the_chat(
    env: Env, request_text: str, header: str
) -> None:
    text = await env.ask(request_text)
    lines = text.splitlines()
    assert lines[0] == header
    assert lines[1].endswith(f"**佐藤 美咲**: {FIRST_MESSAGE}")
    assert "**田中 健**: 10 日で進めましょう。" in lines[4]
    # The bot's own message is left out of a summary for people.
    assert "予定「Acme デモ」を作成しました" not in text


async def test_a_second_summary_sees_messages_sent_since_the_first(env: Env) -> None:
    bot = env.assistant()  # its runner caches reads for a minute
    first = await env.ask("summarise this chat", assistant=bot)
    env.ws.messages.append(chat_message("om_later", "The venue is booked."))
    second = await env.ask("summarise this chat", index=1, assistant=bot)
    assert "The venue is booked." not in first
    assert second.splitlines()[-1].endswith("**佐藤 美咲**: The venue is booked.")


async def test_summary_inside_a_thread_reads_the_thread(env: Env) -> None:
    text = await env.ask("summarise this", thread_id=SALES_THREAD_ID)
    assert text.splitlines()[0] == "The last 3 messages in this thread (oldest first):"
    assert [line.split("**")[1] for line in text.splitlines()[1:]] == [
        "小林 さくら",
        "田中 健",
        "佐藤 美咲",
    ]


@pytest.mark.parametrize(
    ("language", "question"),
    [
        ("en", f"what does {LAUNCH_PLAN_URL} say about the budget?"),
        ("ja", f"{LAUNCH_PLAN_URL} には予算について何と書いてありますか？"),
        ("zh", f"这个文档 {LAUNCH_PLAN_URL} 里关于预算说了什么？"),
    ],
)
async def test_a_question_about_a_document_quotes_its_paragraphs(
    env: Env, language: Language, question: str
) -> None:
    text = await env.ask(question)
    header, quote = text.splitlines()
    assert "Sakura Cloud ローンチ計画 / Launch plan / 发布计划" in header
    assert quote.startswith(f"> {BUDGET[language]}")


WIKI_HEADERS = {
    "en": "The wiki page “Onboarding guide for new sales staff” holds a document",
    "ja": "Wiki ページ「Onboarding guide for new sales staff」の中身はドキュメントです",
    "zh": "知识库页面“Onboarding guide for new sales staff”中是文档",
}


@pytest.mark.parametrize(
    ("language", "earlier"),
    [("en", "hello there"), ("ja", "こんにちは"), ("zh", "你好")],
)
async def test_a_pasted_wiki_link_is_resolved_and_read_in_the_users_language(
    env: Env, language: Language, earlier: str
) -> None:
    conversation = Conversation("oc_console")
    await env.ask(earlier, conversation)
    text = await env.ask(ONBOARDING_URL, conversation, index=1)
    assert text.startswith(WIKI_HEADERS[language])
    assert "Who to ask: Misaki Sato for Japan" in text
    routes = [call.route for call in env.lark.api_calls]
    assert "wiki/v2/spaces/get_node" in routes
    assert "docx/v1/documents/{document_id}/raw_content" in routes


async def test_a_question_about_a_wiki_page_reads_only_the_matching_paragraphs(env: Env) -> None:
    text = await env.ask(f"what does {ONBOARDING_URL} say about who to ask?")
    assert text.splitlines()[-1] == (
        "> Who to ask: Misaki Sato for Japan, Jing Chen for China, Emma Wilson for the UK."
    )


async def test_a_wiki_link_to_a_base_lists_its_tables(env: Env) -> None:
    text = await env.ask(f"{BASE_WIKI_URL} って何？")
    assert text.startswith("Wiki ページ「顧客管理 Base」の中身はBaseです")
    assert "- **顧客一覧** (tblCustomers0001)\n- **商談履歴**" in text


async def test_a_base_link_with_a_table_lists_its_fields(env: Env) -> None:
    text = await env.ask(f"{BASE_URL}?table=tblCustomers0001")
    assert text.splitlines()[0] == "顧客一覧 のフィールドは 7 件です:"
    assert "- **Status** — 単一選択: 見込み, 商談中, 受注, 失注" in text


async def test_a_profile_without_the_document_tool_reads_only_the_wiki_page(env: Env) -> None:
    settings = Settings(
        bases=SAMPLE_BASES,
        agent={"profiles": [{"name": "Wiki", "tools": ["get_wiki_node"]}], "profile": "Wiki"},
    )
    text = await env.ask(ONBOARDING_URL, assistant=env.assistant(settings))
    # A bare link in a new conversation is answered in the default language, Japanese.
    assert text == (
        "Wiki ページ「Onboarding guide for new sales staff」の中身はドキュメントです"
        "（doxcnOnboarding0001）。"
    )


# --- the LLM brain ------------------------------------------------------------------------


@pytest.fixture
async def llm() -> AsyncIterator[OpenAIStandIn]:
    async with OpenAIStandIn(api_key=API_KEY) as stand_in:
        yield stand_in


def llm_settings(llm: OpenAIStandIn) -> Settings:
    return Settings(
        bases=SAMPLE_BASES,
        llm={"api_key": API_KEY, "base_url": llm.base_url, "model": "test-model"},
    )


async def ask_llm(env: Env, llm: OpenAIStandIn, text: str, **kwargs: Any) -> str:
    brain = LLMBrain(llm_settings(llm))
    try:
        return await env.ask(text, assistant=env.assistant(llm_settings(llm), brain), **kwargs)
    finally:
        await brain.aclose()


async def test_llm_reads_the_history_within_its_token_budget(env: Env, llm: OpenAIStandIn) -> None:
    note = "the shipment to Osaka is delayed again; " * 12
    add_history(env.ws, "oc_console", "ou_sato", [f"note {n}: {note}" for n in range(300)])
    llm.script(
        {"tool_calls": [{"name": "list_chat_messages", "arguments": {"token_budget": 50000}}]},
        {"content": "Mostly shipment delays."},
    )
    answer = await ask_llm(env, llm, "summarise this chat", thread_id=None)
    assert answer == "Mostly shipment delays."
    first, second = llm.requests
    system = first["messages"][0]["content"]
    assert "This conversation is in chat oc_console." in system
    assert "list_chat_messages" in system and "get_wiki_node" in system
    call = second["messages"][-2]["tool_calls"][0]["function"]
    assert json.loads(call["arguments"]) == {"token_budget": 50000}
    content = second["messages"][-1]["content"]
    # The history was cut by the budget, not by the brain's last-resort truncation.
    history = json.loads(content)
    assert history["truncated"] is True and 10 <= history["count"] < 60
    assert history["next_before"] is not None


async def test_llm_is_told_about_the_thread_it_answers_in(env: Env, llm: OpenAIStandIn) -> None:
    await ask_llm(env, llm, "hello", thread_id=SALES_THREAD_ID)
    system = llm.requests[0]["messages"][0]["content"]
    assert f"This conversation is in chat oc_console, in topic thread {SALES_THREAD_ID}." in system


async def test_llm_answers_about_a_document_from_the_paragraph_it_read(
    env: Env, llm: OpenAIStandIn
) -> None:
    llm.script(
        {
            "tool_calls": [
                {
                    "name": "read_document",
                    "arguments": {"document": LAUNCH_PLAN_URL, "query": "budget"},
                }
            ]
        },
    )
    answer = await ask_llm(env, llm, f"what does {LAUNCH_PLAN_URL} say about the budget?")
    assert answer.startswith("Here is what I found:")
    assert BUDGET["en"] in answer


async def test_llm_follows_a_wiki_link_to_its_document(env: Env, llm: OpenAIStandIn) -> None:
    llm.script(
        {"tool_calls": [{"name": "get_wiki_node", "arguments": {"node": ONBOARDING_URL}}]},
        {
            "tool_calls": [
                {"name": "read_document", "arguments": {"document": "doxcnOnboarding0001"}}
            ]
        },
    )
    answer = await ask_llm(env, llm, ONBOARDING_URL)
    node = json.loads(llm.requests[1]["messages"][-1]["content"])
    assert node["next"] == {
        "tool": "read_document",
        "arguments": {"document": "doxcnOnboarding0001"},
    }
    assert "Who to ask" in answer


# --- larkbot console ----------------------------------------------------------------------

CONSOLE = {
    "en": [
        "The demo with Acme moves to 10 June",
        "Please prepare the budget slides",
        "summarise this chat",
        f"what does {LAUNCH_PLAN_URL} say about the budget?",
        ONBOARDING_URL,
    ],
    "ja": [
        "Acme のデモは 6 月 10 日に決まりました",
        "予算のスライドを準備してください",
        "このチャットを要約して",
        f"{LAUNCH_PLAN_URL} には予算について何と書いてありますか？",
        ONBOARDING_URL,
    ],
    "zh": [
        "Acme 的演示定在 6 月 10 日",
        "请准备预算的幻灯片",
        "总结一下这个群聊",
        f"{LAUNCH_PLAN_URL} 里关于预算说了什么？",
        ONBOARDING_URL,
    ],
}
CONSOLE_SUMMARY = {
    "en": "The last 6 messages in this chat (oldest first):",
    "ja": "このチャットの直近のメッセージ 6 件（古い順）:",
    "zh": "本群聊最近的 6 条消息（按时间顺序）：",
}


async def console(lines: list[str]) -> list[str]:
    """Run ``larkbot console`` on ``lines``; return the bot's answers, one per line."""
    stdin = "".join(f"{line}\n" for line in lines).encode()
    code, out, err = await run_larkbot("console", env={"COLUMNS": "500"}, stdin=stdin, timeout=90)
    assert code == 0, err
    # Into a pipe each reply starts with "bot › " and its further lines are indented.
    answers: list[list[str]] = []
    for line in out.splitlines():
        if line.startswith("bot › "):
            answers.append([line.removeprefix("bot › ")])
        elif answers:
            answers[-1].append(line.removeprefix("      "))
    return ["\n".join(answer).strip() for answer in answers]


@pytest.mark.parametrize("language", ["en", "ja", "zh"])
async def test_console_summarises_answers_from_a_document_and_follows_a_wiki_link(
    language: Language,
) -> None:
    lines = CONSOLE[language]
    answers = await console(lines)
    assert len(answers) == len(lines)
    summary = answers[2].splitlines()
    assert summary[0] == CONSOLE_SUMMARY[language]
    # The sample history first, then what was typed; the request itself is not listed.
    assert summary[1].endswith(
        f"おはようございます。Sakura Cloud のローンチ計画をまとめました: {LAUNCH_PLAN_URL}"
    )
    assert summary[-2].endswith(f"**田中 健**: {lines[0]}")
    assert summary[-1].endswith(f"**田中 健**: {lines[1]}")
    document = answers[3].splitlines()
    assert document[1].startswith(f"> {BUDGET[language]}")
    wiki = answers[4]
    assert wiki.startswith(WIKI_HEADERS[language])
    assert "Who to ask: Misaki Sato for Japan" in wiki

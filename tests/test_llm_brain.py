"""The LLM brain and the OpenAI stand-in, over real HTTP.

The brain runs inside the real assistant with the real ``ToolRunner`` and OpenAPI
client against the local Lark serving the sample workspace; the model is the local
OpenAI-compatible stand-in, reached by the real ``openai`` client.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from larkbot.agent.assistant import Assistant
from larkbot.agent.i18n import translate
from larkbot.agent.limits import RateLimiter
from larkbot.agent.llm import LLMBrain
from larkbot.agent.tools.registry import default_registry
from larkbot.agent.tools.runner import ToolRunner
from larkbot.config.settings import Settings
from larkbot.core.agent import Reply
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.ops.logging import log_context
from larkbot.testing import OpenAIStandIn
from larkbot.testing.sample_data import SAMPLE_BASES
from larkbot.testing.workspace import RECORDS_SEARCH
from tests._factories import Sample, Status, console_message, llm_requests

pytestmark = pytest.mark.anyio

API_KEY = "sk-test-brain-0123456789"


def message(text: str, index: int = 0) -> InboundMessage:
    return console_message(text, message_id=f"om_llm_{index}", chat="oc_sales")


def settings_with(llm: OpenAIStandIn, **llm_options: Any) -> Settings:
    return Settings(
        bases=SAMPLE_BASES,
        llm={"api_key": API_KEY, "base_url": llm.base_url, "model": "test-model", **llm_options},
    )


@dataclass
class Env(Sample):
    llm: OpenAIStandIn

    def assistant(
        self, settings: Settings | None = None, *, with_tools: bool = True
    ) -> tuple[Assistant, LLMBrain]:
        settings = settings or settings_with(self.llm)
        runner = ToolRunner(
            default_registry(),
            write_limiter=RateLimiter(settings.rate_limiting.write_requests_per_minute),
            writers=None,
            cache_ttl_seconds=60,
        )
        brain = LLMBrain(settings)
        assistant = Assistant(
            settings,
            status=Status(),
            runner=runner,
            client=self.client if with_tools else None,
            brain=brain,
        )
        return assistant, brain

    async def ask(
        self,
        text: str,
        settings: Settings | None = None,
        *,
        conversation: Conversation | None = None,
        with_tools: bool = True,
    ) -> Reply:
        assistant, brain = self.assistant(settings, with_tools=with_tools)
        inbound = message(text)
        try:
            # As the responder does, the message's ids go on every line logged meanwhile.
            with log_context(inbound.message_id, inbound.chat_id):
                return await assistant.respond(inbound, conversation or Conversation("c"))
        finally:
            await brain.aclose()


@pytest.fixture
async def env(sample: Sample) -> AsyncIterator[Env]:
    async with OpenAIStandIn(api_key=API_KEY) as llm:
        yield Env(sample.ws, sample.lark, sample.client, llm)


# --- answering and tools ------------------------------------------------------------------


async def test_search_request_calls_the_tool_and_quotes_its_result(env: Env) -> None:
    ok_before = llm_requests("ok")
    reply = await env.ask("search customers for Acme")

    assert env.calls(RECORDS_SEARCH) == 1
    assert reply.markdown
    assert reply.text.startswith("Here is what I found:")
    assert "Acme" in reply.text
    assert llm_requests("ok") - ok_before == 2

    first, second = env.llm.requests
    assert first["model"] == "test-model"
    assert first["temperature"] == 0.7 and first["max_tokens"] == 2000
    offered = [tool["function"]["name"] for tool in first["tools"]]
    assert "search_base_records" in offered and "create_base_record" in offered
    system = first["messages"][0]
    assert system["role"] == "system"
    assert "helpful assistant inside Lark" in system["content"]
    assert "English" in system["content"] and "顧客" in system["content"]
    assert first["messages"][-1] == {"role": "user", "content": "search customers for Acme"}

    call = second["messages"][-2]["tool_calls"][0]
    assert call["function"]["name"] == "search_base_records"
    assert json.loads(call["function"]["arguments"]) == {"table": "customers", "query": "Acme"}
    result = second["messages"][-1]
    assert result["role"] == "tool" and result["tool_call_id"] == call["id"]
    assert "Acme" in result["content"]


async def test_language_profile_and_history_reach_the_model(env: Env) -> None:
    conversation = Conversation("c", profile="BaseExpert")
    conversation.add("user", "前の質問", 10)
    conversation.add("assistant", "前の答え", 10)

    reply = await env.ask("こんにちは", conversation=conversation)

    assert reply.text == "LLM: こんにちは"
    request = env.llm.requests[0]
    assert request["temperature"] == 0.3
    assert "Japanese" in request["messages"][0]["content"]
    assert request["messages"][1:] == [
        {"role": "user", "content": "前の質問"},
        {"role": "assistant", "content": "前の答え"},
        {"role": "user", "content": "こんにちは"},
    ]
    offered = {tool["function"]["name"] for tool in request["tools"]}
    assert offered == {
        "search_base_records",
        "create_base_record",
        "update_base_record",
        "delete_base_record",
        "list_base_tables",
        "list_base_fields",
        "create_base_table",
        "get_user_info",
    }


async def test_a_tool_outside_the_profile_is_refused(env: Env) -> None:
    env.llm.script(
        {"tool_calls": [{"name": "search_base_records", "arguments": {"table": "customers"}}]}
    )
    reply = await env.ask("hello", conversation=Conversation("c", profile="MessageBot"))

    assert env.calls(RECORDS_SEARCH) == 0
    assert "search_base_records" not in {
        tool["function"]["name"] for tool in env.llm.requests[0]["tools"]
    }
    refusal = env.llm.requests[1]["messages"][-1]["content"]
    assert "MessageBot" in refusal and "search_base_records" in refusal
    assert reply.text.startswith("Here is what I found:")


async def test_without_a_lark_client_no_tools_are_offered(env: Env) -> None:
    reply = await env.ask("search customers for Acme", with_tools=False)

    assert reply.text == "LLM: search customers for Acme"
    assert "tools" not in env.llm.requests[0]
    assert "No Lark tools" in env.llm.requests[0]["messages"][0]["content"]


async def test_bad_tool_arguments_go_back_to_the_model_as_a_sentence(env: Env) -> None:
    env.llm.script(
        {"tool_calls": [{"name": "search_base_records", "arguments": "{not json"}]},
        {"tool_calls": [{"name": "no_such_tool", "arguments": {}}]},
    )
    reply = await env.ask("hello")

    assert env.llm.requests[1]["messages"][-1]["content"]
    assert "search_base_records" in env.llm.requests[1]["messages"][-1]["content"]
    assert "no_such_tool" in env.llm.requests[2]["messages"][-1]["content"]
    assert reply.text.startswith("Here is what I found:")
    assert env.calls(RECORDS_SEARCH) == 0


async def test_the_eleventh_write_in_a_minute_is_refused(env: Env) -> None:
    creates = [
        {
            "name": "create_base_record",
            "arguments": {"table": "customers", "fields": {"Name": f"N{i}"}},
        }
        for i in range(11)
    ]
    env.llm.script({"tool_calls": creates})
    before = len(env.ws.writes)

    reply = await env.ask("add eleven customers")

    assert len(env.ws.writes) - before == 10
    results = [m for m in env.llm.requests[1]["messages"] if m["role"] == "tool"]
    assert len(results) == 11
    limit = results[10]["content"]
    assert "10 changes per minute" in limit
    assert all("10 changes per minute" not in r["content"] for r in results[:10])
    assert limit in reply.text


async def test_tool_rounds_are_bounded(env: Env) -> None:
    def always_search(body: dict[str, Any]) -> dict[str, Any]:
        return {"tool_calls": [{"name": "search_base_records", "arguments": {"table": "tasks"}}]}

    env.llm.default_responder = always_search
    reply = await env.ask("検索を続けて", settings_with(env.llm, max_tool_rounds=3))

    assert len(env.llm.requests) == 3
    assert reply.text == translate("llm_too_many_steps", "ja")
    assert not reply.markdown


# --- failures of the model's service ------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "outcome", "key"),
    [
        ("timeout", "timeout", "llm_timeout"),
        (500, "server_error", "llm_server_error"),
        (429, "rate_limited", "llm_rate_limited"),
        (401, "auth_error", "llm_auth_error"),
    ],
)
async def test_service_failures_get_a_polite_reply(
    env: Env, caplog: pytest.LogCaptureFixture, fault: Any, outcome: str, key: str
) -> None:
    caplog.set_level(logging.DEBUG)
    if fault == "timeout":
        env.llm.hang_next(2)  # the client retries once
    elif fault == 401:
        env.llm.api_key = "sk-another-key"
    else:
        env.llm.fail_next(2, status=fault, retry_after=0.01)
    before = llm_requests(outcome)

    settings = settings_with(env.llm, timeout_seconds=0.3)
    reply = await env.ask("在客户表中搜索 Acme", settings)

    assert reply.text == translate(key, "zh")
    assert llm_requests(outcome) - before == 1
    assert API_KEY not in reply.text
    assert API_KEY not in caplog.text
    assert any(
        outcome in r.getMessage() and getattr(r, "message_id", None) == "om_llm_0"
        for r in caplog.records
        if r.name == "larkbot.agent"
    )


async def test_unreachable_service_gets_a_polite_reply(env: Env) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        llm={"api_key": API_KEY, "base_url": f"http://127.0.0.1:{port}/v1", "timeout_seconds": 2}
    )
    before = llm_requests("error")

    reply = await env.ask("hello", settings)

    assert reply.text == translate("llm_unreachable", "en")
    assert llm_requests("error") - before == 1


async def test_a_given_client_is_not_closed_by_the_brain(env: Env) -> None:
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=env.llm.base_url, max_retries=0)
    brain = LLMBrain(settings_with(env.llm), client=client)
    await brain.aclose()
    assert not client.is_closed()
    assistant = Assistant(settings_with(env.llm), status=Status(), brain=brain)
    reply = await assistant.respond(message("hi"), Conversation("c"))
    assert reply.text == "LLM: hi"
    await client.close()

    owned = LLMBrain(settings_with(env.llm))
    await owned.aclose()  # nothing built yet: nothing to close
    assistant = Assistant(settings_with(env.llm), status=Status(), brain=owned)
    assert (await assistant.respond(message("hi"), Conversation("c"))).text == "LLM: hi"
    await owned.aclose()
    assert owned._client is not None and owned._client.is_closed()


# --- the stand-in itself ------------------------------------------------------------------


async def test_standin_speaks_openai_shapes(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.llm.base_url) as http:
        auth = {"Authorization": f"Bearer {API_KEY}"}
        models = await http.get("/models", headers=auth)
        assert models.json()["data"][0]["id"] == "test-model"

        refused = await http.post("/chat/completions", json={"messages": []})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"

        env.llm.fail_next(1, status=429, retry_after=2)
        limited = await http.post(
            "/chat/completions", headers=auth, json={"messages": [{"role": "user", "content": "x"}]}
        )
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
        assert limited.json()["error"]["type"] == "requests"

        env.llm.script({"content": "scripted"})
        answer = await http.post(
            "/chat/completions",
            headers=auth,
            json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
        )
        body = answer.json()
        assert body["object"] == "chat.completion" and body["model"] == "m"
        assert body["choices"][0]["message"] == {"role": "assistant", "content": "scripted"}
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["usage"]["total_tokens"] > 0

    assert len(env.llm.requests) == 3


async def test_standin_streams_when_asked(env: Env) -> None:
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=env.llm.base_url, max_retries=0)
    try:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        parts = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    finally:
        await client.close()
    assert "".join(p for p in parts if p) == "LLM: hi"

"""The whole daemon thinking with the LLM brain: real long connection, real OpenAPI, real HTTP.

The daemon runs against the local Lark serving the sample workspace and the local
OpenAI-compatible stand-in; the LLM brain is switched on only by the environment names
an operator sets (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``LLM_MODEL``).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest

from larkbot.agent.i18n import translate
from larkbot.config import Settings
from larkbot.ops.metrics import REGISTRY
from larkbot.testing import LarkStandIn, OpenAIStandIn, ReplyRecord
from larkbot.testing.sample_data import SAMPLE_BASES, sample_workspace
from larkbot.testing.workspace import RECORDS_SEARCH, Workspace, workspace_routes
from tests._daemon import running_daemon, settings_for

pytestmark = pytest.mark.anyio

API_KEY = "sk-scenario-secret-9f8e7d6c5b4a"


@dataclass
class World:
    ws: Workspace
    lark: LarkStandIn
    llm: OpenAIStandIn
    settings: Settings


@asynccontextmanager
async def world(**env: str) -> AsyncIterator[World]:
    """The sample workspace in the local Lark, the local model, and settings for both."""
    ws = sample_workspace()
    bases = {name: table.model_dump() for name, table in SAMPLE_BASES.items()}
    async with (
        LarkStandIn(extra_routes=workspace_routes(ws)) as lark,
        OpenAIStandIn(api_key=API_KEY) as llm,
    ):
        settings = await settings_for(
            lark,
            OPENAI_API_KEY=API_KEY,
            OPENAI_BASE_URL=llm.base_url,
            LLM_MODEL="test-model",
            LARKBOT_BASES=json.dumps(bases),
            # These scenarios read each answer from its reply; streaming has its own tests.
            **{"LARKBOT_REPLY__STREAMING": "false", **env},
        )
        yield World(ws, lark, llm, settings)


def said(reply: ReplyRecord) -> str:
    """Everything a reply says, whatever its message type (text or card)."""
    return reply.text or json.dumps(reply.content, ensure_ascii=False)


def replies_to(lark: LarkStandIn, message_id: str) -> list[str]:
    return [said(r) for r in lark.replies if r.to_message_id == message_id]


def llm_requests(outcome: str) -> float:
    value = REGISTRY.get_sample_value("larkbot_llm_requests_total", {"outcome": outcome})
    return value or 0.0


async def test_search_request_runs_the_tool_and_the_reply_quotes_it() -> None:
    async with world() as w, running_daemon(w.settings):
        message_id = await w.lark.send_text("search customers for Acme")
        await w.lark.wait_for(lambda: bool(replies_to(w.lark, message_id)), timeout=10)

        searches = [c for c in w.lark.api_calls if c.route == RECORDS_SEARCH]
        assert len(searches) == 1
        customers = SAMPLE_BASES["customers"]
        assert customers.app_token in searches[0].path
        assert customers.table_id in searches[0].path
        (reply,) = replies_to(w.lark, message_id)
        assert "Here is what I found" in reply and "Acme" in reply
        assert [r["model"] for r in w.llm.requests] == ["test-model", "test-model"]
        assert w.llm.requests[1]["messages"][-1]["role"] == "tool"


async def test_status_names_the_model() -> None:
    async with world() as w, running_daemon(w.settings):
        message_id = await w.lark.send_text("status")
        await w.lark.wait_for(lambda: bool(replies_to(w.lark, message_id)), timeout=10)
        assert "test-model" in replies_to(w.lark, message_id)[0]
        assert w.llm.requests == []  # commands never reach the model


@pytest.mark.parametrize(
    ("fault", "outcome", "key"),
    [
        ("timeout", "timeout", "llm_timeout"),
        (500, "server_error", "llm_server_error"),
        (401, "auth_error", "llm_auth_error"),
    ],
)
async def test_model_failures_get_a_polite_reply_in_the_users_language(
    caplog: pytest.LogCaptureFixture, fault: object, outcome: str, key: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        world(LARKBOT_LLM__TIMEOUT_SECONDS="0.3") as w,
        running_daemon(w.settings),
    ):
        if fault == "timeout":
            w.llm.hang_next(2)  # the first try and the client's one retry
        elif fault == 401:
            w.llm.api_key = "sk-rotated-elsewhere"
        else:
            w.llm.fail_next(2, status=500, retry_after=0.01)
        before = llm_requests(outcome)

        message_id = await w.lark.send_text("顧客テーブルから今月の案件を検索して")
        await w.lark.wait_for(lambda: bool(replies_to(w.lark, message_id)), timeout=10)

        (reply,) = replies_to(w.lark, message_id)
        assert reply == translate(key, "ja")
        assert llm_requests(outcome) - before == 1
        ack = next(a for a in w.lark.acks if a.chat_message_id == message_id)
        assert ack.code == 200
    assert API_KEY not in caplog.text
    assert all(API_KEY not in said(r) for r in w.lark.replies)
    assert any(
        getattr(r, "message_id", None) == message_id and outcome in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.slow
async def test_twenty_chats_think_at_once_while_acks_stay_instant() -> None:
    async with world() as w, running_daemon(w.settings):
        # The brain loads the openai package on its first message (a worker thread busy
        # for a few hundred milliseconds); this measures the daemon once it is warm.
        warm_up = await w.lark.send_text("warm up", chat_id="oc_warm")
        await w.lark.wait_for(lambda: bool(replies_to(w.lark, warm_up)), timeout=10)
        w.llm.delay = 1.0
        sent: dict[str, int] = {}

        async def send(chat: int) -> None:
            sent[await w.lark.send_text(f"hello {chat}", chat_id=f"oc_{chat}")] = chat

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for chat in range(20):
                tg.start_soon(send, chat)
        await w.lark.wait_for(lambda: len(w.lark.replies) == 21, timeout=8)
        elapsed = time.monotonic() - started

        latencies = [a.latency_ms for a in w.lark.acks if a.chat_message_id in sent]
        print(
            f"\n20 chats answered {elapsed:.2f} s after the first send (the model takes 1.0 s); "
            f"acks p50={statistics.median(latencies):.2f} ms max={max(latencies):.2f} ms"
        )
        assert len(latencies) == 20 and max(latencies) < 50, latencies
        assert elapsed < 4.0
        answers = {r.to_message_id: said(r) for r in w.lark.replies if r.to_message_id in sent}
        assert len(answers) == 20
        for message_id, chat in sent.items():
            assert f"LLM: hello {chat}" in answers[message_id], answers[message_id]

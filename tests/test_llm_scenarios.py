"""The whole daemon thinking with the LLM brain: real long connection, real OpenAPI, real HTTP.

The daemon runs against the local Lark serving the sample workspace and the local
OpenAI-compatible stand-in; the LLM brain is switched on only by the environment names
an operator sets (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``LLM_MODEL``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest

from larkbot.agent.i18n import translate
from larkbot.config import Settings
from larkbot.testing import LarkStandIn, OpenAIStandIn
from larkbot.testing.sample_data import SAMPLE_BASES, sample_workspace
from larkbot.testing.workspace import RECORDS_SEARCH, Workspace, workspace_routes
from tests._daemon import (
    ack_figures,
    assert_acked_within_lark_limit,
    running_daemon,
    settings_for,
)
from tests._factories import llm_requests
from tests._proc import reply_text

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


def replies_to(lark: LarkStandIn, message_id: str) -> list[str]:
    return [reply_text(r) for r in lark.replies if r.to_message_id == message_id]


async def test_search_request_runs_the_tool_and_the_reply_quotes_it() -> None:
    async with world() as w, running_daemon(w.settings):
        message_id = await w.lark.send_text("search customers for Acme")
        await w.lark.wait_for(lambda: bool(replies_to(w.lark, message_id)), timeout=30)

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
        await w.lark.wait_for(lambda: bool(replies_to(w.lark, message_id)), timeout=30)
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
    # A short timeout only where the model never answers: elsewhere a loaded machine could
    # turn a slow error answer into a timeout.
    env = {"LARKBOT_LLM__TIMEOUT_SECONDS": "0.3"} if fault == "timeout" else {}
    async with world(**env) as w, running_daemon(w.settings):
        if fault == "timeout":
            w.llm.hang_next(2)  # the first try and the client's one retry
        elif fault == 401:
            w.llm.api_key = "sk-rotated-elsewhere"
        else:
            w.llm.fail_next(2, status=500, retry_after=0.01)
        before = llm_requests(outcome)

        message_id = await w.lark.send_text("顧客テーブルから今月の案件を検索して")
        await w.lark.wait_for(lambda: bool(replies_to(w.lark, message_id)), timeout=30)

        (reply,) = replies_to(w.lark, message_id)
        assert reply == translate(key, "ja")
        assert llm_requests(outcome) - before == 1
        ack = next(a for a in w.lark.acks if a.chat_message_id == message_id)
        assert ack.code == 200
    assert API_KEY not in caplog.text
    assert all(API_KEY not in reply_text(r) for r in w.lark.replies)
    assert any(
        getattr(r, "message_id", None) == message_id and outcome in r.getMessage()
        for r in caplog.records
    )


async def test_twenty_chats_think_at_once_while_acks_stay_instant() -> None:
    async with world() as w, running_daemon(w.settings):
        sent: dict[str, int] = {}

        async def send(chat: int) -> None:
            sent[await w.lark.send_text(f"hello {chat}", chat_id=f"oc_{chat}")] = chat

        # The model holds every answer until the test lets it go: all 20 chats must be
        # thinking at once, and every message acked while none is answered yet.
        w.llm.hold()
        async with anyio.create_task_group() as tg:
            for chat in range(20):
                tg.start_soon(send, chat)
        await w.lark.wait_for(lambda: w.llm.held == 20 and len(w.lark.acks) == 20, timeout=30)
        assert not w.lark.replies
        assert_acked_within_lark_limit(w.lark, sent)
        w.llm.release()
        await w.lark.wait_for(lambda: len(w.lark.replies) == 20, timeout=30)

        print(f"\n20 chats thinking at once; {ack_figures(w.lark, sent)}")
        answers = {r.to_message_id: reply_text(r) for r in w.lark.replies}
        assert sorted(answers) == sorted(sent)
        for message_id, chat in sent.items():
            assert f"LLM: hello {chat}" in answers[message_id], answers[message_id]

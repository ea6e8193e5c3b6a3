"""``ask_larkbot`` over MCP: larkbot's own agent answers, and posts in a chat when asked."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from larkbot.testing import LarkStandIn, OpenAIStandIn
from larkbot.testing.sample_data import (
    CUSTOMERS_APP_TOKEN,
    CUSTOMERS_TABLE_ID,
    SAMPLE_BASES,
)
from larkbot.testing.workspace import RECORDS, Workspace
from tests._mcp import mcp_session

pytestmark = pytest.mark.anyio

_QUESTION = "顧客テーブルから今月の案件を検索して"
_BASES = {
    "LARKBOT_BASES": json.dumps({name: table.model_dump() for name, table in SAMPLE_BASES.items()})
}


# The server counts "this month" in its agent's zone, the host's unless set: the test sets
# the zone it counts in, or from 15:00 UTC on a month's last day (already the next month in
# Tokyo) the two would disagree.
_ZONE = "Asia/Tokyo"


def _contacted_this_month(ws: Workspace) -> tuple[set[str], set[str]]:
    """Names of the customers last contacted this month in ``_ZONE``, and of the others."""
    tokyo = ZoneInfo(_ZONE)
    now = datetime.now(tokyo)
    this_month: set[str] = set()
    others: set[str] = set()
    for record in ws.apps[CUSTOMERS_APP_TOKEN].tables[CUSTOMERS_TABLE_ID].records.values():
        when = datetime.fromtimestamp(record["Last contact"] / 1000, tz=tokyo)
        same = (when.year, when.month) == (now.year, now.month)
        (this_month if same else others).add(record["Name"])
    return this_month, others


async def test_ask_larkbot_answers_from_the_workspace_and_posts_in_a_chat(
    lark: LarkStandIn, ws: Workspace, tmp_path: Path
) -> None:
    this_month, others = _contacted_this_month(ws)
    assert this_month and others
    args = ["--allow-writes", "-t", "ask_larkbot,send_message"]
    env = {**_BASES, "LARKBOT_AGENT__TIMEZONE": _ZONE}
    async with mcp_session(lark, tmp_path, "streamable", args, env=env) as (session, log):
        answered = await session.call_tool("ask_larkbot", {"question": _QUESTION})
        assert not answered.is_error, answered.content
        answer = answered.content[0].text  # type: ignore[union-attr]
        assert all(name in answer for name in this_month), answer
        assert not any(name in answer for name in others), answer
        assert answered.structured_content is not None
        assert answered.structured_content["answer"] == answer
        assert lark.replies == []  # nothing posted without chat_id

        posted = await session.call_tool(
            "ask_larkbot", {"question": _QUESTION, "chat_id": "oc_sales"}
        )
        assert not posted.is_error, posted.content
        assert posted.content[0].text.endswith(  # type: ignore[union-attr]
            "チャット oc_sales に回答を投稿しました。"
        )
        sent = [reply for reply in lark.replies if reply.kind == "send"]
        assert [reply.receive_id for reply in sent] == ["oc_sales"] * len(sent)
        body = json.dumps([reply.content for reply in sent], ensure_ascii=False)
        assert sent and all(name in body for name in this_month)
        assert posted.structured_content is not None
        assert posted.structured_content["posted"]["message_ids"] == [r.message_id for r in sent]
        # The post is a write like any other: audited, under the caller's name.
        (audit,) = await log.audit("post_agent_answer")
        assert audit.outcome == "success"
        assert audit.arguments["chat_id"] == "oc_sales"
        assert audit.caller.startswith("session:")


async def test_posting_needs_writes(lark: LarkStandIn, tmp_path: Path) -> None:
    async with mcp_session(lark, tmp_path, "stdio", ["-l", "en"], env=_BASES) as (session, _):
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert "ask_larkbot" in names and "post_agent_answer" not in names
        refused = await session.call_tool(
            "ask_larkbot", {"question": _QUESTION, "chat_id": "oc_sales"}
        )
        assert refused.is_error
        assert refused.content[0].text == (  # type: ignore[union-attr]
            "Posting in a chat is a change: start larkbot mcp with --allow-writes to allow it."
        )
        hidden = await session.call_tool(
            "post_agent_answer", {"chat_id": "oc_sales", "text": "hello"}
        )
        assert hidden.is_error
    assert lark.replies == []


async def test_ask_larkbot_thinks_with_the_llm_when_one_is_configured(
    lark: LarkStandIn, tmp_path: Path
) -> None:
    async with OpenAIStandIn(api_key="sk-test") as llm:
        env = {
            **_BASES,
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": llm.base_url,
            "LLM_MODEL": "test-model",
        }
        async with mcp_session(lark, tmp_path, "sse", env=env) as (session, _):
            answered = await session.call_tool(
                "ask_larkbot", {"question": "search customers for Acme"}
            )
            assert not answered.is_error, answered.content
            assert "Acme Corporation" in answered.content[0].text  # type: ignore[union-attr]
    offered = {tool["function"]["name"] for tool in llm.requests[0]["tools"]}
    # The agent reads with every read tool, writes only with exposed ones, never calls itself.
    assert "search_base_records" in offered
    assert not offered & {"ask_larkbot", "post_agent_answer", "create_base_record"}
    searched = [c for c in lark.api_calls if c.route.endswith("records/search")]
    assert searched


async def test_ask_larkbot_writes_only_for_the_servers_writers(
    lark: LarkStandIn, ws: Workspace, tmp_path: Path
) -> None:
    # The inner agent writes under the server's own policy: a caller who is not among the
    # writers cannot have the agent make the change a direct tool call would be refused.
    env = {**_BASES, "LARKBOT_POLICY__WRITERS": '["ou_sato"]'}
    args = ["--allow-writes", "--token-mode", "user", "-l", "en"]
    args += ["-t", "ask_larkbot,create_base_record"]
    table = ws.apps[CUSTOMERS_APP_TOKEN].tables[CUSTOMERS_TABLE_ID]
    before = len(table.records)
    outcomes: list[str] = []
    for open_id, name in (("ou_tanaka", "Refused Ltd"), ("ou_sato", "Allowed Ltd")):
        token = lark.issue_user_token(open_id)
        question = f"add to customers Name={name}"
        async with mcp_session(lark, tmp_path, "streamable", args, env=env, token=token) as (
            session,
            log,
        ):
            asked = await session.call_tool("ask_larkbot", {"question": question})
            assert not asked.is_error, asked.content
            outcomes.append(asked.content[0].text)  # type: ignore[union-attr]
            (audit,) = await log.audit("create_base_record")
            assert audit.caller == f"user:{open_id}"
            assert audit.outcome == ("denied" if open_id == "ou_tanaka" else "success")
    denied, created = outcomes
    assert denied.startswith(
        "You are not allowed to make changes with create_base_record; ask an administrator"
    ), denied
    assert "Allowed Ltd" in created, created
    writes = [call for call in lark.api_calls if (call.method, call.route) == ("POST", RECORDS)]
    assert [call.user_open_id for call in writes] == ["ou_sato"]
    names = [record["Name"] for record in table.records.values()]
    assert len(names) == before + 1
    assert "Allowed Ltd" in names and "Refused Ltd" not in names

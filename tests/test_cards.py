"""Card action callbacks and confirmed writes, end to end against the local Lark.

A write asked of either brain comes back as a confirmation card; only the requester's
click runs it, exactly once however often the click arrives; a stale card expires.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from larkbot.agent.assistant import Assistant
from larkbot.agent.confirm import WriteConfirmations
from larkbot.agent.limits import RateLimiter, UserLimiter
from larkbot.agent.llm import LLMBrain
from larkbot.agent.tools._bitable import (
    CreateBaseRecord,
    CreateBaseRecordInput,
    DeleteBaseRecordInput,
)
from larkbot.agent.tools._common import ToolInput, idempotency_key
from larkbot.agent.tools.base import Tool, ToolContext, ToolResult
from larkbot.agent.tools.registry import default_registry
from larkbot.agent.tools.runner import ToolRunner
from larkbot.config import Settings
from larkbot.core.cards import CardAction
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.lark.client import LarkClient
from larkbot.store import Store, open_store
from larkbot.store.confirmations import ConfirmationMove, ConfirmationState, PendingWrite
from larkbot.store.redis import RedisStore
from larkbot.testing import LarkStandIn, OpenAIStandIn, ReplyRecord
from larkbot.testing._openapi import ApiRequest, OpenApiRoute
from larkbot.testing.sample_data import SAMPLE_BASES, sample_workspace
from larkbot.testing.workspace import RECORDS, Workspace, workspace_routes
from tests._daemon import LARK_ACK_LIMIT_MS, running_daemon, settings_for
from tests._factories import Status, inbound
from tests._redis import chat_owned_by, redis_server, requires_redis

REQUESTER = "ou_user_1"
OTHER = "ou_someone_else"


def _buttons(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The callback values of a card's buttons, by the ``action`` they carry."""
    found: dict[str, dict[str, Any]] = {}
    for element in card["body"]["elements"]:
        if element.get("tag") == "button":
            value = element["behaviors"][0]["value"]
            found[value["action"]] = value
    return found


def _markdown(card: dict[str, Any]) -> str:
    return "\n".join(e["content"] for e in card["body"]["elements"] if e.get("tag") == "markdown")


def _asked(text: str, *, message_id: str) -> InboundMessage:
    """The requester's message in the p2p chat the cards are posted to."""
    return inbound("oc_p2p_1", text, message_id=message_id, sender=REQUESTER)


def _confirming_runner(
    confirmations: WriteConfirmations, write_limiter: UserLimiter | None = None
) -> ToolRunner:
    """A tool runner whose writes wait for approval through ``confirmations``."""
    return ToolRunner(
        default_registry(),
        write_limiter=write_limiter,
        writers=None,
        cache_ttl_seconds=0,
        confirmations=confirmations,
    )


def _assistant(runner: ToolRunner, client: LarkClient) -> Assistant:
    """The assistant over the sample Bases, in Tokyo, running its tools with ``runner``."""
    settings = Settings(bases=SAMPLE_BASES, agent={"timezone": "Asia/Tokyo"})
    return Assistant(settings, status=Status(), runner=runner, client=client)


def _click(value: dict[str, Any], operator: str, *, event_id: str) -> CardAction:
    """``operator`` clicking the button carrying ``value`` on the card in the p2p chat."""
    return CardAction(
        event_id=event_id,
        operator_open_id=operator,
        value=value,
        tag="button",
        open_message_id="om_card",
        open_chat_id="oc_p2p_1",
    )


@dataclass
class _Env:
    ws: Workspace
    lark: LarkStandIn
    store: Store
    assistant: Assistant
    confirmations: WriteConfirmations
    now: list[float]
    conversations: dict[str, Conversation] | None = None
    runner: ToolRunner | None = None
    client: LarkClient | None = None

    async def ask(self, text: str, *, index: int = 0) -> dict[str, Any]:
        conversation = Conversation("oc_p2p_1", language="en")
        message = _asked(text, message_id=f"om_ask_{index}_{len(text)}")
        reply = await self.assistant.respond(message, conversation)
        assert reply.card is not None, reply.text
        return dict(reply.card)

    async def click(self, value: dict[str, Any], operator: str = REQUESTER) -> Any:
        action = _click(value, operator, event_id=f"ev-{len(self.now)}-{operator}")
        return await self.confirmations.on_action(action)


@pytest.fixture(params=["memory", "sqlite"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[_Env]:
    ws = sample_workspace()
    now = [1_700_000_000.0]
    async with (
        LarkStandIn(extra_routes=workspace_routes(ws)) as lark,
        LarkClient(lark.url, lark.app_id, lark.app_secret) as client,
        open_store(request.param, tmp_path) as store,
    ):
        yield _wired(ws, lark, client, store, now=now, conversations=_Conversations())


def _wired(
    ws: Workspace,
    lark: LarkStandIn,
    client: LarkClient,
    store: Store,
    *,
    now: list[float],
    write_limiter: UserLimiter | None = None,
    conversations: _Conversations | None = None,
) -> _Env:
    """Confirmed writes over ``store`` at the clock ``now[0]``, and an assistant asking them."""
    confirmations = WriteConfirmations(
        store,
        ttl_seconds=600,
        clock=lambda: now[0],
        bases=dict(SAMPLE_BASES),
        conversations=conversations,
    )
    runner = _confirming_runner(confirmations, write_limiter)
    assistant = _assistant(runner, client)
    confirmations.bind(runner, client, assistant.timezone)
    kept = None if conversations is None else conversations.kept
    return _Env(ws, lark, store, assistant, confirmations, now, kept, runner, client)


@asynccontextmanager
async def _limited(limiter: UserLimiter, kind: str, tmp_path: Path) -> AsyncIterator[_Env]:
    """Confirmed writes over a ``kind`` store, their writes limited by ``limiter``."""
    ws = sample_workspace()
    async with (
        LarkStandIn(extra_routes=workspace_routes(ws)) as lark,
        LarkClient(lark.url, lark.app_id, lark.app_secret) as client,
        open_store(kind, tmp_path) as store,  # type: ignore[arg-type]
    ):
        yield _wired(ws, lark, client, store, now=[0.0], write_limiter=limiter)


class _Conversations:
    def __init__(self) -> None:
        self.kept: dict[str, Conversation] = {}

    def get(self, key: str) -> Conversation:
        return self.kept.setdefault(key, Conversation(key))


def _customers(ws: Workspace) -> dict[str, dict[str, Any]]:
    return ws.table("顧客一覧").records


@pytest.mark.anyio
async def test_offline_create_waits_for_the_requesters_click_and_runs_once(env: _Env) -> None:
    before = dict(_customers(env.ws))
    card = await env.ask("add to customers Name=Card Test Ltd, Status=Lead")
    assert "create_base_record" in _markdown(card) and "Card Test Ltd" in _markdown(card)
    buttons = _buttons(card)
    assert set(buttons) == {"approve", "cancel"}
    assert buttons["approve"]["id"] == buttons["cancel"]["id"]
    assert not env.ws.writes

    refused = json.loads((await env.click(buttons["approve"], operator=OTHER)).to_json())
    assert refused["toast"]["type"] == "error" and "card" not in refused
    assert not env.ws.writes

    approved = json.loads((await env.click(buttons["approve"])).to_json())
    assert approved["toast"]["type"] == "success"
    new = set(_customers(env.ws)) - set(before)
    assert len(new) == 1 and len(env.ws.writes) == 1
    (record_id,) = new
    shown = _markdown(approved["card"]["data"])
    assert record_id in shown and "Done" in shown
    assert not _buttons(approved["card"]["data"])
    # The conversation goes on knowing what became of the change.
    assert env.conversations is not None
    (turn,) = env.conversations["oc_p2p_1"].turns
    assert turn.role == "assistant" and record_id in turn.text

    # A second click, another replica's click, a cancel after the fact: nothing more.
    again = json.loads((await env.click(buttons["approve"])).to_json())
    cancelled_late = json.loads((await env.click(buttons["cancel"])).to_json())
    assert record_id in _markdown(again["card"]["data"])
    assert record_id in _markdown(cancelled_late["card"]["data"])
    assert len(env.ws.writes) == 1


@pytest.mark.anyio
async def test_update_shows_each_field_before_and_after(env: _Env) -> None:
    record = _customers(env.ws)["recCust000002"]
    card = await env.ask("update recCust000002 in customers Status=Won")
    shown = _markdown(card)
    assert "Status" in shown and "→ Won" in shown
    assert f"{record['Status']} → Won" in shown
    assert not env.ws.writes


@pytest.mark.anyio
async def test_concurrent_approvals_write_once(env: _Env) -> None:
    card = await env.ask("add to customers Name=Race Ltd")
    approve = _buttons(card)["approve"]
    answers: list[Any] = []

    async def click() -> None:
        answers.append(await env.click(approve))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(click)
    assert len(env.ws.writes) == 1
    assert sum(a.toast_type == "success" and a.toast is not None for a in answers) == 1


@pytest.mark.anyio
async def test_a_confirmation_left_ten_minutes_expires_and_writes_nothing(env: _Env) -> None:
    card = await env.ask("add to customers Name=Too Late Ltd")
    env.now[0] += 600
    answer = json.loads((await env.click(_buttons(card)["approve"])).to_json())
    assert answer["toast"]["type"] == "warning"
    assert "Expired" in _markdown(answer["card"]["data"])
    assert not env.ws.writes
    # Expired stays expired: a later click writes nothing either.
    await env.click(_buttons(card)["approve"])
    assert not env.ws.writes


@pytest.mark.anyio
async def test_cancel_writes_nothing(env: _Env) -> None:
    card = await env.ask("add to customers Name=Never Ltd")
    answer = json.loads((await env.click(_buttons(card)["cancel"])).to_json())
    assert "Cancelled" in _markdown(answer["card"]["data"])
    await env.click(_buttons(card)["approve"])
    assert not env.ws.writes


@pytest.mark.anyio
async def test_confirmations_take_no_configured_bases(tmp_path: Path) -> None:
    """``bases=None`` means no configured table, as the constructor always accepted."""
    ws = sample_workspace()
    async with (
        LarkStandIn(extra_routes=workspace_routes(ws)) as lark,
        LarkClient(lark.url, lark.app_id, lark.app_secret) as client,
        open_store("memory", tmp_path) as store,
    ):
        confirmations = WriteConfirmations(store, ttl_seconds=600, bases=None)
        runner = _confirming_runner(confirmations)
        assistant = _assistant(runner, client)
        confirmations.bind(runner, client, assistant.timezone)
        env = _Env(ws, lark, store, assistant, confirmations, [0.0])
        card = await env.ask("add to customers Name=No Bases Ltd")
        answer = json.loads((await env.click(_buttons(card)["cancel"])).to_json())
    assert "Cancelled" in _markdown(answer["card"]["data"])
    assert not ws.writes


@pytest.mark.anyio
async def test_llm_tool_call_gets_the_card(env: _Env) -> None:
    async with OpenAIStandIn() as llm:
        llm.script(
            {
                "tool_calls": [
                    {
                        "name": "create_base_record",
                        "arguments": {"table": "customers", "fields": {"Name": "LLM Ltd"}},
                    }
                ]
            }
        )
        settings = Settings(
            bases=SAMPLE_BASES,
            agent={"timezone": "Asia/Tokyo"},
            llm={"api_key": llm.api_key, "base_url": llm.base_url, "model": llm.model},
        )
        brain = LLMBrain(settings)
        try:
            env.assistant = Assistant(
                settings,
                status=Status(),
                runner=env.assistant._runner,
                client=env.assistant._client,
                brain=brain,
            )
            card = await env.ask("please add LLM Ltd to customers")
        finally:
            await brain.aclose()
        assert len(llm.requests) == 1  # the card is the answer; the model waits for the user
    assert "LLM Ltd" in _markdown(card)
    assert not env.ws.writes
    await env.click(_buttons(card)["approve"], operator=OTHER)
    assert not env.ws.writes
    await env.click(_buttons(card)["approve"])
    assert len(env.ws.writes) == 1


async def _confirmation_asked(
    lark: LarkStandIn, text: str, chat_id: str = "oc_p2p_1"
) -> tuple[ReplyRecord, dict[str, Any]]:
    """Ask the running daemon for a write; return its card reply and the Approve value."""
    message_id = await lark.send_text(text, chat_id=chat_id, sender_open_id=REQUESTER)
    await lark.wait_for(lambda: any(r.to_message_id == message_id for r in lark.replies), 15)
    (reply,) = [r for r in lark.replies if r.to_message_id == message_id]
    assert reply.msg_type == "interactive"
    return reply, _buttons(reply.content)["approve"]


@pytest.mark.anyio
@pytest.mark.parametrize("frame_type", ["event", "card"])
async def test_card_callbacks_over_the_long_connection(frame_type: str) -> None:
    ws = sample_workspace()
    async with LarkStandIn(extra_routes=workspace_routes(ws)) as lark:
        settings = (await settings_for(lark)).model_copy(update={"bases": SAMPLE_BASES})
        async with running_daemon(settings):
            await lark.wait_connected()
            reply, approve = await _confirmation_asked(lark, "add to customers Name=Wire Ltd")

            other = await lark.send_card_action(
                approve,
                open_message_id=reply.message_id,
                operator_open_id=OTHER,
                frame_type=frame_type,
            )
            assert other.code == 200 and other.answer()["toast"]["type"] == "error"
            assert not ws.writes

            mine = await lark.send_card_action(
                approve, open_message_id=reply.message_id, frame_type=frame_type
            )
            assert mine.code == 200 and mine.answer()["toast"]["type"] == "success"
            assert len(ws.writes) == 1
            # Lark's 3 s, as the daemon measured it itself (the ack's biz_rt).
            assert mine.biz_rt is not None and mine.biz_rt < 3000

            # The same callback delivered again gets the same answer, and writes nothing.
            redelivered = await lark.send_card_action(
                approve, open_message_id=reply.message_id, event=lark.card_actions[-1]
            )
            assert redelivered.answer() == mine.answer()
            again = await lark.send_card_action(approve, open_message_id=reply.message_id)
            assert "card" in again.answer()
            assert len(ws.writes) == 1


@pytest.mark.anyio
async def test_console_shows_buttons_as_numbered_choices() -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", "COLUMNS": "500"}
    lines = ["add to customers Name=Console Ltd", "2", "add to customers Name=Kept Ltd", "1"]
    stdin = "".join(f"{line}\n" for line in lines).encode()
    with anyio.fail_after(90):
        result = await anyio.run_process(
            [sys.executable, "-m", "larkbot", "console"], input=stdin, env=env, check=False
        )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert out.count("      [1] Approve\n      [2] Cancel\n") == 2, out
    assert "Cancelled: nothing was changed." in out
    assert "Done: Created a record in customers: **Kept Ltd**" in out
    assert "Console Ltd** (rec" not in out


@requires_redis
@pytest.mark.anyio
async def test_two_replicas_on_redis_approve_a_write_once(tmp_path: Path) -> None:
    ws = sample_workspace()
    async with (
        redis_server(tmp_path / "redis") as server,
        RedisStore.open(server.url, password=server.password, command_timeout=10.0) as one,
        RedisStore.open(server.url, password=server.password, command_timeout=10.0) as two,
        LarkStandIn(extra_routes=workspace_routes(ws)) as lark,
        LarkClient(lark.url, lark.app_id, lark.app_secret) as client,
    ):
        replicas = []
        for store in (one, two):
            confirmations = WriteConfirmations(store, ttl_seconds=600, bases=dict(SAMPLE_BASES))
            runner = _confirming_runner(confirmations)
            confirmations.bind(runner, client)
            replicas.append((runner, confirmations))
        assistant = _assistant(replicas[0][0], client)
        message = _asked("add to customers Name=Replica Ltd", message_id="om_redis_1")
        reply = await assistant.respond(message, Conversation("oc_p2p_1", language="en"))
        assert reply.card is not None
        approve = _buttons(dict(reply.card))["approve"]
        answers: list[Any] = []

        async def click(confirmations: WriteConfirmations, n: int) -> None:
            action = _click(approve, REQUESTER, event_id=f"ev-redis-{n}")
            answers.append(await confirmations.on_action(action))

        async with anyio.create_task_group() as tg:
            for n in range(6):
                # Half the clicks reach the replica that did not post the card.
                tg.start_soon(click, replicas[n % 2][1], n)
        assert len(ws.writes) == 1
        assert sum(a.toast_type == "success" and a.toast is not None for a in answers) == 1
        settled = await two.confirmation(approve["id"])
        assert settled is not None and settled.state == "done"


@pytest.mark.anyio
async def test_write_limits_count_at_approval_and_every_decision_is_audited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with _limited(RateLimiter(1), "memory", tmp_path) as env:
        ws = env.ws
        # Asking is not writing: three cards within the minute, with a limit of one write.
        cards = [await env.ask(f"add to customers Name=Limit {n}", index=n) for n in range(3)]
        assert not ws.writes
        with caplog.at_level("INFO", logger="larkbot.agent.audit"):
            await env.click(_buttons(cards[0])["approve"], operator=OTHER)
            first = await env.click(_buttons(cards[0])["approve"])
            second = await env.click(_buttons(cards[1])["approve"])
            await env.click(_buttons(cards[2])["cancel"])
    assert first.toast_type == "success" and len(ws.writes) == 1
    assert second.toast_type == "error" and second.card is not None
    assert "Failed" in _markdown(dict(second.card))
    decisions = [
        (r.decision, r.operator_open_id)  # type: ignore[attr-defined]
        for r in caplog.records
        if hasattr(r, "decision")
    ]
    assert decisions == [
        ("refused_not_requester", OTHER),
        ("approved", REQUESTER),
        ("done", REQUESTER),
        ("approved", REQUESTER),
        ("failed", REQUESTER),
        ("cancelled", REQUESTER),
    ]
    outcomes = [
        r.outcome
        for r in caplog.records
        if getattr(r, "tool_name", None) and hasattr(r, "arguments")
    ]  # type: ignore[attr-defined]
    assert outcomes == ["success", "rate_limited"]


def _slow_record_creation(routes: list[OpenApiRoute], seconds: float) -> list[OpenApiRoute]:
    """``routes`` with Base record creation taking ``seconds`` before it is made."""

    def slowed(route: OpenApiRoute) -> OpenApiRoute:
        async def handler(request: ApiRequest) -> Any:
            await anyio.sleep(seconds)
            return await route.handler(request)

        return OpenApiRoute(route.method, route.template, handler, route.auth)

    return [
        slowed(route) if (route.method, route.template) == ("POST", RECORDS) else route
        for route in routes
    ]


@pytest.mark.anyio
async def test_a_slow_approved_write_is_answered_in_time_and_its_card_updated_after(
    tmp_path: Path,
) -> None:
    ws = sample_workspace()
    write_seconds = 3.5
    before = set(_customers(ws))
    routes = _slow_record_creation(workspace_routes(ws), write_seconds)
    async with LarkStandIn(extra_routes=routes) as lark:
        settings = (await settings_for(lark, tmp_path)).model_copy(update={"bases": SAMPLE_BASES})
        async with running_daemon(settings):
            await lark.wait_connected()
            reply, approve = await _confirmation_asked(lark, "add to customers Name=Slow Ltd")

            clicked = await lark.send_card_action(
                approve, open_message_id=reply.message_id, timeout=10
            )
            # Answered within Lark's 3 s (as the daemon measured it), the write still going.
            assert clicked.code == 200
            assert clicked.biz_rt is not None and clicked.biz_rt < LARK_ACK_LIMIT_MS
            answer = clicked.answer()
            assert answer["toast"]["type"] == "info"
            assert "being made" in _markdown(answer["card"]["data"])
            # No Approve or Cancel any more: only a button to click again after the bound.
            assert "click again" in _markdown(answer["card"]["data"])
            assert set(_buttons(answer["card"]["data"])) == {"approve"}
            assert not ws.writes
            # A second click meanwhile: answered at once, nothing more written.
            again = await lark.send_card_action(approve, open_message_id=reply.message_id)
            assert again.biz_rt is not None and again.biz_rt < LARK_ACK_LIMIT_MS
            assert "being made" in _markdown(again.answer()["card"]["data"])
            # Stopping now: the daemon's task group waits for the write, which is shielded.
            stopping = anyio.current_time()
        stopped_after = anyio.current_time() - stopping
        (record_id,) = set(_customers(ws)) - before
        assert len(ws.writes) == 1
        (patch,) = lark.patches
        assert patch.message_id == reply.message_id and patch.at > clicked.acked_at
        assert record_id in _markdown(patch.content) and "Done" in _markdown(patch.content)

        # Clicked again after it is done (the state survived the restart): the final card.
        async with running_daemon(settings):
            await lark.wait_connected()
            late = await lark.send_card_action(approve, open_message_id=reply.message_id)
        assert record_id in _markdown(late.answer()["card"]["data"])
        assert len(ws.writes) == 1
    print(
        f'\nwrite taking {write_seconds:g} s: click answered "in progress" in '
        f"{clicked.biz_rt} ms (daemon's biz_rt); a stop right after waited {stopped_after:.1f} s "
        f"for the write; card updated with the record {patch.at - clicked.acked_at:.1f} s "
        "after the answer; 1 record"
    )


@requires_redis
@pytest.mark.anyio
async def test_a_click_delivered_to_the_replica_that_did_not_post_the_card(
    tmp_path: Path,
) -> None:
    ws = sample_workspace()
    async with (
        redis_server(tmp_path / "redis") as server,
        RedisStore.open(server.url) as store,
        LarkStandIn(extra_routes=workspace_routes(ws)) as lark,
    ):
        lark.cluster_mode()
        env = {"REDIS_URL": server.url, "LARKBOT_STORE": "redis"}
        settings = (await settings_for(lark, **env)).model_copy(update={"bases": SAMPLE_BASES})
        async with running_daemon(settings) as first:
            (conn_first,) = lark.connection_ids
            async with running_daemon(settings) as second:
                (conn_second,) = set(lark.connection_ids) - {conn_first}
                assert first._parts is not None and first._parts.shared is not None
                chat_id = await chat_owned_by(store, first._parts.shared.ownership.owner)
                reply, approve = await _confirmation_asked(
                    lark, "add to customers Name=Replica Ltd", chat_id
                )
                click = {
                    "open_message_id": reply.message_id,
                    "open_chat_id": chat_id,
                    "timeout": 10,
                }

                other = await lark.send_card_action(
                    approve, operator_open_id=OTHER, conn_id=conn_second, **click
                )
                assert other.answer()["toast"]["type"] == "error" and not ws.writes
                mine = await lark.send_card_action(approve, conn_id=conn_second, **click)
                assert mine.conn_id == conn_second and mine.code == 200
                assert mine.answer()["toast"]["type"] == "success"
                assert mine.biz_rt is not None and mine.biz_rt < LARK_ACK_LIMIT_MS
                assert len(ws.writes) == 1
                shown = _markdown(mine.answer()["card"]["data"])
                assert "Done" in shown and "Replica Ltd" in shown

                # The same callback redelivered to the replica that posted the card, and a
                # second click there: the card as it stands, nothing written again.
                redelivered = await lark.send_card_action(
                    approve, event=lark.card_actions[-1], conn_id=conn_first, **click
                )
                again = await lark.send_card_action(approve, conn_id=conn_first, **click)
                for answer in (redelivered, again):
                    assert answer.conn_id == conn_first
                    assert "Done" in _markdown(answer.answer()["card"]["data"])
                assert len(ws.writes) == 1
                assert second is not first
        settled = await store.confirmation(approve["id"])
        assert settled is not None and settled.state == "done"
    print(
        f"\ncard posted by replica {conn_first}, approved on {conn_second} in {mine.biz_rt} ms "
        f"(daemon's biz_rt); redelivery and a second click on {conn_first}: still 1 record"
    )


class _ExplodingInput(ToolInput):
    note: str


class _Exploding(
    Tool[_ExplodingInput],
    name="exploding_write",
    description="A write whose code is broken.",
    write=True,
):
    """A write tool that raises, as a plug-in with a bug would."""

    async def run(self, ctx: ToolContext, args: _ExplodingInput) -> ToolResult:
        raise RuntimeError(f"secret-detail-{args.note}")


def _ctx(env: _Env, message_id: str) -> ToolContext:
    """The requester's context in the p2p chat, as the turn that asked had it."""
    assert env.client is not None
    return ToolContext(
        client=env.client,
        user_open_id=REQUESTER,
        chat_id="oc_p2p_1",
        message_id=message_id,
        language="en",
        bases=dict(SAMPLE_BASES),
    )


def _decisions(records: list[Any]) -> list[str]:
    return [r.decision for r in records if hasattr(r, "decision")]


@pytest.mark.anyio
async def test_an_approved_write_that_raises_settles_failed_without_the_details(
    env: _Env, caplog: pytest.LogCaptureFixture
) -> None:
    assert env.runner is not None
    env.runner.registry.register(_Exploding())
    asked = await env.runner.run("exploding_write", {"note": "x1"}, _ctx(env, "om_boom"))
    assert asked.card is not None
    approve = _buttons(asked.card)["approve"]
    with caplog.at_level("INFO", logger="larkbot.agent.audit"):
        answer = json.loads((await env.click(approve)).to_json())
    assert answer["toast"]["type"] == "error"
    shown = _markdown(answer["card"]["data"])
    assert "Failed" in shown and "exploding_write" in shown
    assert "secret-detail" not in json.dumps(answer) and "Traceback" not in json.dumps(answer)
    assert _decisions(caplog.records) == ["approved", "failed"]
    settled = await env.store.confirmation(approve["id"])
    assert settled is not None and settled.state == ConfirmationState.FAILED
    # A second click: the settled card, not "in progress".
    again = json.loads((await env.click(approve)).to_json())
    assert _markdown(again["card"]["data"]) == shown


class _BrokenLimiter:
    """A write limiter whose backend fails (the exception reaches past the tool runner)."""

    per_minute = 1

    async def acquire(self, key: str) -> float | None:
        raise RuntimeError("limiter backend gone: token=secret-detail")


@pytest.mark.anyio
async def test_an_approved_write_failing_past_the_runner_settles_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with _limited(_BrokenLimiter(), "sqlite", tmp_path) as env:
        card = await env.ask("add to customers Name=Broken Ltd")
        approve = _buttons(card)["approve"]
        with caplog.at_level("INFO", logger="larkbot.agent"):
            answer = await env.click(approve)
        assert answer.toast_type == "error" and answer.card is not None
        shown = _markdown(dict(answer.card))
        assert "Failed" in shown and "unexpected error" in shown and "secret" not in shown
        settled = await env.store.confirmation(approve["id"])
        assert settled is not None and settled.state == ConfirmationState.FAILED
        assert _decisions(caplog.records) == ["approved", "failed"]
        again = await env.click(approve)
        assert again.card is not None and _markdown(dict(again.card)) == shown
    assert not env.ws.writes


async def _left_approving(env: _Env, card: dict[str, Any]) -> PendingWrite:
    """What a process killed during the approved write leaves: ``approving`` since now."""
    confirmation_id = _buttons(card)["approve"]["id"]
    move = ConfirmationMove(
        confirmation_id,
        expected=ConfirmationState.PENDING,
        state=ConfirmationState.APPROVING,
        approving_since=env.now[0],
    )
    assert await env.store.settle_confirmation(move)
    pending = await env.store.confirmation(confirmation_id)
    assert pending is not None and pending.approving_since == env.now[0]
    return pending


@pytest.mark.anyio
@pytest.mark.parametrize("reached_lark", [True, False], ids=["written", "not-written"])
async def test_a_write_whose_process_died_is_taken_over_by_a_click_after_the_bound(
    env: _Env, reached_lark: bool, caplog: pytest.LogCaptureFixture
) -> None:
    before = set(_customers(env.ws))
    card = await env.ask("add to customers Name=Crashed Ltd")
    pending = await _left_approving(env, card)
    if reached_lark:
        # The dead process's write got to Lark before it died, under the key it derives
        # from the requesting message: the rerun must derive the same one.
        args = CreateBaseRecordInput.model_validate(pending.arguments)
        ctx = _ctx(env, pending.message_id)
        first = await CreateBaseRecord().run(ctx, args)
        assert first.ok and len(env.ws.writes) == 1
        (token,) = {w.params["client_token"] for w in env.ws.writes}
        assert token == idempotency_key(ctx, "create_base_record", args)
    approve = _buttons(card)["approve"]
    with caplog.at_level("INFO", logger="larkbot.agent.audit"):
        # Within the bound: still in progress, and the card says a click later may help.
        env.now[0] += 299
        early = json.loads((await env.click(approve)).to_json())
        shown = _markdown(early["card"]["data"])
        assert "being made" in shown and "5 min, click again" in shown
        assert set(_buttons(early["card"]["data"])) == {"approve"}
        # Past it: the click takes the write over and runs it once more.
        env.now[0] += 2
        late = json.loads((await env.click(approve)).to_json())
        again = json.loads((await env.click(approve)).to_json())
    (record_id,) = set(_customers(env.ws)) - before
    assert len(env.ws.writes) == 1
    assert late["toast"]["type"] == "success"
    for answer in (late, again):
        assert "Done" in _markdown(answer["card"]["data"])
        assert record_id in _markdown(answer["card"]["data"])
    assert _decisions(caplog.records) == ["retaken", "done"]
    settled = await env.store.confirmation(pending.id)
    assert settled is not None and settled.state == ConfirmationState.DONE
    assert settled.approved_at == pending.approved_at
    assert settled.approving_since == env.now[0]


@pytest.mark.anyio
async def test_concurrent_clicks_on_a_dead_write_take_it_over_once(
    env: _Env, caplog: pytest.LogCaptureFixture
) -> None:
    card = await env.ask("add to customers Name=Stampede Ltd")
    await _left_approving(env, card)
    env.now[0] += 301
    approve = _buttons(card)["approve"]
    answers: list[Any] = []

    async def click() -> None:
        answers.append(await env.click(approve))

    with caplog.at_level("INFO", logger="larkbot.agent.audit"):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(click)
    assert len(env.ws.writes) == 1
    assert _decisions(caplog.records).count("retaken") == 1
    assert sum(a.toast_type == "success" and a.toast is not None for a in answers) == 1


@pytest.mark.anyio
async def test_a_dead_write_that_may_not_run_again_is_settled_as_unknown(env: _Env) -> None:
    assert env.runner is not None
    args = DeleteBaseRecordInput(table="customers", record_id="recCust000002")
    asked = await env.runner.run("delete_base_record", args, _ctx(env, "om_delete"))
    assert asked.card is not None
    await _left_approving(env, asked.card)
    env.now[0] += 301
    answer = json.loads((await env.click(_buttons(asked.card)["approve"])).to_json())
    shown = _markdown(answer["card"]["data"])
    assert "Failed" in shown and "unknown" in shown
    assert not env.ws.writes and "recCust000002" in _customers(env.ws)
    again = json.loads((await env.click(_buttons(asked.card)["approve"])).to_json())
    assert _markdown(again["card"]["data"]) == shown


@pytest.mark.anyio
async def test_a_dead_update_is_not_run_again_over_what_others_changed_since(env: _Env) -> None:
    card = await env.ask("update recCust000002 in customers Status=Won")
    await _left_approving(env, card)
    # Someone changes the record in Lark while the attempt lies dead.
    _customers(env.ws)["recCust000002"]["Status"] = "Lost"
    env.now[0] += 301
    answer = json.loads((await env.click(_buttons(card)["approve"])).to_json())
    shown = _markdown(answer["card"]["data"])
    assert "Failed" in shown and "unknown" in shown
    assert not env.ws.writes
    assert _customers(env.ws)["recCust000002"]["Status"] == "Lost"


@pytest.mark.anyio
async def test_a_dead_write_past_the_hour_of_its_key_is_not_run_again(env: _Env) -> None:
    card = await env.ask("add to customers Name=Too Old Ltd")
    await _left_approving(env, card)
    env.now[0] += 3600
    answer = json.loads((await env.click(_buttons(card)["approve"])).to_json())
    assert "unknown" in _markdown(answer["card"]["data"])
    assert not env.ws.writes


@requires_redis
@pytest.mark.anyio
async def test_two_replicas_on_redis_take_a_dead_write_over_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = sample_workspace()
    now = [1_700_000_000.0]
    async with (
        redis_server(tmp_path / "redis") as server,
        RedisStore.open(server.url, command_timeout=10.0) as one,
        RedisStore.open(server.url, command_timeout=10.0) as two,
        LarkStandIn(extra_routes=workspace_routes(ws)) as lark,
        LarkClient(lark.url, lark.app_id, lark.app_secret) as client,
    ):
        replicas = []
        for store in (one, two):
            confirmations = WriteConfirmations(
                store, ttl_seconds=600, clock=lambda: now[0], bases=dict(SAMPLE_BASES)
            )
            runner = _confirming_runner(confirmations)
            confirmations.bind(runner, client)
            replicas.append((runner, confirmations))
        env = _Env(ws, lark, one, _assistant(replicas[0][0], client), replicas[0][1], now)
        card = await env.ask("add to customers Name=Redis Crash Ltd")
        pending = await _left_approving(env, card)
        # A retake that names another attempt loses, and changes nothing.
        stale = ConfirmationMove(
            pending.id,
            expected=ConfirmationState.APPROVING,
            state=ConfirmationState.APPROVING,
            expected_since=now[0] - 1,
            approving_since=now[0] + 1,
        )
        assert not await two.settle_confirmation(stale)
        now[0] += 301
        approve = _buttons(card)["approve"]
        answers: list[Any] = []

        async def click(confirmations: WriteConfirmations, n: int) -> None:
            action = _click(approve, REQUESTER, event_id=f"ev-retake-{n}")
            answers.append(await confirmations.on_action(action))

        with caplog.at_level("INFO", logger="larkbot.agent.audit"):
            async with anyio.create_task_group() as tg:
                for n in range(6):
                    tg.start_soon(click, replicas[n % 2][1], n)
        assert len(ws.writes) == 1
        assert _decisions(caplog.records).count("retaken") == 1
        assert sum(a.toast_type == "success" and a.toast is not None for a in answers) == 1
        settled = await two.confirmation(pending.id)
        assert settled is not None and settled.state == ConfirmationState.DONE
        assert settled.approved_at == pending.approved_at

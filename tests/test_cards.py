"""Card action callbacks and confirmed writes, end to end against the local Lark.

A write asked of either brain comes back as a confirmation card; only the requester's
click runs it, exactly once however often the click arrives; a stale card expires.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from larkbot.agent.assistant import Assistant
from larkbot.agent.confirm import WriteConfirmations
from larkbot.agent.limits import RateLimiter
from larkbot.agent.llm import LLMBrain
from larkbot.agent.tools.registry import default_registry
from larkbot.agent.tools.runner import ToolRunner
from larkbot.config import Settings
from larkbot.core.cards import CardAction
from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage
from larkbot.lark.client import LarkClient
from larkbot.store import Store, open_store
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
    confirmations: WriteConfirmations, write_limiter: RateLimiter | None = None
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
        conversations = _Conversations()
        confirmations = WriteConfirmations(
            store,
            ttl_seconds=600,
            clock=lambda: now[0],
            bases=dict(SAMPLE_BASES),
            conversations=conversations,
        )
        runner = _confirming_runner(confirmations)
        assistant = _assistant(runner, client)
        confirmations.bind(runner, client, assistant.timezone)
        yield _Env(ws, lark, store, assistant, confirmations, now, conversations.kept)


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
    ws = sample_workspace()
    async with (
        LarkStandIn(extra_routes=workspace_routes(ws)) as lark,
        LarkClient(lark.url, lark.app_id, lark.app_secret) as client,
        open_store("memory", tmp_path) as store,
    ):
        confirmations = WriteConfirmations(store, ttl_seconds=600, bases=dict(SAMPLE_BASES))
        runner = _confirming_runner(confirmations, write_limiter=RateLimiter(1))
        assistant = _assistant(runner, client)
        confirmations.bind(runner, client, assistant.timezone)
        env = _Env(ws, lark, store, assistant, confirmations, [0.0])
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
            assert not _buttons(answer["card"]["data"])
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

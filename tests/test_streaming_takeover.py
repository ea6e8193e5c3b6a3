"""A streamed answer cut off half way (kill -9) is finished in the same card, never twice.

The first attempt streams part of the answer into a CardKit card, then its process dies.
The next attempt (the same daemon restarted on its SQLite state, or another replica on
Redis taking over the partition) must put the answer into that card: replying again under
the answer's uuid only returns the card Lark already has, so a new card would never show.
Each test checks what the user sees: one reply, one card, the whole answer in it,
streaming closed, and CardKit's ``sequence`` strictly increasing across both attempts.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from larkbot.lark.client import LarkClient
from larkbot.reply.streaming import StreamingCard
from larkbot.store.redis import ConversationChange, MessageState, RedisStore
from larkbot.store.streamed import StreamedCard
from larkbot.testing import LarkStandIn, OpenAIStandIn
from larkbot.testing._cardkit import CardEntity
from tests._daemon import EchoAgent, running_daemon, settings_for
from tests._proc import LarkbotProcess, larkbot_process, llm_env
from tests._redis import chat_owned_by, redis_server, requires_redis
from tests.test_streaming import ANSWER

pytestmark = pytest.mark.anyio

_STALL_AFTER_WORDS = 30


def _operations(card: CardEntity) -> list[int]:
    """Every sequence number the card took, in the order Lark took them."""
    taken = [s for _, _, s in card.updates] + [s for _, s in card.settings]
    taken += [s for _, s in card.replacements]
    return sorted(taken)


async def _streamed_half_way(lark: LarkStandIn, llm: OpenAIStandIn, message_id: str) -> CardEntity:
    """Wait until the answer to ``message_id`` stalls with some text in its card."""

    def started() -> bool:
        return llm.stalled == 1 and any(
            element == "answer" and len(content) >= 50
            for card in lark.cardkit.cards.values()
            for element, content, _ in card.updates
        )

    await lark.wait_for(started, 30)
    (reply,) = [r for r in lark.replies if r.to_message_id == message_id]
    return lark.cardkit.cards[reply.content["data"]["card_id"]]


async def _kill(process: LarkbotProcess) -> None:
    process.send_signal(signal.SIGKILL)
    assert await process.wait(10) == -signal.SIGKILL


def _check_one_finished_card(
    lark: LarkStandIn, message_id: str, card: CardEntity, before: list[int]
) -> list[int]:
    """One reply (the card), the whole answer in it, closed; return the later sequences."""
    replies = [r for r in lark.replies if r.to_message_id == message_id]
    assert len(replies) == 1, replies
    assert replies[0].content == {"type": "card", "data": {"card_id": card.card_id}}
    assert list(lark.cardkit.cards) == [card.card_id]
    assert card.element("answer") == {
        "tag": "markdown",
        "element_id": "answer",
        "content": ANSWER,
    }
    assert not card.streaming
    after = [s for s in _operations(card) if s > max(before)]
    # Nothing of the second attempt was refused for its sequence (300317 leaves no trace
    # in the card): it numbered every operation above the first attempt's.
    assert _operations(card) == sorted(set(before + after))
    assert len(after) >= 2  # at least the final text and closing the stream
    return after


async def test_a_streamed_answer_resumed_after_a_crash_finishes_its_card(tmp_path: Path) -> None:
    async with LarkStandIn() as lark, OpenAIStandIn() as llm:
        llm.script({"content": ANSWER}, {"content": ANSWER})
        llm.stall_next_stream(_STALL_AFTER_WORDS)
        env = llm_env(llm)
        async with larkbot_process(lark, tmp_path, env) as first:
            message_id = await lark.send_text("what is the launch plan?")
            card = await _streamed_half_way(lark, llm, message_id)
            await _kill(first)
        llm.release()
        partial = str((card.element("answer") or {}).get("content"))
        before = _operations(card)
        assert partial and ANSWER.startswith(partial) and partial != ANSWER
        assert card.streaming

        async with larkbot_process(lark, tmp_path, env) as second:
            await lark.wait_for(lambda: not card.streaming, 30)
            assert second.log_lines("continuing the streamed card")
        after = _check_one_finished_card(lark, message_id, card, before)
    print(
        f"\ncrash after {len(partial)} of {len(ANSWER)} characters (sequences up to "
        f"{max(before)}); the restarted daemon finished the same card with sequences "
        f"{after[0]}..{after[-1]}; 1 reply, {lark.suppressed_duplicates} repeated reply "
        "absorbed by the uuid"
    )


@dataclass
class _HalfStreamed:
    """Two replicas on Redis; the first stalled half way through streaming an answer."""

    store: RedisStore
    lark: LarkStandIn
    llm: OpenAIStandIn
    first: LarkbotProcess
    second: LarkbotProcess
    chat_id: str
    message_id: str
    card: CardEntity
    before: list[int]

    async def finished_once(self) -> list[int]:
        """Check one answer, in the card, recorded once; return the later sequences."""
        with anyio.fail_after(10):
            while (  # noqa: ASYNC110
                await self.store.message_state(self.chat_id, self.message_id) != MessageState.DONE
            ):
                await anyio.sleep(0.1)
        history = await self.store.history(self.chat_id)
        assert [t.text for t in history if t.role == "assistant"] == [ANSWER]
        return _check_one_finished_card(self.lark, self.message_id, self.card, self.before)


_LEASE_SECONDS = 3.0


@asynccontextmanager
async def _half_streamed_on_two_replicas(tmp_path: Path) -> AsyncIterator[_HalfStreamed]:
    async with (
        redis_server(tmp_path / "redis") as server,
        RedisStore.open(server.url) as store,
        LarkStandIn() as lark,
        OpenAIStandIn() as llm,
    ):
        lark.cluster_mode()
        llm.script({"content": ANSWER}, {"content": ANSWER})
        llm.stall_next_stream(_STALL_AFTER_WORDS)
        env = {
            "REDIS_URL": server.url,
            "LARKBOT_STORE": "redis",
            "LARKBOT_STORE__LEASE_SECONDS": str(_LEASE_SECONDS),
            **llm_env(llm),
        }
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        async with (
            larkbot_process(lark, tmp_path / "a", env) as first,
            larkbot_process(lark, tmp_path / "b", env) as second,
        ):
            chat_id = await chat_owned_by(store, f":{first.process.pid}:")
            message_id = await lark.send_text("what is the launch plan?", chat_id=chat_id)
            card = await _streamed_half_way(lark, llm, message_id)
            before = _operations(card)
            assert card.streaming
            yield _HalfStreamed(store, lark, llm, first, second, chat_id, message_id, card, before)


@requires_redis
async def test_a_replica_taking_over_a_half_streamed_answer_finishes_the_same_card(
    tmp_path: Path,
) -> None:
    async with _half_streamed_on_two_replicas(tmp_path) as run:
        await _kill(run.first)
        killed_at = anyio.current_time()
        run.llm.release()
        partial = str((run.card.element("answer") or {}).get("content"))
        assert partial and partial != ANSWER
        await run.lark.wait_for(lambda: not run.card.streaming, 60)
        taken_over = anyio.current_time() - killed_at
        assert run.second.log_lines("continuing the streamed card a previous owner sent")
        after = await run.finished_once()
    print(
        f"\nkill -9 of the replica streaming the answer after {len(partial)} of "
        f"{len(ANSWER)} characters (sequences up to {max(run.before)}); the other replica "
        f"finished the same card {taken_over:.1f} s later (lease {_LEASE_SECONDS:g} s) with "
        f"sequences {after[0]}..{after[-1]}; 1 reply, history recorded once"
    )


@requires_redis
async def test_a_replica_frozen_mid_stream_cannot_touch_the_card_its_successor_finished(
    tmp_path: Path,
) -> None:
    async with _half_streamed_on_two_replicas(tmp_path) as run:
        run.first.send_signal(signal.SIGSTOP)
        try:
            await run.lark.wait_for(lambda: not run.card.streaming, 60)
            assert run.second.log_lines("continuing the streamed card a previous owner sent")
            finished = list(run.card.updates), run.card.sequence
        finally:
            run.first.send_signal(signal.SIGCONT)
        # The frozen replica wakes up and its model goes on writing the answer.
        run.llm.release()
        await run.lark.wait_for(lambda: bool(run.first.log_lines("lost partition")), 30)
        refused = sum(1 for call in run.lark.api_calls if call.code == 300317)
        assert (list(run.card.updates), run.card.sequence) == finished
        after = await run.finished_once()
    print(
        f"\nSIGSTOP of the replica streaming the answer (sequences up to {max(run.before)}); "
        f"the other finished the same card with sequences {after[0]}..{after[-1]}; the woken "
        f"replica's late updates changed nothing ({refused} refused by CardKit for their "
        "sequence), and it left the message to the new owner"
    )


class _Kept:
    """What a first attempt's journal kept (it died before finishing the card)."""

    def __init__(self) -> None:
        self.card: StreamedCard | None = None

    async def keep(self, card: StreamedCard) -> bool:
        self.card = card
        return True


@requires_redis
async def test_an_owner_finding_the_answer_and_a_half_streamed_card_only_finishes_the_card(
    tmp_path: Path,
) -> None:
    chat_id, message_id = "oc_p2p_1", "om_cached_and_streamed"
    async with (
        redis_server(tmp_path / "redis") as server,
        RedisStore.open(server.url) as store,
        LarkStandIn() as lark,
        LarkClient(lark.url, lark.app_id, lark.app_secret) as client,
    ):
        # A previous owner streamed part of the answer, stored the whole of it, and died
        # before finishing the card (its journal kept the card in Redis).
        kept = _Kept()
        await StreamingCard(client, message_id, journal=kept).text(ANSWER[:80])
        assert kept.card is not None
        card = lark.cardkit.cards[kept.card.card_id]
        partition = store.keys.partition_of(chat_id)
        await store._client.set(
            store.keys.streamed_card(partition, message_id), kept.card.model_dump_json()
        )
        await store.put_answer(
            chat_id,
            message_id,
            ANSWER,
            markdown=True,
            change=ConversationChange(user_text="the plan?", answer_text=ANSWER),
        )
        before = _operations(card)

        agent = EchoAgent()
        settings = await settings_for(lark, REDIS_URL=server.url, LARKBOT_STORE="redis")
        async with running_daemon(settings, agent):
            await lark.send_text("the plan?", chat_id=chat_id, message_id=message_id)
            await lark.wait_for(lambda: not card.streaming, 15)
            with anyio.fail_after(10):
                while await store.message_state(chat_id, message_id) != MessageState.DONE:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
        assert agent.seen == []  # the stored answer was sent, not generated again
        after = _check_one_finished_card(lark, message_id, card, before)
        assert [t.text for t in await store.history(chat_id)] == ["the plan?", ANSWER]
    print(
        f"\nanswer cached, card half streamed (sequences up to {max(before)}): the new owner "
        f"finished the card with sequences {after[0]}..{after[-1]} without asking the agent"
    )

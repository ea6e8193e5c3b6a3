"""LLM answers streamed into a CardKit card, against the local Lark and OpenAI stand-ins."""

from __future__ import annotations

import time
from typing import Any

import pytest

from larkbot.lark.client import LarkClient
from larkbot.reply.streaming import StreamingCard
from larkbot.store.streamed import StreamedCard
from larkbot.testing import LarkStandIn, OpenAIStandIn
from larkbot.testing.sample_data import SAMPLE_BASES, sample_workspace
from larkbot.testing.workspace import workspace_routes
from tests._daemon import running_daemon, settings_for

pytestmark = pytest.mark.anyio

ANSWER = (
    "Here is the plan for the launch. First, the budget review moves to Monday so that "
    "finance can check the new figures. Second, the demo with Acme stays on 10 June, and "
    "the slides need the updated pricing table. Third, marketing sends the announcement "
    "draft by Friday. Finally, everyone confirms their part in the launch channel."
)


async def _ask(lark: LarkStandIn, llm: OpenAIStandIn, text: str) -> str:
    env = {"OPENAI_API_KEY": llm.api_key, "OPENAI_BASE_URL": llm.base_url, "LLM_MODEL": llm.model}
    settings = (await settings_for(lark, **env)).model_copy(update={"bases": SAMPLE_BASES})
    async with running_daemon(settings):
        await lark.wait_connected()
        message_id = await lark.send_text(text)
        await lark.wait_for(lambda: any(r.to_message_id == message_id for r in lark.replies), 15)
        # The card is finished (streaming closed) after the reply went out: wait for it.
        await lark.wait_for(
            lambda: all(not card.streaming for card in lark.cardkit.cards.values()), 15
        )
    return message_id


async def test_an_llm_answer_streams_into_one_card() -> None:
    ws = sample_workspace()
    async with LarkStandIn(extra_routes=workspace_routes(ws)) as lark, OpenAIStandIn() as llm:
        llm.script(
            {"tool_calls": [{"name": "search_base_records", "arguments": {"table": "customers"}}]},
            {"content": ANSWER},
        )
        message_id = await _ask(lark, llm, "what is the launch plan?")
    (reply,) = [r for r in lark.replies if r.to_message_id == message_id]
    assert reply.msg_type == "interactive"
    card_id = reply.content["data"]["card_id"]
    assert reply.content == {"type": "card", "data": {"card_id": card_id}}
    assert reply.text == ANSWER
    entity = lark.cardkit.cards[card_id]
    answer_updates = [content for element, content, _ in entity.updates if element == "answer"]
    assert len(answer_updates) >= 3, answer_updates
    assert answer_updates[-1] == ANSWER
    assert all(ANSWER.startswith(update) for update in answer_updates)
    # Strictly increasing over every operation of the card, in the order Lark took them.
    every = [s for _, _, s in entity.updates] + [s for _, s in entity.settings]
    assert every == sorted(set(every))
    statuses = [content for element, content, _ in entity.updates if element == "status"]
    assert any("search_base_records" in status for status in statuses)
    assert entity.element("status")["content"].strip() == ""
    assert not entity.streaming
    summary: Any = entity.settings[-1][0]["config"]["summary"]["content"]
    assert ANSWER.startswith(summary)
    assert [r.uuid for r in lark.replies] == [reply.uuid]
    print(
        f"\nstreamed {len(ANSWER)} characters in {len(answer_updates)} updates (sequences {every})"
    )


async def test_cardkit_refused_the_answer_arrives_once_as_a_normal_card() -> None:
    async with LarkStandIn() as lark, OpenAIStandIn() as llm:
        llm.script({"content": "**Plan**: " + ANSWER})
        lark.fail_next(1, status=400, route="cardkit/v1/cards", code=99991672)
        message_id = await _ask(lark, llm, "what is the launch plan?")
    (reply,) = [r for r in lark.replies if r.to_message_id == message_id]
    assert reply.msg_type == "interactive" and reply.content.get("schema") == "2.0"
    assert reply.text == "**Plan**: " + ANSWER
    assert not lark.cardkit.cards


async def test_a_long_streamed_answer_fills_the_card_and_follows_it_in_parts() -> None:
    long_answer = "\n\n".join(f"{n}. {ANSWER}" for n in range(1, 31))
    async with LarkStandIn() as lark, OpenAIStandIn() as llm:
        llm.script({"content": long_answer})
        message_id = await _ask(lark, llm, "tell me everything")
    replies = [r for r in lark.replies if r.to_message_id == message_id]
    assert len(replies) >= 3 and replies[0].card is not None
    assert all(r.card is None for r in replies[1:])
    assert len({r.uuid for r in replies}) == len(replies)
    said = " ".join(r.text for r in replies)
    assert said.split() == long_answer.split()


class _Journal:
    """Keeps the last card it is given; refuses once ``refuse`` is set (a lost lease)."""

    def __init__(self) -> None:
        self.card: StreamedCard | None = None
        self.refuse = False

    async def keep(self, card: StreamedCard) -> bool:
        if self.refuse:
            return False
        self.card = card
        return True


async def test_a_resumed_card_is_finished_above_the_kept_ceiling_and_left_once_finished() -> None:
    async with LarkStandIn() as lark, LarkClient(lark.url, lark.app_id, lark.app_secret) as client:
        journal = _Journal()
        first = StreamingCard(client, "om_resumed", journal=journal)
        await first.text(ANSWER[:60])
        assert journal.card is not None and journal.card.sequence_ceiling == 20
        entity = lark.cardkit.cards[journal.card.card_id]
        first_attempt = entity.sequence

        second = StreamingCard(client, "om_resumed", journal=journal, resumed=journal.card)
        assert second.started
        assert await second.finish(ANSWER)
        assert entity.element("answer")["content"] == ANSWER  # type: ignore[index]
        assert not entity.streaming
        later = [s for _, _, s in entity.updates if s > first_attempt]
        assert later and min(later) > 20
        assert journal.card.finished and journal.card.sequence_ceiling == entity.sequence
        # Replying again under the answer's uuid returned the card already sent.
        assert len(lark.replies) == 1 and lark.suppressed_duplicates == 1

        calls = len(lark.api_calls)
        third = StreamingCard(client, "om_resumed", journal=journal, resumed=journal.card)
        assert await third.finish("another text")
        assert len(lark.api_calls) == calls
        assert entity.element("answer")["content"] == ANSWER  # type: ignore[index]


async def test_a_resumed_card_whose_streaming_timed_out_is_replaced_whole() -> None:
    async with LarkStandIn() as lark, LarkClient(lark.url, lark.app_id, lark.app_secret) as client:
        journal = _Journal()
        await StreamingCard(client, "om_late", journal=journal).text(ANSWER[:60])
        assert journal.card is not None
        entity = lark.cardkit.cards[journal.card.card_id]
        # Streaming closes itself 10 minutes after it was opened (200850).
        lark.cardkit.clock = lambda: time.monotonic() + 700
        resumed = StreamingCard(client, "om_late", journal=journal, resumed=journal.card)
        assert await resumed.finish(ANSWER)
        assert len(entity.replacements) == 1
        assert entity.element("answer")["content"] == ANSWER  # type: ignore[index]
        assert not entity.streaming and len(lark.replies) == 1


async def test_a_stream_whose_journal_refuses_stops_below_its_ceiling() -> None:
    async with LarkStandIn() as lark, LarkClient(lark.url, lark.app_id, lark.app_secret) as client:
        journal = _Journal()
        stream = StreamingCard(client, "om_fenced", journal=journal)
        await stream.status("⚙️ working…")
        journal.refuse = True  # another attempt took the answer over
        for n in range(30):
            await stream.status(f"⚙️ step {n}…")
        assert stream.failed
        assert journal.card is not None
        entity = lark.cardkit.cards[journal.card.card_id]
        assert entity.sequence == journal.card.sequence_ceiling == 20
        assert not await stream.finish(ANSWER)
        assert entity.sequence == 20

"""The daemon's seams: a custom tool and a custom store plug in through ``Overrides``,
with no patching, and the whole real pipeline uses them."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
from pydantic import BaseModel

from larkbot.agent.tools.base import Tool, ToolContext, ToolResult
from larkbot.core.message import InboundMessage
from larkbot.daemon import Overrides
from larkbot.store import StoreError
from larkbot.store.memory import MemoryStore
from larkbot.testing import LarkStandIn, OpenAIStandIn
from tests._daemon import EchoAgent, answered, llm_settings, running_daemon, settings_for
from tests._factories import tool_call

pytestmark = pytest.mark.anyio

API_KEY = "sk-seams-test-0123456789abcdef"


class WordCountInput(BaseModel):
    """How many words are in ``text``."""

    text: str


class WordCount(Tool):
    """A plug-in tool: counts words, and remembers what it was asked."""

    name: ClassVar[str] = "count_words"
    description: ClassVar[str] = "Count the words in a text."
    input_model: ClassVar[type[BaseModel]] = WordCountInput

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def run(self, ctx: ToolContext, args: BaseModel) -> ToolResult:
        assert isinstance(args, WordCountInput)
        self.calls.append(args.text)
        count = len(args.text.split())
        return ToolResult(ok=True, data={"words": count}, text=f"{count} words")


class CountingStore(MemoryStore):
    """A custom store: the memory store that counts what the pipeline asked of it."""

    def __init__(self) -> None:
        super().__init__(ledger_ttl_seconds=3600, ledger_max_entries=1000, prune_interval=3600)
        self.admitted: list[str] = []
        self.done: list[str] = []

    async def admit(self, message: InboundMessage) -> bool:
        self.admitted.append(message.message_id)
        return await super().admit(message)

    async def mark_done(self, message_id: str) -> None:
        self.done.append(message_id)
        await super().mark_done(message_id)


async def test_custom_tool_and_store_plug_into_the_daemon() -> None:
    tool = WordCount()
    store = CountingStore()
    async with LarkStandIn() as lark, OpenAIStandIn(api_key=API_KEY) as llm:
        llm.script(
            tool_call("count_words", text="one two three"), {"content": "That text has 3 words."}
        )
        overrides = Overrides(tools=[tool], store=store)
        async with running_daemon(await llm_settings(lark, llm), overrides=overrides):
            sent = await answered(lark, "how many words in 'one two three'?")
    reply = next(r for r in lark.replies if r.to_message_id == sent)
    assert tool.calls == ["one two three"]
    assert "That text has 3 words." in (reply.text or json.dumps(reply.content))
    assert store.admitted == [sent] and store.done == [sent]
    # The model saw the custom tool among the registry's tools, with its own schema.
    tools = {t["function"]["name"]: t for t in llm.requests[0]["tools"]}
    assert tools["count_words"]["function"]["parameters"]["properties"]["text"]["type"] == "string"
    assert json.loads(llm.requests[1]["messages"][-1]["content"])["words"] == 3


class FlakyDepthStore(MemoryStore):
    """A store whose inbox count fails, as a locked SQLite database can for a moment."""

    def __init__(self) -> None:
        super().__init__(ledger_ttl_seconds=3600, ledger_max_entries=1000, prune_interval=3600)
        self.depth_calls = 0

    async def depth(self) -> int:
        self.depth_calls += 1
        raise StoreError("the database is locked")


async def test_a_passing_store_error_does_not_end_the_daemon() -> None:
    # Regression: the inbox gauge's StoreError ended the task group, and the daemon exited
    # with 78 (a configuration error systemd does not restart).
    store = FlakyDepthStore()
    async with LarkStandIn() as lark:
        settings = await settings_for(lark)
        async with running_daemon(settings, EchoAgent(), overrides=Overrides(store=store)):
            await answered(lark, "still here?")
    assert store.depth_calls >= 1

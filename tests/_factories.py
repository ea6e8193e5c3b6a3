"""Small builders and readings shared by tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from typing import Any

from larkbot.agent.tools.base import ToolContext
from larkbot.core.language import Language
from larkbot.core.message import InboundMessage
from larkbot.lark.client import LarkClient
from larkbot.ops.metrics import REGISTRY
from larkbot.testing import LarkStandIn
from larkbot.testing._content import ChatMessage
from larkbot.testing.sample_data import SAMPLE_BASES
from larkbot.testing.workspace import Workspace

# The OpenAPI route of a reply, as the local Lark records calls to it.
REPLY_ROUTE = "im/v1/messages/{message_id}/reply"

# The nine tools larkbot started with, in the registry's order: the content tools follow.
FIRST_TOOLS = (
    "search_base_records",
    "create_base_record",
    "update_base_record",
    "delete_base_record",
    "send_message",
    "get_user_info",
    "search_documents",
    "list_chat_members",
    "create_calendar_event",
)

_ids = count(1)

# Pieces of requests in the three languages (words, ids, quotes, dates, times, separators),
# from which property tests put together texts that are and are not requests.
REQUEST_PIECES = [
    "顧客",
    "customers",
    "任务",
    "検索",
    "search",
    "add",
    "追加",
    "update",
    "delete",
    "删除",
    "send",
    "送って",
    "'",
    "「",
    "」",
    "“",
    "@Tom",
    "@田中",
    "@",
    "recCust000001",
    "oc_dev",
    "ou_x",
    "=",
    ":",
    "：",
    "明日",
    "来週",
    "下周一",
    "15時",
    "十十点",
    "下午",
    "3pm",
    "10:30",
    "2/29",
    "2024-13-40",
    "for 0 min",
    "半",
    "会議",
    "予約",
    "book",
    "meeting",
    "文档",
    "メンバー",
    "who is",
    "の",
    "を",
    " ",
    "\n",
    "top 500",
    "今月",
    "this week",
    "\ue000",
    "help",
    "lang",
    "agent",
    "recAbc123",
    "oc_x",
    "ou_y",
    "为",
    "／",
    "周一",
    "tomorrow",
]


def inbound(
    chat_id: str = "oc_1",
    text: str = "hi",
    *,
    message_id: str | None = None,
    created_at: datetime | None = None,
    chat_type: str = "p2p",
    message_type: str = "text",
    sender: str = "ou_user",
    event_id: str = "ev",
    **extra: Any,
) -> InboundMessage:
    """An admitted message, as dispatch and the agent see it.

    :param extra: further fields of the message (``mentions``, ``thread_id``, ...).
    """
    return InboundMessage(
        message_id=message_id or f"om_{next(_ids)}",
        event_id=event_id,
        chat_id=chat_id,
        chat_type=chat_type,
        message_type=message_type,
        text=text,
        sender_open_id=sender,
        created_at=created_at or datetime.now(UTC),
        **extra,
    )


def console_message(
    text: str, *, message_id: str, chat: str = "oc_console", **extra: Any
) -> InboundMessage:
    """A group message from the console user, as the agent's tests send it."""
    return inbound(
        chat, text, message_id=message_id, chat_type="group", sender="ou_console_user", **extra
    )


def console_context(client: LarkClient, *, message_id: str, language: Language) -> ToolContext:
    """The tools' context of a request by the console user in the console chat.

    The sample workspace's Bases are the configured tables.
    """
    return ToolContext(
        client=client,
        user_open_id="ou_console_user",
        chat_id="oc_console",
        message_id=message_id,
        language=language,
        bases=dict(SAMPLE_BASES),
    )


def add_history(ws: Workspace, chat_id: str, sender_id: str, texts: list[str]) -> None:
    """Add ``texts`` to the history of ``chat_id``: ``om_long_000`` on, a second apart.

    The first was sent nearly three hours ago, so the history ends well before now.
    """
    start = _now_ms() - 10_000_000
    ws.messages.extend(
        chat_message(f"om_long_{index:03d}", text, chat_id, sender_id, sent_ms=start + index * 1000)
        for index, text in enumerate(texts)
    )


def chat_message(
    message_id: str,
    text: str,
    chat_id: str = "oc_console",
    sender_id: str = "ou_sato",
    *,
    sent_ms: int | None = None,
    **extra: Any,
) -> ChatMessage:
    """A text message of a chat's history as the local Lark keeps it, sent now by default.

    :param extra: further fields of the message (``mentions``, ``thread_id``, ...).
    """
    sent = _now_ms() if sent_ms is None else sent_ms
    return ChatMessage(
        message_id=message_id,
        chat_id=chat_id,
        sender_id=sender_id,
        create_time_ms=sent,
        content={"text": text},
        **extra,
    )


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


class FakeClock:
    """A monotonic clock the test moves by hand (``clock.now += 10``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Status:
    """Live figures as the daemon reports them to the agent's ``status`` answer."""

    version: str = "1.2.3"
    uptime_seconds: float = 3725
    connected: bool = True
    events_handled: int = 1234
    conversations: int = 0


@dataclass
class Sample:
    """The sample workspace, the local Lark serving it, and a Lark client of that Lark.

    Built by the ``sample`` fixture of ``conftest.py``.
    """

    ws: Workspace
    lark: LarkStandIn
    client: LarkClient

    def calls(self, route: str) -> int:
        """How many OpenAPI calls the local Lark received on ``route`` (a template)."""
        return sum(1 for call in self.lark.api_calls if call.route == route)


def tool_call(name: str, **arguments: Any) -> dict[str, Any]:
    """A step of the OpenAI stand-in's script: the model calls the tool ``name``."""
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def metric(name: str, **labels: str) -> float:
    """The current value of one sample of the daemon's metrics (0 before the first)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def llm_requests(outcome: str) -> float:
    """LLM requests counted with ``outcome`` so far."""
    return metric("larkbot_llm_requests_total", outcome=outcome)


def openapi_requests(route: str, status: str = "200") -> float:
    """OpenAPI requests to ``route`` (a template) counted with ``status`` so far."""
    return metric("larkbot_openapi_requests_total", route=route, status=status)


def customers(ws: Workspace) -> dict[str, dict[str, Any]]:
    """The records of the sample workspace's customers table, by record id."""
    return ws.table("顧客一覧").records

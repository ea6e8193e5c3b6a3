"""``larkbot run`` in webhook mode as a real process, with Lark's POSTs from the stand-in.

The stand-in plays Lark on both sides: its webhook driver signs, encrypts and POSTs events
to the daemon's HTTP port as Lark does, and its OpenAPI takes the replies. Timings are the
daemon's own: what its ``http_request_duration_seconds`` histogram gained over one request.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from larkbot.testing import LarkStandIn, WebhookAttempt, WebhookDriver, WebhookFault
from tests._daemon import (
    WEBHOOK_KEY,
    WEBHOOK_TOKEN,
    assert_answered_once,
    webhook_driver,
    webhook_env,
)
from tests._proc import LarkbotProcess, larkbot_process
from tests._webhook import FAULTS

pytestmark = pytest.mark.anyio

_ANSWERED = {"method": "POST", "path": "/webhook", "status": "200"}
_REFUSED = "refused a webhook request"
# Lark's limits: the challenge within 1 s, any other event within 3 s.
_CHALLENGE_LIMIT = 1.0
_ACK_LIMIT = 3.0


@asynccontextmanager
async def _webhook_bot(
    state_dir: Path, env: dict[str, str]
) -> AsyncIterator[tuple[LarkStandIn, LarkbotProcess, WebhookDriver]]:
    """``larkbot run`` in webhook mode against a new stand-in, and Lark's side POSTing to it."""
    async with (
        LarkStandIn() as lark,
        larkbot_process(lark, state_dir, env, ready_when="readyz") as bot,
        webhook_driver(lark, bot.url) as lark_side,
    ):
        yield lark, bot, lark_side


async def _served(
    bot: LarkbotProcess, request: Callable[[], Awaitable[WebhookAttempt]]
) -> tuple[WebhookAttempt, float]:
    """Make one request answered 200; return it and the seconds the daemon took to serve it."""
    count = await bot.metric("http_request_duration_seconds_count", **_ANSWERED)
    total = await bot.metric("http_request_duration_seconds_sum", **_ANSWERED)
    attempt = await request()
    assert attempt.status == 200, attempt
    assert await bot.metric("http_request_duration_seconds_count", **_ANSWERED) == count + 1
    return attempt, await bot.metric("http_request_duration_seconds_sum", **_ANSWERED) - total


async def _idle(bot: LarkbotProcess) -> None:
    """Wait until nothing is queued or being answered.

    Admission decides, and submits, before the request is answered; once the answer is
    in and the backlog is empty, no further reply can come from what was delivered.
    """
    with anyio.fail_after(10):
        # Another process's gauge: only polling can watch it.
        while await bot.metric("larkbot_dispatch_backlog") != 0:  # noqa: ASYNC110
            await anyio.sleep(0.02)


def _renamed(event: dict[str, Any]) -> dict[str, Any]:
    """The same message under a new ``event_id``, as Lark's replays may carry."""
    again = copy.deepcopy(event)
    again["header"]["event_id"] = uuid.uuid4().hex
    return again


def _lower(headers: Any) -> dict[str, str]:
    return {str(key).lower(): str(value) for key, value in headers.items()}


async def test_the_challenge_is_answered_plain_and_encrypted_within_a_second(
    tmp_path: Path,
) -> None:
    async with _webhook_bot(tmp_path, webhook_env()) as (lark, bot, lark_side):
        figures: list[tuple[str, float, float]] = []
        for encrypt in (False, True):
            challenge = str(uuid.uuid4())
            attempt, served = await _served(
                bot, lambda c=challenge, e=encrypt: lark_side.verify_url(c, encrypt=e)
            )
            assert attempt.json() == {"challenge": challenge}
            assert served < _CHALLENGE_LIMIT
            figures.append(("encrypted" if encrypt else "plain", served, attempt.elapsed))
        assert await bot.metric("larkbot_webhook_requests_total", outcome="challenge") == 2
        answered = "answered the url_verification challenge from 127.0.0.1"
        await lark.wait_for(lambda: len(bot.log_lines(answered)) == 2)
    assert not lark.replies
    for kind, served, elapsed in figures:
        print(
            f"\n{kind} challenge: served in {served * 1000:.1f} ms by the daemon, "
            f"{elapsed * 1000:.1f} ms round trip (limit 1 s)"
        )


async def test_a_signed_encrypted_message_is_acked_at_once_and_answered_once(
    tmp_path: Path,
) -> None:
    async with _webhook_bot(tmp_path, webhook_env()) as (lark, bot, lark_side):
        event = lark_side.message_event("help")
        lark.remember_event(event)
        request = lark_side.seal(event)
        assert request.headers["X-Lark-Signature"] and b'"encrypt"' in request.body
        attempt, served = await _served(bot, lambda: lark_side.post(request))
        assert attempt.json() == {"msg": "success"}
        assert served < _ACK_LIMIT
        await lark.wait_for(lambda: len(lark.replies) == 1, timeout=10)
        # Lark pushes the very same request again, then the message under a new event_id.
        again = await lark_side.post(request)
        renamed = await lark_side.send_event(_renamed(event), retry=False)
        assert again.status == renamed.final.status == 200
        assert again.json() == renamed.final.json() == {"msg": "success"}
        await _idle(bot)
        received = "larkbot_events_received_total"
        assert await bot.metric(received, outcome="accepted") == 1
        assert await bot.metric(received, outcome="duplicate") == 2
        assert await bot.metric("larkbot_webhook_requests_total", outcome="ok") == 3
        assert await bot.metric("larkbot_ack_latency_seconds_count") == 3
        assert await bot.metric("larkbot_connection_up") == 1
    assert_answered_once(lark, [str(request.message_id)])
    print(
        f"\nsigned, encrypted message: acked 200 in {served * 1000:.1f} ms by the daemon "
        f"({attempt.elapsed * 1000:.1f} ms round trip), answered once; "
        "2 re-pushes answered 200 and dropped as duplicates"
    )


async def test_each_refusal_has_its_status_no_reply_one_log_line_then_429(
    tmp_path: Path,
) -> None:
    budget = len(FAULTS) + 2
    env = webhook_env(LARKBOT_EVENTS__FAILURE_BUDGET_PER_MINUTE=str(budget))
    async with _webhook_bot(tmp_path, env) as (lark, bot, lark_side):
        spoiled: list[str] = []
        for index, (fault, status, outcome, reason) in enumerate(FAULTS, start=1):
            text = f"spoiled: {fault.value}"
            delivery = await lark_side.send_text(text, fault=fault, retry=False)
            spoiled.append(str(delivery.message_id))
            assert delivery.final.status == status, (fault, delivery.final)
            assert delivery.final.json() == {"msg": reason}
            await lark.wait_for(lambda n=index: len(bot.log_lines(_REFUSED)) == n)
            line = bot.log_lines(_REFUSED)[-1]
            assert (line["level"], line["logger"]) == ("WARNING", "larkbot.webhook")
            assert line["message"] == f"{_REFUSED} from 127.0.0.1 ({outcome}): {reason}"
        for _ in range(budget - len(FAULTS)):
            spent = await lark_side.send_text(
                "unsigned", fault=WebhookFault.BAD_SIGNATURE, retry=False
            )
            assert spent.final.status == 401
            spoiled.append(str(spent.message_id))
        throttled = [
            await lark_side.send_text("flood", fault=WebhookFault.BAD_SIGNATURE, retry=False)
            for _ in range(2)
        ]
        assert [t.final.status for t in throttled] == [429, 429]
        retry_after = int(_lower(throttled[0].final.headers)["retry-after"])
        assert 1 <= retry_after <= 60
        spoiled += [str(t.message_id) for t in throttled]
        # Lark's own requests are never throttled.
        verified = await lark_side.send_text("help", retry=False)
        assert verified.final.status == 200
        await lark.wait_for(lambda: len(lark.replies) == 1, timeout=10)
        await _idle(bot)
        await lark.wait_for(lambda: len(bot.log_lines("throttling 127.0.0.1")) == 1)
        counted = {
            outcome: await bot.metric("larkbot_webhook_requests_total", outcome=outcome)
            for outcome in ("bad_signature", "bad_token", "bad_body", "too_large", "throttled")
        }
    assert counted == {
        "bad_signature": 3,
        "bad_token": 1,
        "bad_body": 3,
        "too_large": 1,
        "throttled": 2,
    }
    # One line per refusal, one for the throttling, none per throttled request.
    assert len(bot.log_lines(_REFUSED)) == budget
    assert len(bot.log_lines("throttling")) == 1
    logged = "\n".join(bot.raw)
    assert WEBHOOK_KEY not in logged and WEBHOOK_TOKEN not in logged
    assert not [line for line in bot.lines if line.get("level") in ("ERROR", "CRITICAL")]
    assert_answered_once(lark, [str(verified.message_id)], unanswered=spoiled)
    print(
        f"\n{len(FAULTS)} faults refused with their status and one log line each; "
        f"429 after {budget} failures (Retry-After {retry_after} s); Lark's request still 200"
    )

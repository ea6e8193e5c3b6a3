"""The webhook endpoint, served for real on 127.0.0.1 and driven like Lark drives it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import pytest

from larkbot.config import ConfigError, EventsSettings
from larkbot.core.frames import Ack, FrameHandler, InboundFrame
from larkbot.ops.http import HealthState, OpsServer, build_ops_app
from larkbot.ops.metrics import REGISTRY
from larkbot.sources.webhook import WebhookEndpoint
from larkbot.testing import LarkStandIn, WebhookDriver, WebhookFault

pytestmark = pytest.mark.anyio

TOKEN = "v-token-endpoint"
KEY = "enc-key-endpoint"
PATH = "/webhook"


@dataclass
class _Admission:
    """A frame handler that records what reaches it and answers from a script."""

    frames: list[InboundFrame] = field(default_factory=list)
    answers: list[Ack] = field(default_factory=list)

    async def __call__(self, frame: InboundFrame) -> Ack:
        self.frames.append(frame)
        return self.answers.pop(0) if self.answers else Ack(200)


def _settings(**overrides: Any) -> EventsSettings:
    values: dict[str, Any] = {
        "mode": "webhook",
        "encrypt_key": KEY,
        "verification_token": TOKEN,
        **overrides,
    }
    return EventsSettings(**values)


@asynccontextmanager
async def _serving(
    handler: FrameHandler,
    settings: EventsSettings | None = None,
    *,
    clock: Callable[[], float] | None = None,
    ack_timeout: float = 2.5,
) -> AsyncIterator[str]:
    """Serve the webhook on the ops app on a free port; yield its URL."""
    extra = {"clock": clock} if clock is not None else {}
    endpoint = WebhookEndpoint(settings or _settings(), handler, ack_timeout=ack_timeout, **extra)
    server = OpsServer(build_ops_app(HealthState(), routes=endpoint.routes()), "127.0.0.1", 0)
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(10):
            port = await tg.start(server.run)
        yield f"http://127.0.0.1:{port}{endpoint.path}"
        tg.cancel_scope.cancel()


@asynccontextmanager
async def _lark(
    url: str, *, encrypt_key: str = KEY, retry_scale: float = 0.001, **kwargs: Any
) -> AsyncIterator[WebhookDriver]:
    async with WebhookDriver(
        url, verification_token=TOKEN, encrypt_key=encrypt_key, retry_scale=retry_scale, **kwargs
    ) as driver:
        yield driver


def _count(outcome: str) -> float:
    value = REGISTRY.get_sample_value("larkbot_webhook_requests_total", {"outcome": outcome})
    return value or 0.0


@pytest.fixture
def webhook_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """``caplog``, capturing what ``larkbot.webhook`` logs at INFO and above."""
    caplog.set_level(logging.INFO, logger="larkbot.webhook")
    return caplog


def _webhook_lines(log: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in log.records if r.name == "larkbot.webhook"]


async def _refused_with_forwarded_for(settings: EventsSettings, chains: list[str]) -> list[int]:
    """POST a badly signed event once per ``X-Forwarded-For`` chain: the statuses answered."""
    statuses = []
    async with _serving(_Admission(), settings) as url, _lark(url) as driver:
        with anyio.fail_after(10):
            for chain in chains:
                request = driver.seal(driver.message_event("x"), fault=WebhookFault.BAD_SIGNATURE)
                headers = {**request.headers, "X-Forwarded-For": chain}
                statuses.append((await driver.post(type(request)(request.body, headers))).status)
    return statuses


def _timed(suffix: str, labels: dict[str, str]) -> float:
    value = REGISTRY.get_sample_value(f"http_request_duration_seconds{suffix}", labels)
    return value or 0.0


async def test_a_signed_encrypted_message_reaches_admission_once_and_is_acked() -> None:
    admission = _Admission()
    ok_before = _count("ok")
    async with (
        _serving(admission) as url,
        LarkStandIn() as lark,
        _lark(url, lark=lark) as driver,
    ):
        with anyio.fail_after(10):
            delivery = await driver.send_text("hello", mention_bot=False)

    assert [a.status for a in delivery.attempts] == [200]
    assert delivery.final.json() == {"msg": "success"}
    (frame,) = admission.frames
    event = json.loads(frame.payload)
    assert event["event"]["message"]["message_id"] == delivery.message_id
    assert event["header"]["token"] == TOKEN
    assert (frame.frame_type, frame.conn_id) == ("event", "webhook")
    assert len(frame.frame_id) == 32
    assert frame.trace_id == delivery.request.headers["X-Request-Id"]
    assert _count("ok") == ok_before + 1


async def test_a_card_callback_is_answered_with_the_acks_data() -> None:
    answer = {"toast": {"type": "success", "content": "Approved"}}
    admission = _Admission(answers=[Ack(200, json.dumps(answer).encode())])
    async with _serving(admission) as url, _lark(url) as driver:
        with anyio.fail_after(10):
            delivery = await driver.send_card_action(
                {"action": "approve"}, open_message_id="om_card"
            )

    assert delivery.final.status == 200
    assert delivery.final.json() == answer
    assert delivery.final.headers["Content-Type"].startswith("application/json")
    (frame,) = admission.frames
    assert json.loads(frame.payload)["event"]["action"]["value"] == {"action": "approve"}


@pytest.mark.parametrize(
    ("fault", "status", "outcome", "reason"),
    [
        (WebhookFault.BAD_SIGNATURE, 401, "bad_signature", "signature does not match"),
        (WebhookFault.WRONG_TOKEN, 401, "bad_token", "verification token does not match"),
        (WebhookFault.PLAIN_BODY, 400, "bad_body", "plain body while an encrypt key"),
        (WebhookFault.TRUNCATED_CIPHER, 400, "bad_body", "cipher text length"),
        (WebhookFault.OVERSIZED, 413, "too_large", "body larger than 1048576 bytes"),
        (WebhookFault.INVALID_JSON, 400, "bad_body", "decrypted body is not valid JSON"),
    ],
)
async def test_each_fault_gets_its_status_reaches_nothing_and_logs_one_line(
    webhook_log: pytest.LogCaptureFixture,
    fault: WebhookFault,
    status: int,
    outcome: str,
    reason: str,
) -> None:
    admission = _Admission()
    before = _count(outcome)
    async with _serving(admission) as url, _lark(url) as driver:
        with anyio.fail_after(10):
            delivery = await driver.send_text("hi", fault=fault, retry=False)

    assert delivery.final.status == status
    assert reason in delivery.final.json()["msg"]
    assert admission.frames == []
    (line,) = _webhook_lines(webhook_log)
    assert "127.0.0.1" in line and outcome in line and reason in line
    assert TOKEN not in webhook_log.text and KEY not in webhook_log.text
    assert _count(outcome) == before + 1


async def test_an_oversized_body_is_refused_while_streaming_without_a_length() -> None:
    admission = _Admission()
    settings = _settings(max_body_bytes=64 * 1024)
    released = anyio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        # Past the limit, with no Content-Length, then the body stalls: the answer can
        # only come if the cap applies while reading.
        for _ in range(5):
            yield b"x" * 16 * 1024
        await released.wait()

    async with _serving(admission, settings) as url, aiohttp.ClientSession() as session:
        with anyio.fail_after(10):
            async with session.post(url, data=chunks()) as response:
                status = response.status
                body = await response.json()
                released.set()

    assert status == 413
    assert body == {"msg": "body larger than 65536 bytes"}
    assert admission.frames == []


async def test_a_body_that_stalls_is_refused_at_the_deadline() -> None:
    admission = _Admission()
    released = anyio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        yield b'{"encrypt": "'
        await released.wait()

    async with (
        _serving(admission, ack_timeout=0.3) as url,
        aiohttp.ClientSession() as session,
    ):
        with anyio.fail_after(10):
            async with session.post(url, data=stalling()) as response:
                status = response.status
                body = await response.json()
                released.set()

    assert (status, body) == (408, {"msg": "body not received in time"})
    assert admission.frames == []


async def test_url_verification_is_answered_plain_and_encrypted_within_a_second() -> None:
    labels = {"method": "POST", "path": PATH, "status": "200"}
    within_before = _timed("_bucket", {**labels, "le": "1.0"})
    count_before = _timed("_count", labels)
    challenges_before = _count("challenge")
    admission = _Admission()
    async with _serving(admission) as url, _lark(url) as driver:
        with anyio.fail_after(10):
            plain = await driver.verify_url("plain-challenge", encrypt=False)
            encrypted = await driver.verify_url("encrypted-challenge")

    assert (plain.status, plain.json()) == (200, {"challenge": "plain-challenge"})
    assert (encrypted.status, encrypted.json()) == (200, {"challenge": "encrypted-challenge"})
    assert admission.frames == []
    assert _count("challenge") == challenges_before + 2
    # The server's own timing of each request, not the client's clock.
    assert _timed("_count", labels) == count_before + 2
    assert _timed("_bucket", {**labels, "le": "1.0"}) == within_before + 2


async def test_the_same_bytes_sent_twice_reach_admission_twice_for_it_to_dedupe() -> None:
    admission = _Admission()
    async with _serving(admission) as url, _lark(url) as driver:
        request = driver.seal(driver.message_event("once"))
        with anyio.fail_after(10):
            first = await driver.post(request)
            replay = await driver.post(request)

    assert (first.status, replay.status) == (200, 200)
    assert [f.payload for f in admission.frames] == [admission.frames[0].payload] * 2
    assert admission.frames[0].frame_id != admission.frames[1].frame_id


async def test_a_refusing_admission_gets_503_and_lark_retries_on_its_ladder() -> None:
    admission = _Admission(answers=[Ack(503), Ack(1)])
    refused_before = _count("refused_overload")
    async with _serving(admission) as url, _lark(url) as driver:
        with anyio.fail_after(10):
            delivery = await driver.send_text("retry me")

    assert [a.status for a in delivery.attempts] == [503, 503, 200]
    assert [a.attempt for a in delivery.attempts] == [0, 1, 2]
    assert all(a.elapsed > 0 for a in delivery.attempts)
    assert delivery.attempts[0].json() == {"msg": "busy, retry later"}
    assert len(admission.frames) == 3
    assert _count("refused_overload") == refused_before + 2


async def test_lark_gives_up_after_four_retries() -> None:
    admission = _Admission(answers=[Ack(503)] * 5)
    # Lark's ladder, 15 s to 6 h, in about 1.3 s.
    async with _serving(admission) as url, _lark(url, retry_scale=0.00005) as driver:
        with anyio.fail_after(10):
            delivery = await driver.send_text("never taken")

    assert [a.status for a in delivery.attempts] == [503] * 5
    assert len(driver.attempts) == 5


async def test_a_slow_or_failing_admission_gets_503(webhook_log: pytest.LogCaptureFixture) -> None:
    never = anyio.Event()

    async def slow(frame: InboundFrame) -> Ack:
        await never.wait()
        return Ack(200)

    async def failing(frame: InboundFrame) -> Ack:
        raise RuntimeError("store exploded")

    async with _serving(slow, ack_timeout=0.2) as url, _lark(url) as driver:
        with anyio.fail_after(10):
            too_slow = await driver.send_text("slow", retry=False)
    async with _serving(failing) as url, _lark(url) as driver:
        with anyio.fail_after(10):
            failed = await driver.send_text("fail", retry=False)

    assert too_slow.final.status == 503
    assert failed.final.status == 503
    slow_line, failed_line = _webhook_lines(webhook_log)
    assert "not taken within 0.2 s" in slow_line
    assert "admission failed" in failed_line


async def test_failures_spend_a_budget_then_429_but_verified_requests_pass(
    webhook_log: pytest.LogCaptureFixture,
) -> None:
    admission = _Admission()
    throttled_before = _count("throttled")
    async with (
        _serving(admission, _settings(failure_budget_per_minute=3)) as url,
        _lark(url) as driver,
    ):
        with anyio.fail_after(10):
            refused = [
                (await driver.send_text("x", fault=WebhookFault.BAD_SIGNATURE, retry=False))
                for _ in range(5)
            ]
            verified = await driver.send_text("still welcome", retry=False)

    statuses = [d.final.status for d in refused]
    assert statuses == [401, 401, 401, 429, 429]
    retry_after = int(refused[3].final.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert refused[3].final.json() == {"msg": "too many failed requests"}
    assert verified.final.status == 200
    assert len(admission.frames) == 1
    assert _count("throttled") == throttled_before + 2
    lines = _webhook_lines(webhook_log)
    # Three refusals, then one line for the whole throttled window.
    assert len(lines) == 4
    assert "throttling 127.0.0.1" in lines[3]


async def test_the_budget_window_ends_after_a_minute() -> None:
    now = [1000.0]
    admission = _Admission()
    settings = _settings(failure_budget_per_minute=1)
    async with _serving(admission, settings, clock=lambda: now[0]) as url, _lark(url) as driver:
        with anyio.fail_after(10):
            first = await driver.send_text("x", fault=WebhookFault.WRONG_TOKEN, retry=False)
            now[0] += 45
            second = await driver.send_text("x", fault=WebhookFault.WRONG_TOKEN, retry=False)
            now[0] += 16
            third = await driver.send_text("x", fault=WebhookFault.WRONG_TOKEN, retry=False)

    assert first.final.status == 401
    assert second.final.status == 429
    assert second.final.headers["Retry-After"] == "15"
    assert third.final.status == 401


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(
    webhook_log: pytest.LogCaptureFixture,
) -> None:
    behind_proxy = _settings(failure_budget_per_minute=1, trusted_proxies=["127.0.0.0/8"])
    # The client's own claim on the left, the proxy's record of it on the right.
    chains = ["10.9.9.9, 203.0.113.9", "10.9.9.9, 203.0.113.9", "10.9.9.9, 198.51.100.7"]
    statuses = await _refused_with_forwarded_for(behind_proxy, chains)

    assert statuses == [401, 429, 401]
    lines = _webhook_lines(webhook_log)
    assert "from 203.0.113.9" in lines[0]
    assert "from 198.51.100.7" in lines[-1]
    assert not any("10.9.9.9" in line for line in lines)


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(
    webhook_log: pytest.LogCaptureFixture,
) -> None:
    not_the_peer = _settings(failure_budget_per_minute=1, trusted_proxies=["10.0.0.0/8"])
    statuses = await _refused_with_forwarded_for(not_the_peer, ["192.0.2.0", "192.0.2.1"])

    assert statuses == [401, 429]
    assert "from 127.0.0.1" in _webhook_lines(webhook_log)[0]


async def test_only_post_is_served_on_the_webhook_path() -> None:
    admission = _Admission()
    async with _serving(admission) as url, aiohttp.ClientSession() as session:
        with anyio.fail_after(10):
            async with session.get(url) as response:
                status = response.status

    assert status == 405
    assert admission.frames == []


async def test_a_custom_path_and_a_token_only_app() -> None:
    admission = _Admission()
    settings = _settings(encrypt_key=None, webhook_path="/lark/events")
    async with _serving(admission, settings) as url, _lark(url, encrypt_key="") as driver:
        with anyio.fail_after(10):
            good = await driver.send_text("plain", retry=False)
            bad = await driver.send_text("plain", fault=WebhookFault.WRONG_TOKEN, retry=False)

    assert url.endswith("/lark/events")
    assert (good.final.status, bad.final.status) == (200, 401)
    assert "X-Lark-Signature" not in good.request.headers
    assert len(admission.frames) == 1


async def test_the_driver_records_an_unreachable_webhook() -> None:
    async with WebhookDriver(
        "http://127.0.0.1:9/webhook", verification_token=TOKEN, retry_scale=0.00005
    ) as driver:
        with anyio.fail_after(10):
            delivery = await driver.send_text("nobody home")

    assert [a.status for a in delivery.attempts] == [None] * 5
    assert all(a.error for a in delivery.attempts)


def test_the_endpoint_needs_a_verification_token() -> None:
    with pytest.raises(ConfigError, match=r"events\.verification_token is not set"):
        WebhookEndpoint(_settings(verification_token=None), _Admission())

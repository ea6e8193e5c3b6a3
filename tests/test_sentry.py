"""Sentry reporting: events leave the process with every secret scrubbed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from larkbot.ops.sentry import init_sentry

APP_SECRET = "Hk3mW9pQ2vX7bN4cR8tY1uJ6sE5aD0fG"
TENANT_TOKEN = "t-g1044ghJRUIJJ5ELPPKWD7K3ZQKPPNIN3ODGNZCP"
DSN = "https://public@127.0.0.1/1"

log = logging.getLogger("larkbot.test")


class _CollectingTransport(Transport):
    """Keeps envelopes in memory instead of sending them anywhere."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [
            item.payload.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == "event" and item.payload.json is not None
        ]

    def serialized(self) -> bytes:
        return b"".join(envelope.serialize() for envelope in self.envelopes)

    def only_event(self) -> dict[str, Any]:
        """The one event sent, once checked that nothing sent holds a secret."""
        (event,) = self.events()
        raw = self.serialized()
        assert APP_SECRET.encode() not in raw
        assert TENANT_TOKEN.encode() not in raw
        return event


@pytest.fixture
def transport() -> Iterator[_CollectingTransport]:
    """Yield the transport for one test, then switch Sentry off again."""
    collecting = _CollectingTransport()
    logger = logging.getLogger("larkbot.test")
    level = logger.level
    logger.setLevel(logging.INFO)  # so INFO records reach the breadcrumb hook
    sentry_sdk.get_isolation_scope().clear()
    yield collecting
    logger.setLevel(level)
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
    sentry_sdk.get_isolation_scope().clear()


def _init(transport: _CollectingTransport) -> bool:
    return init_sentry(
        dsn=DSN,
        environment="test",
        release="9.9.9",
        secrets=[APP_SECRET],
        transport=transport,
    )


def _fetch_token(credential: str) -> None:
    attempt = {"app_secret": credential, "token": TENANT_TOKEN}
    raise RuntimeError(f"token request failed for {attempt}")


def test_captured_exception_carries_no_secret(transport: _CollectingTransport) -> None:
    assert _init(transport)
    log.info("fetched tenant token %s", TENANT_TOKEN)  # becomes a breadcrumb
    try:
        _fetch_token(APP_SECRET)
    except RuntimeError as exc:
        sentry_sdk.capture_exception(exc)
    sentry_sdk.flush(timeout=2)

    event = transport.only_event()
    assert event["release"] == "9.9.9"
    assert event["environment"] == "test"
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert "***" in exception["value"]
    frames = exception["stacktrace"]["frames"]
    assert any(frame.get("vars", {}).get("credential") == "'***'" for frame in frames)
    crumbs = event["breadcrumbs"]["values"]
    assert any(c.get("message") == "fetched tenant token ***" for c in crumbs)


def test_error_log_becomes_a_scrubbed_event(transport: _CollectingTransport) -> None:
    assert _init(transport)
    sentry_sdk.set_extra("credentials", {"app_secret": APP_SECRET})
    log.error(
        "reply failed with Authorization: Bearer %s",
        TENANT_TOKEN,
        extra={"message_id": "om_1", "detail": APP_SECRET},
    )
    sentry_sdk.flush(timeout=2)

    event = transport.only_event()
    assert event["level"] == "error"
    assert event["logentry"]["params"] == ["***"]
    assert event["extra"]["detail"] == "***"
    assert event["extra"]["message_id"] == "om_1"


def test_request_headers_are_scrubbed(transport: _CollectingTransport) -> None:
    assert _init(transport)
    sentry_sdk.capture_event(
        {
            "message": f"upstream said no to {APP_SECRET}",
            "level": "error",
            "request": {
                "url": "https://open.feishu.cn/open-apis/im/v1/messages",
                "headers": {"X-Debug": f"Bearer {TENANT_TOKEN}", "X-App": APP_SECRET},
            },
        }
    )
    sentry_sdk.flush(timeout=2)

    event = transport.only_event()
    assert event["message"] == "upstream said no to ***"
    headers = event["request"]["headers"]
    assert headers["X-Debug"] == "Bearer ***"
    assert headers["X-App"] == "***"


@pytest.mark.parametrize("dsn", [None, ""])
def test_no_dsn_initialises_nothing(dsn: str | None, transport: _CollectingTransport) -> None:
    assert not init_sentry(
        dsn=dsn, environment="test", release="9.9.9", secrets=[APP_SECRET], transport=transport
    )
    assert not sentry_sdk.get_client().is_active()
    log.error("nobody hears this")
    sentry_sdk.capture_message("nor this")
    assert transport.envelopes == []

"""larkbot's webhook verification against lark-oapi's own ``EventDispatcherHandler``.

Both get the very same requests, built by the stand-in's webhook driver the way Lark
builds them. What the SDK accepts larkbot accepts, with the same payload; what it refuses
larkbot refuses (the SDK answers refusals with HTTP 500, larkbot with a 4xx). The few
places where larkbot is stricter on purpose are pinned down in their own test.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import lark_oapi as lark
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from lark_oapi.core.utils import AESCipher
from lark_oapi.event.callback.model.p2_card_action_trigger import (
    P2CardActionTrigger,
    P2CardActionTriggerResponse,
)

from larkbot.sources.webhook import (
    Challenge,
    Rejected,
    Verification,
    Verified,
    WebhookKeys,
    decrypt,
)
from larkbot.testing import WebhookDriver, WebhookFault, WebhookRequest
from tests._webhook import verified

TOKEN = "v-token-fidelity"
KEY = "enc-key-fidelity"
DOCS_KEY = "test key"
DOCS_CIPHER = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="


@dataclass
class _Sdk:
    """lark-oapi's handler with processors that record what they were given."""

    handler: Any
    seen: list[dict[str, Any]] = field(default_factory=list)

    def do(self, request: WebhookRequest) -> tuple[int, bytes]:
        raw = lark.RawRequest()
        raw.uri = "/webhook"
        raw.headers = dict(request.headers)
        raw.body = request.body
        response = self.handler.do(raw)
        return response.status_code, response.content


def _sdk(encrypt_key: str, token: str = TOKEN) -> _Sdk:
    sdk = _Sdk(handler=None)

    def on_message(data: lark.im.v1.P2ImMessageReceiveV1) -> None:
        sdk.seen.append(
            {
                "event_id": data.header.event_id,
                "message_id": data.event.message.message_id,
                "content": data.event.message.content,
            }
        )

    def on_card(data: P2CardActionTrigger) -> P2CardActionTriggerResponse:
        sdk.seen.append({"event_id": data.header.event_id, "value": data.event.action.value})
        return P2CardActionTriggerResponse({"toast": {"type": "info", "content": "ok"}})

    def on_v1(data: lark.CustomizedEvent) -> None:
        sdk.seen.append({"uuid": data.uuid})

    sdk.handler = (
        lark.EventDispatcherHandler.builder(encrypt_key, token)
        .register_p2_im_message_receive_v1(on_message)
        .register_p2_card_action_trigger(on_card)
        .register_p1_customized_event("message", on_v1)
        .build()
    )
    return sdk


def _v1_event(token: str) -> dict[str, Any]:
    return {
        "uuid": uuid.uuid4().hex,
        "token": token,
        "ts": "1700000000.0",
        "type": "event_callback",
        "event": {"type": "message", "text": "hi"},
    }


def _cases(driver: WebhookDriver) -> dict[str, WebhookRequest]:
    message = driver.message_event("hello fidelity")
    card = driver.card_action_event({"action": "approve"}, open_message_id="om_card")
    signed = driver.seal(message)
    return {
        "message": signed,
        "card action": driver.seal(card),
        "schema 1.0 event": driver.seal(_v1_event(driver.verification_token)),
        "schema 1.0, wrong token": driver.seal(_v1_event("nope")),
        "bad signature": driver.seal(message, fault=WebhookFault.BAD_SIGNATURE),
        "wrong token": driver.seal(message, fault=WebhookFault.WRONG_TOKEN),
        "truncated cipher": driver.seal(message, fault=WebhookFault.TRUNCATED_CIPHER),
        "invalid JSON": driver.seal(message, fault=WebhookFault.INVALID_JSON),
        "no signature headers": WebhookRequest(signed.body, {"Content-Type": "application/json"}),
        "plain, unsigned": WebhookRequest(
            driver.seal(message, encrypt=False).body, {"Content-Type": "application/json"}
        ),
        "challenge, plain": driver.seal(driver.url_verification("c1"), encrypt=False),
        "challenge, encrypted": driver.seal(driver.url_verification("c2")),
        "challenge, bad signature": driver.seal(
            driver.url_verification("c3"), fault=WebhookFault.BAD_SIGNATURE
        ),
        "challenge, wrong token": driver.seal(
            driver.url_verification("c4"), fault=WebhookFault.WRONG_TOKEN
        ),
        "empty body": driver.seal(b""),
    }


def _accepted(result: Verification) -> bool:
    return isinstance(result, Verified | Challenge)


def test_the_documentation_vector_decrypts_alike() -> None:
    assert AESCipher(DOCS_KEY).decrypt_str(DOCS_CIPHER) == "hello world"
    assert decrypt(DOCS_CIPHER, DOCS_KEY) == b"hello world"


def test_the_documentation_vector_as_a_request_body_is_refused_by_both() -> None:
    # It decrypts, but "hello world" is no event.
    driver = WebhookDriver("http://127.0.0.1:9/", verification_token=TOKEN, encrypt_key=DOCS_KEY)
    body = json.dumps({"encrypt": DOCS_CIPHER}).encode()
    request = driver.seal(body, encrypt=False)
    sdk = _sdk(DOCS_KEY)

    status, _ = sdk.do(request)
    ours = verified(request, WebhookKeys(TOKEN, DOCS_KEY))

    assert status == 500
    assert ours == Rejected(400, "bad_body", "decrypted body is not valid JSON")


def test_without_a_stand_in_the_driver_mentions_the_bot_it_is_given() -> None:
    driver = WebhookDriver("http://127.0.0.1:9/", verification_token=TOKEN)
    event = driver.message_event("hi", mention_bot=True, bot_open_id="ou_helper", bot_name="aide")
    (mention,) = event["event"]["message"]["mentions"]
    assert (mention["id"]["open_id"], mention["name"]) == ("ou_helper", "aide")
    assert event["header"]["token"] == TOKEN


@pytest.mark.parametrize("encrypt_key", [KEY, ""], ids=["encrypt key", "token only"])
def test_what_the_sdk_accepts_larkbot_accepts_and_what_it_refuses_larkbot_refuses(
    encrypt_key: str,
) -> None:
    driver = WebhookDriver("http://127.0.0.1:9/", verification_token=TOKEN, encrypt_key=encrypt_key)
    keys = WebhookKeys(TOKEN, encrypt_key)
    verdicts: dict[str, tuple[bool, bool]] = {}
    for name, request in _cases(driver).items():
        if encrypt_key == "" and name == "plain, unsigned":
            continue  # without a key every request is plain and unsigned: "message" covers it
        sdk = _sdk(encrypt_key)
        status, content = sdk.do(request)
        ours = verified(request, keys)
        verdicts[name] = (status == 200, _accepted(ours))
        if isinstance(ours, Challenge):
            assert json.loads(content) == json.loads(ours.body), name
        if isinstance(ours, Verified) and sdk.seen:
            payload = json.loads(ours.payload)
            (seen,) = sdk.seen
            if "uuid" in seen:
                assert seen["uuid"] == payload["uuid"], name
            else:
                assert seen["event_id"] == payload["header"]["event_id"], name
                if "message_id" in seen:
                    message = payload["event"]["message"]
                    assert seen["message_id"] == message["message_id"], name
                    assert seen["content"] == message["content"], name
                else:
                    assert seen["value"] == payload["event"]["action"]["value"], name
        if isinstance(ours, Rejected):
            assert ours.status in (400, 401, 413), name

    disagreements = {name: v for name, v in verdicts.items() if v[0] != v[1]}
    assert disagreements == {}
    accepted = {name for name, (sdk_ok, _) in verdicts.items() if sdk_ok}
    expected = {
        "message",
        "card action",
        "schema 1.0 event",
        "challenge, plain",
        "challenge, encrypted",
        "challenge, bad signature",
    }
    if not encrypt_key:
        # Nothing is signed or encrypted: these are plain, valid requests too.
        expected |= {
            "bad signature",
            "truncated cipher",
            "no signature headers",
        }
    assert accepted == expected


def test_where_larkbot_is_stricter_than_the_sdk_on_purpose() -> None:
    driver = WebhookDriver("http://127.0.0.1:9/", verification_token=TOKEN, encrypt_key=KEY)
    keys = WebhookKeys(TOKEN, KEY)
    message = driver.message_event("hi")
    tokenless = driver.message_event("hi")
    del tokenless["header"]["token"]
    stricter = {
        # Signed but not encrypted: Lark encrypts everything once an encrypt key is set.
        "plain body while a key is set": driver.seal(message, fault=WebhookFault.PLAIN_BODY),
        # Encrypted and signed but without a token: the SDK lets the signature suffice.
        "no token in an encrypted event": driver.seal(tokenless),
        # Over the size limit: the SDK has none.
        "oversized": driver.seal(message, fault=WebhookFault.OVERSIZED),
    }
    for name, request in stricter.items():
        status, _ = _sdk(KEY).do(request)
        assert status == 200, name
        assert isinstance(verified(request, keys), Rejected), name


@hypothesis_settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=300), key=st.text(min_size=1, max_size=40))
def test_any_sealed_message_is_accepted_alike_with_the_same_content(text: str, key: str) -> None:
    driver = WebhookDriver("http://127.0.0.1:9/", verification_token=TOKEN, encrypt_key=key)
    request = driver.seal(driver.message_event(text))
    sdk = _sdk(key)

    status, _ = sdk.do(request)
    ours = verified(request, WebhookKeys(TOKEN, key))

    assert status == 200
    assert isinstance(ours, Verified)
    assert sdk.seen[0]["content"] == json.loads(ours.payload)["event"]["message"]["content"]

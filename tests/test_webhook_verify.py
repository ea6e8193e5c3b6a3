"""Verification of webhook requests: order of checks, decryption, tokens, challenges."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from larkbot.sources.webhook import (
    Challenge,
    DecryptError,
    Rejected,
    Verified,
    WebhookKeys,
    decrypt,
    verify_request,
)
from larkbot.testing import WebhookDriver, WebhookFault, WebhookRequest, lark_encrypt
from tests._webhook import FAULTS, MAX_BODY_BYTES, verified

TOKEN = "v-token-123"
KEY = "enc-key-456"
# The decryption example of Lark's documentation.
DOCS_KEY = "test key"
DOCS_CIPHER = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="


def _driver(encrypt_key: str = KEY) -> WebhookDriver:
    # Only its request builders are used here: no session, nothing is sent.
    return WebhookDriver(
        "http://127.0.0.1:9/webhook", verification_token=TOKEN, encrypt_key=encrypt_key
    )


ENCRYPTED = WebhookKeys(TOKEN, KEY)
PLAIN = WebhookKeys(TOKEN)


def test_the_documentation_vector_decrypts() -> None:
    assert decrypt(DOCS_CIPHER, DOCS_KEY) == b"hello world"


def test_a_signed_encrypted_event_is_verified_and_decrypted() -> None:
    driver = _driver()
    event = driver.message_event("hello")

    result = verified(driver.seal(event), ENCRYPTED)

    assert isinstance(result, Verified)
    assert json.loads(result.payload) == event


def test_a_plain_event_is_verified_without_an_encrypt_key() -> None:
    driver = _driver(encrypt_key="")
    request = driver.seal(driver.message_event("hello"))

    result = verified(request, PLAIN)

    assert "X-Lark-Signature" not in request.headers
    assert result == Verified(request.body)


@pytest.mark.parametrize(("fault", "status", "outcome", "reason"), FAULTS)
def test_each_fault_is_refused_with_its_status_and_reason(
    fault: WebhookFault, status: int, outcome: str, reason: str
) -> None:
    driver = _driver()

    result = verified(driver.seal(driver.message_event("hi"), fault=fault), ENCRYPTED)

    assert result == Rejected(status, outcome, reason)  # type: ignore[arg-type]


def test_size_is_checked_before_the_signature() -> None:
    driver = _driver()
    request = driver.seal(driver.message_event("x" * 200), fault=WebhookFault.BAD_SIGNATURE)

    result = verified(request, ENCRYPTED, limit=100)

    assert isinstance(result, Rejected) and result.outcome == "too_large"


def test_the_signature_is_checked_before_the_body_is_read() -> None:
    # A forged request learns nothing about the body checks: it is refused as unsigned.
    driver = _driver()
    for fault in (WebhookFault.TRUNCATED_CIPHER, WebhookFault.INVALID_JSON):
        request = driver.seal(driver.message_event("hi"), fault=fault)
        forged = WebhookRequest(request.body, {**request.headers, "X-Lark-Signature": "0" * 64})
        result = verified(forged, ENCRYPTED)
        assert result == Rejected(401, "bad_signature", "signature does not match")


def test_missing_signature_headers_are_refused() -> None:
    driver = _driver()
    request = driver.seal(driver.message_event("hi"))
    for header in ("X-Lark-Request-Timestamp", "X-Lark-Request-Nonce", "X-Lark-Signature"):
        headers = {k: v for k, v in request.headers.items() if k != header}
        result = verified(WebhookRequest(request.body, headers), ENCRYPTED)
        assert result == Rejected(401, "bad_signature", "signature headers missing")


def test_the_signature_covers_the_raw_bytes() -> None:
    # The same JSON with other spacing is another body: its signature no longer matches.
    driver = _driver()
    request = driver.seal(driver.message_event("hi"))
    respaced = json.dumps(json.loads(request.body), indent=1).encode()

    assert isinstance(verified(request, ENCRYPTED), Verified)
    assert verified(WebhookRequest(respaced, request.headers), ENCRYPTED) == Rejected(
        401, "bad_signature", "signature does not match"
    )


def test_a_non_ascii_signature_header_is_refused_not_raised() -> None:
    driver = _driver()
    request = driver.seal(driver.message_event("hi"))
    headers = {**request.headers, "X-Lark-Signature": "é" * 64}

    assert verified(WebhookRequest(request.body, headers), ENCRYPTED).outcome == "bad_signature"


def test_an_encrypted_body_without_a_configured_key_is_refused() -> None:
    driver = _driver()

    result = verified(driver.seal(driver.message_event("hi")), PLAIN)

    assert result == Rejected(400, "bad_body", "encrypted body but no encrypt key is configured")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not valid JSON"),
        (b"[1, 2]", "body is not a JSON object"),
        (b"\xff\xfe{", "body is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body is not valid JSON"),
        (b'{"encrypt": 5}', "encrypt is not a non-empty string"),
        (b'{"encrypt": ""}', "encrypt is not a non-empty string"),
    ],
)
def test_bodies_that_are_not_events_are_refused(body: bytes, reason: str) -> None:
    assert verified(WebhookRequest(body, {}), PLAIN) == Rejected(400, "bad_body", reason)


@pytest.mark.parametrize(
    ("cipher", "message"),
    [
        ("not base64!", "cipher text is not base64"),
        ("ünïcode", "cipher text is not base64"),
        (base64.b64encode(b"0" * 16).decode(), "cipher text length is not a multiple"),
        (base64.b64encode(b"0" * 40).decode(), "cipher text length is not a multiple"),
        (base64.b64encode(bytes(range(48))).decode(), "cipher text has invalid padding"),
    ],
)
def test_decrypt_is_strict(cipher: str, message: str) -> None:
    with pytest.raises(DecryptError, match=message):
        decrypt(cipher, KEY)


def test_tokens_of_schema_1_and_2_are_read_where_each_schema_puts_them() -> None:
    driver = _driver(encrypt_key="")
    v1 = {"uuid": "u1", "token": TOKEN, "ts": "1", "type": "event_callback", "event": {}}
    v1_wrong = {**v1, "token": "nope"}
    v2_in_the_wrong_place = {**driver.message_event("hi"), "token": TOKEN}
    v2_in_the_wrong_place["header"] = {**v2_in_the_wrong_place["header"], "token": ""}

    assert isinstance(verified(driver.seal(v1), PLAIN), Verified)
    assert verified(driver.seal(v1_wrong), PLAIN).outcome == "bad_token"
    assert verified(driver.seal(v2_in_the_wrong_place), PLAIN) == Rejected(
        401, "bad_token", "verification token missing"
    )


@pytest.mark.parametrize("encrypt", [False, True])
def test_url_verification_is_answered_plain_or_encrypted(encrypt: bool) -> None:
    driver = _driver()

    result = verified(driver.seal(driver.url_verification("ch-1"), encrypt=encrypt), ENCRYPTED)

    assert result == Challenge("ch-1")
    assert json.loads(result.body) == {"challenge": "ch-1"}


def test_url_verification_needs_the_token_but_not_a_signature() -> None:
    driver = _driver()
    unsigned = driver.seal(driver.url_verification("ch"), fault=WebhookFault.BAD_SIGNATURE)
    wrong_token = driver.seal(driver.url_verification("ch"), fault=WebhookFault.WRONG_TOKEN)
    no_challenge = driver.seal({"type": "url_verification", "token": TOKEN})

    assert verified(unsigned, ENCRYPTED) == Challenge("ch")
    assert verified(wrong_token, ENCRYPTED).outcome == "bad_token"
    assert verified(no_challenge, ENCRYPTED) == Rejected(
        400, "bad_body", "url_verification without a challenge string"
    )


def test_only_the_url_verification_shape_skips_the_signature() -> None:
    # A schema 2.0 event that merely claims the type still needs its signature.
    driver = _driver()
    event = {**driver.message_event("hi"), "type": "url_verification", "challenge": "x"}

    result = verified(driver.seal(event, fault=WebhookFault.BAD_SIGNATURE), ENCRYPTED)

    assert result == Rejected(401, "bad_signature", "signature does not match")


def test_keys_need_a_token_and_hide_both_secrets() -> None:
    with pytest.raises(ValueError, match="verification token is required"):
        WebhookKeys("")
    shown = repr(WebhookKeys(TOKEN, KEY))
    assert TOKEN not in shown and KEY not in shown


@hypothesis_settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(max_size=2000), key=st.text(min_size=1, max_size=64))
def test_encryption_round_trips(plaintext: bytes, key: str) -> None:
    assert decrypt(lark_encrypt(plaintext, key), key) == plaintext


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    text=st.text(max_size=500),
    key=st.text(min_size=1, max_size=40),
    token=st.text(min_size=1, max_size=40),
)
def test_sealed_events_verify_to_the_same_event(text: str, key: str, token: str) -> None:
    driver = WebhookDriver("http://127.0.0.1:9/", verification_token=token, encrypt_key=key)
    event = driver.message_event(text)

    result = verified(driver.seal(event), WebhookKeys(token, key))

    assert isinstance(result, Verified)
    assert json.loads(result.payload) == event


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda c: json.dumps({"encrypt": c}).encode(),
            st.one_of(
                st.text(max_size=80),
                st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
            ),
        ),
    ),
    signature=st.one_of(st.none(), st.text(max_size=70)),
)
def test_arbitrary_requests_get_an_outcome_never_an_exception(
    body: bytes, signature: str | None
) -> None:
    for keys in (ENCRYPTED, PLAIN):
        result = verify_request(
            body,
            keys=keys,
            timestamp="1",
            nonce="n",
            signature=signature,
            max_body_bytes=MAX_BODY_BYTES,
        )
        assert isinstance(result, Verified | Challenge | Rejected)
        if keys is ENCRYPTED:
            # Nothing unsigned gets through but a challenge with the right token.
            assert not isinstance(result, Verified)

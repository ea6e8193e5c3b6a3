"""Verification of one webhook request, as Lark signs and encrypts it.

Pure functions over the raw body and three header values; no I/O. The order is the one a
refusal must follow: size, signature (when an encrypt key is configured), decryption,
verification token. What lark-oapi 1.7.5's ``EventDispatcherHandler`` accepts is accepted
here and what it refuses is refused, with these deliberate differences:

- a plain (unencrypted) event is refused when an encrypt key is configured: Lark encrypts
  every request once a key is set, so a plain one is not Lark's;
- the verification token is required on every payload (the SDK skips it for encrypted
  payloads that carry none);
- refusals are 4xx with a reason instead of the SDK's HTTP 500, which would invite retries.

Like the SDK, a ``url_verification`` challenge is answered without a signature (it must
still carry the right verification token), plain or encrypted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "Challenge",
    "DecryptError",
    "Refusal",
    "Rejected",
    "Verification",
    "Verified",
    "WebhookKeys",
    "decrypt",
    "verify_request",
]

Refusal = Literal["bad_signature", "bad_token", "bad_body", "too_large"]
"""Why a request was refused, as the ``outcome`` label of the webhook metric."""

_BLOCK = 16
_URL_VERIFICATION = "url_verification"


@dataclass(frozen=True, slots=True)
class WebhookKeys:
    """The app's Verification Token and, when set, its Encrypt Key (both from the console).

    Without an encrypt key Lark neither signs nor encrypts requests, so only the token
    protects the endpoint.
    """

    verification_token: str = field(repr=False)
    encrypt_key: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.verification_token:
            raise ValueError("a verification token is required")


@dataclass(frozen=True, slots=True)
class Verified:
    """A request that passed every check: ``payload`` is the event JSON, decrypted."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Challenge:
    """A ``url_verification`` request with the right token, to be answered with ``body``."""

    challenge: str

    @property
    def body(self) -> bytes:
        """The JSON answer Lark expects: ``{"challenge": <value>}``."""
        return json.dumps({"challenge": self.challenge}, ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Rejected:
    """A refused request: the HTTP ``status`` to answer, the metric ``outcome``, a short reason.

    The reason names what is wrong, never a value from the request or a key.
    """

    status: int
    outcome: Refusal
    reason: str


Verification = Verified | Challenge | Rejected


class DecryptError(ValueError):
    """An ``encrypt`` value that does not decrypt: not base64, bad length or bad padding."""


class _BadBodyError(Exception):
    """The body cannot be read as an event; the message is the refusal's reason."""


def verify_request(
    body: bytes,
    *,
    keys: WebhookKeys,
    timestamp: str | None,
    nonce: str | None,
    signature: str | None,
    max_body_bytes: int,
) -> Verification:
    """Verify one request from its raw body and its ``X-Lark-*`` header values.

    :param body: the request body exactly as received (the signature covers these bytes)
    :param timestamp: ``X-Lark-Request-Timestamp``, or ``None`` when absent
    :param nonce: ``X-Lark-Request-Nonce``, or ``None`` when absent
    :param signature: ``X-Lark-Signature``, or ``None`` when absent
    :param max_body_bytes: larger bodies are refused with 413 before anything else
    """
    if len(body) > max_body_bytes:
        return Rejected(413, "too_large", f"body larger than {max_body_bytes} bytes")
    unsigned = (
        _signature_problem(body, keys.encrypt_key, timestamp, nonce, signature)
        if keys.encrypt_key
        else None
    )
    try:
        event, plaintext, encrypted = _open(body, keys.encrypt_key)
    except _BadBodyError as exc:
        if unsigned is not None:
            return Rejected(401, "bad_signature", unsigned)
        return Rejected(400, "bad_body", str(exc))
    challenge = _is_url_verification(event)
    if unsigned is not None and not challenge:
        return Rejected(401, "bad_signature", unsigned)
    if keys.encrypt_key and not encrypted and not challenge:
        return Rejected(400, "bad_body", "plain body while an encrypt key is configured")
    if (problem := _token_problem(_token_of(event), keys.verification_token)) is not None:
        return Rejected(401, "bad_token", problem)
    if challenge:
        value = event.get("challenge")
        if not isinstance(value, str):
            return Rejected(400, "bad_body", "url_verification without a challenge string")
        return Challenge(value)
    return Verified(plaintext)


def decrypt(cipher_text: str, encrypt_key: str) -> bytes:
    """Decrypt the ``encrypt`` value of a request body.

    Base64 of a 16-byte IV followed by AES-256-CBC cipher text, the key being the SHA-256
    of the encrypt key, padded with PKCS#7. Raises :class:`DecryptError`.
    """
    try:
        raw = base64.b64decode(cipher_text, validate=True)
    except ValueError:
        raise DecryptError("cipher text is not base64") from None
    if len(raw) < 2 * _BLOCK or len(raw) % _BLOCK:
        raise DecryptError("cipher text length is not a multiple of 16 bytes above 16")
    key = hashlib.sha256(encrypt_key.encode()).digest()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:_BLOCK])).decryptor()
    padded = decryptor.update(raw[_BLOCK:]) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DecryptError("cipher text has invalid padding") from None


def _signature_problem(
    body: bytes, encrypt_key: str, timestamp: str | None, nonce: str | None, signature: str | None
) -> str | None:
    if timestamp is None or nonce is None or signature is None:
        return "signature headers missing"
    expected = hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII str, and a header may carry anything.
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return "signature does not match"
    return None


def _open(body: bytes, encrypt_key: str) -> tuple[dict[str, Any], bytes, bool]:
    """Parse the body, decrypting it when it is ``{"encrypt": ...}``.

    Returns the event, its JSON bytes and whether it was encrypted.
    """
    outer = _json_object(body, "body")
    if "encrypt" not in outer:
        return outer, body, False
    cipher_text = outer["encrypt"]
    if not isinstance(cipher_text, str) or not cipher_text:
        raise _BadBodyError("encrypt is not a non-empty string")
    if not encrypt_key:
        raise _BadBodyError("encrypted body but no encrypt key is configured")
    try:
        plaintext = decrypt(cipher_text, encrypt_key)
    except DecryptError as exc:
        raise _BadBodyError(str(exc)) from None
    return _json_object(plaintext, "decrypted body"), plaintext, True


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON, bad UTF-8 and integers too long to convert.
        raise _BadBodyError(f"{what} is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise _BadBodyError(f"{what} is not a JSON object")
    return parsed


def _is_url_verification(event: dict[str, Any]) -> bool:
    # As the SDK reads it: only a payload of neither schema 2.0 nor 1.0 has a top-level type.
    return (
        not event.get("schema") and not event.get("uuid") and event.get("type") == _URL_VERIFICATION
    )


def _token_of(event: dict[str, Any]) -> object:
    # Schema 2.0 carries the token in its header; schema 1.0 and url_verification at the top.
    if event.get("schema"):
        header = event.get("header")
        return header.get("token") if isinstance(header, dict) else None
    return event.get("token")


def _token_problem(token: object, expected: str) -> str | None:
    if not isinstance(token, str) or not token:
        return "verification token missing"
    if not hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace")):
        return "verification token does not match"
    return None

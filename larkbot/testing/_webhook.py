"""The stand-in's webhook side: POST events to a URL as Lark does, faults included.

Lark's request (see the Webhook section of the design notes): the JSON body, encrypted
when the app has an Encrypt Key (``{"encrypt": base64(IV + AES-256-CBC cipher text)}``,
key = SHA-256 of the encrypt key, a random IV, PKCS#7 padding), and the headers
``X-Lark-Request-Timestamp``, ``X-Lark-Request-Nonce`` and, with an encrypt key,
``X-Lark-Signature`` = hex SHA-256 of timestamp + nonce + encrypt key + body. Anything but
a 2xx within 3 s (2 s to connect) is retried after 15 s, 5 min, 1 h and 6 h; the ladder is
scaled by ``retry_scale`` so that tests need not wait hours.

Choices where the platform's exact behaviour is not pinned down: a retry re-sends the very
same bytes and headers; the timestamp and nonce headers are sent without an encrypt key
too; every request carries an ``X-Request-Id`` (lark-oapi logs that header of webhook
requests).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import os
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

import aiohttp
import anyio
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from larkbot.testing._events import (
    CardActionFields,
    MessageFields,
    build_card_action_event,
    build_message_event,
    event_ids,
)
from larkbot.testing._lifecycle import AsyncLifecycle

if TYPE_CHECKING:
    from larkbot.testing.standin import LarkStandIn

__all__ = [
    "LARK_RETRY_DELAYS",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDriver",
    "WebhookFault",
    "WebhookRequest",
    "lark_encrypt",
    "lark_signature",
]

LARK_RETRY_DELAYS = (15.0, 300.0, 3600.0, 21600.0)
"""Seconds Lark waits before each re-push of a request that got no 2xx."""

_OVERSIZED_BYTES = 2 * 1024 * 1024
_BLOCK = 16


class WebhookFault(enum.Enum):
    """A way to spoil a request, to see it refused."""

    BAD_SIGNATURE = "bad_signature"
    """A signature made with another key (without an encrypt key nothing is signed)."""
    WRONG_TOKEN = "wrong_token"
    """The payload carries another verification token (signed and encrypted correctly)."""
    PLAIN_BODY = "plain_body"
    """The JSON sent unencrypted (but signed) although the app has an encrypt key."""
    TRUNCATED_CIPHER = "truncated_cipher"
    """The cipher text loses its last bytes (still base64, no longer whole blocks)."""
    OVERSIZED = "oversized"
    """The payload padded with 2 MiB of whitespace, then signed and encrypted."""
    INVALID_JSON = "invalid_json"
    """Half a JSON document, signed and encrypted."""


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """One request exactly as it goes on the wire; post it again to replay it."""

    body: bytes
    headers: Mapping[str, str]
    event_id: str | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    """One POST and what came back.

    ``status`` is ``None`` when no HTTP answer came (connection refused, timeout; see
    ``error``). ``elapsed`` runs from sending the request to reading the whole answer.
    ``attempt`` is 0 for the first push, then 1 to 4 for Lark's re-pushes.
    """

    attempt: int
    status: int | None
    body: bytes
    headers: Mapping[str, str]
    elapsed: float
    error: str | None = None
    event_id: str | None = None

    @property
    def ok(self) -> bool:
        """Whether Lark would count the request as delivered (a 2xx)."""
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        """The answer's body, parsed."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """A request and every attempt made to deliver it, retries included."""

    request: WebhookRequest
    attempts: tuple[WebhookAttempt, ...]

    @property
    def final(self) -> WebhookAttempt:
        """The last attempt: the delivered one, or the last refused."""
        return self.attempts[-1]

    @property
    def message_id(self) -> str | None:
        """The chat message id of the event, when it carries a message."""
        return self.request.message_id

    @property
    def event_id(self) -> str | None:
        """The event id of the payload (``header.event_id``)."""
        return self.request.event_id


@dataclass(eq=False)
class WebhookDriver(AsyncLifecycle):
    """POST events to ``url`` signed and encrypted as Lark does, and record every attempt.

    Use it as an async context manager (it holds an HTTP session). With ``lark`` the
    events come from that stand-in's ids (app, tenant, bot) and chat messages are
    remembered there, so the bot's replies land in the right chat.

    :param encrypt_key: the app's Encrypt Key; empty: requests are neither encrypted nor signed
    :param retry_scale: multiplies Lark's retry ladder (``0.001`` turns 15 s into 15 ms)
    """

    url: str
    verification_token: str = field(repr=False)
    encrypt_key: str = field(default="", repr=False)
    lark: LarkStandIn | None = None
    retry_scale: float = 1.0
    retry_delays: Sequence[float] = LARK_RETRY_DELAYS
    timeout: float = 3.0
    connect_timeout: float = 2.0
    app_id: str = "cli_test"
    tenant_key: str = "tenant"
    attempts: list[WebhookAttempt] = field(default_factory=list, init=False)
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)

    async def _start(self) -> None:
        if self.lark is not None:
            self.app_id, self.tenant_key = self.lark.app_id, self.lark.tenant_key
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout, connect=self.connect_timeout)
        )

    async def _stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with anyio.CancelScope(shield=True):
                await session.close()

    # -------------------------------------------------------------------------- payloads

    def message_event(
        self,
        text: str = "",
        *,
        bot_open_id: str = "ou_bot",
        bot_name: str = "larkbot",
        **fields: Unpack[MessageFields],
    ) -> dict[str, Any]:
        """Build a chat message's event carrying the verification token.

        Takes the arguments of ``LarkStandIn.build_message_event``; ``bot_open_id`` and
        ``bot_name`` name the bot when there is no stand-in (else the stand-in's bot is used).
        """
        if self.lark is not None:
            event = self.lark.build_message_event(text, **fields)
        else:
            event = build_message_event(
                text,
                app_id=self.app_id,
                tenant_key=self.tenant_key,
                bot_open_id=bot_open_id,
                bot_name=bot_name,
                **fields,
            )
        event["header"]["token"] = self.verification_token
        return event

    def card_action_event(
        self, value: dict[str, Any] | str, **fields: Unpack[CardActionFields]
    ) -> dict[str, Any]:
        """Build a ``card.action.trigger`` callback carrying the verification token."""
        return build_card_action_event(
            value,
            app_id=self.app_id,
            tenant_key=self.tenant_key,
            token=self.verification_token,
            **fields,
        )

    def url_verification(self, challenge: str | None = None) -> dict[str, Any]:
        """Build the ``url_verification`` request Lark sends when the URL is saved."""
        return {
            "challenge": challenge or str(uuid.uuid4()),
            "token": self.verification_token,
            "type": "url_verification",
        }

    def seal(
        self,
        payload: dict[str, Any] | bytes,
        *,
        fault: WebhookFault | None = None,
        encrypt: bool | None = None,
    ) -> WebhookRequest:
        """Turn a payload into the request Lark would send, spoiled by ``fault`` if given.

        :param payload: an event (a dict) or JSON bytes
        :param encrypt: default: whenever an encrypt key is set
        """
        event_id, message_id = event_ids(payload) if isinstance(payload, dict) else (None, None)
        if fault is WebhookFault.WRONG_TOKEN:
            if not isinstance(payload, dict):
                raise ValueError("WRONG_TOKEN needs the payload as a dict")
            payload = _with_token(payload, "not-" + self.verification_token)
        plaintext = payload if isinstance(payload, bytes) else _dumps(payload)
        if fault is WebhookFault.OVERSIZED:
            # Trailing whitespace keeps the JSON valid: only the size is wrong.
            plaintext += b" " * _OVERSIZED_BYTES
        if fault is WebhookFault.INVALID_JSON:
            plaintext = plaintext[: max(1, len(plaintext) // 2)]
        if encrypt is None:
            encrypt = bool(self.encrypt_key) and fault is not WebhookFault.PLAIN_BODY
        if encrypt:
            sealed = lark_encrypt(plaintext, self.encrypt_key)
            if fault is WebhookFault.TRUNCATED_CIPHER:
                raw = base64.b64decode(sealed)
                sealed = base64.b64encode(raw[:-7]).decode()
            body = _dumps({"encrypt": sealed})
        else:
            body = plaintext
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Lark-Request-Timestamp": timestamp,
            "X-Lark-Request-Nonce": nonce,
            "X-Request-Id": uuid.uuid4().hex,
        }
        if self.encrypt_key:
            key = self.encrypt_key
            if fault is WebhookFault.BAD_SIGNATURE:
                key = "not-" + key
            headers["X-Lark-Signature"] = lark_signature(timestamp, nonce, key, body)
        return WebhookRequest(body, headers, event_id, message_id)

    # --------------------------------------------------------------------------- sending

    async def post(self, request: WebhookRequest, *, attempt: int = 0) -> WebhookAttempt:
        """POST ``request`` once (also to replay it) and record the attempt."""
        if self._session is None:
            raise RuntimeError("use the driver as an async context manager")
        started = time.perf_counter()
        try:
            async with self._session.post(
                self.url, data=request.body, headers=dict(request.headers)
            ) as response:
                body = await response.read()
                result = WebhookAttempt(
                    attempt=attempt,
                    status=response.status,
                    body=body,
                    headers=dict(response.headers),
                    elapsed=time.perf_counter() - started,
                    event_id=request.event_id,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            result = WebhookAttempt(
                attempt=attempt,
                status=None,
                body=b"",
                headers={},
                elapsed=time.perf_counter() - started,
                error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                event_id=request.event_id,
            )
        self.attempts.append(result)
        return result

    async def deliver(self, request: WebhookRequest, *, retry: bool = True) -> WebhookDelivery:
        """POST ``request`` until it gets a 2xx, re-pushing on Lark's (scaled) ladder."""
        delays = (0.0, *self.retry_delays) if retry else (0.0,)
        made: list[WebhookAttempt] = []
        for attempt, delay in enumerate(delays):
            if delay:
                await anyio.sleep(delay * self.retry_scale)
            made.append(await self.post(request, attempt=attempt))
            if made[-1].ok:
                break
        return WebhookDelivery(request, tuple(made))

    async def send_event(
        self,
        event: dict[str, Any] | bytes,
        *,
        fault: WebhookFault | None = None,
        encrypt: bool | None = None,
        retry: bool = True,
    ) -> WebhookDelivery:
        """Seal and deliver an event; a chat message is remembered by the stand-in first."""
        if self.lark is not None and isinstance(event, dict):
            self.lark.remember_event(event)
        return await self.deliver(self.seal(event, fault=fault, encrypt=encrypt), retry=retry)

    async def send_text(
        self,
        text: str = "",
        *,
        fault: WebhookFault | None = None,
        retry: bool = True,
        **fields: Unpack[MessageFields],
    ) -> WebhookDelivery:
        """Send a chat message's event; takes ``message_event``'s arguments."""
        return await self.send_event(self.message_event(text, **fields), fault=fault, retry=retry)

    async def send_card_action(
        self,
        value: dict[str, Any] | str,
        *,
        retry: bool = True,
        **fields: Unpack[CardActionFields],
    ) -> WebhookDelivery:
        """Send a card callback; takes ``card_action_event``'s arguments."""
        return await self.send_event(self.card_action_event(value, **fields), retry=retry)

    async def verify_url(
        self, challenge: str | None = None, *, encrypt: bool | None = None
    ) -> WebhookAttempt:
        """Send ``url_verification`` once, as saving the request URL in the console does."""
        return await self.post(self.seal(self.url_verification(challenge), encrypt=encrypt))


def lark_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """Lark's ``X-Lark-Signature``: hex SHA-256 of timestamp + nonce + encrypt key + body."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def lark_encrypt(plaintext: bytes, encrypt_key: str) -> str:
    """Encrypt as Lark does: base64 of a random IV and the AES-256-CBC cipher text."""
    iv = os.urandom(_BLOCK)
    padder = padding.PKCS7(_BLOCK * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    key = hashlib.sha256(encrypt_key.encode()).digest()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


def _dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _with_token(payload: dict[str, Any], token: str) -> dict[str, Any]:
    if payload.get("schema"):
        return {**payload, "header": {**payload.get("header", {}), "token": token}}
    return {**payload, "token": token}

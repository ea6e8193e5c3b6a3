"""The webhook endpoint: Lark POSTs events and card callbacks, each verified before admission.

One request, in order: the client address (``X-Forwarded-For`` only from a trusted proxy),
the body read with the size limit enforced while reading, verification
(:func:`~larkbot.sources.webhook._verify.verify_request`), then either the challenge answer
or the frame handed to admission with a deadline under Lark's 3 s. Admission's 200 answers
200 (with the ack's data as the body, for card callbacks); anything else answers 503 so Lark
re-pushes the event later (15 s, 5 min, 1 h, 6 h).

A refused request gets a 4xx with a short JSON reason and one log line naming the reason
and the client address, nothing from the request itself. Refusals count against a budget
per client address; once it is spent the address gets 429 with ``Retry-After`` until its
window ends. Verified requests are never counted nor throttled.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from cachetools import TTLCache
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from larkbot.config import ConfigError, EventsSettings
from larkbot.core.frames import Ack, FrameHandler, InboundFrame
from larkbot.ops.metrics import ACK_LATENCY, WEBHOOK_REQUESTS
from larkbot.sources.webhook._verify import (
    Challenge,
    Rejected,
    Verification,
    WebhookKeys,
    verify_request,
)

__all__ = ["ACK_TIMEOUT_SECONDS", "WebhookEndpoint", "webhook_routes"]

_log = logging.getLogger("larkbot.webhook")

ACK_TIMEOUT_SECONDS = 2.5
"""How long admission may take before the request is answered 503 (Lark waits 3 s)."""

_TIMESTAMP = "x-lark-request-timestamp"
_NONCE = "x-lark-request-nonce"
_SIGNATURE = "x-lark-signature"
_SUCCESS = b'{"msg":"success"}'
_JSON = "application/json"
_WINDOW_SECONDS = 60.0
# Bounds the memory an address-hopping client can make the budget use; the least recently
# seen addresses are forgotten first.
_MAX_TRACKED_CLIENTS = 4096
_TRACE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookEndpoint:
    """Receives Lark's POSTs on ``path`` and hands verified events to ``handler``."""

    def __init__(
        self,
        settings: EventsSettings,
        handler: FrameHandler,
        *,
        path: str | None = None,
        ack_timeout: float = ACK_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare the endpoint; raises :class:`ConfigError` without a verification token.

        :param path: the route's path; default ``settings.webhook_path``
        :param ack_timeout: seconds admission may take before the answer is 503
        :param clock: monotonic seconds, for the failure budget's windows
        """
        token = settings.verification_token
        if token is None or not token.get_secret_value().strip():
            raise ConfigError(
                "events.verification_token is not set: the webhook needs the app's Verification "
                "Token (LARK_VERIFICATION_TOKEN)."
            )
        encrypt_key = settings.encrypt_key.get_secret_value() if settings.encrypt_key else ""
        self.path = path or settings.webhook_path
        self._keys = WebhookKeys(token.get_secret_value(), encrypt_key)
        self._handler = handler
        self._max_body = settings.max_body_bytes
        self._trusted = settings.trusted_networks()
        self._ack_timeout = ack_timeout
        self._budget = _FailureBudget(settings.failure_budget_per_minute, clock)

    def routes(self) -> list[Route]:
        """The route to mount on the HTTP port: ``POST path``."""
        return [Route(self.path, self.handle, methods=["POST"], name="webhook")]

    async def handle(self, request: Request) -> Response:
        """Answer one request from Lark (or from anyone who found the URL)."""
        received_at = time.monotonic()
        # One deadline for the whole request, reading included: Lark gives up after 3 s.
        deadline = anyio.current_time() + self._ack_timeout
        client = self._client_of(request)
        result: Verification | None = None
        with anyio.move_on_at(deadline):
            try:
                body = await _read_capped(request, self._max_body)
            except ClientDisconnect:
                result = Rejected(400, "bad_body", "client left before sending the body")
            else:
                if body is None:
                    result = Rejected(413, "too_large", f"body larger than {self._max_body} bytes")
                else:
                    result = verify_request(
                        body,
                        keys=self._keys,
                        timestamp=request.headers.get(_TIMESTAMP),
                        nonce=request.headers.get(_NONCE),
                        signature=request.headers.get(_SIGNATURE),
                        max_body_bytes=self._max_body,
                    )
        if result is None:
            result = Rejected(408, "bad_body", "body not received in time")
        if isinstance(result, Rejected):
            return self._refuse(result, client)
        if isinstance(result, Challenge):
            WEBHOOK_REQUESTS.labels(outcome="challenge").inc()
            _log.info("answered the url_verification challenge from %s", client)
            return Response(result.body, media_type=_JSON)
        frame = InboundFrame(
            frame_id=uuid.uuid4().hex,
            frame_type="event",
            trace_id=_trace_id(request),
            payload=result.payload,
            received_at=received_at,
            conn_id="webhook",
        )
        return await self._admit(frame, deadline)

    async def _admit(self, frame: InboundFrame, deadline: float) -> Response:
        try:
            return await self._admit_within(frame, deadline)
        finally:
            # Admission's answer is the ack, as on the long connection: same histogram.
            ACK_LATENCY.observe(time.monotonic() - frame.received_at)

    async def _admit_within(self, frame: InboundFrame, deadline: float) -> Response:
        ack: Ack | None = None
        with anyio.move_on_at(deadline):
            try:
                ack = await self._handler(frame)
            except Exception:
                # A failure inside admission must not become uvicorn's bare 500: answer so
                # that Lark retries, and keep the traceback for the operator.
                _log.exception(
                    "admission failed on webhook frame %s; answering 503 so Lark retries",
                    frame.frame_id,
                )
                return _busy()
        if ack is None:
            _log.warning(
                "webhook frame %s was not taken within %.1f s; answering 503 so Lark retries",
                frame.frame_id,
                self._ack_timeout,
            )
            return _busy()
        if ack.code != 200:
            _log.info(
                "webhook frame %s refused by admission (code %d); answering 503 so Lark retries",
                frame.frame_id,
                ack.code,
            )
            return _busy()
        WEBHOOK_REQUESTS.labels(outcome="ok").inc()
        return Response(_SUCCESS if ack.data is None else ack.data, media_type=_JSON)

    def _refuse(self, rejected: Rejected, client: str) -> Response:
        throttle = self._budget.charge(client)
        if throttle is None:
            WEBHOOK_REQUESTS.labels(outcome=rejected.outcome).inc()
            _log.warning(
                "refused a webhook request from %s (%s): %s",
                client,
                rejected.outcome,
                rejected.reason,
            )
            return JSONResponse({"msg": rejected.reason}, status_code=rejected.status)
        retry_after, first = throttle
        WEBHOOK_REQUESTS.labels(outcome="throttled").inc()
        if first:
            # One line per window, not per request: a flood must not flood the log too.
            _log.warning(
                "throttling %s for %d s: more than %d failed webhook requests in a minute",
                client,
                retry_after,
                self._budget.per_window,
            )
        return JSONResponse(
            {"msg": "too many failed requests"},
            status_code=429,
            headers={"Retry-After": str(retry_after)},
        )

    def _client_of(self, request: Request) -> str:
        peer = request.client.host if request.client else ""
        if not self._trusted or not _is_in(peer, self._trusted):
            return _shown(peer) if peer else "unknown"
        # The proxy appends the address it saw; hops left of it are the client's to forge,
        # so the first untrusted hop from the right is the client.
        hops = [
            hop.strip()
            for value in request.headers.getlist("x-forwarded-for")
            for hop in value.split(",")
            if hop.strip()
        ]
        for hop in reversed(hops):
            if not _is_in(hop, self._trusted):
                return _shown(hop)
        return _shown(hops[0]) if hops else _shown(peer)


def webhook_routes(
    settings: EventsSettings,
    handler: FrameHandler,
    *,
    path: str | None = None,
    ack_timeout: float = ACK_TIMEOUT_SECONDS,
) -> list[Route]:
    """Return the webhook's route, to mount on the HTTP port (``build_ops_app(routes=...)``).

    :param settings: the ``events`` section (keys, path, limits, trusted proxies)
    :param handler: admission; its :class:`Ack` decides the HTTP answer
    :param path: overrides ``settings.webhook_path``
    :param ack_timeout: seconds admission may take before the answer is 503
    """
    return WebhookEndpoint(settings, handler, path=path, ack_timeout=ack_timeout).routes()


def _busy() -> Response:
    WEBHOOK_REQUESTS.labels(outcome="refused_overload").inc()
    return JSONResponse({"msg": "busy, retry later"}, status_code=503)


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """Read the body, or return ``None`` as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_in(text: str, networks: tuple[_Network, ...]) -> bool:
    address = _address(text)
    return address is not None and any(address in network for network in networks)


def _shown(text: str) -> str:
    # What goes into the budget's key and the log: a normalised address, or a bounded
    # token when a proxy forwarded something that is not one.
    address = _address(text)
    return str(address) if address is not None else text[:64]


def _trace_id(request: Request) -> str:
    value = request.headers.get("x-request-id", "")
    return value if _TRACE_ID.fullmatch(value) else ""


@dataclass(slots=True)
class _Window:
    started: float
    failures: int = 0


class _FailureBudget:
    """Failed requests per client address in fixed one-minute windows, in bounded memory."""

    def __init__(self, per_window: int, clock: Callable[[], float]) -> None:
        self.per_window = per_window
        self._clock = clock
        self._windows: TTLCache[str, _Window] = TTLCache(
            maxsize=_MAX_TRACKED_CLIENTS, ttl=_WINDOW_SECONDS, timer=clock
        )

    def charge(self, client: str) -> tuple[int, bool] | None:
        """Count one failure of ``client``.

        Returns ``None`` while its budget lasts, else the whole seconds until its window
        ends (at least 1) and whether this is the first refusal past the budget.
        """
        now = self._clock()
        window = self._windows.get(client)
        if window is None:
            # Mutated in place from now on: re-inserting would restart the entry's expiry.
            window = self._windows[client] = _Window(started=now)
        window.failures += 1
        if window.failures <= self.per_window:
            return None
        remaining = window.started + _WINDOW_SECONDS - now
        return max(1, int(remaining + 0.999)), window.failures == self.per_window + 1

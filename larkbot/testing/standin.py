"""A local stand-in of the Lark platform: long connection, OpenAPI, and a record of both.

One starlette app served by an embedded uvicorn inside the caller's event loop:

- ``POST /callback/ws/endpoint``: endpoint discovery of the long connection;
- ``/ws``: the long connection itself (binary ``pbbp2.Frame`` messages: ping/pong,
  event delivery in cluster mode, acks);
- ``/open-apis/...``: tenant token, bot info, user info (for user access tokens a test
  issues with ``issue_user_token``) and the ``im/v1`` message routes, plus any
  ``OpenApiRoute`` added with ``extra_routes=`` or ``add_routes()``.

Everything it receives is recorded in plain lists (``acks``, ``replies``, ``patches``,
``reactions``, ``api_calls``) and counters, and faults can be switched on from the test:
refused credentials, refused handshakes, busy endpoint, silent pongs, dropped sockets,
failing or rate-limited API calls, invalidated tokens, re-delivery of un-acked events.

Choices where the platform's exact behaviour is not pinned down:

- Token errors on the OpenAPI answer HTTP 400 with code 99991661 (no token) or 99991663
  (unknown, invalidated or expired token). Request errors answer HTTP 400 as well.
- A refused WebSocket handshake answers HTTP 403 whatever its ``handshake-status``.
- ``fail_next`` without ``route`` never fails the tenant token route.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import InitVar, dataclass, field, replace
from itertools import count
from typing import Any, Unpack

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from larkbot.core.frames import ACK_OK
from larkbot.ops._uvicorn import EmbeddedServer
from larkbot.sources.longconn.frames import (
    Frame,
    FrameMethod,
    FrameType,
    decode_frame,
    encode_frame,
    headers_of,
)
from larkbot.testing._cardkit import CardKit
from larkbot.testing._events import (
    CardActionFields,
    MessageFields,
    build_card_action_event,
    build_message_event,
    event_ids,
)
from larkbot.testing._im import Messaging
from larkbot.testing._lifecycle import AsyncLifecycle
from larkbot.testing._openapi import OpenApi, OpenApiRoute
from larkbot.testing._records import (
    AckRecord,
    ApiCallRecord,
    OutboundRecord,
    PatchRecord,
    ReactionRecord,
    ReplyRecord,
)
from larkbot.testing._serving import ServedApp

__all__ = ["LarkStandIn"]

logger = logging.getLogger("larkbot.testing")

# Codes of endpoint discovery and of a refused handshake (lark_oapi.ws.const).
_CODE_SYSTEM_BUSY = 1
_CODE_BAD_CREDENTIALS = 10003
_AUTH_FAILED = 514
_EXCEED_CONN_LIMIT = 1000040350

_CONNECT_WAIT_SECONDS = 5.0
_SHUTDOWN_GRACE_SECONDS = 0.2
# Redeliver and reply lookups only need recent messages; bound what a long benchmark keeps.
_REMEMBERED_EVENTS = 100_000


@dataclass(eq=False, slots=True)
class _Connection:
    conn_id: str
    service_id: int
    websocket: WebSocket
    transport: asyncio.BaseTransport | None
    open: bool = True

    async def send(self, data: bytes) -> None:
        try:
            await self.websocket.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self.open = False
            raise _ConnectionGoneError(self.conn_id) from exc


class _ConnectionGoneError(Exception):
    """The chosen connection closed while a frame was being written to it."""


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """An event to deliver: its payload, its ids, and how many deliveries came before it."""

    payload: bytes
    frame_type: str
    event_id: str | None
    chat_message_id: str | None
    attempt: int = 0

    def next_attempt(self, new_event_id: bool) -> _Outgoing:
        """This event once more, under a fresh ``event_id`` if ``new_event_id``."""
        payload, event_id = self.payload, self.event_id
        if new_event_id and event_id is not None:
            payload, event_id = _with_new_event_id(payload)
        return replace(self, payload=payload, event_id=event_id, attempt=self.attempt + 1)


@dataclass(eq=False, slots=True)
class _Delivery:
    """One delivery of an event to one connection, waiting for its ack."""

    event: _Outgoing
    frame_id: str
    conn_id: str
    delivered_at: float = 0.0
    ack_code: int | None = None
    acked: anyio.Event | None = None

    def ack_record(
        self, acked_at: float, code: int, biz_rt: int | None, data: bytes | None
    ) -> AckRecord:
        """Record the ack that arrived at ``acked_at`` (monotonic) for this delivery."""
        return AckRecord(
            frame_id=self.frame_id,
            chat_message_id=self.event.chat_message_id,
            event_id=self.event.event_id,
            code=code,
            delivered_at=self.delivered_at,
            acked_at=acked_at,
            latency_ms=(acked_at - self.delivered_at) * 1000.0,
            biz_rt=biz_rt,
            conn_id=self.conn_id,
            data=data,
        )


async def _send_close(websocket: WebSocket) -> None:
    with suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.close(1001)


def _split(payload: bytes, parts: int) -> list[bytes]:
    if parts < 1:
        raise ValueError("fragments must be at least 1")
    if parts > max(1, len(payload)):
        raise ValueError(f"cannot split {len(payload)} bytes into {parts} fragments")
    size, extra = divmod(len(payload), parts)
    chunks, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        chunks.append(payload[start:end])
        start = end
    return chunks


def _with_new_event_id(payload: bytes) -> tuple[bytes, str]:
    """The event in ``payload`` under a fresh ``event_id``, as the platform's retries may be."""
    event = json.loads(payload)
    event["header"]["event_id"] = event_id = uuid.uuid4().hex
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode(), event_id


def _handshake_msg(status: int, auth_code: int | None) -> str:
    if status == _AUTH_FAILED:
        return "exceed connection limit" if auth_code == _EXCEED_CONN_LIMIT else "auth failed"
    return "forbidden" if status == 403 else "handshake refused"


class _ListeningPort:
    """``LarkStandIn.port``: set by the constructor, then read-only.

    The stand-in keeps the port in ``_port`` and replaces a requested ``0`` with the port
    it really listens on when it starts.
    """

    def __get__(self, instance: LarkStandIn | None, owner: type | None = None) -> int:
        # On the class: the constructor's default (a free port).
        return 0 if instance is None else instance._port

    def __set__(self, instance: LarkStandIn, value: int) -> None:
        if hasattr(instance, "_port"):
            raise AttributeError("the stand-in's port is read-only")
        instance._port = value


@dataclass(eq=False, kw_only=True)
class LarkStandIn(AsyncLifecycle):
    """A local Lark platform for tests, the console and the benchmark.

    Use it as an async context manager; ``url`` is what the daemon takes as its Lark
    domain, ``port`` the port it listens on (the real one once started with ``port=0``).
    Switches (``stop_ponging``, ``pong_config``, ``refuse_credentials``,
    ``refuse_handshake``, ``endpoint_busy_times``, ``redeliver_after``, ``ack_timeout``,
    ``redeliver_new_event_id``, ``connect_wait``, ``max_connections``,
    ``ping_interval``...) are plain attributes read when they matter; :meth:`cluster_mode`
    sets the re-delivery ones as the platform behaves towards several replicas.
    """

    app_id: str = "cli_test"
    app_secret: str = field(default="LocalStandInAppSecret00000000001", repr=False)
    bot_open_id: str = "ou_bot"
    bot_name: str = "larkbot"
    ping_interval: int = 120
    reconnect_interval: int = 120
    reconnect_nonce: int = 30
    host: str = "127.0.0.1"
    port: _ListeningPort = _ListeningPort()
    token_ttl: InitVar[int] = 7200
    tenant_key: str = "tenant"
    max_connections: int = 50
    extra_routes: InitVar[Sequence[OpenApiRoute]] = ()
    _port: int = field(init=False, repr=False)

    def __post_init__(self, token_ttl: int, extra_routes: Sequence[OpenApiRoute]) -> None:
        # Switches a test flips to make the platform misbehave.
        self.stop_ponging = False
        self.pong_config: dict[str, Any] | None = None
        self.refuse_credentials = False
        self.refuse_handshake: tuple[int, int | None] | None = None
        self.endpoint_busy_times = 0
        self.redeliver_after: float | None = None
        self.ack_timeout = 3.0
        self.redelivery_limit = 4
        self.redeliver_new_event_id = False
        self.connect_wait = _CONNECT_WAIT_SECONDS
        # Names ``authen/v1/user_info`` gives the users of ``issue_user_token``.
        self.user_names: dict[str, str] = {}

        # Records and counters.
        self.acks: list[AckRecord] = []
        # Card callbacks sent by ``send_card_action``, newest last (to redeliver one).
        self.card_actions: list[dict[str, Any]] = []
        self.pings = 0
        self.handshakes = 0
        self.refused_handshakes = 0
        self.endpoint_calls = 0
        self.bad_frames = 0
        self.unmatched_acks = 0
        self.redeliveries = 0

        self._service_id = random.randint(10_000_000, 99_999_999)
        self._devices = count(1)
        self._frame_seq = count(1)
        self._openapi = OpenApi(self, token_ttl)
        self._messaging = Messaging(self.app_id, self.tenant_key)
        self._openapi.routes.extend(self._messaging.routes())
        self.cardkit = CardKit()
        self._messaging.card_entity = self.cardkit.card_of
        self._openapi.routes.extend(self.cardkit.routes())
        self._openapi.routes.extend(extra_routes)
        self._connections: list[_Connection] = []
        self._deliveries: dict[str, _Delivery] = {}
        self._accepted: dict[str, anyio.Event] = {}
        self._payloads: dict[str, bytes] = {}
        self._served = ServedApp("the Lark stand-in")

    # ----------------------------------------------------------------------------- lifecycle

    async def _start(self) -> None:
        routes = [
            Route("/callback/ws/endpoint", self._endpoint, methods=["POST"]),
            WebSocketRoute("/ws", self._long_connection),
            *self._openapi.starlette_routes(),
        ]
        self._port = await self._served.start(
            Starlette(routes=routes), self.host, self._port, websockets=True
        )
        logger.info("Lark stand-in listening on %s", self.url)

    async def _stop(self) -> None:
        await self._served.stop(grace=2.0, before_exit=self._close_connections)

    async def _close_connections(self, server: EmbeddedServer) -> None:
        # Give clients a moment to get the close frame and answer it, then cut the rest,
        # so a client that does not read cannot hold the shutdown: neither by leaving the
        # close frame stuck behind a full write buffer nor for uvicorn's close timeout.
        with anyio.move_on_after(_SHUTDOWN_GRACE_SECONDS):
            async with anyio.create_task_group() as tg:
                for connection in list(self._connections):
                    connection.open = False
                    tg.start_soon(_send_close, connection.websocket)
            # uvicorn signals no event when a connection goes; polling is all there is.
            while server.websocket_transports():  # noqa: ASYNC110
                await anyio.sleep(0.01)
        for _scope, transport in server.websocket_transports():
            transport.abort()

    # --------------------------------------------------------------------------- properties

    @property
    def url(self) -> str:
        """Base URL of the stand-in (``http://127.0.0.1:<port>``), the daemon's Lark domain."""
        if self.port == 0:
            raise RuntimeError("the stand-in has not started; use it as `async with`")
        return f"http://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Number of long connections open now."""
        return sum(1 for connection in self._connections if connection.open)

    @property
    def connection_ids(self) -> list[str]:
        """The ids of the long connections open now, oldest first."""
        return [connection.conn_id for connection in self._connections if connection.open]

    @property
    def replies(self) -> list[ReplyRecord]:
        """Replies and sends, newest last."""
        return self._messaging.replies

    @property
    def patches(self) -> list[PatchRecord]:
        """Edits of posted messages, newest last."""
        return self._messaging.patches

    @property
    def reactions(self) -> list[ReactionRecord]:
        """Reactions added and deleted, newest last."""
        return self._messaging.reactions

    @property
    def api_calls(self) -> list[ApiCallRecord]:
        """Every OpenAPI request, newest last."""
        return self._openapi.api_calls

    @property
    def suppressed_duplicates(self) -> int:
        """Replies and sends refused as already posted because their ``uuid`` was seen."""
        return self._messaging.suppressed_duplicates

    # ------------------------------------------------------------------------ OpenAPI control

    def add_routes(self, *routes: OpenApiRoute) -> None:
        """Add OpenAPI routes; only before the stand-in starts."""
        if self._served.running:
            raise RuntimeError("add routes before the stand-in starts")
        self._openapi.routes.extend(routes)

    def fail_next(
        self,
        n: int,
        *,
        status: int = 500,
        route: str | None = None,
        code: int | None = None,
        reset_seconds: float = 1,
    ) -> None:
        """Make the next ``n`` OpenAPI calls fail (only calls to ``route`` when given).

        429 answers code 99991400 with ``x-ogw-ratelimit-limit`` and
        ``x-ogw-ratelimit-reset: reset_seconds``; other statuses answer ``code`` (default:
        the status) in a JSON error body; ``status=200`` with ``code`` answers that Lark
        error in a successful HTTP response. Without ``route`` the tenant token route is
        never failed.
        """
        self._openapi.add_fault(
            n, status=status, route=route, code=code, reset_seconds=reset_seconds
        )

    def invalidate_tokens(self) -> None:
        """Make every tenant token issued so far invalid (code 99991663)."""
        self._openapi.tokens.invalidate()

    def chat_messages(self, container_type: str, container_id: str) -> list[dict[str, Any]]:
        """The messages of a chat or thread this stand-in delivered or was sent, as listed.

        ``container_type`` is ``chat`` or ``thread``, as in the message list API.
        """
        return self._messaging.history(container_type, container_id)

    def issue_user_token(self, open_id: str, *, name: str = "", ttl: float = 7200.0) -> str:
        """Return a user access token acting as ``open_id`` for ``ttl`` seconds.

        Calls made with it are recorded with ``user_open_id``; ``authen/v1/user_info``
        answers ``open_id`` and ``name`` for it.
        """
        if name:
            self.user_names[open_id] = name
        return self._openapi.user_tokens.issue(open_id, time.monotonic(), ttl)

    def watch_outbound(
        self, max_buffer: int = 1000
    ) -> AbstractAsyncContextManager[MemoryObjectReceiveStream[OutboundRecord]]:
        """Stream replies, sends, patches and reactions as they are recorded.

        ``async with lark.watch_outbound() as records: async for record in records: ...``.
        A watcher that falls ``max_buffer`` records behind loses the newest ones.
        """
        return self._messaging.watch(max_buffer)

    def cluster_mode(
        self,
        *,
        ack_timeout: float = 3.0,
        redeliver_after: float = 0.5,
        redelivery_limit: int = 1000,
        connect_wait: float = 120.0,
    ) -> None:
        """Deliver as the platform does to an app with several connections (replicas).

        Each event goes to one random open connection; an event acked with a non-200 code,
        or not acked within ``ack_timeout`` seconds, is delivered again ``redeliver_after``
        seconds later with a new ``event_id`` (the same chat message), to a connection
        chosen anew, up to ``redelivery_limit`` times. With no connection open, a delivery
        waits up to ``connect_wait`` seconds for one.
        """
        self.ack_timeout = ack_timeout
        self.redeliver_after = redeliver_after
        self.redelivery_limit = redelivery_limit
        self.redeliver_new_event_id = True
        self.connect_wait = connect_wait

    def accepted(self, message_id: str) -> bool:
        """Whether some delivery of chat message ``message_id`` was acked with 200."""
        event = self._accepted.get(message_id)
        return event is not None and event.is_set()

    async def wait_accepted(
        self,
        message_id: str,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until a delivery of chat message ``message_id`` is acked with 200."""
        event = self._accepted.setdefault(message_id, anyio.Event())
        with anyio.fail_after(timeout):
            await event.wait()

    # ------------------------------------------------------------------------- chat side

    def build_message_event(
        self, text: str = "", **fields: Unpack[MessageFields]
    ) -> dict[str, Any]:
        """Build the ``im.message.receive_v1`` event of one chat message, without sending it.

        The keywords are :class:`~larkbot.testing._events.MessageFields`; mention
        placeholders missing from ``text`` are put in front of it.
        """
        return build_message_event(
            text,
            app_id=self.app_id,
            tenant_key=self.tenant_key,
            bot_open_id=self.bot_open_id,
            bot_name=self.bot_name,
            **fields,
        )

    async def send_card_action(
        self,
        value: dict[str, Any] | str,
        *,
        frame_type: str = "event",
        event: dict[str, Any] | None = None,
        conn_id: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
        **fields: Unpack[CardActionFields],
    ) -> AckRecord:
        """Click a card's component as ``operator_open_id``; return the ack (with the answer).

        The keywords are :class:`~larkbot.testing._events.CardActionFields`. The callback
        goes over the long connection as Lark sends it: a data frame of ``frame_type``
        (``event``; some deployments use ``card``). ``event`` re-sends a callback built
        before (a redelivery, same ``event_id``). ``conn_id`` picks the connection (one of
        :attr:`connection_ids`: a chosen replica) instead of a random one.
        """
        if event is None:
            event = build_card_action_event(
                value, app_id=self.app_id, tenant_key=self.tenant_key, **fields
            )
        self.card_actions.append(event)
        frame_id = await self.push_event(event, frame_type=frame_type, conn_id=conn_id)
        await self.wait_for(lambda: any(a.frame_id == frame_id for a in self.acks), timeout)
        return next(a for a in self.acks if a.frame_id == frame_id)

    async def send_text(
        self, text: str = "", *, fragments: int = 1, **fields: Unpack[MessageFields]
    ) -> str:
        """Deliver a chat message to one connected client; return its ``om_`` message id.

        Takes the arguments of ``build_message_event`` plus ``fragments``.
        """
        event = self.build_message_event(text, **fields)
        await self.push_event(event, fragments=fragments)
        return str(event["event"]["message"]["message_id"])

    async def push_event(
        self,
        event: dict[str, Any],
        *,
        fragments: int = 1,
        frame_type: str = "event",
        conn_id: str | None = None,
    ) -> str:
        """Deliver an event (any dict, JSON-encoded) to one random connected client.

        Waits up to 5 s for a client to be connected (``TimeoutError`` otherwise). With
        ``fragments > 1`` the payload goes out in that many frames sharing one frame
        ``message_id``. ``conn_id`` delivers to that connection only. Returns the frame id.
        """
        payload = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        event_id, chat_message_id = event_ids(event)
        if chat_message_id is not None:
            self._remember(chat_message_id, event, payload)
        return await self._deliver(
            _Outgoing(payload, frame_type, event_id, chat_message_id), fragments, conn_id=conn_id
        )

    async def redeliver(self, message_id: str, *, new_event_id: bool = False) -> str:
        """Deliver a chat message's event again, as the platform's retries do.

        The same ``event_id`` unless ``new_event_id``. Returns the frame id.
        """
        payload = self._payloads.get(message_id)
        if payload is None:
            raise KeyError(f"no event was delivered for chat message {message_id}")
        event_id, _ = event_ids(json.loads(payload))
        if new_event_id:
            payload, event_id = _with_new_event_id(payload)
        self.redeliveries += 1
        return await self._deliver(_Outgoing(payload, FrameType.EVENT.value, event_id, message_id))

    def remember_event(self, event: dict[str, Any]) -> None:
        """Note a chat message's event delivered by another route (the webhook driver).

        Replies to the message then land in its chat, as they do for events pushed here.
        """
        if event_ids(event)[1] is not None:
            self._messaging.remember(event["event"]["message"])

    async def push_raw(self, data: bytes) -> None:
        """Write raw bytes (usually garbage) as a binary message to every open connection."""
        for connection in self._open_connections():
            with suppress(_ConnectionGoneError):
                await connection.send(data)

    async def drop_connections(self) -> None:
        """Cut every open long connection at once, without a close frame."""
        for connection in self._open_connections():
            connection.open = False
            if connection.transport is not None:
                connection.transport.abort()
            else:
                with suppress(WebSocketDisconnect, RuntimeError, OSError):
                    await connection.websocket.close(1011)

    # A test's one-line wait reads best with its limit in it, hence ``timeout`` arguments.
    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until ``predicate()`` is true; ``TimeoutError`` after ``timeout`` seconds.

        It polls every 5 ms: a predicate may read any record, so no event could cover it.
        """
        with anyio.fail_after(timeout):
            while not predicate():  # noqa: ASYNC110
                await anyio.sleep(0.005)

    async def wait_connected(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109
        *,
        count: int = 1,
    ) -> None:
        """Wait until at least ``count`` long connections are open."""
        await self.wait_for(lambda: self.connections >= count, timeout)

    # ------------------------------------------------------------------- endpoint discovery

    async def _endpoint(self, request: Request) -> Response:
        self.endpoint_calls += 1
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            return JSONResponse({"code": _CODE_BAD_CREDENTIALS, "msg": "invalid request body"})
        if self.endpoint_busy_times > 0:
            self.endpoint_busy_times -= 1
            return JSONResponse({"code": _CODE_SYSTEM_BUSY, "msg": "system busy"})
        if (
            self.refuse_credentials
            or body.get("AppID") != self.app_id
            or body.get("AppSecret") != self.app_secret
        ):
            return JSONResponse(
                {"code": _CODE_BAD_CREDENTIALS, "msg": "invalid app_id or app_secret"}
            )
        device_id = f"{next(self._devices)}{random.randint(100_000, 999_999)}"
        # The address the client reached us on, so the URL also works behind port mapping.
        url = f"ws://{request.url.netloc}/ws?device_id={device_id}&service_id={self._service_id}"
        config = {
            "ReconnectCount": -1,
            "ReconnectInterval": self.reconnect_interval,
            "ReconnectNonce": self.reconnect_nonce,
            "PingInterval": self.ping_interval,
        }
        return JSONResponse({"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": config}})

    # ---------------------------------------------------------------------- long connection

    def _handshake_refusal(self) -> Response | None:
        refusal = self.refuse_handshake
        if refusal is None and self.connections >= self.max_connections:
            refusal = (_AUTH_FAILED, _EXCEED_CONN_LIMIT)
        if refusal is None:
            return None
        status, auth_code = refusal
        headers = {"handshake-status": str(status), "handshake-msg": _handshake_msg(*refusal)}
        if auth_code is not None:
            headers["handshake-autherrcode"] = str(auth_code)
        return Response(status_code=403, headers=headers)

    def _server_transports(self) -> list[tuple[dict[str, Any], asyncio.BaseTransport]]:
        server = self._served.server
        return server.websocket_transports() if server is not None else []

    async def _long_connection(self, websocket: WebSocket) -> None:
        refusal = self._handshake_refusal()
        if refusal is not None:
            self.refused_handshakes += 1
            await websocket.send_denial_response(refusal)
            return
        await websocket.accept()
        self.handshakes += 1
        query = websocket.query_params
        try:
            service_id = int(query.get("service_id", self._service_id))
        except ValueError:
            service_id = self._service_id
        transport = next(
            (t for scope, t in self._server_transports() if scope is websocket.scope), None
        )
        connection = _Connection(
            conn_id=query.get("device_id") or f"conn{next(self._devices)}",
            service_id=service_id,
            websocket=websocket,
            transport=transport,
        )
        self._connections.append(connection)
        logger.debug("long connection %s opened", connection.conn_id)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is None:
                    self.bad_frames += 1
                    continue
                await self._on_client_frame(connection, data)
        except _ConnectionGoneError:
            pass
        finally:
            connection.open = False
            self._connections.remove(connection)
            logger.debug("long connection %s closed", connection.conn_id)

    async def _on_client_frame(self, connection: _Connection, data: bytes) -> None:
        try:
            frame = decode_frame(data)
        except ValueError:
            self.bad_frames += 1
            return
        headers = headers_of(frame)
        if frame.method == FrameMethod.CONTROL and headers.get("type") == FrameType.PING:
            self.pings += 1
            if not self.stop_ponging:
                await connection.send(encode_frame(self._pong(frame.service)))
        elif frame.method == FrameMethod.DATA and "message_id" in headers:
            self._on_ack(frame, headers)
        else:
            self.bad_frames += 1

    def _pong(self, service: int) -> Any:
        pong = Frame(SeqID=0, LogID=0, service=service, method=FrameMethod.CONTROL)
        header = pong.headers.add()
        header.key, header.value = "type", FrameType.PONG.value
        if self.pong_config is not None:
            # A new ClientConfig rides on one pong only, as the platform pushes it.
            pong.payload = json.dumps(self.pong_config, separators=(",", ":")).encode()
            self.pong_config = None
        return pong

    def _on_ack(self, frame: Any, headers: dict[str, str]) -> None:
        now = time.monotonic()
        delivery = self._deliveries.pop(headers["message_id"], None)
        if delivery is None:
            self.unmatched_acks += 1
            return
        try:
            body = json.loads(frame.payload)
            code = int(body["code"])
            data = base64.b64decode(body["data"], validate=True) if body.get("data") else None
        except (ValueError, TypeError, KeyError, binascii.Error):
            self.bad_frames += 1
            return
        try:
            biz_rt: int | None = int(headers["biz_rt"])
        except (KeyError, ValueError):
            biz_rt = None
        self.acks.append(delivery.ack_record(now, code, biz_rt, data))
        delivery.ack_code = code
        message_id = delivery.event.chat_message_id
        if code == ACK_OK and message_id is not None:
            self._accepted.setdefault(message_id, anyio.Event()).set()
            if len(self._accepted) > _REMEMBERED_EVENTS:
                del self._accepted[next(iter(self._accepted))]
        if delivery.acked is not None:
            delivery.acked.set()

    # ---------------------------------------------------------------------------- delivery

    def _open_connections(self) -> list[_Connection]:
        return [connection for connection in self._connections if connection.open]

    def _remember(self, message_id: str, event: dict[str, Any], payload: bytes) -> None:
        message = event["event"]["message"]
        self._messaging.remember(message, event["event"].get("sender"))
        self._payloads.pop(message_id, None)
        self._payloads[message_id] = payload
        if len(self._payloads) > _REMEMBERED_EVENTS:
            del self._payloads[next(iter(self._payloads))]

    async def _deliver(
        self, event: _Outgoing, fragments: int = 1, *, conn_id: str | None = None
    ) -> str:
        chunks = _split(event.payload, fragments)
        frame_id = uuid.uuid4().hex
        trace_id = uuid.uuid4().hex[:16]
        while True:
            candidates = [
                connection
                for connection in self._open_connections()
                if conn_id is None or connection.conn_id == conn_id
            ]
            if conn_id is not None and not candidates:
                raise LookupError(f"no open long connection {conn_id}")
            if not candidates:
                await self.wait_connected(self.connect_wait)
                continue
            connection = random.choice(candidates)
            delivery = _Delivery(
                event=event,
                frame_id=frame_id,
                conn_id=connection.conn_id,
                acked=anyio.Event() if self.redeliver_after is not None else None,
            )
            # Registered before the last fragment goes out, so no ack can outrun it.
            self._deliveries[frame_id] = delivery
            try:
                await self._send_fragments(connection, delivery, chunks, trace_id)
            except _ConnectionGoneError:
                self._deliveries.pop(frame_id, None)
                continue
            break
        task_group = self._served.task_group
        if delivery.acked is not None and task_group is not None:
            task_group.start_soon(self._retry_unless_acked, delivery)
        return frame_id

    async def _send_fragments(
        self, connection: _Connection, delivery: _Delivery, chunks: list[bytes], trace_id: str
    ) -> None:
        total = str(len(chunks))
        for seq, chunk in enumerate(chunks):
            frame = Frame(
                SeqID=next(self._frame_seq),
                LogID=random.getrandbits(63),
                service=connection.service_id,
                method=FrameMethod.DATA,
                payload=chunk,
            )
            for key, value in (
                ("type", delivery.event.frame_type),
                ("message_id", delivery.frame_id),
                ("trace_id", trace_id),
                ("sum", total),
                ("seq", str(seq)),
            ):
                header = frame.headers.add()
                header.key, header.value = key, value
            delivery.delivered_at = time.monotonic()
            await connection.send(encode_frame(frame))

    async def _retry_unless_acked(self, delivery: _Delivery) -> None:
        """Re-deliver an event not acked with 200 in time, as the platform retries."""
        assert delivery.acked is not None
        with anyio.move_on_after(self.ack_timeout):
            await delivery.acked.wait()
        event = delivery.event
        if delivery.ack_code == ACK_OK or event.attempt >= self.redelivery_limit:
            return
        delay = self.redeliver_after
        if delay is None:
            return
        await anyio.sleep(delay)
        logger.debug(
            "re-delivering event %s (message %s), attempt %d",
            event.event_id,
            event.chat_message_id,
            event.attempt + 1,
            extra={"message_id": event.chat_message_id},
        )
        self.redeliveries += 1
        try:
            await self._deliver(event.next_attempt(self.redeliver_new_event_id))
        except TimeoutError:
            logger.warning(
                "event %s (message %s) not re-delivered: no client connected",
                event.event_id,
                event.chat_message_id,
                extra={"message_id": event.chat_message_id},
            )

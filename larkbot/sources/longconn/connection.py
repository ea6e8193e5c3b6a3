"""The long connection: dial out to Lark's event WebSocket and keep it alive.

Why our own and not ``lark_oapi.ws.Client``: that client binds an event loop at import,
blocks forever in ``start()``, has no clean stop, and acks only after a synchronous
handler returns (lark-oapi 1.7.x). This one runs inside the daemon's task group,
stops when cancelled, and hands each data frame to an async handler whose answer (an ack
code) it sends back at once.

Lifecycle of one :meth:`LongConnection.run`::

    discover endpoint ─▶ dial ─▶ session (receive │ ping │ watchdog) ─▶ drop ─▶ backoff ─┐
          ▲                                                                          │
          └──────────────────────────────────────────────────────────────────────────┘

A refused credential or handshake is a configuration error (:class:`LarkAuthError`) and
ends ``run`` at once: retrying cannot fix it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlparse

import anyio
from anyio.abc import TaskGroup
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.protocol import State

from larkbot.core.errors import EX_CONFIG, LarkbotError
from larkbot.core.frames import ACK_FAILED, Ack, FrameHandler, InboundFrame, InlineFrameHandler
from larkbot.core.retry import RetryPolicy
from larkbot.lark.client import LarkAPIError, LarkClient
from larkbot.ops import metrics
from larkbot.sources.longconn.frames import (
    FragmentAssembler,
    FrameMethod,
    FrameType,
    ack_frame,
    decode_frame,
    encode_frame,
    headers_of,
    ping_frame,
)

__all__ = [
    "ClientConfig",
    "FrameHandler",
    "LarkAuthError",
    "LongConnection",
    "TransientConnectError",
    "discover_endpoint",
]

log = logging.getLogger("larkbot.sources")

# Endpoint codes that mean "try again later" (1 busy, 1000040343 internal error);
# any other non-zero code is a configuration problem, and fatal.
_RETRYABLE_ENDPOINT_CODES = frozenset({1, 1000040343})
_HANDSHAKE_AUTH_FAILED = 514
_HANDSHAKE_FORBIDDEN = 403
_EXCEED_CONN_LIMIT = 1000040350
# A Lark event is at most a few hundred KB; fragments keep frames well under this.
_MAX_FRAME_BYTES = 8 * 1024 * 1024
# Data frames handled at once (admitted, or waiting for their ack to be sent). A slow store
# write for one frame never delays the ack of the next; past this many the receive loop
# waits, which pushes back on the socket instead of growing memory.
_MAX_FRAMES_IN_FLIGHT = 256


class LarkAuthError(LarkbotError):
    """Lark refused the app (credentials, permission, connection limit): not retryable."""

    exit_code = EX_CONFIG


class TransientConnectError(LarkbotError):
    """Dialling failed for a reason that may pass (busy, network, server error)."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The server's connection settings, from endpoint discovery and pongs (seconds)."""

    reconnect_count: int = -1
    reconnect_interval: float = 120.0
    reconnect_nonce: float = 30.0
    ping_interval: float = 120.0

    def merged(self, raw: dict[str, Any]) -> ClientConfig:
        """Return a copy updated from a ``ClientConfig`` JSON object; bad values are ignored."""
        names = {
            "ReconnectCount": "reconnect_count",
            "ReconnectInterval": "reconnect_interval",
            "ReconnectNonce": "reconnect_nonce",
            "PingInterval": "ping_interval",
        }
        changes: dict[str, Any] = {}
        for key, attr in names.items():
            value = raw.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if attr == "reconnect_count":
                changes[attr] = int(value)
            elif value > 0:
                changes[attr] = float(value)
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class _Endpoint:
    url: str
    conn_id: str
    service_id: int
    config: ClientConfig


class LongConnection:
    """Keeps one long connection open and feeds its data frames to ``handler``.

    :param client: the Lark client; endpoint discovery goes through its connection pool.
    :param handler: called once per complete data frame; its return value is the ack code.
    :param on_state: called with ``True`` when a session opens and ``False`` when it ends.
    :param missed_pongs: after this many ping intervals without a pong the socket is dead.
    """

    def __init__(
        self,
        *,
        client: LarkClient,
        handler: FrameHandler,
        on_state: Callable[[bool], None] | None = None,
        missed_pongs: int = 3,
    ) -> None:
        self._client = client
        self._handler = handler
        # A handler that takes frames inline (admission) is offered each frame in the
        # receive loop; any other gets a task per frame.
        self._offer = handler.offer if isinstance(handler, InlineFrameHandler) else None
        self._on_state = on_state or (lambda _up: None)
        self._missed_pongs = missed_pongs
        self._config = ClientConfig()
        self._assembler = FragmentAssembler()
        self._closing = False
        self._config_changed = anyio.Event()
        # Taken without a trip through the loop's queue while there is room: the next
        # frame's handler starts at once, not behind the answers' ready work.
        self._frames_in_flight = anyio.Semaphore(_MAX_FRAMES_IN_FLIGHT, fast_acquire=True)
        self._scope: anyio.CancelScope | None = None
        self.connected = False
        self.conn_id = ""
        self.sessions = 0

    @property
    def config(self) -> ClientConfig:
        """The server settings in force."""
        return self._config

    @property
    def routes(self) -> tuple[()]:
        """The long connection dials out: it serves no HTTP route."""
        return ()

    def close(self) -> None:
        """Stop reading: close the socket and make :meth:`run` return.

        Used by graceful shutdown, so the platform routes new events to other replicas.
        """
        self._closing = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        """Connect and stay connected until cancelled or :meth:`close` is called.

        :raises LarkAuthError: the app's credentials or connection were refused.
        :raises TransientConnectError: the server's ``ReconnectCount`` was used up.
        """
        attempt = 0
        with anyio.CancelScope() as scope:
            self._scope = scope
            while not self._closing:
                try:
                    endpoint = await self._discover()
                    await self._session(endpoint)
                    attempt = 0  # a session that opened resets the backoff
                except LarkAuthError:
                    raise
                except (TransientConnectError, OSError, ConnectionClosed, InvalidHandshake) as exc:
                    log.warning("long connection failed: %s", _short(exc))
                finally:
                    self._set_state(False)
                if self._closing:
                    break
                count = self._config.reconnect_count
                if count >= 0 and attempt >= count:
                    raise TransientConnectError(
                        f"could not reconnect after {count} attempts (server's ReconnectCount)"
                    )
                delay = self._backoff(attempt)
                attempt += 1
                metrics.RECONNECTS.inc()
                log.info("reconnecting in %.1f s (attempt %d)", delay, attempt)
                await anyio.sleep(delay)
        self._scope = None

    def _backoff(self, attempt: int) -> float:
        # Exponential from 1 s, capped by the server's ReconnectInterval, plus jitter bounded by
        # its ReconnectNonce so replicas dropped together do not reconnect together. Attempts
        # are counted here, against ReconnectCount; the policy only spaces them.
        interval = self._config.reconnect_interval
        policy = RetryPolicy(
            base_delay=min(1.0, interval),
            max_delay=interval,
            jitter=1.0,
            jitter_limit=self._config.reconnect_nonce,
        )
        return policy.backoff(attempt + 1)

    def _set_state(self, up: bool) -> None:
        if self.connected != up:
            self.connected = up
            metrics.CONNECTION_UP.set(1 if up else 0)
            self._on_state(up)

    async def _discover(self) -> _Endpoint:
        """``POST /callback/ws/endpoint``: where to dial, and the server's settings."""
        url, client_config = await _request_endpoint(self._client)
        query = parse_qs(urlparse(url).query)
        try:
            conn_id = query["device_id"][0]
            service_id = int(query["service_id"][0])
        except (KeyError, IndexError, ValueError):
            raise TransientConnectError("endpoint URL lacks device_id or service_id") from None
        if client_config is not None:
            self._config = self._config.merged(client_config)
        return _Endpoint(url, conn_id, service_id, self._config)

    async def _dial(self, endpoint: _Endpoint) -> ClientConnection:
        try:
            return await connect(
                endpoint.url,
                ping_interval=None,  # Lark pings at the application level (protobuf frames)
                max_size=_MAX_FRAME_BYTES,
                open_timeout=10,
                proxy=None,
                compression=None,
            )
        except InvalidStatus as exc:
            headers = exc.response.headers
            status = headers.get("handshake-status")
            msg = headers.get("handshake-msg", "")
            auth_code = headers.get("handshake-autherrcode")
            if status is not None and int(status) == _HANDSHAKE_AUTH_FAILED:
                if auth_code is not None and int(auth_code) == _EXCEED_CONN_LIMIT:
                    raise LarkAuthError(
                        "Lark refused the connection: the app already has the maximum of 50 "
                        "long connections; stop other replicas or old processes"
                    ) from None
                raise LarkAuthError(
                    f"Lark refused the connection handshake (auth failed: {msg}): check APP_ID "
                    "and APP_SECRET"
                ) from None
            if status is not None and int(status) == _HANDSHAKE_FORBIDDEN:
                raise LarkAuthError(
                    f"Lark refused the connection handshake (forbidden: {msg}): check that the "
                    "app is published and has event subscription by long connection enabled"
                ) from None
            raise TransientConnectError(
                f"handshake refused with HTTP {exc.response.status_code} {msg}".rstrip()
            ) from None

    async def _session(self, endpoint: _Endpoint) -> None:
        ws = await self._dial(endpoint)
        self.conn_id = endpoint.conn_id
        self.sessions += 1
        self._last_pong = time.monotonic()
        log.info("long connection open [conn_id=%s]", self.conn_id, extra={"conn_id": self.conn_id})
        try:
            self._set_state(True)
            acks = _AckWriter(ws, self._frames_in_flight.release)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._ping_loop, ws, endpoint.service_id)
                tg.start_soon(self._watchdog, ws)
                tg.start_soon(acks.run)
                await self._receive_loop(ws, tg, acks)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await ws.close()
            log.info(
                "long connection closed [conn_id=%s]", self.conn_id, extra={"conn_id": self.conn_id}
            )

    async def _ping_loop(self, ws: ClientConnection, service_id: int) -> None:
        ping = encode_frame(ping_frame(service_id))
        try:
            while True:
                await ws.send(ping)
                # Wake early when a pong changes PingInterval: sleeping out the old, longer
                # interval would let the watchdog, already on the new one, see a healthy
                # socket as dead.
                with anyio.move_on_after(self._config.ping_interval):
                    await self._config_changed.wait()
                if self._config_changed.is_set():
                    self._config_changed = anyio.Event()
        except ConnectionClosed:
            return  # the receive loop sees the close too and ends the session

    async def _watchdog(self, ws: ClientConnection) -> None:
        # A half-open TCP connection never errors: only the missing pongs tell it is dead.
        while True:
            limit = self._config.ping_interval * self._missed_pongs
            silent = time.monotonic() - self._last_pong
            if silent > limit:
                log.warning(
                    "no pong for %.1f s: treating the connection as dead [conn_id=%s]",
                    silent,
                    self.conn_id,
                    extra={"conn_id": self.conn_id},
                )
                await ws.close(code=1001, reason="no pong")
                return
            await anyio.sleep(min(self._config.ping_interval, max(limit - silent, 0.05)))

    async def _receive_loop(self, ws: ClientConnection, tg: TaskGroup, acks: _AckWriter) -> None:
        # A closed socket ends the session normally (run() then reconnects). Catching it
        # here, not in run(), matters: out of the session's task group it would arrive
        # wrapped in an exception group.
        try:
            await self._receive(ws, tg, acks)
        except ConnectionClosed as exc:
            log.warning(
                "long connection dropped: %s [conn_id=%s]",
                _short(exc),
                self.conn_id,
                extra={"conn_id": self.conn_id},
            )

    async def _receive(self, ws: ClientConnection, tg: TaskGroup, acks: _AckWriter) -> None:
        offer = self._offer
        async for data in ws:
            if isinstance(data, str):
                log.debug("ignored a text message on the long connection")
                continue
            received_at = time.monotonic()
            try:
                frame = decode_frame(data)
            except ValueError as exc:
                log.warning("dropped an undecodable frame (%d bytes): %s", len(data), exc)
                continue
            headers = headers_of(frame)
            if frame.method == FrameMethod.CONTROL:
                self._on_control(frame, headers)
            elif frame.method == FrameMethod.DATA:
                data_frame = self._reassemble(frame, headers, received_at)
                if data_frame is None:
                    continue
                await self._frames_in_flight.acquire()
                if offer is None:
                    tg.start_soon(self._handle_and_ack, ws, frame, data_frame, None)
                    continue
                # Offered in arrival order, so the store admits, and dispatch gets, one
                # chat's messages in that order; a frame that must wait (a card action,
                # the shared queue) gets a task, as every frame once did.
                pending = acks.expect(frame, data_frame)
                try:
                    waiting = offer(data_frame, pending)
                except Exception:
                    # A handler bug must not lose the event: a non-200 ack makes Lark retry it.
                    log.exception("frame handler failed for frame %s", data_frame.frame_id)
                    pending(Ack(ACK_FAILED))
                    continue
                if waiting is not None:
                    pending.cancel()
                    tg.start_soon(self._handle_and_ack, ws, frame, data_frame, waiting)

    def _on_control(self, frame: Any, headers: dict[str, str]) -> None:
        if headers.get("type") != FrameType.PONG:
            return
        self._last_pong = time.monotonic()
        if frame.payload:
            try:
                raw = json.loads(frame.payload)
            except ValueError:
                log.debug("pong carried a non-JSON payload")
                return
            if isinstance(raw, dict):
                merged = self._config.merged(raw)
                if merged != self._config:
                    log.info("server settings changed: %s", merged)
                    self._config = merged
                    self._config_changed.set()

    def _reassemble(
        self, frame: Any, headers: dict[str, str], received_at: float
    ) -> InboundFrame | None:
        """The complete data frame once its last fragment is in, else ``None``."""
        frame_id = headers.get("message_id", "")
        try:
            total = int(headers.get("sum", "1") or 1)
            seq = int(headers.get("seq", "0") or 0)
            payload = self._assembler.add(frame_id, total, seq, bytes(frame.payload), received_at)
        except ValueError as exc:
            log.warning("dropped a bad fragment of frame %s: %s", frame_id, exc)
            return None
        if payload is None:
            return None  # more fragments to come; the platform expects one ack for the whole
        return InboundFrame(
            frame_id=frame_id,
            frame_type=headers.get("type", ""),
            trace_id=headers.get("trace_id", ""),
            payload=payload,
            received_at=received_at,
            conn_id=self.conn_id,
        )

    async def _handle_and_ack(
        self,
        ws: ClientConnection,
        frame: Any,
        data: InboundFrame,
        waiting: Awaitable[Ack] | None,
    ) -> None:
        """Handle one frame on a task of its own and send its ack.

        :param waiting: the offered handler's unfinished work, or ``None`` to call the
            handler. Tasks start in arrival order and the store answers in submission order,
            so messages of one chat still reach dispatch in the order they arrived.
        """
        try:
            try:
                ack = await (self._handler(data) if waiting is None else waiting)
            except Exception:
                # A handler bug must not lose the event: a non-200 ack makes Lark retry it.
                log.exception("frame handler failed for frame %s", data.frame_id)
                ack = Ack(ACK_FAILED)
            try:
                await ws.send(_ack_bytes(frame, data, ack))
            except ConnectionClosed:
                _unacked(data)
                return
            metrics.ACK_LATENCY.observe(time.monotonic() - data.received_at)
        finally:
            self._frames_in_flight.release()


class _PendingAck:
    """One offered frame's ``respond``: queues its ack on the session's writer, once."""

    __slots__ = ("_data", "_frame", "_writer")

    def __init__(self, writer: _AckWriter, frame: Any, data: InboundFrame) -> None:
        self._writer: _AckWriter | None = writer
        self._frame = frame
        self._data = data

    def __call__(self, ack: Ack) -> None:
        writer = self._writer
        if writer is None:
            log.warning(
                "frame %s was answered twice; the second ack is dropped", self._data.frame_id
            )
            return
        self._writer = None
        writer.queue(self._frame, self._data, ack)

    def cancel(self) -> None:
        """The handler did not take the frame after all: no ack will come through here."""
        writer = self._writer
        if writer is not None:
            self._writer = None
            writer.forget()


# What writing an ack in place takes of websockets' asyncio connection (13-15): the
# sans-I/O protocol, the method that flushes it to the transport, and the state ``send``
# checks first. A version without them gets every ack sent by the writer task.
_WRITE_IN_PLACE = ("protocol", "send_data", "paused", "fragmented_send_waiter", "transport")
# How long a session that ends waits for a socket paused by flow control to take the acks
# queued for it, as long as its close waits.
_LAST_ACKS_SECONDS = 1.0


class _AckWriter:
    """Sends a session's acks for frames taken inline, where they are answered if it can.

    Acks come from loop callbacks (the store's report of a committed batch) and the
    receive loop. When the socket can take a write now (open, not paused by flow control,
    no fragmented message going out), the ack is written there and then, as ``ws.send``
    would write it; ``ws.send`` itself is a coroutine, which a callback cannot run.
    Otherwise the ack queues for this writer's task, woken once per loop pass that queued
    any, which sends them with ``ws.send``. Own ack p50/p99 in ms with 100 frames in
    flight, echo benchmark (6 runs each): a task per frame 4-5/13-24, every ack through
    the writer task 3-4/12-16 (2 runs), written in place 2-4/9-13 (200 in flight: 4-6/17-37,
    3-4/14-22, 2-4/9-25).
    """

    __slots__ = (
        "_answered",
        "_expected",
        "_in_place",
        "_open",
        "_queue",
        "_release",
        "_wake",
        "_ws",
    )

    def __init__(self, ws: ClientConnection, release: Callable[[], None]) -> None:
        self._ws = ws
        self._in_place = all(hasattr(ws, name) for name in _WRITE_IN_PLACE)
        self._release = release  # gives back the frame's place among those in flight
        self._queue: deque[tuple[Any, InboundFrame, Ack]] = deque()
        self._wake = anyio.Event()
        self._open = True
        self._expected = 0  # frames taken whose ack has not been queued yet
        self._answered = anyio.Event()

    def expect(self, frame: Any, data: InboundFrame) -> _PendingAck:
        """The ``respond`` for a frame about to be offered."""
        self._expected += 1
        return _PendingAck(self, frame, data)

    def forget(self) -> None:
        """A frame expected will not be answered through this writer."""
        self._expected -= 1
        if not self._expected:
            self._answered.set()

    def queue(self, frame: Any, data: InboundFrame, ack: Ack) -> None:
        """Send ``ack`` for ``frame`` soon; callable from any loop callback."""
        self.forget()
        if not self._open:
            _unacked(data)
            self._release()
            return
        if not self._queue and self._writable_now():
            self._write_in_place(frame, data, ack)
            return
        self._queue.append((frame, data, ack))
        self._wake.set()

    def _writable_now(self) -> bool:
        """Whether ``ws.send`` would write at once, without waiting or raising."""
        ws = self._ws
        return (
            self._in_place
            and ws.protocol.state is State.OPEN
            and not ws.paused
            and ws.fragmented_send_waiter is None
            and not ws.transport.is_closing()
        )

    def _write_in_place(self, frame: Any, data: InboundFrame, ack: Ack) -> None:
        """Write one ack as ``ws.send`` does, minus its wait for the transport to drain.

        Acks are a few dozen bytes; the drain is what the writer's ``ws.send`` waits for
        once flow control pauses the socket, and then this path is not taken.
        """
        ws = self._ws
        try:
            ws.protocol.send_binary(_ack_bytes(frame, data, ack))
            ws.send_data()
        except OSError:
            _unacked(data)
            return
        finally:
            self._release()
        metrics.ACK_LATENCY.observe(time.monotonic() - data.received_at)

    async def run(self) -> None:
        """Send queued acks until the session ends, then wait for the frames still taken.

        The session does not end before every frame it took is answered (the admits are
        not cancellable), as when each frame had a task in the session's task group: so a
        shutdown that follows finds no admit of this session under way.
        """
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                await self._send_queued()
        finally:
            # The session closes the socket only after this: the acks of frames still
            # being admitted (a stop, say) go out as they come, as they did when each frame
            # had a task; then what is queued gets a bounded last chance.
            with anyio.CancelScope(shield=True):
                if self._expected:
                    self._answered = anyio.Event()
                    await self._answered.wait()
                with anyio.move_on_after(_LAST_ACKS_SECONDS):
                    await self._send_queued()
            self._open = False
            while self._queue:
                _unacked(self._queue.popleft()[1])
                self._release()

    async def _send_queued(self) -> None:
        queue = self._queue
        ws = self._ws
        while queue:
            frame, data, ack = queue.popleft()
            try:
                await ws.send(_ack_bytes(frame, data, ack))
            except ConnectionClosed:
                _unacked(data)
                continue
            finally:
                self._release()
            metrics.ACK_LATENCY.observe(time.monotonic() - data.received_at)


def _ack_bytes(frame: Any, data: InboundFrame, ack: Ack) -> bytes:
    """The encoded ack of ``frame``, its ``biz_rt`` the time since the frame was read."""
    elapsed = time.monotonic() - data.received_at
    return encode_frame(ack_frame(frame, ack.code, round(elapsed * 1000), ack.data))


def _unacked(data: InboundFrame) -> None:
    # Unacked, the platform re-delivers it; the ledger makes that a duplicate.
    log.info("connection closed before the ack of frame %s", data.frame_id)


async def discover_endpoint(client: LarkClient) -> str:
    """Ask Lark where the long connection is, without dialling it (``larkbot doctor``).

    :raises LarkAuthError: the credentials were refused.
    :raises TransientConnectError: Lark is busy or unreachable.
    """
    url, _ = await _request_endpoint(client)
    return url


async def _request_endpoint(client: LarkClient) -> tuple[str, dict[str, Any] | None]:
    """The endpoint URL and the raw ``ClientConfig`` from ``POST /callback/ws/endpoint``."""
    try:
        answer = await client.discover_endpoint()
    except LarkAPIError as exc:
        raise TransientConnectError(f"endpoint discovery failed: {exc.msg[:300]}") from None
    if answer.status != 200:
        raise TransientConnectError(f"endpoint discovery answered HTTP {answer.status}")
    body = answer.body
    if body is None:
        raise TransientConnectError("endpoint discovery answered no JSON object")
    code = body.get("code")
    if code != 0:
        msg = str(body.get("msg") or "")
        if code in _RETRYABLE_ENDPOINT_CODES:
            raise TransientConnectError(f"Lark is busy (code {code}: {msg})")
        raise LarkAuthError(
            f"Lark refused the app's credentials (code {code}: {msg}): check APP_ID and "
            "APP_SECRET, and that the app uses long-connection event subscription"
        )
    data = body.get("data") or {}
    url = data.get("URL") if isinstance(data, dict) else None
    if not isinstance(url, str) or not url:
        raise TransientConnectError("endpoint discovery answered no URL")
    config = data.get("ClientConfig")
    return url, config if isinstance(config, dict) else None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "…"

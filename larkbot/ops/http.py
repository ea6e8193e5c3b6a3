"""The daemon's own HTTP port: ``/healthz``, ``/readyz``, ``/metrics`` and the webhook.

uvicorn serves a small Starlette app as one more task in the daemon's task group. The
daemon owns the process signals and the listening socket's lifetime; uvicorn only serves.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from larkbot.core.errors import EX_CONFIG, LarkbotError
from larkbot.ops._uvicorn import EmbeddedServer, embedded_config
from larkbot.ops.metrics import HTTP_REQUEST_DURATION, REGISTRY

__all__ = ["HealthState", "OpsPortError", "OpsServer", "build_ops_app"]

_log = logging.getLogger("larkbot.ops")

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BACKLOG = 128
# Upper bound on a graceful stop; a scrape in flight gets this long to finish.
_STOP_GRACE = 2.0


@dataclass
class HealthState:
    """What the daemon knows about itself, as ``/readyz`` reports it; set by the daemon."""

    connected: bool = False
    bot_identity_known: bool = False
    draining: bool = False
    store_reachable: bool | None = None
    """Whether the store shared by replicas (Redis) answers; ``None`` without one."""

    @property
    def ready(self) -> bool:
        """Whether this replica can take events: connected, knows its bot id, not draining,
        and its shared store (when it has one) answers."""
        return (
            self.connected
            and self.bot_identity_known
            and not self.draining
            and self.store_reachable is not False
        )


class OpsPortError(LarkbotError):
    """The HTTP port cannot be opened (in use, not permitted, no such address)."""

    exit_code = EX_CONFIG


def build_ops_app(state: HealthState, *, routes: Sequence[BaseRoute] = ()) -> Starlette:
    """Build the ASGI app of the ops port, reading readiness from ``state`` on each request.

    :param routes: more routes served on the same port (the webhook, the MCP transports),
        timed like the rest
    """

    async def healthz(request: Request) -> Response:
        # Answering at all proves the event loop turns; that is the whole check.
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if state.ready:
            return JSONResponse({"status": "ready"})
        body: dict[str, object] = {
            "status": "not ready",
            "connected": state.connected,
            "bot_identity_known": state.bot_identity_known,
            "draining": state.draining,
        }
        if state.store_reachable is not None:
            body["store_reachable"] = state.store_reachable
        return JSONResponse(body, status_code=503)

    async def metrics(request: Request) -> Response:
        # The process collector reads /proc files; file reads stay off the event loop.
        body = await anyio.to_thread.run_sync(generate_latest, REGISTRY)
        return Response(body, headers={"content-type": CONTENT_TYPE_LATEST})

    return Starlette(
        routes=[
            *routes,
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        middleware=[Middleware(_RequestTimer)],
    )


class OpsServer:
    """Serve an ASGI app on ``host:port`` inside the caller's task group."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        """Prepare the server; nothing listens until ``run``."""
        self.host = host
        self.port = port
        self.bound_port: int | None = None
        self._config = embedded_config(app, host, port)

    async def run(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled, reporting the bound port through ``task_status`` once listening.

        Raises ``OpsPortError`` when the port cannot be opened.
        """
        sockets = await _listen(self.host, self.port)
        self.bound_port = sockets[0].getsockname()[1]
        port = self.bound_port

        def listening(_bound: int) -> None:
            _log.info("ops port listening on %s:%d", self.host, port)
            task_status.started(port)

        server = EmbeddedServer(self._config, on_started=listening)
        try:
            await server.serve(sockets=sockets)
        finally:
            # Cancellation lands in uvicorn's main loop, which then skips its own shutdown:
            # run it here, shielded and bounded, so connections and sockets are closed.
            with anyio.CancelScope(shield=True), anyio.move_on_after(_STOP_GRACE):
                if server.started and not server.shut_down:
                    await server.shutdown(sockets=sockets)
            for listener in getattr(server, "servers", []):
                listener.close()
            for sock in sockets:
                sock.close()
            self.bound_port = None


class _RequestTimer:
    """ASGI middleware observing ``http_request_duration_seconds`` for each request.

    The ``path`` label is the matched route's template, or ``other``: a scanner probing
    random URLs must not create a time series per URL.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            # The router records the matched route in the (shared) scope.
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            method = scope["method"] if scope["method"] in _KNOWN_METHODS else "other"
            HTTP_REQUEST_DURATION.labels(method=method, path=path, status=str(status)).observe(
                time.perf_counter() - started
            )


async def _listen(host: str, port: int) -> list[socket.socket]:
    """Open listening sockets for every address of ``host`` (one port shared by all)."""
    try:
        infos = await anyio.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise OpsPortError(f"cannot listen on {host}: the name does not resolve ({exc})") from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    try:
        for family, kind, proto, _, sockaddr in infos:
            if (family, str(sockaddr[0])) in seen:
                continue
            seen.add((family, str(sockaddr[0])))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # Otherwise "::" would also claim the IPv4 port and clash with "0.0.0.0".
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                # Port 0 means "any free port", but all addresses of one host share it.
                sockaddr = (sockaddr[0], sockets[0].getsockname()[1], *sockaddr[2:])
            sock.bind(sockaddr)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise OpsPortError(_explain_bind_error(exc, host, port)) from None
    if not sockets:  # pragma: no cover - getaddrinfo never answers with nothing
        raise OpsPortError(f"cannot listen on {host}: it has no address")
    return sockets


def _explain_bind_error(exc: OSError, host: str, port: int) -> str:
    """Turn a bind failure into one sentence an operator can act on."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use: set PORT to a free port"
    if exc.errno == errno.EACCES:
        return f"port {port} on {host} needs privileges: set PORT to 1024 or above"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: it is not an address of this machine"
    return f"cannot listen on port {port} of {host}: {exc.strerror or exc}"

"""``larkbot mcp``: serve the tools over stdio, SSE or streamable HTTP until stopped.

The HTTP modes serve on one port, through the ops port's uvicorn embedding: the MCP
transport (``/mcp``, or ``/sse`` with ``/messages/``) beside ``/healthz``, ``/readyz``
and ``/metrics``, so a container's health check calls the port it serves on. stdio
writes nothing but protocol on standard output: logs go to standard error, and the SDK
points file descriptor 1 at standard error while it serves, so even a stray print
cannot corrupt the stream.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend, RequireAuthMiddleware
from mcp.server.sse import SseServerTransport
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import (
    StreamableHTTPASGIApp,
    StreamableHTTPSessionManager,
)
from mcp.server.transport_security import TransportSecuritySettings
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from larkbot.agent.timezone import resolve_timezone
from larkbot.agent.tools.base import Tool
from larkbot.agent.tools.registry import ToolRegistry, default_registry
from larkbot.agent.tools.runner import ToolRunner
from larkbot.core.errors import EX_CONFIG, LarkbotError
from larkbot.core.language import Language
from larkbot.lark.client import CredentialsError, LarkAPIError, LarkClient
from larkbot.mcp._agent_tool import AskLarkbot
from larkbot.mcp._auth import McpTokenVerifier, TokenMode
from larkbot.mcp._presets import select_tools
from larkbot.mcp._server import LarkToolServer, available_tools
from larkbot.ops.http import HealthState, OpsServer, build_ops_app

if TYPE_CHECKING:
    from mcp.server.lowlevel.server import Server

    from larkbot.agent.llm import LLMBrain
    from larkbot.config.settings import Settings

__all__ = [
    "McpOptions",
    "McpSetupError",
    "Mode",
    "check_options",
    "exposed_tools",
    "is_loopback",
    "serve_mcp",
]

_log = logging.getLogger("larkbot.mcp")

Mode = Literal["stdio", "sse", "streamable"]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# With DNS-rebinding protection on, only these Host and Origin values reach a loopback
# server: a web page on another name cannot drive it through the user's browser.
_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
_LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


class McpSetupError(LarkbotError):
    """``larkbot mcp`` cannot start as configured; the message says what to change."""

    exit_code = EX_CONFIG


@dataclass(frozen=True, slots=True)
class McpOptions:
    """What ``larkbot mcp`` was asked for on its command line."""

    mode: Mode = "stdio"
    host: str = "127.0.0.1"
    port: int = 3000
    tools: Sequence[str] = field(default_factory=tuple)
    allow_writes: bool = False
    token_mode: TokenMode = "tenant"
    language: Language = "en"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.strip().lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_options(settings: Settings, options: McpOptions) -> None:
    """Raise :class:`McpSetupError` for a combination that must not start.

    Without a token an HTTP mode would serve Lark data to anyone who can reach the port,
    so it binds loopback only; in ``user`` mode every request carries a user access token
    that Lark itself checks, so any address is fine.
    """
    if options.mode == "stdio":
        if options.token_mode == "user":
            raise McpSetupError(
                "--token-mode user needs an HTTP mode (sse or streamable), where each "
                "caller's bearer token is their Lark user access token"
            )
        return
    if options.token_mode == "user" or settings.mcp.token is not None:
        return
    if not is_loopback(options.host):
        raise McpSetupError(
            f"refusing to serve MCP on {options.host} without a token: set LARKBOT_MCP_TOKEN "
            "(or LARKBOT_MCP_TOKEN_FILE) so every request must carry it, or serve on "
            "--host 127.0.0.1"
        )


async def serve_mcp(
    settings: Settings,
    options: McpOptions,
    *,
    registry: ToolRegistry | None = None,
    task_status: TaskStatus[int | None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled (HTTP) or until standard input ends (stdio).

    ``registry`` defaults to the agent's registry with the installed plug-ins (built in a
    worker thread: it reads package metadata). ``task_status`` reports the bound port once
    an HTTP mode listens (``None`` for stdio, once serving).

    :raises McpSetupError: the options do not fit the configuration.
    :raises CredentialsError: Lark refused the app's credentials.
    """
    check_options(settings, options)
    if registry is None:
        registry = await anyio.to_thread.run_sync(functools.partial(default_registry, plugins=True))
    # Resolving the zone reads the time zone database: not on the event loop.
    timezone = await anyio.to_thread.run_sync(resolve_timezone, settings.agent.timezone)
    async with (
        LarkClient(
            base_url=settings.lark.base_url,
            app_id=settings.app.id,
            app_secret=settings.app.secret,
            timeout=settings.server.timeout_seconds,
        ) as client,
        AsyncExitStack() as stack,
    ):
        await _check_credentials(client, options.token_mode)
        if options.token_mode == "user" and settings.mcp.token is not None:
            _log.warning("token mode user: bearer tokens are user access tokens, not mcp.token")
        brain: LLMBrain | None = None
        if settings.llm.enabled:
            from larkbot.agent.llm import LLMBrain

            brain = LLMBrain(settings)
            stack.push_async_callback(brain.aclose)
            await brain.warm_up()
        tools = LarkToolServer(
            settings,
            client=client,
            registry=registry,
            selection=options.tools,
            allow_writes=options.allow_writes,
            token_mode=options.token_mode,
            language=options.language,
            brain=brain,
            timezone=timezone,
        )
        _log.info(
            "MCP server: %d tools (%s), writes %s, token mode %s",
            len(tools.tools),
            ", ".join(tool.name for tool in tools.tools),
            "allowed" if any(tool.write for tool in tools.tools) else "off",
            options.token_mode,
        )
        if options.mode == "stdio":
            await _serve_stdio(tools.server, task_status)
        else:
            # Bearer tokens are read whenever one can stand for a caller: the MCP token once
            # configured, a user access token in modes user and auto.
            verifier = (
                McpTokenVerifier(
                    mode=options.token_mode, mcp_token=settings.mcp.token, client=client
                )
                if options.token_mode != "tenant" or settings.mcp.token is not None
                else None
            )
            await _serve_http(tools.server, options, verifier, task_status)


def exposed_tools(
    settings: Settings, options: McpOptions, *, registry: ToolRegistry | None = None
) -> list[Tool[Any]]:
    """The tools ``larkbot mcp`` would expose with ``options`` (for ``--list-tools``).

    ``registry`` defaults to the agent's registry with the installed plug-ins; building it
    reads package metadata, so call this before the event loop starts or in a worker thread.

    :raises ToolSelectionError: ``options.tools`` names an unknown tool or preset, or a
        write tool without ``--allow-writes``.
    """
    registry = registry if registry is not None else default_registry(plugins=True)
    ask = AskLarkbot(
        settings=settings,
        registry=registry,
        # Only listed, never run: no runner, and the offline brain is never consulted.
        outer=_no_runner,
        brain=None,
    )
    available = available_tools(registry, ask)
    return select_tools(available, options.tools, allow_writes=options.allow_writes)


def _no_runner() -> ToolRunner:
    raise RuntimeError("a tool listing runs no tool")


async def _check_credentials(client: LarkClient, token_mode: TokenMode) -> None:
    """Fail at start on credentials Lark refuses; only warn while Lark is unreachable."""
    try:
        await client.tenant_token()
    except CredentialsError:
        if token_mode == "user":
            # Every call acts with the caller's own token; the app's is not needed.
            _log.warning("Lark refused the app credentials; serving with user tokens only")
            return
        raise
    except (LarkAPIError, OSError) as exc:
        _log.warning("Lark not reachable yet (%s); tool calls will retry", type(exc).__name__)


async def _serve_stdio(server: Server[Any], task_status: TaskStatus[int | None]) -> None:
    async with stdio_server() as (read_stream, write_stream):
        _log.info("MCP server on stdio")
        task_status.started(None)
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def _serve_http(
    server: Server[Any],
    options: McpOptions,
    verifier: McpTokenVerifier | None,
    task_status: TaskStatus[int | None],
) -> None:
    security = (
        TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=_LOOPBACK_HOSTS,
            allowed_origins=_LOOPBACK_ORIGINS,
        )
        if is_loopback(options.host)
        else None
    )

    def guarded(app: ASGIApp) -> ASGIApp:
        if verifier is None:
            # No token configured: loopback only (check_options), open like the ops port.
            return app
        # Read the bearer token, keep who it stands for in the request, then refuse (401)
        # a request without a valid one before the transport sees it.
        required = RequireAuthMiddleware(app, required_scopes=[])
        return AuthenticationMiddleware(
            AuthContextMiddleware(required), backend=BearerAuthBackend(verifier)
        )

    manager: StreamableHTTPSessionManager | None = None
    routes: list[BaseRoute]
    if options.mode == "streamable":
        manager = StreamableHTTPSessionManager(app=server, security_settings=security)
        routes = [Route("/mcp", endpoint=_Asgi(guarded(StreamableHTTPASGIApp(manager))))]
        paths = "/mcp"
    else:
        sse = SseServerTransport("/messages/", security_settings=security)
        routes = [
            Route("/sse", endpoint=_Asgi(guarded(_SseEndpoint(sse, server))), methods=["GET"]),
            Mount("/messages/", app=guarded(sse.handle_post_message)),
        ]
        paths = "/sse and /messages/"
    # No long connection in this mode: ready means serving.
    health = HealthState(connected=True, bot_identity_known=True)
    ops = OpsServer(build_ops_app(health, routes=routes), options.host, options.port)
    async with AsyncExitStack() as stack:
        if manager is not None:
            await stack.enter_async_context(manager.run())
        async with anyio.create_task_group() as tg:
            port = await tg.start(ops.run)
            _log.info(
                "MCP server (%s) listening on http://%s:%d (%s), auth %s",
                options.mode,
                options.host,
                port,
                paths,
                "by bearer token" if verifier else "off (loopback only)",
            )
            task_status.started(port)


class _Asgi:
    """An ASGI app that starlette's ``Route`` will not mistake for a request handler."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


class _SseEndpoint:
    """``GET /sse``: one MCP session per open event stream."""

    def __init__(self, sse: SseServerTransport, server: Server[Any]) -> None:
        self._sse = sse
        self._server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with self._sse.connect_sse(scope, receive, send) as (read, write):
                await self._server.run(read, write, self._server.create_initialization_options())
        except ValueError:
            # The transport refused the request (DNS rebinding protection) and has
            # already answered it.
            return

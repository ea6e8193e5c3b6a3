"""Running ``larkbot mcp`` as a real subprocess and talking to it with the official MCP client."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from larkbot.testing import LarkStandIn
from tests._proc import spawned

__all__ = [
    "TRANSPORTS",
    "AuditLine",
    "McpProcess",
    "ServerLog",
    "Transport",
    "mcp_env",
    "mcp_process",
    "mcp_session",
]

Transport = Literal["stdio", "sse", "streamable"]
TRANSPORTS: tuple[Transport, ...] = ("stdio", "sse", "streamable")

_STARTUP_TIMEOUT = 30.0
_LISTENING = re.compile(r"^MCP server \(\w+\) listening on http://[^ ]+:(\d+) ")
_AUDIT = re.compile(r"^write tool (\S+) by (\S*) in \S*: (.*) -> (\w+) \(message (\S+)\)$")


def mcp_env(
    lark: LarkStandIn, home: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of ``larkbot mcp`` against ``lark``: credentials, domain, JSON logs."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "APP_ID": lark.app_id,
        "APP_SECRET": lark.app_secret,
        "LARK_DOMAIN": lark.url,
        "LARKBOT_STATE_DIR": str(home),
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }


@dataclass
class ServerLog:
    """The server's JSON log lines (standard error), as they arrive."""

    raw: list[str] = field(default_factory=list)
    file: Path | None = None

    async def lines(self) -> list[dict[str, Any]]:
        """Every JSON line logged so far."""
        if self.file is not None:
            text = await anyio.Path(self.file).read_text(encoding="utf-8")
            self.raw = text.splitlines()
        parsed = []
        for line in self.raw:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                parsed.append(value)
        return parsed

    async def audit(self, tool: str, count: int = 1) -> list[AuditLine]:
        """The audit lines of write tool ``tool``, once there are ``count`` of them."""

        def audit_of(line: dict[str, Any]) -> AuditLine | None:
            found = _AUDIT.match(str(line.get("message", "")))
            if line.get("logger") != "larkbot.agent.audit" or found is None:
                return None
            name, caller, arguments, outcome, call_id = found.groups()
            return AuditLine(name, caller, json.loads(arguments), outcome, call_id)

        with anyio.fail_after(10):
            while True:
                audits = [a for line in await self.lines() if (a := audit_of(line))]
                audits = [a for a in audits if a.tool == tool]
                if len(audits) >= count:
                    return audits
                await anyio.sleep(0.02)


@dataclass(frozen=True)
class AuditLine:
    """One line of the audit log: which write, by whom, with what, and how it ended."""

    tool: str
    caller: str
    arguments: Any
    outcome: str
    call_id: str


@dataclass
class McpProcess:
    """A running ``larkbot mcp`` in an HTTP mode."""

    process: Process
    log: ServerLog
    port: int = 0

    def url(self, path: str) -> str:
        """The URL of ``path`` on the server."""
        return f"http://127.0.0.1:{self.port}{path}"

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109
        """Wait for the process to exit; return its status."""
        with anyio.fail_after(timeout):
            return await self.process.wait()


def _command(mode: Transport, args: Sequence[str]) -> list[str]:
    port = [] if mode == "stdio" else ["--port", "0"]
    return [sys.executable, "-m", "larkbot", "mcp", "--mode", mode, *port, *args]


@asynccontextmanager
async def mcp_process(
    lark: LarkStandIn,
    home: Path,
    mode: Literal["sse", "streamable"],
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[McpProcess]:
    """Start ``larkbot mcp --mode MODE --port 0 ARGS``; yield once it listens.

    The port is read from the server's own "listening" log line, not guessed. On exit a
    process still running is killed and its exit awaited.
    """
    command = _command(mode, args)
    async with (
        spawned(command, mcp_env(lark, home, env), home, stdout=subprocess.DEVNULL) as process,
        anyio.create_task_group() as tg,
    ):
        running = McpProcess(process, ServerLog())
        tg.start_soon(_drain, process, running.log)
        try:
            with anyio.fail_after(_STARTUP_TIMEOUT):
                while not running.port:
                    for line in await running.log.lines():
                        if found := _LISTENING.search(str(line.get("message", ""))):
                            running.port = int(found.group(1))
                    if process.returncode is not None:
                        raise RuntimeError(
                            f"larkbot mcp exited with {process.returncode}: "
                            + "\n".join(running.log.raw[-20:])
                        )
                    await anyio.sleep(0.02)
            yield running
        finally:
            tg.cancel_scope.cancel()


async def _drain(process: Process, log: ServerLog) -> None:
    # Read all of standard error as it comes, so the pipe never fills and blocks the server.
    assert process.stderr is not None
    buffer = ""
    async for chunk in TextReceiveStream(process.stderr):
        buffer += chunk
        *complete, buffer = buffer.split("\n")
        log.raw.extend(complete)


@asynccontextmanager
async def mcp_session(
    lark: LarkStandIn,
    home: Path,
    transport: Transport,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    token: str | None = None,
) -> AsyncIterator[tuple[ClientSession, ServerLog]]:
    """An initialized official MCP client session with ``larkbot mcp`` over ``transport``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if transport == "stdio":
        errlog = home / "mcp-stderr.log"
        command = _command("stdio", args)
        params = StdioServerParameters(
            command=command[0], args=command[1:], env=mcp_env(lark, home, env), cwd=home
        )
        # The SDK hands the child this file as its standard error.
        with errlog.open("w", encoding="utf-8") as sink:
            async with (
                stdio_client(params, errlog=sink) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                yield session, ServerLog(file=errlog)
        return
    async with mcp_process(lark, home, transport, args, env) as server:
        if transport == "sse":
            async with (
                sse_client(server.url("/sse"), headers=headers) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                yield session, server.log
        else:
            async with (
                httpx2.AsyncClient(headers=headers) as http,
                streamable_http_client(server.url("/mcp"), http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                yield session, server.log

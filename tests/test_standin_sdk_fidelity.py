"""The stand-in is faithful enough for lark-oapi's own ``lark_oapi.ws.Client``.

The SDK client runs in a subprocess (``tests/lark_sdk_client.py``): it binds an event
loop at import time and ``start()`` never returns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from larkbot.testing import LarkStandIn

pytestmark = pytest.mark.anyio

CLIENT_SCRIPT = Path(__file__).with_name("lark_sdk_client.py")
# Guards against a hang, not speed claims: importing lark_oapi alone takes 3 s of CPU,
# which a loaded machine can stretch to half a minute of wall time.
STARTUP_SECONDS = 120
SDK_SECONDS = 30


def _client_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    # The script imports ``bench``: the repository goes first, before any path set already.
    paths = [str(CLIENT_SCRIPT.parent.parent), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    return env


def _command(lark: LarkStandIn, app_secret: str | None = None) -> list[str]:
    secret = lark.app_secret if app_secret is None else app_secret
    return [sys.executable, str(CLIENT_SCRIPT), lark.url, lark.app_id, secret]


async def _collect_lines(process: Process, lines: list[str]) -> None:
    assert process.stdout is not None
    pending = ""
    async for chunk in TextReceiveStream(process.stdout):
        pending += chunk
        *complete, pending = pending.split("\n")
        lines.extend(complete)


@asynccontextmanager
async def sdk_client(lark: LarkStandIn) -> AsyncIterator[list[str]]:
    """Run the SDK client; yield the list its stdout lines are appended to."""
    lines: list[str] = []
    process = await anyio.open_process(_command(lark), env=_client_env(), stderr=subprocess.STDOUT)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_collect_lines, process, lines)
            try:
                yield lines
            finally:
                tg.cancel_scope.cancel()
    finally:
        process.kill()
        with anyio.CancelScope(shield=True):
            await process.aclose()


def _received(lines: list[str], message_id: str) -> list[str]:
    return [line for line in lines if line.startswith(f"RECEIVED {message_id} ")]


async def test_sdk_client_connects_receives_and_acks() -> None:
    async with LarkStandIn(ping_interval=1, reconnect_interval=1, reconnect_nonce=0) as lark:
        # Rides on the first pong; the SDK must parse and apply it without complaint.
        lark.pong_config = {
            "PingInterval": 1,
            "ReconnectCount": -1,
            "ReconnectInterval": 1,
            "ReconnectNonce": 0,
        }
        async with sdk_client(lark) as lines:
            await lark.wait_connected(timeout=STARTUP_SECONDS)

            plain = await lark.send_text("hello from the stand-in", chat_type="group")
            await lark.wait_for(lambda: bool(_received(lines, plain)), timeout=SDK_SECONDS)
            content = _received(lines, plain)[0].split(" ", 2)[2]
            assert json.loads(content) == {"text": "hello from the stand-in"}

            fragmented = await lark.send_text("split " * 200, fragments=4)
            await lark.wait_for(lambda: bool(_received(lines, fragmented)), timeout=SDK_SECONDS)
            await lark.wait_for(lambda: len(lark.acks) == 2, timeout=SDK_SECONDS)

            await lark.wait_for(lambda: lark.pings >= 2, timeout=SDK_SECONDS)
            assert lark.pong_config is None

            # An abrupt drop: the SDK notices, reconnects through endpoint discovery.
            await lark.drop_connections()
            await lark.wait_for(lambda: lark.handshakes == 2, timeout=SDK_SECONDS)
            again = await lark.send_text("after the drop")
            await lark.wait_for(lambda: bool(_received(lines, again)), timeout=SDK_SECONDS)
            await lark.wait_for(lambda: len(lark.acks) == 3, timeout=SDK_SECONDS)

    assert [ack.chat_message_id for ack in lark.acks] == [plain, fragmented, again]
    assert {ack.code for ack in lark.acks} == {200}
    assert all(ack.biz_rt is not None and ack.biz_rt >= 0 for ack in lark.acks)
    assert lark.acks[0].conn_id != lark.acks[2].conn_id
    assert lark.bad_frames == 0 and lark.endpoint_calls == 2
    failures = [line for line in lines if "failed" in line]
    assert failures == [], "\n".join(lines)


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        ({"refuse_handshake": (514, 1000040350)}, "514: exceed connection limit"),
        ({"app_secret": "wrong"}, "10003: invalid app_id or app_secret"),
    ],
)
async def test_sdk_client_stops_on_configuration_errors(
    refusal: dict[str, object], expected: str
) -> None:
    async with LarkStandIn() as lark:
        lark.refuse_handshake = refusal.get("refuse_handshake")  # type: ignore[assignment]
        secret = refusal.get("app_secret")
        with anyio.fail_after(STARTUP_SECONDS):
            result = await anyio.run_process(
                _command(lark, secret if isinstance(secret, str) else None),
                env=_client_env(),
                stderr=subprocess.STDOUT,
                check=False,
            )
    output = result.stdout.decode()
    assert result.returncode != 0, output
    assert expected in output

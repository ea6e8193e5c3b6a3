"""``larkbot run`` as a real process: systemd's notify protocol, signals, and its log output."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from larkbot.ops import metrics
from larkbot.testing import LarkStandIn
from tests._proc import larkbot_process

pytestmark = pytest.mark.anyio

_SECRET = "e2e-app-secret-93c0d1f5"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket's path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="lb-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_systemd_notify_ready_status_watchdog_and_stopping(
    short_dir: Path, tmp_path: Path
) -> None:
    socket_path = short_dir / "notify"
    notices: list[dict[str, str]] = []

    async def listen(sock: anyio.abc.UNIXDatagramSocket) -> None:
        async for datagram, _ in sock:
            fields = dict(line.split("=", 1) for line in datagram.decode().splitlines())
            notices.append(fields)

    def seen(key: str) -> bool:
        return any(key in fields for fields in notices)

    sock = await anyio.create_unix_datagram_socket(local_path=socket_path)
    async with sock, anyio.create_task_group() as tg, LarkStandIn() as lark:
        tg.start_soon(listen, sock)
        env = {"NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": "500000"}
        async with larkbot_process(lark, tmp_path, env) as run:
            await lark.wait_for(lambda: seen("READY"), timeout=60)
            ready = next(fields for fields in notices if "READY" in fields)
            assert ready["READY"] == "1"
            assert "connected to Lark" in ready["STATUS"]
            assert any("STATUS" in f and "READY" not in f for f in notices)  # start-up steps
            # Pings at half the watchdog interval (0.25 s): three soon after start-up.
            await lark.wait_for(lambda: sum("WATCHDOG" in f for f in notices) >= 3, timeout=10)
            assert lark.connections == 1

            run.send_signal(signal.SIGTERM)
            assert await run.wait(timeout=30) == 0
            await lark.wait_for(lambda: seen("STOPPING"), timeout=10)
        tg.cancel_scope.cancel()
    stopping = next(fields for fields in notices if "STOPPING" in fields)
    assert stopping["STOPPING"] == "1"
    assert notices.index(stopping) > notices.index(ready)


async def test_json_logs_carry_message_ids_and_never_a_secret(tmp_path: Path) -> None:
    async with (
        LarkStandIn(app_secret=_SECRET) as lark,
        larkbot_process(lark, tmp_path, {"LOG_FORMAT": "json"}) as run,
    ):
        message_id = await lark.send_text("help")
        await lark.wait_for(
            lambda: any(r.to_message_id == message_id for r in lark.replies), timeout=60
        )
        # The token endpoint hands out the token it already issued while it is valid.
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{lark.url}/open-apis/auth/v3/tenant_access_token/internal",
                json={"app_id": lark.app_id, "app_secret": _SECRET},
            )
        token = answer.json()["tenant_access_token"]
        run.send_signal(signal.SIGTERM)
        assert await run.wait(timeout=30) == 0
    lines = [line for line in run.raw if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(record, dict) and "message" in record for record in records)
    about_message = [r for r in records if message_id in r["message"]]
    assert about_message, "no log line names the message"
    missing = [r for r in about_message if r.get("message_id") != message_id]
    assert not missing, missing
    output = "\n".join(lines)
    assert _SECRET not in output
    assert token not in output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_start_up_line_metrics_from_zero_and_quiet_libraries(tmp_path: Path) -> None:
    port = _free_port()
    secret_words = "合言葉はひらけごま"
    async with LarkStandIn() as lark:
        env = {
            "LOG_LEVEL": "DEBUG",
            "LOG_LEVELS": "aiosqlite=DEBUG",
            "PORT": str(port),
        }
        async with larkbot_process(lark, tmp_path, env) as run:
            async with httpx.AsyncClient() as http:
                scraped = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            message_id = await lark.send_text(f"ping {secret_words}")
            await lark.wait_for(
                lambda: any(r.to_message_id == message_id for r in lark.replies), timeout=60
            )
            run.send_signal(signal.SIGTERM)
            assert await run.wait(timeout=30) == 0
    records = [json.loads(line) for line in run.raw if line.strip()]

    first = records[0]["message"]
    assert first.startswith("larkbot 0.1.0 (Python ")
    assert f"app {lark.app_id} on {lark.url}, state SQLite in {tmp_path}" in first
    assert f"ops port 127.0.0.1:{port}, config file none" in first

    # Debug shows larkbot's own loggers, and only the library that was asked for, whose
    # lines never carry the user's text (the SQLite driver's hold the statements' values).
    others = [r for r in records if not r["logger"].startswith("larkbot")]
    assert others and {r["logger"] for r in others} == {"aiosqlite"}
    assert not [r for r in others if secret_words in r["message"]]

    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in scraped.splitlines()
        if line and not line.startswith("#")
    }
    build = [name for name in samples if name.startswith("larkbot_build_info{")]
    assert len(build) == 1 and samples[build[0]] == 1.0
    assert 'version="0.1.0"' in build[0] and 'lark_oapi="' in build[0] and "python=" in build[0]
    for outcome in metrics.EVENT_OUTCOMES:
        assert any(
            name.startswith("larkbot_events_received_total{") and f'outcome="{outcome}"' in name
            for name in samples
        ), outcome
    for status in ("success", "error", "denied", "rate_limited"):
        key = f'tool_executions_total{{status="{status}",tool_name="create_base_record"}}'
        assert samples[key] == 0.0
    assert 'tool_executions_total{status="success",tool_name="search_base_records"}' in samples
    assert 'tool_executions_total{status="denied",tool_name="search_base_records"}' not in samples
    for outcome in metrics.LLM_OUTCOMES:
        assert samples[f'larkbot_llm_requests_total{{outcome="{outcome}"}}'] == 0.0
    for outcome in metrics.REPLY_OUTCOMES:
        assert samples[f'larkbot_replies_total{{outcome="{outcome}"}}'] == 0.0

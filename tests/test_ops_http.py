"""The ops HTTP port, served for real on 127.0.0.1 and queried over HTTP."""

from __future__ import annotations

import signal
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest

from larkbot.ops.http import HealthState, OpsPortError, OpsServer, build_ops_app
from larkbot.ops.metrics import REGISTRY

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _serving(state: HealthState) -> AsyncIterator[tuple[OpsServer, httpx.AsyncClient]]:
    """Run an ops server on a free port for the duration of the block."""
    server = OpsServer(build_ops_app(state), "127.0.0.1", 0)
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(5):
            port = await tg.start(server.run)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield server, client
        tg.cancel_scope.cancel()


def _request_count(path: str, status: str, method: str = "GET") -> float:
    value = REGISTRY.get_sample_value(
        "http_request_duration_seconds_count",
        {"method": method, "path": path, "status": status},
    )
    return value or 0.0


async def test_healthz_answers_ok_and_reports_the_bound_port() -> None:
    async with _serving(HealthState()) as (server, client):
        assert server.bound_port is not None and server.bound_port > 0
        with anyio.fail_after(5):
            response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_follows_the_health_state() -> None:
    state = HealthState()
    async with _serving(state) as (_, client):
        with anyio.fail_after(5):
            not_ready = await client.get("/readyz")
            state.connected = True
            state.bot_identity_known = True
            ready = await client.get("/readyz")
            state.draining = True
            draining = await client.get("/readyz")

    assert not_ready.status_code == 503
    assert not_ready.json() == {
        "status": "not ready",
        "connected": False,
        "bot_identity_known": False,
        "draining": False,
    }
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    assert draining.status_code == 503
    assert draining.json()["draining"] is True


async def test_metrics_exposes_the_registry_and_times_requests_by_route() -> None:
    healthz_before = _request_count("/healthz", "200")
    unknown_before = _request_count("other", "404")
    async with _serving(HealthState()) as (_, client):
        with anyio.fail_after(5):
            await client.get("/healthz")
            await client.get("/no/such/page?token=abc")
            await client.get("/another-random-path")
            response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert "# TYPE http_request_duration_seconds histogram" in body
    assert "larkbot_events_received_total" in body
    assert "process_cpu_seconds_total" in body
    assert 'path="/healthz"' in body
    # Unknown URLs share one label value instead of one series each.
    assert "/no/such/page" not in body
    assert "another-random-path" not in body
    assert _request_count("/healthz", "200") == healthz_before + 1
    assert _request_count("other", "404") == unknown_before + 2


async def test_wrong_method_is_labelled_with_the_route_not_the_url() -> None:
    before = _request_count("/readyz", "405", method="POST")
    async with _serving(HealthState()) as (_, client):
        with anyio.fail_after(5):
            response = await client.post("/readyz")
    assert response.status_code == 405
    assert _request_count("/readyz", "405", method="POST") == before + 1


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something else listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


async def test_port_in_use_is_one_clear_sentence(taken_port: int) -> None:
    server = OpsServer(build_ops_app(HealthState()), "127.0.0.1", taken_port)
    with pytest.raises(OpsPortError) as caught, anyio.fail_after(5):
        await server.run()
    assert str(caught.value) == (
        f"port {taken_port} on 127.0.0.1 is already in use: set PORT to a free port"
    )


async def test_port_in_use_fails_task_group_start(taken_port: int) -> None:
    server = OpsServer(build_ops_app(HealthState()), "127.0.0.1", taken_port)
    with pytest.RaisesGroup(OpsPortError), anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)


async def test_cancellation_stops_promptly_and_frees_the_port() -> None:
    server = OpsServer(build_ops_app(HealthState()), "127.0.0.1", 0)
    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            port = await tg.start(server.run)
            # An open keep-alive connection must not hold the stop up.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/healthz")).status_code == 200
                tg.cancel_scope.cancel()
    assert server.bound_port is None

    # The port is free again: a new server can take it at once.
    again = OpsServer(build_ops_app(HealthState()), "127.0.0.1", port)
    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            assert await tg.start(again.run) == port
            tg.cancel_scope.cancel()


async def test_signal_handlers_stay_with_the_daemon() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    async with _serving(HealthState()) as (_, client):
        with anyio.fail_after(5):
            await client.get("/healthz")
        during = {sig: signal.getsignal(sig) for sig in before}
    assert during == before

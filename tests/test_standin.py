"""The Lark stand-in, driven by a raw ``websockets`` client and ``httpx``."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from anyio.abc import SocketStream
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from larkbot.admission.events import message_from_event, parse_envelope
from larkbot.sources.longconn.frames import (
    FragmentAssembler,
    Frame,
    FrameMethod,
    ack_frame,
    decode_frame,
    encode_frame,
    headers_of,
    ping_frame,
)
from larkbot.testing import (
    ApiError,
    ApiRequest,
    LarkStandIn,
    OpenApiRoute,
    ReplyRecord,
)
from tests._factories import REPLY_ROUTE

pytestmark = pytest.mark.anyio


@pytest.fixture
async def lark() -> AsyncIterator[LarkStandIn]:
    async with LarkStandIn() as standin:
        yield standin


@pytest.fixture
async def http(lark: LarkStandIn) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=lark.url, trust_env=False) as client:
        yield client


async def discover(lark: LarkStandIn) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(
            lark.url + "/callback/ws/endpoint",
            json={"AppID": lark.app_id, "AppSecret": lark.app_secret},
        )
    assert response.status_code == 200
    return response.json()


@asynccontextmanager
async def long_connection(lark: LarkStandIn) -> AsyncIterator[ClientConnection]:
    url = (await discover(lark))["data"]["URL"]
    async with connect(url, proxy=None) as ws:
        yield ws


async def next_frame(ws: ClientConnection) -> Any:
    with anyio.fail_after(2):
        return decode_frame(await ws.recv())


async def token(http: httpx.AsyncClient, lark: LarkStandIn) -> dict[str, str]:
    response = await http.post(
        "/open-apis/auth/v3/tenant_access_token/internal",
        json={"app_id": lark.app_id, "app_secret": lark.app_secret},
    )
    return {"Authorization": "Bearer " + response.json()["tenant_access_token"]}


def text_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"msg_type": "text", "content": json.dumps({"text": text}), **extra}


# ------------------------------------------------------------------------ endpoint discovery


async def test_endpoint_discovery_returns_url_and_client_config() -> None:
    async with LarkStandIn(ping_interval=7, reconnect_interval=9, reconnect_nonce=3) as lark:
        answer = await discover(lark)
    assert answer["code"] == 0
    url = urlsplit(answer["data"]["URL"])
    query = parse_qs(url.query)
    assert (url.scheme, url.path) == ("ws", "/ws")
    assert url.netloc == lark.url.removeprefix("http://")
    assert query["device_id"][0] and int(query["service_id"][0]) > 0
    assert answer["data"]["ClientConfig"] == {
        "ReconnectCount": -1,
        "ReconnectInterval": 9,
        "ReconnectNonce": 3,
        "PingInterval": 7,
    }
    assert lark.endpoint_calls == 1


async def test_endpoint_answers_credential_errors_and_busy(
    lark: LarkStandIn, http: httpx.AsyncClient
) -> None:
    wrong = await http.post(
        "/callback/ws/endpoint", json={"AppID": lark.app_id, "AppSecret": "nope"}
    )
    assert wrong.status_code == 200
    assert wrong.json()["code"] == 10003 and "data" not in wrong.json()

    lark.refuse_credentials = True
    assert (await discover(lark))["code"] == 10003
    lark.refuse_credentials = False

    lark.endpoint_busy_times = 2
    assert [(await discover(lark))["code"] for _ in range(3)] == [1, 1, 0]
    assert lark.endpoint_calls == 5


# --------------------------------------------------------------------------------- handshake


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        ((514, 1000040350), {"status": "514", "auth": "1000040350"}),
        ((403, None), {"status": "403", "auth": None}),
    ],
)
async def test_refused_handshake_carries_lark_headers(
    lark: LarkStandIn, refusal: tuple[int, int | None], expected: dict[str, str | None]
) -> None:
    url = (await discover(lark))["data"]["URL"]
    lark.refuse_handshake = refusal
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, proxy=None):
            pass
    headers = caught.value.response.headers
    assert caught.value.response.status_code == 403
    assert headers["handshake-status"] == expected["status"]
    assert headers["handshake-msg"]
    assert headers.get("handshake-autherrcode") == expected["auth"]
    assert (lark.refused_handshakes, lark.handshakes, lark.connections) == (1, 0, 0)


async def test_connections_beyond_the_limit_are_refused() -> None:
    async with LarkStandIn(max_connections=1) as lark, long_connection(lark):
        await lark.wait_connected()
        with pytest.raises(InvalidStatus) as caught:
            async with long_connection(lark):
                pass
        assert caught.value.response.headers["handshake-autherrcode"] == "1000040350"
        assert lark.connections == 1


# ------------------------------------------------------------------------------- ping / pong


async def test_ping_gets_pong_with_one_time_client_config(lark: LarkStandIn) -> None:
    async with long_connection(lark) as ws:
        await ws.send(encode_frame(ping_frame(42)))
        pong = await next_frame(ws)
        assert (pong.method, pong.service, pong.payload) == (FrameMethod.CONTROL, 42, b"")
        assert headers_of(pong)["type"] == "pong"

        lark.pong_config = {"PingInterval": 1, "ReconnectCount": 3}
        await ws.send(encode_frame(ping_frame(42)))
        assert json.loads((await next_frame(ws)).payload) == lark_config_sent(lark)
        await ws.send(encode_frame(ping_frame(42)))
        assert (await next_frame(ws)).payload == b""
    assert lark.pings == 3


def lark_config_sent(lark: LarkStandIn) -> dict[str, int]:
    assert lark.pong_config is None, "a pong config is sent once, then cleared"
    return {"PingInterval": 1, "ReconnectCount": 3}


async def test_silent_socket_ignores_pings(lark: LarkStandIn) -> None:
    lark.stop_ponging = True
    async with long_connection(lark) as ws:
        await ws.send(encode_frame(ping_frame(1)))
        with anyio.move_on_after(0.2) as silent:
            await ws.recv()
        assert silent.cancelled_caught
        await lark.wait_for(lambda: lark.pings == 1)


# ---------------------------------------------------------------------- delivery and acks


async def test_message_event_is_delivered_and_its_ack_recorded(lark: LarkStandIn) -> None:
    async with long_connection(lark) as ws:
        message_id = await lark.send_text(
            "help", chat_type="group", mention_bot=True, mentions=[("ou_alice", "Alice")]
        )
        frame = await next_frame(ws)
        headers = headers_of(frame)
        assert frame.method == FrameMethod.DATA and frame.SeqID > 0
        assert (headers["type"], headers["sum"], headers["seq"]) == ("event", "1", "0")
        assert headers["trace_id"] and headers["message_id"]

        event = json.loads(frame.payload)
        assert event["schema"] == "2.0"
        assert event["header"]["event_type"] == "im.message.receive_v1"
        assert event["header"]["app_id"] == lark.app_id
        message = event["event"]["message"]
        assert message["message_id"] == message_id and message_id.startswith("om_")
        assert message["chat_id"] == "oc_group_1"
        assert json.loads(message["content"]) == {"text": "@_user_1 @_user_2 help"}
        assert [m["key"] for m in message["mentions"]] == ["@_user_1", "@_user_2"]
        assert "root_id" not in message and "thread_id" not in message

        # The project's own models read the event as a user would mean it.
        inbound = message_from_event(parse_envelope(frame.payload), lark.bot_open_id)
        assert (inbound.text, inbound.mentions_bot) == ("@Alice help", True)
        assert inbound.sender_open_id == "ou_user_1"

        await ws.send(encode_frame(ack_frame(frame, 200, 7)))
        await lark.wait_for(lambda: len(lark.acks) == 1)
    ack = lark.acks[0]
    assert (ack.code, ack.biz_rt, ack.chat_message_id) == (200, 7, message_id)
    assert ack.frame_id == headers["message_id"]
    assert ack.event_id == event["header"]["event_id"]
    assert ack.acked_at >= ack.delivered_at and ack.latency_ms >= 0
    assert ack.conn_id == parse_qs(urlsplit(ws.request.path).query)["device_id"][0]


async def test_fragmented_event_reassembles_to_the_original(lark: LarkStandIn) -> None:
    event = lark.build_message_event("a fairly long message " * 20)
    async with long_connection(lark) as ws:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: lark.push_event(event, fragments=3))
            frames = [await next_frame(ws) for _ in range(3)]
        headers = [headers_of(frame) for frame in frames]
        assert {h["message_id"] for h in headers} == {headers[0]["message_id"]}
        assert [(h["sum"], h["seq"]) for h in headers] == [("3", "0"), ("3", "1"), ("3", "2")]
        assembler = FragmentAssembler()
        results = [
            assembler.add(h["message_id"], int(h["sum"]), int(h["seq"]), f.payload, 0.0)
            for h, f in zip(headers, frames, strict=True)
        ]
    assert results[:2] == [None, None]
    assert json.loads(results[2]) == event


async def test_redeliver_keeps_or_renews_the_event_id(lark: LarkStandIn) -> None:
    async with long_connection(lark) as ws:
        message_id = await lark.send_text("hello")
        first = json.loads((await next_frame(ws)).payload)
        await lark.redeliver(message_id)
        same = json.loads((await next_frame(ws)).payload)
        await lark.redeliver(message_id, new_event_id=True)
        renewed = json.loads((await next_frame(ws)).payload)
    assert same == first
    assert renewed["event"] == first["event"]
    assert renewed["header"]["event_id"] != first["header"]["event_id"]


async def test_events_acked_with_an_error_or_not_acked_are_redelivered(
    lark: LarkStandIn,
) -> None:
    lark.redeliver_after = 0.05
    lark.ack_timeout = 0.3
    async with long_connection(lark) as ws:
        await lark.send_text("retry me")
        first = await next_frame(ws)
        await ws.send(encode_frame(ack_frame(first, 500, 1)))
        # The platform retries with the same event_id; this time the client stays silent.
        second = await next_frame(ws)
        assert json.loads(second.payload) == json.loads(first.payload)
        assert headers_of(second)["message_id"] != headers_of(first)["message_id"]
        third = await next_frame(ws)
        assert json.loads(third.payload) == json.loads(first.payload)
        await ws.send(encode_frame(ack_frame(third, 200, 1)))
        with anyio.move_on_after(0.5) as quiet:
            await ws.recv()
        assert quiet.cancelled_caught, "an event acked with 200 is not delivered again"
    assert [ack.code for ack in lark.acks] == [500, 200]
    assert lark.redeliveries == 2


async def test_push_waits_for_a_client_to_connect(lark: LarkStandIn) -> None:
    event = lark.build_message_event("early")
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: lark.push_event(event))
        await anyio.wait_all_tasks_blocked()  # the push is now waiting, with nobody connected
        assert lark.connections == 0
        async with long_connection(lark) as ws:
            frame = await next_frame(ws)
    assert json.loads(frame.payload) == event


async def test_each_event_goes_to_one_random_client(lark: LarkStandIn) -> None:
    received: dict[str, list[str]] = {"a": [], "b": []}

    async def collect(name: str, ws: ClientConnection) -> None:
        while True:
            frame = decode_frame(await ws.recv())
            received[name].append(headers_of(frame)["message_id"])

    async with long_connection(lark) as ws_a, long_connection(lark) as ws_b:
        await lark.wait_connected(count=2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, "a", ws_a)
            tg.start_soon(collect, "b", ws_b)
            frame_ids = [await lark.push_event(lark.build_message_event("x")) for _ in range(40)]
            await lark.wait_for(lambda: len(received["a"]) + len(received["b"]) == 40)
            tg.cancel_scope.cancel()
    assert sorted(received["a"] + received["b"]) == sorted(frame_ids)
    assert received["a"] and received["b"]


# ------------------------------------------------------------------------------ misbehaviour


async def test_drop_connections_cuts_sockets_without_a_close_frame(lark: LarkStandIn) -> None:
    async with long_connection(lark) as ws:
        await lark.wait_connected()
        await lark.drop_connections()
        assert lark.connections == 0
        with anyio.fail_after(2), pytest.raises(ConnectionClosed) as caught:
            await ws.recv()
        assert caught.value.rcvd is None, "an abrupt drop sends no close frame"
    # The next client connects as usual.
    async with long_connection(lark):
        await lark.wait_connected()
    assert lark.handshakes == 2


async def test_garbage_both_ways_never_breaks_the_connection(lark: LarkStandIn) -> None:
    async with long_connection(lark) as ws:
        await lark.wait_connected()
        await lark.push_raw(b"\xff\x00garbage")
        with anyio.fail_after(2):
            assert await ws.recv() == b"\xff\x00garbage"
        await ws.send(b"\xff\xff\xff\xff")
        await ws.send("text is not a frame")
        stray = Frame(SeqID=1, LogID=1, service=5, method=FrameMethod.DATA)
        header = stray.headers.add()
        header.key, header.value = "message_id", "never-delivered"
        await ws.send(encode_frame(ack_frame(stray, 200, 0)))
        await ws.send(encode_frame(ping_frame(5)))
        assert headers_of(await next_frame(ws))["type"] == "pong"
    assert lark.bad_frames == 2
    assert lark.unmatched_acks == 1


async def _silent_client(url: str) -> SocketStream:
    """A WebSocket client that completes the handshake and then never reads again."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    stream = await anyio.connect_tcp(parts.hostname, parts.port)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    await stream.send(
        f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    with anyio.fail_after(5):
        while b"\r\n\r\n" not in answer:
            answer += await stream.receive()
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return stream


async def test_exit_is_prompt_with_a_client_that_does_not_read() -> None:
    lark = LarkStandIn()
    async with lark:
        url = (await discover(lark))["data"]["URL"]
        silent = await _silent_client(url)
        await lark.wait_connected()
        # More than the socket buffers hold: the rest waits in the server's write buffer,
        # which a closing transport would wait to flush to a client that never reads.
        with anyio.move_on_after(0.5):
            for _ in range(16):
                await lark.push_raw(bytes(1_000_000))
        started = time.monotonic()
    elapsed = time.monotonic() - started
    async with silent:
        with anyio.fail_after(2):
            # What was sent before the cut, then the end: the socket was closed on it.
            while True:
                try:
                    await silent.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    print(f"\nstand-in stopped {elapsed:.2f} s after the exit began")
    # The stand-in cuts the socket 0.2 s into its exit. Left open, the socket would hold the
    # exit for uvicorn's 1 s graceful timeout on top of those 0.2 s, so never under 1.2 s.
    assert elapsed < 1.2


# -------------------------------------------------------------------------------- OpenAPI


async def test_tenant_token_route(lark: LarkStandIn, http: httpx.AsyncClient) -> None:
    path = "/open-apis/auth/v3/tenant_access_token/internal"
    good = {"app_id": lark.app_id, "app_secret": lark.app_secret}
    first = (await http.post(path, json=good)).json()
    again = (await http.post(path, json=good)).json()
    assert first["code"] == 0 and first["tenant_access_token"].startswith("t-")
    assert first["expire"] == 7200
    assert again["tenant_access_token"] == first["tenant_access_token"]

    wrong_secret = await http.post(path, json={**good, "app_secret": "x"})
    wrong_app = await http.post(path, json={**good, "app_id": "cli_other"})
    assert (wrong_secret.status_code, wrong_secret.json()["code"]) == (400, 10014)
    assert wrong_app.json()["code"] == 10003
    lark.refuse_credentials = True
    assert (await http.post(path, json=good)).json()["code"] == 10014


async def test_bot_info_requires_a_valid_token(lark: LarkStandIn, http: httpx.AsyncClient) -> None:
    missing = await http.get("/open-apis/bot/v3/info")
    assert (missing.status_code, missing.json()["code"]) == (400, 99991661)
    bogus = await http.get("/open-apis/bot/v3/info", headers={"Authorization": "Bearer t-x"})
    assert bogus.json()["code"] == 99991663

    auth = await token(http, lark)
    info = (await http.get("/open-apis/bot/v3/info", headers=auth)).json()
    assert info["code"] == 0
    assert (info["bot"]["open_id"], info["bot"]["app_name"]) == ("ou_bot", "larkbot")

    lark.invalidate_tokens()
    stale = await http.get("/open-apis/bot/v3/info", headers=auth)
    assert stale.json()["code"] == 99991663
    renewed = await token(http, lark)
    assert renewed != auth
    assert (await http.get("/open-apis/bot/v3/info", headers=renewed)).json()["code"] == 0


async def test_tokens_expire_after_their_ttl() -> None:
    async with (
        LarkStandIn(token_ttl=0) as lark,
        httpx.AsyncClient(base_url=lark.url, trust_env=False) as http,
    ):
        auth = await token(http, lark)
        answer = await http.get("/open-apis/bot/v3/info", headers=auth)
    assert answer.json()["code"] == 99991663


async def test_reply_send_patch_and_reactions_are_recorded(
    lark: LarkStandIn, http: httpx.AsyncClient
) -> None:
    async with long_connection(lark):
        inbound = await lark.send_text("hi", chat_id="oc_p2p_7")
    auth = await token(http, lark)

    reply = await http.post(
        f"/open-apis/im/v1/messages/{inbound}/reply",
        headers=auth,
        json=text_body("hello", uuid="u-1", reply_in_thread=True),
    )
    data = reply.json()["data"]
    assert reply.json()["code"] == 0 and data["message_id"].startswith("om_")
    assert (data["chat_id"], data["parent_id"], data["root_id"]) == ("oc_p2p_7", inbound, inbound)
    assert data["thread_id"].startswith("omt_")
    assert json.loads(data["body"]["content"]) == {"text": "hello"}

    sent = await http.post(
        "/open-apis/im/v1/messages",
        params={"receive_id_type": "chat_id"},
        headers=auth,
        json={"receive_id": "oc_group_2", **text_body("news")},
    )
    assert sent.json()["data"]["chat_id"] == "oc_group_2"

    card = {"elements": [{"tag": "markdown", "content": "working..."}]}
    card_sent = await http.post(
        f"/open-apis/im/v1/messages/{inbound}/reply",
        headers=auth,
        json={"msg_type": "interactive", "content": json.dumps(card)},
    )
    card_id = card_sent.json()["data"]["message_id"]
    card["elements"][0]["content"] = "**done**"
    patched = await http.patch(
        f"/open-apis/im/v1/messages/{card_id}", headers=auth, json={"content": json.dumps(card)}
    )
    assert patched.json()["code"] == 0
    text_patch = await http.patch(
        f"/open-apis/im/v1/messages/{data['message_id']}",
        headers=auth,
        json={"content": json.dumps({"text": "edited"})},
    )
    assert text_patch.json()["code"] == 230001, "only cards can be patched"

    added = await http.post(
        f"/open-apis/im/v1/messages/{inbound}/reactions",
        headers=auth,
        json={"reaction_type": {"emoji_type": "OK"}},
    )
    reaction_id = added.json()["data"]["reaction_id"]
    deleted = await http.delete(
        f"/open-apis/im/v1/messages/{inbound}/reactions/{reaction_id}", headers=auth
    )
    again = await http.delete(
        f"/open-apis/im/v1/messages/{inbound}/reactions/{reaction_id}", headers=auth
    )
    assert deleted.json()["code"] == 0 and again.json()["code"] != 0

    first, second, third = lark.replies
    assert first == ReplyRecord(
        kind="reply",
        to_message_id=inbound,
        receive_id=None,
        receive_id_type=None,
        msg_type="text",
        content={"text": "hello"},
        uuid="u-1",
        reply_in_thread=True,
        message_id=data["message_id"],
        chat_id="oc_p2p_7",
        at=first.at,
    )
    assert first.text == "hello"
    assert (second.kind, second.receive_id, second.receive_id_type, second.text) == (
        "send",
        "oc_group_2",
        "chat_id",
        "news",
    )
    assert (third.msg_type, third.content) == (
        "interactive",
        {"elements": [{"tag": "markdown", "content": "working..."}]},
    )
    assert [(p.message_id, p.content) for p in lark.patches] == [(card_id, card)]
    assert [(r.action, r.emoji_type, r.message_id) for r in lark.reactions] == [
        ("add", "OK", inbound),
        ("delete", "OK", inbound),
    ]
    routes = [(call.method, call.route, call.status) for call in lark.api_calls]
    assert ("POST", REPLY_ROUTE, 200) in routes
    assert ("DELETE", "im/v1/messages/{message_id}/reactions/{reaction_id}", 400) in routes


async def test_a_seen_uuid_is_not_posted_twice(lark: LarkStandIn, http: httpx.AsyncClient) -> None:
    auth = await token(http, lark)
    answers = [
        (
            await http.post(
                "/open-apis/im/v1/messages/om_1/reply",
                headers=auth,
                json=text_body("once", uuid="om_1-0"),
            )
        ).json()
        for _ in range(3)
    ]
    assert {answer["data"]["message_id"] for answer in answers} == {
        answers[0]["data"]["message_id"]
    }
    assert len(lark.replies) == 1 and lark.suppressed_duplicates == 2


async def test_message_bodies_are_validated(lark: LarkStandIn, http: httpx.AsyncClient) -> None:
    auth = await token(http, lark)
    path = "/open-apis/im/v1/messages/om_1/reply"
    not_a_string = await http.post(
        path, headers=auth, json={"msg_type": "text", "content": {"text": "x"}}
    )
    not_json = await http.post(path, headers=auth, json={"msg_type": "text", "content": "{x"})
    too_long = await http.post(path, headers=auth, json=text_body("x" * 160_000))
    no_id_type = await http.post(
        "/open-apis/im/v1/messages", headers=auth, json={"receive_id": "oc_1", **text_body("x")}
    )
    assert (not_a_string.status_code, not_a_string.json()["code"]) == (400, 230001)
    assert not_json.json()["code"] == 230001
    assert too_long.json()["code"] == 230025
    assert no_id_type.json()["code"] == 99992402
    assert lark.replies == []


async def test_fail_next_rate_limit_and_server_errors(
    lark: LarkStandIn, http: httpx.AsyncClient
) -> None:
    auth = await token(http, lark)  # not affected: faults without a route skip the token route
    path = "/open-apis/im/v1/messages/om_1/reply"
    lark.fail_next(1, status=429, reset_seconds=2)
    limited = await http.post(path, headers=auth, json=text_body("a"))
    assert limited.status_code == 429 and limited.json()["code"] == 99991400
    assert limited.headers["x-ogw-ratelimit-reset"] == "2"
    assert int(limited.headers["x-ogw-ratelimit-limit"]) > 0

    lark.fail_next(2, status=503)
    failed = [await http.post(path, headers=auth, json=text_body("b")) for _ in range(3)]
    assert [answer.status_code for answer in failed] == [503, 503, 200]
    assert failed[0].json()["code"] != 0

    lark.fail_next(1, status=200, code=99991663, route=REPLY_ROUTE)
    info = await http.get("/open-apis/bot/v3/info", headers=auth)
    assert info.json()["code"] == 0, "a fault for another route leaves this one alone"
    invalid = await http.post(path, headers=auth, json=text_body("c"))
    assert (invalid.status_code, invalid.json()["code"]) == (200, 99991663)

    assert len(lark.replies) == 1
    statuses = [(c.status, c.code) for c in lark.api_calls if c.route == REPLY_ROUTE]
    assert statuses == [(429, 99991400), (503, 503), (503, 503), (200, 0), (200, 99991663)]


async def test_unknown_open_api_routes_answer_404(
    lark: LarkStandIn, http: httpx.AsyncClient
) -> None:
    answer = await http.get("/open-apis/nothing/v1/here")
    assert answer.status_code == 404
    assert lark.api_calls[-1].path == "/open-apis/nothing/v1/here"


async def test_extra_routes_share_auth_faults_and_records() -> None:
    async def get_record(request: ApiRequest) -> dict[str, Any]:
        if request.path_params["record_id"] == "missing":
            raise ApiError(1254043, "record not found")
        return {"record": {"id": request.path_params["record_id"], "app": request.lark.app_id}}

    template = "bitable/v1/apps/{app_token}/tables/{table_id}/records/{record_id}"
    lark = LarkStandIn(extra_routes=[OpenApiRoute("GET", template, get_record)])
    async with lark, httpx.AsyncClient(base_url=lark.url, trust_env=False) as http:
        with pytest.raises(RuntimeError):
            lark.add_routes(OpenApiRoute("GET", "x/v1/y", get_record))
        path = "/open-apis/bitable/v1/apps/app1/tables/tbl1/records/"
        assert (await http.get(path + "rec1")).json()["code"] == 99991661
        auth = await token(http, lark)
        found = (await http.get(path + "rec1", headers=auth)).json()
        missing = await http.get(path + "missing", headers=auth)
        lark.fail_next(1, status=429, route=template)
        limited = await http.get(path + "rec1", headers=auth)
    assert found == {
        "code": 0,
        "msg": "success",
        "data": {"record": {"id": "rec1", "app": "cli_test"}},
    }
    assert (missing.status_code, missing.json()["code"]) == (400, 1254043)
    assert limited.status_code == 429
    assert [c.status for c in lark.api_calls if c.route == template] == [400, 200, 400, 429]


async def test_outbound_records_can_be_watched(lark: LarkStandIn, http: httpx.AsyncClient) -> None:
    auth = await token(http, lark)
    async with lark.watch_outbound() as records:
        await http.post(
            "/open-apis/im/v1/messages/om_1/reply", headers=auth, json=text_body("streamed")
        )
        with anyio.fail_after(2):
            record = await records.receive()
    assert isinstance(record, ReplyRecord) and record.text == "streamed"


async def test_an_error_in_the_body_propagates_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with LarkStandIn() as lark:
            await lark.redeliver("om_never_sent")


async def test_a_taken_port_fails_with_os_error(lark: LarkStandIn) -> None:
    with pytest.raises(OSError, match="could not listen"):
        async with LarkStandIn(port=lark.port):
            pass


async def test_the_port_is_the_real_one_once_started_and_read_only() -> None:
    async with LarkStandIn() as lark:
        assert lark.port > 0 and lark.url.endswith(f":{lark.port}")
        with pytest.raises(AttributeError):
            lark.port = 1  # type: ignore[misc]

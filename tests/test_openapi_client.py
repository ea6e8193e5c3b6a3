"""The OpenAPI client against a real HTTP server on 127.0.0.1 that plays Lark's OpenAPI."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import secrets
import socket
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from yarl import URL

from larkbot.core import RetryPolicy
from larkbot.lark import (
    BotInfo,
    CredentialsError,
    LarkAPIError,
    LarkClient,
    SentMessage,
    reply_uuid,
)
from larkbot.ops.metrics import REGISTRY
from larkbot.testing._serving import ServedApp
from tests._factories import REPLY_ROUTE

pytestmark = pytest.mark.anyio

APP_ID = "cli_test"
SECRET = "s3cr3t-app-secret-value"
TOKEN_PATH = "auth/v3/tenant_access_token/internal"
FAST = RetryPolicy(max_attempts=4, base_delay=0.02, max_delay=1.0, deadline=5.0, jitter=0.0)
HANG = object()


@dataclass(frozen=True)
class Seen:
    """One API call as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    content_type: str | None
    body: Any


class FakeLark:
    """Just enough of Lark's OpenAPI to exercise the client, with scripted failures."""

    def __init__(self, *, expire: float = 7200.0, token_delay: float = 0.0) -> None:
        self.expire = expire
        self.token_delay = token_delay
        self.token_calls = 0
        self.valid_tokens: set[str] = set()
        self.scripts: dict[str, list[Any]] = defaultdict(list)
        self.calls: list[Seen] = []
        self.peers: set[tuple[str, int]] = set()
        self.release = anyio.Event()
        self._sent = 0
        self.app = Starlette(
            routes=[
                Route(f"/open-apis/{TOKEN_PATH}", self._token, methods=["POST"]),
                Route(
                    "/open-apis/{path:path}",
                    self._api,
                    methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
                ),
            ]
        )

    def script(self, path: str, *responses: Any) -> None:
        """Answer the next calls to ``path`` with ``responses``, in order."""
        self.scripts[path].extend(responses)

    def calls_to(self, path: str) -> list[Seen]:
        return [call for call in self.calls if call.path == path]

    async def _token(self, request: Request) -> Response:
        self.token_calls += 1
        if self.scripts[TOKEN_PATH]:
            return self.scripts[TOKEN_PATH].pop(0)
        payload = await request.json()
        if self.token_delay:
            await anyio.sleep(self.token_delay)
        if payload.get("app_id") != APP_ID or payload.get("app_secret") != SECRET:
            # Echo what was sent, as a careless server might: the client must redact it.
            return JSONResponse(
                {"code": 10014, "msg": f"app secret invalid: {payload.get('app_secret')}"},
                status_code=400,
            )
        token = f"t-{self.token_calls}-{secrets.token_hex(8)}"
        self.valid_tokens.add(token)
        return JSONResponse(
            {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": self.expire}
        )

    async def _api(self, request: Request) -> Response:
        assert request.client is not None
        self.peers.add((request.client.host, request.client.port))
        raw = await request.body()
        path = request.path_params["path"]
        self.calls.append(
            Seen(
                method=request.method,
                path=path,
                query=dict(request.query_params),
                authorization=request.headers.get("authorization"),
                content_type=request.headers.get("content-type"),
                body=json.loads(raw) if raw else None,
            )
        )
        if self.scripts[path]:
            scripted = self.scripts[path].pop(0)
            if scripted is HANG:
                await self.release.wait()
                return JSONResponse({"code": 0, "data": {}})
            return scripted
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        if token not in self.valid_tokens:
            return JSONResponse(
                {"code": 99991663, "msg": "Invalid access token for authorization."},
                status_code=400,
            )
        return JSONResponse(self._success(request.method, path))

    def _success(self, method: str, path: str) -> dict[str, Any]:
        if path == "bot/v3/info":
            return {"code": 0, "msg": "ok", "bot": {"open_id": "ou_bot", "app_name": "Helper"}}
        if method == "POST" and (path.endswith("/reply") or path == "im/v1/messages"):
            self._sent += 1
            return {"code": 0, "data": {"message_id": f"om_sent_{self._sent}", "chat_id": "oc_1"}}
        if method == "POST" and path.endswith("/reactions"):
            return {"code": 0, "data": {"reaction_id": "rc_1"}}
        return {"code": 0, "msg": "success", "data": {"method": method, "path": path}}


@asynccontextmanager
async def serving(fake: FakeLark) -> AsyncIterator[str]:
    """Serve ``fake`` on a free 127.0.0.1 port, as the stand-ins are served; yield its URL."""
    served = ServedApp("the fake Lark OpenAPI")
    port = await served.start(fake.app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        fake.release.set()
        await served.stop(grace=2.0)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def requests_count(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "larkbot_openapi_requests_total", {"route": route, "status": status}
    )
    return value or 0.0


def latency_count(route: str) -> float:
    value = REGISTRY.get_sample_value(
        "larkbot_openapi_request_duration_seconds_count", {"route": route}
    )
    return value or 0.0


def lark_error(status: int, code: int, msg: str, **headers: str) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg}, status_code=status, headers=headers)


async def test_token_is_fetched_once_cached_and_sent_as_bearer() -> None:
    fake = FakeLark()
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            token = await client.tenant_token()
            info = await client.bot_info()
            await client.bot_info()
            assert await client.tenant_token() == token
    assert info == BotInfo(open_id="ou_bot", app_name="Helper")
    assert fake.token_calls == 1
    calls = fake.calls_to("bot/v3/info")
    assert [call.method for call in calls] == ["GET", "GET"]
    assert all(call.authorization == f"Bearer {token}" for call in calls)
    assert all(call.content_type == "application/json; charset=utf-8" for call in calls)


async def test_fifty_concurrent_callers_share_one_token_refresh() -> None:
    fake = FakeLark(token_delay=0.2)
    tokens: list[str] = []

    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:

        async def call() -> None:
            tokens.append(await client.tenant_token())
            await client.bot_info()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(call)
    assert fake.token_calls == 1
    assert len(tokens) == 50 and len(set(tokens)) == 1
    assert len(fake.calls_to("bot/v3/info")) == 50


async def test_token_is_renewed_before_it_expires() -> None:
    # Lifetime 0.5 s: renewed once less than 10% of it (0.05 s) remains.
    fake = FakeLark(expire=0.5)
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            first = await client.tenant_token()
            assert await client.tenant_token() == first
            # The passage of time is the point here, so a sleep; it can only oversleep, and
            # any time past 0.45 s finds the token due for renewal.
            await anyio.sleep(0.46)
            second = await client.tenant_token()
    assert second != first
    assert fake.token_calls == 2


async def test_refused_token_is_renewed_and_the_call_retried_once() -> None:
    fake = FakeLark()
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            stale = await client.tenant_token()
            fake.valid_tokens.clear()  # the platform revoked it early
            sent = await client.reply("om_1", msg_type="text", content={"text": "hi"})
    assert sent.message_id == "om_sent_1"
    assert fake.token_calls == 2
    calls = fake.calls_to("im/v1/messages/om_1/reply")
    assert len(calls) == 2
    assert calls[0].authorization == f"Bearer {stale}"
    assert calls[1].authorization != f"Bearer {stale}"


async def test_token_refused_twice_is_an_error_not_a_loop() -> None:
    fake = FakeLark()
    fake.script(
        "bot/v3/info",
        lark_error(400, 99991663, "Invalid access token"),
        lark_error(400, 99991668, "Invalid access token"),
    )
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5), pytest.raises(LarkAPIError) as caught:
            await client.bot_info()
    assert caught.value.code == 99991668
    assert caught.value.status == 400
    assert len(fake.calls_to("bot/v3/info")) == 2
    assert fake.token_calls == 2


async def test_refused_credentials_raise_credentials_error_without_the_secret() -> None:
    fake = FakeLark()
    async with (
        serving(fake) as url,
        LarkClient(url, APP_ID, SecretStr("wrong-" + SECRET), retry=FAST) as client,
    ):
        with anyio.fail_after(5), pytest.raises(CredentialsError) as caught:
            await client.bot_info()
    error = caught.value
    assert isinstance(error, LarkAPIError)
    assert error.code == 10014
    assert "app id and app secret" in str(error)
    assert SECRET not in str(error) and SECRET not in repr(error) and SECRET not in error.msg
    assert fake.token_calls == 1  # a configuration error is not retried
    assert fake.calls == []


async def test_waiters_behind_a_failed_refresh_share_its_error() -> None:
    fake = FakeLark(token_delay=0.1)
    errors: list[BaseException] = []
    async with serving(fake) as url, LarkClient(url, APP_ID, "wrong", retry=FAST) as client:

        async def call() -> None:
            try:
                await client.tenant_token()
            except CredentialsError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(call)
    assert len(errors) == 10
    assert fake.token_calls == 1


async def test_rate_limit_waits_for_the_reset_header_then_succeeds() -> None:
    fake = FakeLark()
    fake.script(
        "im/v1/messages/om_1/reply",
        lark_error(
            429,
            99991400,
            "request trigger frequency limit",
            **{"x-ogw-ratelimit-limit": "5", "x-ogw-ratelimit-reset": "0.2"},
        ),
        # Rate limited with HTTP 200 and no reset header: ordinary backoff.
        lark_error(200, 99991400, "request trigger frequency limit"),
    )
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            await client.tenant_token()
            started = anyio.current_time()
            sent = await client.reply("om_1", msg_type="text", content={"text": "hi"})
            elapsed = anyio.current_time() - started
    assert sent == SentMessage(message_id="om_sent_1", chat_id="oc_1")
    assert elapsed >= 0.2
    assert len(fake.calls_to("im/v1/messages/om_1/reply")) == 3


async def test_rate_limit_wait_is_capped_at_max_delay() -> None:
    fake = FakeLark()
    fake.script(
        "bot/v3/info", lark_error(429, 99991400, "slow down", **{"x-ogw-ratelimit-reset": "3600"})
    )
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.1, jitter=0.0)
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=policy) as client:
        with anyio.fail_after(30):  # the 0.1 s cap, not the hour the header asks for
            assert (await client.bot_info()).open_id == "ou_bot"


async def test_server_error_is_retried_with_the_same_uuid() -> None:
    fake = FakeLark()
    fake.script("im/v1/messages/om_1/reply", PlainTextResponse("bad gateway", status_code=502))
    key = reply_uuid("om_1", 0)
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            sent = await client.reply(
                "om_1", msg_type="text", content={"text": "你好 👋"}, uuid=key
            )
    assert sent.message_id == "om_sent_1"
    calls = fake.calls_to("im/v1/messages/om_1/reply")
    assert len(calls) == 2
    assert [call.body["uuid"] for call in calls] == [key, key]
    # ``content`` travels as a JSON string, non-ASCII kept as is.
    assert calls[0].body["content"] == '{"text": "你好 👋"}'
    assert calls[0].body["msg_type"] == "text"
    assert "reply_in_thread" not in calls[0].body


async def test_ids_needing_quotes_and_lone_surrogates_reach_the_platform() -> None:
    # The URL of a path made of plain characters is joined to the parsed root as it is;
    # an id is quoted into such a path. A lone surrogate cannot be encoded as UTF-8 and
    # is replaced, not lost with the reply.
    fake = FakeLark()
    odd_id = "om_a b/ü?x=1#y%"
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            await client.reply(odd_id, msg_type="text", content={"text": "a\ud800b"})
            data = await client.request("GET", "/open-apis/x/v1/a.b/../c", route="x/v1/c")
    (call,) = fake.calls_to(f"im/v1/messages/{odd_id}/reply")
    assert json.loads(call.body["content"]) == {"text": "a?b"}
    # A path a parser would resolve goes through the parser, as before.
    assert data["path"] == "x/v1/c"


@given(st.text(min_size=1, max_size=40), st.sampled_from(["reply", "reactions", ""]))
def test_a_plain_path_gives_the_url_parsing_would(message_id: str, tail: str) -> None:
    client = LarkClient("https://open.example.com:8443/", APP_ID, SECRET)
    path = f"im/v1/messages/{quote(message_id, safe='')}/{tail}".rstrip("/")
    # What aiohttp makes of it (it parses a URL given as text).
    assert str(URL(client._url(path))) == str(URL(client._api_root + path))


def test_reply_uuid_is_deterministic_short_and_distinct_per_chunk() -> None:
    keys = [reply_uuid("om_abc", chunk) for chunk in range(3)]
    assert keys == [reply_uuid("om_abc", chunk) for chunk in range(3)]
    assert len(set(keys)) == 3
    assert reply_uuid("om_abc") == keys[0]
    assert reply_uuid("om_abd") != keys[0]
    assert all(len(key) <= 50 for key in keys)
    with pytest.raises(ValueError):
        reply_uuid("")


@given(st.text(min_size=1, max_size=80), st.integers(min_value=0, max_value=10_000))
def test_reply_uuid_is_the_uuid5_of_the_message_and_chunk(message_id: str, chunk: int) -> None:
    # The key is computed without ``uuid.uuid5``; it must stay the very same key, or a
    # reply retried across an upgrade would post twice.
    namespace = uuid.uuid5(uuid.NAMESPACE_DNS, "reply.larkbot")
    assert reply_uuid(message_id, chunk) == str(uuid.uuid5(namespace, f"{message_id}:{chunk}"))


async def test_reply_without_uuid_still_carries_one_and_thread_flag() -> None:
    fake = FakeLark()
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            await client.reply("om_1", msg_type="text", content={"text": "a"}, reply_in_thread=True)
            await client.reply("om_1", msg_type="text", content={"text": "b"})
    first, second = fake.calls_to("im/v1/messages/om_1/reply")
    assert first.body["uuid"] and second.body["uuid"]
    assert first.body["uuid"] != second.body["uuid"]
    assert first.body["reply_in_thread"] is True


async def test_network_error_is_retried_a_bounded_number_of_times() -> None:
    port = closed_port()
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, jitter=0.0)
    before = requests_count(TOKEN_PATH, "error")
    async with LarkClient(f"http://127.0.0.1:{port}", APP_ID, SECRET, retry=policy) as client:
        with anyio.fail_after(5), pytest.raises(LarkAPIError) as caught:
            await client.reply("om_1", msg_type="text", content={"text": "hi"})
    assert caught.value.status is None
    assert caught.value.code == -1
    assert "3 attempts" in str(caught.value)
    assert requests_count(TOKEN_PATH, "error") - before == 3


async def _failed_bot_info(client: LarkClient, *, within: float) -> tuple[LarkAPIError, float]:
    """With a token at hand, ask for the bot's info, which must fail.

    :return: the error, and the seconds the failing call took.
    """
    with anyio.fail_after(within):
        await client.tenant_token()
        started = anyio.current_time()
        with pytest.raises(LarkAPIError) as caught:
            await client.bot_info()
        return caught.value, anyio.current_time() - started


async def test_deadline_bounds_retries_of_server_errors() -> None:
    fake = FakeLark()
    fake.script("bot/v3/info", *[lark_error(503, 1, "busy") for _ in range(100)])
    # A deadline long enough for a few attempts even on a loaded machine; the attempts
    # alone would allow 100 tries, 9.9 s of backoff.
    policy = RetryPolicy(max_attempts=100, base_delay=0.1, max_delay=0.1, deadline=1.5)
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=policy) as client:
        error, elapsed = await _failed_bot_info(client, within=30)
    attempts = len(fake.calls_to("bot/v3/info"))
    print(f"\n{attempts} attempts in {elapsed:.2f} s against a 1.5 s deadline")
    # Every attempt was answered 503; the error carries that status unless the deadline
    # ran out during a backoff, before the next attempt could be made.
    assert error.status in (503, None)
    assert "deadline" in str(error)
    assert 2 <= attempts < 100
    assert elapsed < policy.deadline + 3.0  # well short of the 9.9 s the attempts allow


async def test_deadline_cuts_a_hanging_request_short() -> None:
    fake = FakeLark()
    fake.script("bot/v3/info", HANG, HANG, HANG)
    policy = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.01, deadline=0.5)
    async with (
        serving(fake) as url,
        LarkClient(url, APP_ID, SECRET, retry=policy, timeout=30.0) as client,
    ):
        error, elapsed = await _failed_bot_info(client, within=60)
    print(f"\nhanging request cut after {elapsed:.2f} s (deadline 0.5 s, timeout 30 s)")
    # The transport's own timer, held to the deadline, cut the attempt and says so.
    assert "no answer before the deadline" in str(error)
    assert elapsed < 10.0  # the 0.5 s deadline, far from the 30 s timeout


async def test_a_given_sessions_timeouts_apply_when_none_is_set() -> None:
    fake = FakeLark()
    fake.script("bot/v3/info", HANG)
    async with (
        serving(fake) as url,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as http,
        LarkClient(url, APP_ID, SECRET, http=http, retry=FAST) as client,
    ):
        with anyio.fail_after(30):
            await client.tenant_token()
            started = anyio.current_time()
            assert (await client.bot_info()).open_id == "ou_bot"
            elapsed = anyio.current_time() - started
    print(f"\nanswered after one 0.2 s timeout, in {elapsed:.2f} s")
    # The 0.2 s timeout cut the hanging try; without it the policy's 5 s deadline would have.
    assert 0.2 <= elapsed < 3.0
    assert len(fake.calls_to("bot/v3/info")) == 2


async def test_other_client_errors_are_not_retried() -> None:
    fake = FakeLark()
    fake.script(
        "im/v1/messages/om_gone/reply",
        JSONResponse(
            {
                "code": 230011,
                "msg": "The message was withdrawn.",
                "error": {"log_id": "20240101abcdef"},
            },
            status_code=400,
        ),
    )
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5), pytest.raises(LarkAPIError) as caught:
            await client.reply("om_gone", msg_type="text", content={"text": "hi"})
    error = caught.value
    assert (error.code, error.status, error.route) == (230011, 400, REPLY_ROUTE)
    assert error.log_id == "20240101abcdef"
    assert "withdrawn" in str(error)
    assert len(fake.calls_to("im/v1/messages/om_gone/reply")) == 1


async def test_write_requests_are_retried_only_when_surely_not_applied() -> None:
    fake = FakeLark()
    path = "bitable/v1/apps/app1/tables/tbl1/records"
    route = "bitable/v1/apps/{app_token}/tables/{table_id}/records"
    fake.script(path, lark_error(429, 99991400, "limit", **{"x-ogw-ratelimit-reset": "0.05"}))
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            data = await client.request(
                "POST", path, route=route, json={"fields": {"Name": "x"}}, write=True
            )
            assert data == {"method": "POST", "path": path}
            assert len(fake.calls_to(path)) == 2

            fake.script(path, lark_error(500, 1, "internal error"))
            with pytest.raises(LarkAPIError) as caught:
                await client.request("POST", path, route=route, json={}, write=True)
    assert caught.value.status == 500
    assert "not retried" in str(caught.value)
    assert len(fake.calls_to(path)) == 3


async def test_generic_request_returns_data_and_accepts_query_params() -> None:
    fake = FakeLark()
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            data = await client.request(
                "get",
                "/open-apis/contact/v3/users/ou_1",
                route="contact/v3/users/{user_id}",
                params={"user_id_type": "open_id"},
            )
    assert data == {"method": "GET", "path": "contact/v3/users/ou_1"}
    (call,) = fake.calls_to("contact/v3/users/ou_1")
    assert call.query == {"user_id_type": "open_id"}


async def test_an_answer_with_text_cut_inside_an_emoji_is_still_read() -> None:
    # Regression: the faster JSON parser refuses an escaped lone surrogate, which Lark
    # sends for user text cut inside an emoji; the whole call failed as "not Lark's JSON".
    fake = FakeLark()
    raw = b'{"code":0,"msg":"success","data":{"text":"hi \\ud83d","n":1}}'
    fake.script("im/v1/messages", Response(raw, media_type="application/json"))
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            data = await client.request("GET", "im/v1/messages", route="im/v1/messages")
    assert data == {"text": "hi \ud83d", "n": 1}


async def test_send_patch_react_and_unreact_use_their_endpoints() -> None:
    fake = FakeLark()
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            sent = await client.send(
                "oc_1", msg_type="interactive", content={"schema": "2.0"}, uuid="u-1"
            )
            await client.patch("om_sent_1", content={"schema": "2.0", "body": {}})
            reaction = await client.react("om_1", "THUMBSUP")
            await client.unreact("om_1", reaction)
    assert sent.message_id == "om_sent_1"
    (send,) = fake.calls_to("im/v1/messages")
    assert send.method == "POST"
    assert send.query == {"receive_id_type": "chat_id"}
    assert send.body == {
        "receive_id": "oc_1",
        "msg_type": "interactive",
        "content": '{"schema": "2.0"}',
        "uuid": "u-1",
    }
    (patch,) = fake.calls_to("im/v1/messages/om_sent_1")
    assert patch.method == "PATCH"
    assert json.loads(patch.body["content"]) == {"schema": "2.0", "body": {}}
    assert reaction == "rc_1"
    (react,) = fake.calls_to("im/v1/messages/om_1/reactions")
    assert react.body == {"reaction_type": {"emoji_type": "THUMBSUP"}}
    (unreact,) = fake.calls_to("im/v1/messages/om_1/reactions/rc_1")
    assert unreact.method == "DELETE"


async def test_one_pool_serves_a_hundred_sequential_calls() -> None:
    fake = FakeLark()
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(10):
            for index in range(100):
                await client.reply(f"om_{index}", msg_type="text", content={"text": "ok"})
    assert len(fake.calls) == 100
    assert len(fake.peers) <= 2


async def test_a_given_session_is_used_and_left_open() -> None:
    fake = FakeLark()
    async with serving(fake) as url, aiohttp.ClientSession() as http:
        async with LarkClient(url, APP_ID, SECRET, http=http, retry=FAST) as client:
            with anyio.fail_after(5):
                await client.bot_info()
        assert not http.closed
        with anyio.fail_after(5):
            async with http.get(f"{url}/open-apis/bot/v3/info") as response:
                answer = await response.json()
    assert answer["code"] == 99991663  # reached the server, without a token
    assert len(fake.calls_to("bot/v3/info")) == 2  # the client's call went through it too


async def test_every_attempt_is_counted_and_timed() -> None:
    fake = FakeLark()
    fake.script("bot/v3/info", lark_error(503, 1, "busy"))
    before_503 = requests_count("bot/v3/info", "503")
    before_200 = requests_count("bot/v3/info", "200")
    before_token = requests_count(TOKEN_PATH, "200")
    before_latency = latency_count("bot/v3/info")
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            await client.bot_info()
    assert requests_count("bot/v3/info", "503") - before_503 == 1
    assert requests_count("bot/v3/info", "200") - before_200 == 1
    assert requests_count(TOKEN_PATH, "200") - before_token == 1
    assert latency_count("bot/v3/info") - before_latency == 2


async def test_retry_is_logged_with_the_message_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeLark()
    fake.script("im/v1/messages/om_42/reply", lark_error(500, 1, "oops"))
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            await client.reply("om_42", msg_type="text", content={"text": "hi"})
    retries = [
        record
        for record in caplog.records
        if record.name == "larkbot.lark" and record.levelno == logging.WARNING
    ]
    assert len(retries) == 1
    assert getattr(retries[0], "message_id", None) == "om_42"
    message = retries[0].getMessage()
    assert "om_42" in message and REPLY_ROUTE in message and "HTTP 500" in message


async def test_secret_and_token_never_reach_errors_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeLark()
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=FAST) as client:
        with anyio.fail_after(5):
            token = await client.tenant_token()
            fake.script(
                "im/v1/messages/om_1/reply",
                lark_error(503, 1, f"upstream saw token {token}"),
                lark_error(400, 230002, f"bad request with {token} and {SECRET}"),
            )
            with pytest.raises(LarkAPIError) as caught:
                await client.reply("om_1", msg_type="text", content={"text": "hi"})
            fake.valid_tokens.clear()
            await client.bot_info()  # token refused, renewed, retried
    text = f"{caught.value} {caught.value!r} {caught.value.msg} {client!r}"
    assert token not in text and SECRET not in text
    assert "***" in str(caught.value)
    assert caplog.records  # the retries above were logged
    assert token not in caplog.text and SECRET not in caplog.text


def test_errors_survive_copying_with_their_fields() -> None:
    error = CredentialsError(10014, "app secret invalid", status=400, route=TOKEN_PATH)
    for clone in (copy.copy(error), pickle.loads(pickle.dumps(error))):
        assert type(clone) is CredentialsError
        assert (clone.code, clone.msg, clone.status, clone.route) == (
            10014,
            "app secret invalid",
            400,
            TOKEN_PATH,
        )
        assert str(clone) == str(error)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"base_delay": -1.0},
        {"base_delay": 2.0, "max_delay": 1.0},
        {"deadline": 0.0},
        {"jitter": 1.5},
        {"deadline": float("inf")},
        {"jitter_limit": -1.0},
        {"jitter_limit": float("inf")},
    ],
)
def test_retry_policy_rejects_unusable_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_policy_is_frozen_and_backs_off_exponentially() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=0.0)
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.rate_limit_wait(0.2, 1) == 0.2
    assert policy.rate_limit_wait(60.0, 1) == 3.0
    assert policy.rate_limit_wait(None, 2) == 1.0
    jittery = RetryPolicy(base_delay=1.0, max_delay=10.0, jitter=0.2)
    assert all(0.8 <= jittery.backoff(1) <= 1.2 for _ in range(100))


def test_an_absolute_jitter_only_lengthens_waits_even_past_the_longest() -> None:
    # The long connection's schedule: 1 s, 2 s, 4 s... capped by ReconnectInterval (10 s),
    # each plus up to its own length but never more than ReconnectNonce (3 s).
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0, jitter=1.0, jitter_limit=3.0)
    for failures, low, high in [(1, 1.0, 2.0), (2, 2.0, 4.0), (3, 4.0, 7.0), (6, 10.0, 13.0)]:
        waits = [policy.backoff(failures) for _ in range(200)]
        assert all(low <= wait <= high for wait in waits), (failures, min(waits), max(waits))
        assert max(waits) - min(waits) > (high - low) / 2  # spread, not a fixed offset
    steady = RetryPolicy(base_delay=1.0, max_delay=10.0, jitter=1.0, jitter_limit=0.0)
    assert [steady.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0]


async def test_a_token_refresh_cannot_stretch_a_call_past_its_deadline() -> None:
    # Regression: the token fetch ran before the call's remaining time was checked, with
    # a deadline of its own, so a call that had spent most of its budget on retries could
    # wait a whole second deadline for a slow token endpoint.
    fake = FakeLark()
    fake.script(
        "bot/v3/info",
        *[lark_error(503, 1, "busy") for _ in range(3)],
        lark_error(400, 99991663, "Invalid access token"),
    )
    policy = RetryPolicy(max_attempts=100, base_delay=0.8, max_delay=0.8, deadline=4.0, jitter=0)
    async with serving(fake) as url, LarkClient(url, APP_ID, SECRET, retry=policy) as client:
        with anyio.fail_after(30):
            await client.tenant_token()
            fake.token_delay = 20.0  # the refresh the call needs will be slow
            started = anyio.current_time()
            with pytest.raises(LarkAPIError, match="tenant token") as caught:
                await client.bot_info()
            elapsed = anyio.current_time() - started
    print(f"\ncall with a slow token refresh gave up after {elapsed:.2f} s (deadline 4 s)")
    assert "deadline" in str(caught.value)
    # Its own 4 s deadline. Before the fix: 2.4 s of backoff, then a whole deadline of the
    # token fetch's own, so never less than 6.4 s.
    assert elapsed < 6.2

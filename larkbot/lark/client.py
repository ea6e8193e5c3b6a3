"""The async Lark OpenAPI client: one connection pool, tenant tokens, retries.

This is ours rather than lark-oapi's: the SDK's async calls open
a new ``httpx.AsyncClient`` per request, so nothing is pooled, and fetch the tenant token
with a blocking ``requests`` call that stalls the event loop and deadlocks against a server
living in the same loop. Here one pooled session (see ``_http``) serves every call and the
token is fetched on the loop, behind one lock.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import time
import uuid as uuid_module
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import quote

import aiohttp
import anyio
from pydantic import SecretStr
from pydantic_core import PydanticSerializationError, from_json, to_json
from yarl import URL

from larkbot import __version__
from larkbot.core.errors import EX_CONFIG, LarkbotError
from larkbot.core.redact import add_secrets, redact
from larkbot.core.retry import RetryPolicy
from larkbot.lark._http import HttpAnswer, HttpTransport, NoAnswerError
from larkbot.lark._tokens import TokenCache
from larkbot.ops.metrics import OPENAPI_LATENCY, OPENAPI_REQUESTS, labelled

__all__ = [
    "BotInfo",
    "CredentialsError",
    "EndpointAnswer",
    "LarkAPIError",
    "LarkClient",
    "SentMessage",
    "UserTokenError",
    "reply_uuid",
]

logger = logging.getLogger("larkbot.lark")

_API_PREFIX = "/open-apis/"
_TOKEN_ROUTE = "auth/v3/tenant_access_token/internal"
_TOKEN_INVALID_CODES = frozenset({99991661, 99991663, 99991668})
# A refused user access token: invalid (99991663, 99991668), expired (99991677), or not
# one at all (99991669: the token is not of the expected kind).
_USER_TOKEN_REFUSED_CODES = frozenset({99991661, 99991663, 99991668, 99991669, 99991677})
_RATE_LIMITED_CODE = 99991400
_RATE_LIMIT_RESET_HEADER = "x-ogw-ratelimit-reset"
_LOG_ID_HEADER = "x-tt-logid"
# Code of an error the platform did not give a Lark code for (network failure, an answer
# that is not Lark's JSON).
_NO_CODE = -1
_JSON_CONTENT_TYPE = "application/json; charset=utf-8"
_DEFAULT_TIMEOUT = 10.0
# Lark keeps a ``uuid`` for about an hour and caps it at 50 characters; uuid5 gives 36.
_UUID_NAMESPACE = uuid_module.uuid5(uuid_module.NAMESPACE_DNS, "reply.larkbot")
# uuid5 is SHA-1 over the namespace's bytes then the name: hashing the namespace once and
# formatting the digest directly gives the same key in a fifth of ``uuid.uuid5``'s time.
_UUID_PREFIX = hashlib.sha1(_UUID_NAMESPACE.bytes, usedforsecurity=False)
_ENDPOINT_PATH = "/callback/ws/endpoint"
# A path that goes on the wire as it is: letters, digits, ``_``, ``~``, ``-`` and slashes
# (no dot, so no ``.``/``..`` segment a parser would resolve, and no escape it could
# rewrite: a parser decodes ``%40`` to ``@``).
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_~/\-]*")


@dataclass(eq=False, repr=False)
class LarkAPIError(LarkbotError):
    """An OpenAPI call failed: the platform refused it, or retries ran out.

    ``code`` is Lark's error code, or -1 when there is none (network failure, an answer
    that is not Lark's JSON). ``status`` is the HTTP status of the last attempt (``None``
    when no answer came). ``route`` is the templated path, never a concrete one. The text
    never contains the token or the app secret.
    """

    code: int
    msg: str
    _: KW_ONLY
    status: int | None = None
    route: str
    log_id: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.code, self.msg)

    def __str__(self) -> str:
        """Describe the failure in one line."""
        status = f"HTTP {self.status}" if self.status is not None else "no HTTP answer"
        log_id = f", log_id {self.log_id}" if self.log_id else ""
        return f"Lark OpenAPI {self.route} failed: {self.msg} (code {self.code}, {status}{log_id})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Keep the keyword-only fields when the error is copied or pickled."""
        return (
            _rebuild_error,
            (type(self), self.code, self.msg, self.status, self.route, self.log_id),
        )


class CredentialsError(LarkAPIError):
    """The token endpoint refused the app id and app secret: a configuration error."""

    exit_code = EX_CONFIG

    def __str__(self) -> str:
        """Say what the operator must fix, without the secret."""
        return (
            f"Lark refused the app id and app secret (code {self.code}: {self.msg}); "
            "check the app credentials in the configuration."
        )


class UserTokenError(LarkAPIError):
    """Lark refused the user access token a call was made with (invalid or expired)."""


def _rebuild_error(
    cls: type[LarkAPIError],
    code: int,
    msg: str,
    status: int | None,
    route: str,
    log_id: str | None,
) -> LarkAPIError:
    return cls(code, msg, status=status, route=route, log_id=log_id)


class _Retry(NamedTuple):
    """A failed attempt worth another: why, how long to wait, what to raise if none is left."""

    reason: str
    delay: float
    error: LarkAPIError
    cause: BaseException | None = None


@dataclass(frozen=True, slots=True)
class BotInfo:
    """Who the bot is: its ``open_id`` (to spot @mentions and its own messages) and name."""

    open_id: str
    app_name: str


@dataclass(frozen=True, slots=True)
class EndpointAnswer:
    """The answer of long-connection endpoint discovery: HTTP status and JSON body.

    ``body`` is ``None`` when the answer is not a JSON object; reading its codes is the
    long connection's business.
    """

    status: int
    body: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message the platform accepted."""

    message_id: str
    chat_id: str | None


def reply_uuid(message_id: str, chunk: int = 0) -> str:
    """Return the idempotency key of the ``chunk``-th reply to ``message_id``.

    The key depends only on its inputs, so a reply retried after a redelivery, a
    reconnect or a restart carries the same ``uuid`` and the platform posts it once.
    """
    if not message_id:
        raise ValueError("reply_uuid needs the inbound message id")
    if chunk < 0:
        raise ValueError("reply_uuid chunk must not be negative")
    digest = _UUID_PREFIX.copy()
    digest.update(f"{message_id}:{chunk}".encode())
    raw = bytearray(digest.digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class LarkClient:
    """An async client of Lark's OpenAPI over one pooled ``aiohttp.ClientSession``.

    Use it as an async context manager. ``base_url`` is the platform's domain
    (``https://open.feishu.cn``, ``https://open.larksuite.com`` or a local stand-in);
    calls go to ``{base_url}/open-apis/...``. When ``http`` is given it is used as is and
    left open; otherwise the client creates its own session, with a pool of
    ``max_connections`` kept alive between calls, and closes it. ``timeout`` bounds each
    attempt, in seconds (10 by default; with a given ``http`` and no ``timeout``, that
    session's own timeouts apply); ``retry`` bounds the whole call, whose attempts never
    outlast its deadline. The tenant token is renewed when the platform reports it invalid.

    With ``user_access_token`` every call acts as that user (Lark checks the user's own
    permissions) instead of as the app: the token is sent as is and never renewed, and a
    refusal of it raises :class:`UserTokenError`. Such clients are cheap; make one per
    caller over a shared ``http`` pool.
    """

    def __init__(
        self,
        base_url: str,
        app_id: str,
        app_secret: str | SecretStr,
        *,
        http: aiohttp.ClientSession | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        max_connections: int = 100,
        user_access_token: str | SecretStr | None = None,
    ) -> None:
        """Prepare the client; no request is made until the first call."""
        if not base_url:
            raise ValueError("LarkClient needs the platform's base URL")
        if timeout is not None and timeout <= 0:
            raise ValueError("LarkClient timeout must be positive")
        self._base_url = base_url.rstrip("/")
        self._api_root = self._base_url + _API_PREFIX
        # The root parsed once (see _url); a base URL with a query or a fragment is joined
        # as text, as before.
        api_url = _parsed(self._api_root)
        self._api_url = (
            api_url
            if api_url is not None
            and _PLAIN_PATH.fullmatch(api_url.raw_path)
            and not (api_url.raw_query_string or api_url.raw_fragment)
            else None
        )
        self._app_id = app_id
        self._app_secret = (
            app_secret if isinstance(app_secret, SecretStr) else SecretStr(app_secret)
        )
        self._retry = retry if retry is not None else RetryPolicy()
        self._http = HttpTransport(
            self._base_url,
            session=http,
            # ``None`` with a given session: that session's own timeouts apply.
            timeout=timeout
            if timeout is not None
            else (_DEFAULT_TIMEOUT if http is None else None),
            max_connections=max_connections,
            user_agent=f"larkbot/{__version__}",
        )
        self._tokens = TokenCache(self._fetch_token)
        # The headers of the last token used (see _headers_for).
        self._headers: tuple[str | None, dict[str, str]] | None = None
        self._user_token = (
            user_access_token.get_secret_value()
            if isinstance(user_access_token, SecretStr)
            else user_access_token
        ) or None
        if self._user_token is not None:
            # Registered with the log redactor, like tenant tokens, before any call is made.
            add_secrets(self._user_token)

    def __repr__(self) -> str:
        """Name the platform and the app, never the secret."""
        acting = ", as_user=True" if self._user_token is not None else ""
        return f"LarkClient(base_url={self._base_url!r}, app_id={self._app_id!r}{acting})"

    async def __aenter__(self) -> Self:
        """Return the client; its pool opens connections on demand."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the pool if this client created it."""
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool if this client created it; a given ``http`` stays open."""
        await self._http.aclose()

    async def discover_endpoint(self) -> EndpointAnswer:
        """``POST {base_url}/callback/ws/endpoint`` with the app's credentials, once.

        The long connection's bootstrap: one attempt, no token, no retry (the caller's
        reconnect loop owns the backoff).

        :raises LarkAPIError: no answer came (code -1).
        """
        started = time.monotonic()
        body = _encode_body(
            {"AppID": self._app_id, "AppSecret": self._app_secret.get_secret_value()}
        )
        try:
            answer = await self._http.request(
                "POST",
                self._base_url + _ENDPOINT_PATH,
                body=body,
                headers={"Content-Type": _JSON_CONTENT_TYPE, "locale": "en"},
            )
        except NoAnswerError as exc:
            OPENAPI_REQUESTS.labels(_ENDPOINT_PATH, "error").inc()
            raise LarkAPIError(
                _NO_CODE,
                redact(str(exc), also=(self._app_secret.get_secret_value(),)),
                route=_ENDPOINT_PATH,
            ) from None
        OPENAPI_REQUESTS.labels(_ENDPOINT_PATH, str(answer.status)).inc()
        OPENAPI_LATENCY.labels(_ENDPOINT_PATH).observe(time.monotonic() - started)
        return EndpointAnswer(answer.status, _json_object(answer))

    def as_user(self, user_access_token: str | SecretStr, *, register: bool = True) -> LarkClient:
        """Return a client over this one's pool whose calls act as the user of the token.

        The copy shares the connection pool and never closes it; this client stays as it
        was. See ``user_access_token`` in the class description. ``register=False`` keeps
        a token that Lark has not accepted yet out of the log redactor (a caller could
        otherwise have any word of its choosing masked in every later line).
        """
        twin = copy.copy(self)
        token = (
            user_access_token.get_secret_value()
            if isinstance(user_access_token, SecretStr)
            else user_access_token
        )
        if not token:
            raise ValueError("as_user needs a user access token")
        twin._user_token = token
        twin._owns_http = False
        if register:
            add_secrets(token)
        return twin

    async def tenant_token(self) -> str:
        """Return a valid tenant access token, fetching or renewing it when needed."""
        return await self._tokens.get()

    async def bot_info(self) -> BotInfo:
        """Return the bot's identity (``GET bot/v3/info``)."""
        body = await self._call("GET", "bot/v3/info", route="bot/v3/info")
        # This endpoint answers with ``bot`` beside ``code``, not inside ``data``.
        bot = body.get("bot") or _data_of(body).get("bot") or {}
        open_id = bot.get("open_id") if isinstance(bot, dict) else None
        if not open_id:
            raise LarkAPIError(_NO_CODE, "the answer names no bot open_id", route="bot/v3/info")
        return BotInfo(open_id=str(open_id), app_name=str(bot.get("app_name") or ""))

    async def reply(
        self,
        message_id: str,
        *,
        msg_type: str,
        content: dict[str, Any],
        uuid: str | None = None,
        reply_in_thread: bool = False,
    ) -> SentMessage:
        """Reply to ``message_id``; pass ``uuid=reply_uuid(message_id, chunk)``.

        Without a ``uuid`` a random one is used for this call, which still makes its own
        retries safe but not a second call for the same reply.
        """
        payload: dict[str, Any] = {
            "msg_type": msg_type,
            "content": _encode_content(content),
            "uuid": uuid or str(uuid_module.uuid4()),
        }
        if reply_in_thread:
            payload["reply_in_thread"] = True
        route = "im/v1/messages/{message_id}/reply"
        body = await self._call(
            "POST",
            f"im/v1/messages/{_segment(message_id)}/reply",
            route=route,
            json_body=payload,
            message_id=message_id,
        )
        return _sent_message(body, route)

    async def send(
        self,
        receive_id: str,
        *,
        receive_id_type: str = "chat_id",
        msg_type: str,
        content: dict[str, Any],
        uuid: str | None = None,
    ) -> SentMessage:
        """Send a new message to ``receive_id`` (a chat id by default)."""
        payload = {
            "receive_id": receive_id,
            "msg_type": msg_type,
            "content": _encode_content(content),
            "uuid": uuid or str(uuid_module.uuid4()),
        }
        route = "im/v1/messages"
        body = await self._call(
            "POST",
            "im/v1/messages",
            route=route,
            params={"receive_id_type": receive_id_type},
            json_body=payload,
        )
        return _sent_message(body, route)

    async def patch(self, message_id: str, *, content: dict[str, Any]) -> None:
        """Replace the content of a card the bot sent."""
        await self._call(
            "PATCH",
            f"im/v1/messages/{_segment(message_id)}",
            route="im/v1/messages/{message_id}",
            json_body={"content": _encode_content(content)},
            message_id=message_id,
        )

    async def react(self, message_id: str, emoji_type: str) -> str:
        """Add an emoji reaction to ``message_id`` and return the reaction id."""
        route = "im/v1/messages/{message_id}/reactions"
        body = await self._call(
            "POST",
            f"im/v1/messages/{_segment(message_id)}/reactions",
            route=route,
            json_body={"reaction_type": {"emoji_type": emoji_type}},
            message_id=message_id,
        )
        reaction_id = _data_of(body).get("reaction_id")
        if not reaction_id:
            raise LarkAPIError(_NO_CODE, "the answer names no reaction_id", route=route)
        return str(reaction_id)

    async def unreact(self, message_id: str, reaction_id: str) -> None:
        """Remove a reaction the bot added."""
        await self._call(
            "DELETE",
            f"im/v1/messages/{_segment(message_id)}/reactions/{_segment(reaction_id)}",
            route="im/v1/messages/{message_id}/reactions/{reaction_id}",
            message_id=message_id,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        route: str,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        write: bool = False,
    ) -> dict[str, Any]:
        """Make an authenticated call and return its ``data`` (``{}`` when absent).

        ``path`` is relative to ``/open-apis/``; ``route`` is its template (ids replaced by
        ``{placeholders}``), used as the metric label. Mark non-idempotent calls
        ``write=True``: they are retried only when the platform certainly did not act on
        them (rate limited, token refused, connection never made), since a record created
        twice cannot be taken back.
        """
        body = await self._call(
            method.upper(),
            path.lstrip("/").removeprefix(_API_PREFIX.strip("/") + "/"),
            route=route,
            params=params,
            json_body=json,
            idempotent=not write,
        )
        return _data_of(body)

    async def _fetch_token(self) -> tuple[str, float]:
        body = await self._call(
            "POST",
            _TOKEN_ROUTE,
            route=_TOKEN_ROUTE,
            json_body={
                "app_id": self._app_id,
                "app_secret": self._app_secret.get_secret_value(),
            },
            authenticated=False,
            refusal=CredentialsError,
        )
        token = body.get("tenant_access_token")
        if not isinstance(token, str) or not token:
            raise LarkAPIError(_NO_CODE, "the answer holds no tenant token", route=_TOKEN_ROUTE)
        try:
            expire = float(body.get("expire", 0))
        except (TypeError, ValueError):
            expire = 0.0
        # Registered with the log redactor, so no log line or error report can carry it.
        add_secrets(token)
        return token, expire

    async def _call(
        self,
        method: str,
        path: str,
        *,
        route: str,
        params: dict[str, Any] | None = None,
        json_body: dict[str, Any] | None = None,
        authenticated: bool = True,
        idempotent: bool = True,
        message_id: str | None = None,
        refusal: type[LarkAPIError] = LarkAPIError,
    ) -> dict[str, Any]:
        """Make one logical call, retrying per the policy; return the whole answer body.

        Retrying a reply or a send is safe because each carries a ``uuid`` the platform
        deduplicates on, so a retry after a lost answer cannot post twice.
        """
        policy = self._retry
        # The monotonic clock (asyncio's loop time) read directly: ``anyio.current_time``
        # looks its backend up on every read, 1.2 µs against 0.06, four reads per call.
        deadline = time.monotonic() + policy.deadline
        content = None if json_body is None else _encode_body(json_body)
        url = self._url(path)
        failures = 0
        token_renewed = False
        while True:
            token: str | None = None
            if authenticated and self._user_token is not None:
                token = self._user_token
            elif authenticated:
                token = self._tokens.peek()
                if token is None:
                    token = await self._token_within(deadline, route)
            headers = self._headers_for(token)
            started = time.monotonic()
            remaining = deadline - started
            if remaining <= 0:
                raise LarkAPIError(
                    _NO_CODE,
                    f"deadline of {policy.deadline:g}s passed before the call could be made",
                    route=route,
                )
            try:
                # The transport holds the attempt to what is left of the deadline (it raises
                # TimeoutError when that runs out), to the millisecond: no cancel scope of
                # our own around it, which cost 5.6 µs a call beside aiohttp's own timer.
                response = await self._http.request(
                    method, url, params=params, body=content, headers=headers, limit=remaining
                )
            except (NoAnswerError, TimeoutError) as exc:
                labelled(OPENAPI_REQUESTS, route, "error").inc()
                labelled(OPENAPI_LATENCY, route).observe(time.monotonic() - started)
                if isinstance(exc, NoAnswerError) and exc.fatal:
                    raise LarkAPIError(_NO_CODE, str(exc), route=route) from exc
                failures += 1
                retry = self._network_failure(exc, route, token, idempotent, failures)
            else:
                labelled(OPENAPI_REQUESTS, route, str(response.status)).inc()
                labelled(OPENAPI_LATENCY, route).observe(time.monotonic() - started)
                body = _json_object(response)
                code = _code_of(body)
                if code in _USER_TOKEN_REFUSED_CODES and token == self._user_token:
                    # A user token cannot be renewed here: only its owner can sign in again.
                    raise UserTokenError(
                        code,
                        "the user access token was refused (invalid or expired)",
                        status=response.status,
                        route=route,
                    )
                if code in _TOKEN_INVALID_CODES and token is not None and not token_renewed:
                    # Renewing has no side effect and the refused call did nothing, so
                    # this one extra try does not count against the retry budget.
                    token_renewed = True
                    self._tokens.invalidate(token)
                    logger.info(
                        "OpenAPI %s: tenant token refused (code %d), renewing it and retrying",
                        route,
                        code,
                    )
                    continue
                failures += 1
                judged = self._judge(response, body, route, token, idempotent, failures, refusal)
                if not isinstance(judged, _Retry):
                    return judged
                retry = judged
            if failures >= policy.max_attempts or time.monotonic() + retry.delay >= deadline:
                raise self._exhausted(retry.error, failures) from retry.cause
            self._log_retry(route, failures, retry.reason, retry.delay, message_id)
            await anyio.sleep(retry.delay)

    def _url(self, path: str) -> str | URL:
        """The URL of ``path`` (relative to ``/open-apis/``).

        A path of plain characters only (see ``_PLAIN_PATH``; message ids are) is joined
        to the parsed root as it is: parsing the whole URL again for every call took
        3.2 µs, this 1 µs. Anything else is parsed, as before.
        """
        root = self._api_url
        if root is None or not _PLAIN_PATH.fullmatch(path):
            return self._api_root + path
        return root.with_path(root.raw_path + path, encoded=True)

    def _headers_for(self, token: str | None) -> Mapping[str, str]:
        """The request headers for ``token``, built once per token rather than per call.

        aiohttp copies the headers it is given before use, so calls may share them.
        """
        cached = self._headers
        if cached is not None and cached[0] == token:
            return cached[1]
        headers = {"Content-Type": _JSON_CONTENT_TYPE}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = (token, headers)
        return headers

    async def _token_within(self, deadline: float, route: str) -> str:
        """Fetch a tenant token, giving up at the call's ``deadline``.

        The token fetch is itself a call with its own deadline; bounded here too, so a call
        never outlasts its own deadline while waiting for a token.
        """
        with anyio.move_on_after(max(deadline - time.monotonic(), 0)):
            return await self._tokens.get()
        raise LarkAPIError(
            _NO_CODE,
            f"deadline of {self._retry.deadline:g}s passed while fetching a tenant token",
            route=route,
        )

    def _network_failure(
        self,
        exc: Exception,
        route: str,
        token: str | None,
        idempotent: bool,
        failures: int,
    ) -> _Retry:
        """Turn a failed attempt without an answer into a retry, or raise."""
        reason = (
            f"network error: {exc}"
            if isinstance(exc, NoAnswerError)
            else "no answer before the deadline"
        )
        error = LarkAPIError(
            _NO_CODE,
            redact(reason, also=(self._app_secret.get_secret_value(), token or "")),
            route=route,
        )
        never_sent = isinstance(exc, NoAnswerError) and exc.never_sent
        if not idempotent and not never_sent:
            error.msg += "; not retried, the platform may have applied it"
            raise error from exc
        return _Retry(reason, self._retry.backoff(failures), error, exc)

    def _judge(
        self,
        response: HttpAnswer,
        body: dict[str, Any] | None,
        route: str,
        token: str | None,
        idempotent: bool,
        failures: int,
        refusal: type[LarkAPIError],
    ) -> dict[str, Any] | _Retry:
        """Return the body of a successful answer, a retry for a passing failure, or raise."""
        status = response.status
        code = _code_of(body)
        if body is not None and code in (0, None) and status < 400:
            return body
        log_id = response.headers.get(_LOG_ID_HEADER) or _log_id_of(body)
        msg = str(body.get("msg", "")) if body else ""
        # Should the platform ever echo the secret or the token, neither reaches the error.
        msg = redact(msg, also=(self._app_secret.get_secret_value(), token or ""))
        error = LarkAPIError(
            code if code is not None else _NO_CODE,
            msg or f"HTTP {status}",
            status=status,
            route=route,
            log_id=log_id,
        )
        if status == 429 or code == _RATE_LIMITED_CODE:
            delay = self._retry.rate_limit_wait(_reset_seconds(response), failures)
            return _Retry(f"rate limited (HTTP {status}, code {code})", delay, error)
        if status >= 500:
            if not idempotent:
                error.msg += "; not retried, the platform may have applied it"
                raise error
            return _Retry(f"HTTP {status}", self._retry.backoff(failures), error)
        if body is None:
            error.msg = "the answer is not Lark's JSON"
            raise error
        raise refusal(error.code, error.msg, status=status, route=route, log_id=log_id)

    def _exhausted(self, error: LarkAPIError, failures: int) -> LarkAPIError:
        limit = (
            f"{failures} attempts"
            if failures >= self._retry.max_attempts
            else f"the {self._retry.deadline:g}s deadline"
        )
        error.msg = f"gave up after {limit}: {error.msg}"
        return error

    def _log_retry(
        self, route: str, failures: int, reason: str, delay: float, message_id: str | None
    ) -> None:
        attempts = self._retry.max_attempts
        if message_id is None:
            logger.warning(
                "OpenAPI %s attempt %d/%d failed (%s); retrying in %.2fs",
                route,
                failures,
                attempts,
                reason,
                delay,
            )
        else:
            logger.warning(
                "OpenAPI %s for message %s: attempt %d/%d failed (%s); retrying in %.2fs",
                route,
                message_id,
                failures,
                attempts,
                reason,
                delay,
                extra={"message_id": message_id},
            )


def _segment(value: str) -> str:
    """Quote an id for use as one path segment."""
    return quote(value, safe="")


def _encode_content(content: dict[str, Any]) -> str:
    # The API takes ``content`` as a JSON string, not an object. Exactly what
    # ``json.dumps(content, ensure_ascii=False)`` gives (rendering budgets its size so),
    # from an encoder built once: ``json.dumps`` builds one per call with that option
    # (3.6 µs a reply's content, 1.3 µs here).
    return _CONTENT_ENCODER.encode(content)


_CONTENT_ENCODER = json.JSONEncoder(ensure_ascii=False)


def _encode_body(body: dict[str, Any]) -> bytes:
    """``body`` as compact UTF-8 JSON.

    pydantic-core's encoder rather than the standard library's: 0.6 µs against 2.6 for a
    reply's body. It refuses a lone surrogate, which cannot be encoded as UTF-8: the
    standard library's then replaces it, as replacing beats losing the reply. Unlike the
    standard library it also writes what is not JSON (a ``SecretStr`` as asterisks, a
    ``datetime`` or ``Decimal`` as a string): callers pass plain JSON values only.
    """
    try:
        return to_json(body)
    except PydanticSerializationError:
        return _CONTENT_ENCODER.encode(body).encode("utf-8", errors="replace")


def _json_object(response: HttpAnswer) -> dict[str, Any] | None:
    # pydantic-core's parser: 0.7 µs against the standard library's 3.3 for an answer.
    # It refuses what the standard library takes: an escaped lone surrogate (user text
    # cut inside an emoji), a byte-order mark, very deep nesting; those answers are
    # parsed again by the standard library rather than failed.
    try:
        body = from_json(response.body)
    except ValueError:
        try:
            body = json.loads(response.body)
        except ValueError:
            return None
    return body if isinstance(body, dict) else None


def _parsed(url: str) -> URL | None:
    try:
        return URL(url)
    except ValueError:
        return None


def _code_of(body: dict[str, Any] | None) -> int | None:
    if body is None:
        return None
    try:
        return int(body.get("code", 0))
    except (TypeError, ValueError):
        return None


def _log_id_of(body: dict[str, Any] | None) -> str | None:
    error = body.get("error") if body else None
    log_id = error.get("log_id") if isinstance(error, dict) else None
    return str(log_id) if log_id else None


def _data_of(body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("data")
    return data if isinstance(data, dict) else {}


def _reset_seconds(response: HttpAnswer) -> float | None:
    raw = response.headers.get(_RATE_LIMIT_RESET_HEADER)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _sent_message(body: dict[str, Any], route: str) -> SentMessage:
    data = _data_of(body)
    message_id = data.get("message_id")
    if not message_id:
        raise LarkAPIError(_NO_CODE, "the answer names no message_id", route=route)
    chat_id = data.get("chat_id")
    return SentMessage(message_id=str(message_id), chat_id=str(chat_id) if chat_id else None)

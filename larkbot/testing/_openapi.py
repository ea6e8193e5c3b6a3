"""The OpenAPI side of the stand-in: routes, tenant tokens, fault injection, call records.

Every route under ``/open-apis/`` goes through one pipeline: injected faults first (the
platform's gateway answers rate limits before it looks at the token), then the tenant
token check, then the route's handler, then one ``ApiCallRecord``. Other modules add
their own routes as ``OpenApiRoute`` objects and get all of that for free.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from larkbot.testing._records import ApiCallRecord

if TYPE_CHECKING:
    from larkbot.testing.standin import LarkStandIn

__all__ = [
    "TOKEN_ROUTE",
    "ApiError",
    "ApiRequest",
    "ApiResponse",
    "OpenApi",
    "OpenApiRoute",
]

logger = logging.getLogger("larkbot.testing")

TOKEN_ROUTE = "auth/v3/tenant_access_token/internal"
BOT_INFO_ROUTE = "bot/v3/info"
USER_INFO_ROUTE = "authen/v1/user_info"
_PREFIX = "/open-apis/"

# Codes the platform uses for a missing and for an invalid or expired tenant token.
CODE_TOKEN_MISSING = 99991661
CODE_TOKEN_INVALID = 99991663
# A user-only API called with a tenant token.
CODE_NOT_USER_TOKEN = 99991669
CODE_RATE_LIMITED = 99991400
CODE_BAD_REQUEST = 9499
# The platform reissues the same token until less than 30 minutes of it remain.
_TOKEN_REUSE_MIN_SECONDS = 1800


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """What a route handler sees: the parsed request and the stand-in it runs in.

    ``body`` is the JSON object of the request body (``{}`` when there was none);
    ``user_open_id`` is the acting user when the call carried a user access token.
    """

    method: str
    route: str
    path: str
    path_params: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: dict[str, Any]
    lark: LarkStandIn
    user_open_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """A response body sent as is, for routes whose answer is not ``{code, msg, data}``."""

    body: dict[str, Any]
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Raised by a handler to answer a Lark error ``{"code": code, "msg": msg}``.

    The platform answers most request errors with HTTP 400, which is the default.
    """

    def __init__(
        self, code: int, msg: str, *, status: int = 400, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = dict(headers or {})

    def response(self) -> ApiResponse:
        """Return the error as a response."""
        return ApiResponse({"code": self.code, "msg": self.msg}, self.status, self.headers)


ApiHandler = Callable[[ApiRequest], Awaitable["dict[str, Any] | ApiResponse"]]


@dataclass(frozen=True, slots=True)
class OpenApiRoute:
    """One OpenAPI operation: ``method`` and ``template`` relative to ``/open-apis/``.

    The template uses ``{name}`` placeholders (``im/v1/messages/{message_id}/reply``).
    The handler returns the ``data`` object of a success (wrapped into
    ``{"code": 0, "msg": "success", "data": ...}``), returns an ``ApiResponse`` to send a
    body of another shape, or raises ``ApiError``. ``auth=False`` skips the token check.
    """

    method: str
    template: str
    handler: ApiHandler
    auth: bool = True


@dataclass(slots=True)
class _Fault:
    remaining: int
    status: int
    route: str | None
    code: int | None
    reset_seconds: float

    def matches(self, template: str) -> bool:
        # Without a route, a fault targets the business APIs, not the token fetch that
        # precedes them, so ``fail_next(1)`` fails the call a test is about.
        return template != TOKEN_ROUTE if self.route is None else self.route == template

    def response(self) -> ApiResponse:
        if self.status == 429:
            code = CODE_RATE_LIMITED if self.code is None else self.code
            headers = {
                "x-ogw-ratelimit-limit": "50",
                "x-ogw-ratelimit-reset": f"{self.reset_seconds:g}",
            }
            return ApiResponse(
                {"code": code, "msg": "request trigger frequency limit"}, 429, headers
            )
        if self.status >= 500:
            code = self.status if self.code is None else self.code
            return ApiResponse({"code": code, "msg": "internal server error"}, self.status)
        code = self.status if self.code is None else self.code
        return ApiResponse({"code": code, "msg": f"injected error {code}"}, self.status)


class _TokenBook:
    """Tenant tokens issued so far and when each expires (monotonic seconds)."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self._expiry: dict[str, float] = {}
        self._current: str | None = None

    def issue(self, now: float) -> tuple[str, int]:
        current = self._current
        if current is not None:
            left = self._expiry.get(current, 0.0) - now
            if left > _TOKEN_REUSE_MIN_SECONDS:
                return current, int(left)
        token = "t-" + secrets.token_hex(20)
        self._expiry[token] = now + self.ttl
        self._current = token
        return token, self.ttl

    def is_valid(self, token: str, now: float) -> bool:
        expiry = self._expiry.get(token)
        return expiry is not None and now < expiry

    def invalidate(self) -> None:
        self._expiry.clear()
        self._current = None


class _UserTokenBook:
    """User access tokens issued by a test, each acting as one user, until it expires."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}

    def issue(self, open_id: str, now: float, ttl: float) -> str:
        token = "u-" + secrets.token_hex(20)
        self._tokens[token] = (open_id, now + ttl)
        return token

    def user_of(self, token: str, now: float) -> str | None:
        entry = self._tokens.get(token)
        if entry is None or now >= entry[1]:
            return None
        return entry[0]


def _json_response(reply: ApiResponse) -> Response:
    content = json.dumps(reply.body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, reply.status, dict(reply.headers), media_type="application/json")


class OpenApi:
    """Route table, token book, pending faults and call records of the stand-in."""

    def __init__(self, owner: LarkStandIn, token_ttl: int) -> None:
        self._owner = owner
        self.tokens = _TokenBook(token_ttl)
        self.user_tokens = _UserTokenBook()
        self.routes: list[OpenApiRoute] = [
            OpenApiRoute("POST", TOKEN_ROUTE, self._issue_token, auth=False),
            OpenApiRoute("GET", BOT_INFO_ROUTE, self._bot_info),
            OpenApiRoute("GET", USER_INFO_ROUTE, self._user_info),
        ]
        self.api_calls: list[ApiCallRecord] = []
        self._faults: list[_Fault] = []

    def add_fault(
        self, n: int, *, status: int, route: str | None, code: int | None, reset_seconds: float
    ) -> None:
        """Make the next ``n`` matching calls fail."""
        if n < 1:
            raise ValueError("n must be at least 1")
        if status == 200 and code is None:
            raise ValueError("a fault with status 200 needs a Lark error code")
        self._faults.append(_Fault(n, status, route, code, reset_seconds))

    def starlette_routes(self) -> list[BaseRoute]:
        """Build the starlette routes, with a catch-all that answers 404 last."""
        routes: list[BaseRoute] = [
            Route(_PREFIX + spec.template, self._endpoint(spec), methods=[spec.method])
            for spec in self.routes
        ]
        routes.append(Route(_PREFIX + "{rest:path}", self._not_found, methods=_ALL_METHODS))
        return routes

    def _take_fault(self, template: str) -> ApiResponse | None:
        for fault in self._faults:
            if fault.matches(template):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault.response()
        return None

    def _check_token(self, headers: Mapping[str, str]) -> ApiResponse | str | None:
        """Return an error response, the open_id a user token acts as, or None (tenant)."""
        value = headers.get("authorization")
        if not value:
            return ApiError(
                CODE_TOKEN_MISSING, "Missing access token for authorization."
            ).response()
        scheme, _, token = value.partition(" ")
        now = time.monotonic()
        if scheme.lower() == "bearer" and (user := self.user_tokens.user_of(token.strip(), now)):
            return user
        if scheme.lower() != "bearer" or not self.tokens.is_valid(token.strip(), now):
            return ApiError(
                CODE_TOKEN_INVALID,
                "Invalid access token for authorization. "
                "Please make a request with token attached.",
            ).response()
        return None

    def _endpoint(self, spec: OpenApiRoute) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self._handle(spec, request)

        return endpoint

    async def _handle(self, spec: OpenApiRoute, request: Request) -> Response:
        reply = self._take_fault(spec.template)
        user_open_id: str | None = None
        if reply is None and spec.auth:
            checked = self._check_token(request.headers)
            if isinstance(checked, str):
                user_open_id = checked
            else:
                reply = checked
        if reply is None:
            try:
                body = await _json_body(request)
                api_request = ApiRequest(
                    method=spec.method,
                    route=spec.template,
                    path=request.url.path,
                    path_params=request.path_params,
                    query=request.query_params,
                    headers=request.headers,
                    body=body,
                    lark=self._owner,
                    user_open_id=user_open_id,
                )
                result = await spec.handler(api_request)
            except ApiError as exc:
                reply = exc.response()
            else:
                reply = (
                    result
                    if isinstance(result, ApiResponse)
                    else ApiResponse({"code": 0, "msg": "success", "data": result})
                )
        self._record(spec.method, spec.template, request.url.path, reply, user_open_id)
        return _json_response(reply)

    async def _not_found(self, request: Request) -> Response:
        reply = ApiResponse({"code": 404, "msg": "404 page not found"}, 404)
        self._record(request.method, "", request.url.path, reply)
        return _json_response(reply)

    def _record(
        self,
        method: str,
        template: str,
        path: str,
        reply: ApiResponse,
        user_open_id: str | None = None,
    ) -> None:
        code = reply.body.get("code")
        self.api_calls.append(
            ApiCallRecord(
                method=method,
                route=template,
                path=path,
                status=reply.status,
                code=code if isinstance(code, int) else None,
                at=time.monotonic(),
                user_open_id=user_open_id,
            )
        )

    async def _issue_token(self, request: ApiRequest) -> ApiResponse:
        lark = request.lark
        if request.body.get("app_id") != lark.app_id:
            raise ApiError(10003, "invalid param")
        if lark.refuse_credentials or request.body.get("app_secret") != lark.app_secret:
            raise ApiError(10014, "app secret invalid")
        token, expire = self.tokens.issue(time.monotonic())
        return ApiResponse({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": expire})

    async def _bot_info(self, request: ApiRequest) -> ApiResponse:
        lark = request.lark
        bot = {
            "activate_status": 2,
            "app_name": lark.bot_name,
            "avatar_url": "",
            "ip_white_list": [],
            "open_id": lark.bot_open_id,
        }
        return ApiResponse({"code": 0, "msg": "ok", "bot": bot})

    async def _user_info(self, request: ApiRequest) -> dict[str, Any]:
        # Only a user access token says who "the user" is.
        if request.user_open_id is None:
            raise ApiError(CODE_NOT_USER_TOKEN, "Invalid access token: a user token is needed.")
        return {
            "open_id": request.user_open_id,
            "name": request.lark.user_names.get(request.user_open_id, ""),
            "tenant_key": request.lark.tenant_key,
        }


_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(CODE_BAD_REQUEST, "Bad Request: body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(CODE_BAD_REQUEST, "Bad Request: body is not a JSON object")
    return body

"""Who is calling ``larkbot mcp`` over HTTP: bearer token checks and the caller's identity.

The MCP SDK's bearer middleware asks a token verifier about each request's
``Authorization: Bearer …`` and answers 401 when it says no. Two verifiers, combined per
token mode:

- the configured MCP token (``LARKBOT_MCP_TOKEN``), compared in constant time;
- a Lark user access token, checked by asking Lark who it belongs to
  (``authen/v1/user_info``); answers are remembered for a few minutes, by a hash of the
  token, so a busy client costs one check per few minutes rather than one per request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any, Literal

from cachetools import TTLCache
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from pydantic import SecretStr

from larkbot.core.redact import add_secrets
from larkbot.lark.client import LarkAPIError, LarkClient

__all__ = ["Caller", "McpTokenVerifier", "TokenMode", "caller_of"]

_log = logging.getLogger("larkbot.mcp")

TokenMode = Literal["tenant", "user", "auto"]

USER_INFO_ROUTE = "authen/v1/user_info"
# Every holder of the one configured MCP token is the same caller.
MCP_TOKEN_CALLER = "mcp-token"
# A refused token is refused again without asking Lark for this long.
_REFUSAL_SECONDS = 60.0
_USER_CHECK_SECONDS = 300.0
_USER_CHECK_ENTRIES = 1024
# What an AccessToken's ``claims`` say about the bearer.
_KIND = "larkbot_kind"
_OPEN_ID = "larkbot_open_id"


@dataclass(frozen=True, slots=True)
class Caller:
    """The caller of one request.

    ``key`` is what request and write limits count against and what the audit log names
    (never a token: ``mcp-token``, ``user:<open_id>``, ``stdio``, ``session:<id>``);
    ``user_open_id`` and ``user_token`` are set when the bearer is a Lark user access token.
    """

    key: str
    user_open_id: str = ""
    user_token: str | None = None


class McpTokenVerifier:
    """The token verifier of the HTTP modes (the SDK's ``TokenVerifier`` protocol).

    ``mcp_token`` is accepted in modes ``tenant`` and ``auto``; Lark user access tokens
    in modes ``user`` and ``auto``, checked with ``client``.
    """

    def __init__(self, *, mode: TokenMode, mcp_token: SecretStr | None, client: LarkClient) -> None:
        """Prepare the checks; nothing is asked of Lark until a user token arrives."""
        self._mode = mode
        self._mcp_token = mcp_token.get_secret_value().encode() if mcp_token else None
        self._client = client
        self._users: TTLCache[str, AccessToken] = TTLCache(
            maxsize=_USER_CHECK_ENTRIES, ttl=_USER_CHECK_SECONDS
        )
        self._refused: TTLCache[str, bool] = TTLCache(
            maxsize=_USER_CHECK_ENTRIES, ttl=_REFUSAL_SECONDS
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        """Return who ``token`` stands for, or None to answer 401."""
        token = token.strip()
        if not token:
            return None
        # Constant time, so the answer's timing says nothing about the token.
        expected = self._mcp_token if self._mode != "user" else None
        if expected is not None and hmac.compare_digest(token.encode(), expected):
            return AccessToken(
                token=token, client_id=MCP_TOKEN_CALLER, scopes=[], claims={_KIND: "mcp"}
            )
        if self._mode == "tenant":
            return None
        return await self._verify_user(token)

    async def _verify_user(self, token: str) -> AccessToken | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        known = self._users.get(digest)
        if known is not None:
            return known
        if digest in self._refused:
            return None
        try:
            info = await self._client.as_user(token, register=False).request(
                "GET", "authen/v1/user_info", route=USER_INFO_ROUTE
            )
        except LarkAPIError as exc:
            # Refused (not a user token, expired) or Lark unreachable: either way this
            # request cannot be served as that user. The token itself is never logged.
            _log.info("bearer token refused: Lark answered code %s on user_info", exc.code)
            # Remembered a while, so a stream of made-up tokens costs Lark no call each.
            self._refused[digest] = True
            return None
        except (OSError, TimeoutError) as exc:
            _log.warning("bearer token not checked: Lark unreachable (%s)", type(exc).__name__)
            return None
        open_id = str(info.get("open_id") or "")
        if not open_id:
            return None
        access = AccessToken(
            token=token,
            client_id=f"user:{open_id}",
            scopes=[],
            subject=open_id,
            claims={_KIND: "user", _OPEN_ID: open_id},
        )
        # Only now, accepted by Lark, is the token a secret worth masking in logs.
        add_secrets(token)
        self._users[digest] = access
        return access


def caller_of(request: Any) -> Caller:
    """Return the caller of an MCP request (``request`` is the HTTP request, None on stdio)."""
    if request is None:
        return Caller("stdio")
    user = request.scope.get("user")
    if isinstance(user, AuthenticatedUser):
        access = user.access_token
        claims = access.claims or {}
        if claims.get(_KIND) == "user":
            open_id = str(claims.get(_OPEN_ID, ""))
            return Caller(access.client_id, user_open_id=open_id, user_token=access.token)
        return Caller(access.client_id)
    # No token configured (loopback only): each MCP session is its own client.
    session = request.headers.get("mcp-session-id") or request.query_params.get("session_id")
    return Caller(f"session:{session}" if session else "local")

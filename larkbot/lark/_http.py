"""The Lark client's HTTP transport: one ``aiohttp.ClientSession``, keep-alive, timeouts.

This is the only module of larkbot that speaks HTTP to Lark; the OpenAPI client and
endpoint discovery go through :class:`HttpTransport`. aiohttp rather than httpx: under
concurrency httpx's connection pool scans every pooled connection on each request, and
measured on a 2-core machine (``python -m bench.http_clients``) one pooled
``httpx.AsyncClient`` spends about 2.5 ms of CPU per JSON POST with 50 in flight where one
``aiohttp.ClientSession`` spends about 0.11 ms.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

__all__ = ["HttpAnswer", "HttpTransport", "NoAnswerError"]

# Connecting (and waiting for a free pooled connection) never takes longer than this.
_CONNECT_TIMEOUT = 10.0
# Lark's gateway keeps idle connections open for about a minute; reusing one saves a
# TCP and TLS handshake per call, so idle connections are kept a little less than that.
_KEEPALIVE_SECONDS = 30.0


class HttpAnswer(NamedTuple):
    """What came back: status, headers (case-insensitive) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class NoAnswerError(Exception):
    """No answer came: the connection failed, broke or timed out.

    ``never_sent`` is true when the request certainly did not reach the server (the
    connection was never made), so even a non-idempotent call may be retried.
    ``fatal`` is true when retrying cannot help (a malformed URL).
    """

    def __init__(self, reason: str, *, never_sent: bool, fatal: bool = False) -> None:
        super().__init__(reason)
        self.never_sent = never_sent
        self.fatal = fatal


class HttpTransport:
    """One pooled ``aiohttp.ClientSession`` for every call of one :class:`LarkClient`.

    :param base_url: the platform's origin, used to pick an HTTP(S) proxy from the
        environment once (``HTTPS_PROXY``, ``NO_PROXY``), not on every request.
    :param session: a session to use as is and leave open; otherwise one is created on
        first use (inside the running event loop, as aiohttp requires) and closed by
        :meth:`aclose`.
    :param timeout: seconds one attempt may take; ``None`` with a given ``session`` keeps
        that session's own timeouts.
    :param max_connections: size of the connection pool.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession | None,
        timeout: float | None,
        max_connections: int,
        user_agent: str,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._timeout = timeout
        self._max_connections = max_connections
        self._headers = {"User-Agent": user_agent}
        self._proxy = _proxy_for(base_url)
        # The last attempt's timeouts, reused while they stay the same (nearly always: an
        # attempt is capped by the configured timeout, far inside the call's deadline).
        self._last_timeout: aiohttp.ClientTimeout | None = None

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        limit: float | None = None,
    ) -> HttpAnswer:
        """Make one request and read its whole answer; ``limit`` caps this attempt's time.

        :raises NoAnswerError: no answer came.
        :raises TimeoutError: no answer came within ``limit`` (when it, not the configured
            timeout, was what ran out).
        """
        session = self._session
        if session is None:
            session = self._session = self._new_session()
        timeout = self._attempt_timeout(session, limit)
        try:
            async with session.request(
                method,
                url,
                params=params,
                data=body,
                headers=headers,
                timeout=timeout,
                proxy=self._proxy,
                allow_redirects=False,
            ) as response:
                return HttpAnswer(response.status, response.headers, await response.read())
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise NoAnswerError(_describe(exc), never_sent=True) from exc
        except aiohttp.InvalidURL as exc:
            raise NoAnswerError(_describe(exc), never_sent=True, fatal=True) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            if limit is not None and timeout.total == limit and isinstance(exc, TimeoutError):
                raise TimeoutError from exc
            raise NoAnswerError(_describe(exc), never_sent=False) from exc

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None if self._owns_session else self._session

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            keepalive_timeout=_KEEPALIVE_SECONDS,
            ttl_dns_cache=300,
        )
        return aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            # The session parses no cookies and reads no .netrc: Lark uses neither, and
            # .netrc would be read from disk on the event loop.
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=_CONNECT_TIMEOUT),
        )

    def _attempt_timeout(
        self, session: aiohttp.ClientSession, limit: float | None
    ) -> aiohttp.ClientTimeout:
        """The attempt's timeouts: the configured ones, none longer than ``limit``."""
        if self._timeout is not None:
            total: float | None = self._timeout
            connect: float | None = min(self._timeout, _CONNECT_TIMEOUT)
        else:
            total, connect = session.timeout.total, session.timeout.connect
        if limit is not None:
            total = limit if total is None else min(total, limit)
            connect = limit if connect is None else min(connect, limit)
        last = self._last_timeout
        if last is not None and last.total == total and last.connect == connect:
            return last
        # Never rounded up to a whole second (aiohttp does so from 5 s on by default):
        # ``limit`` is the caller's deadline, which the attempt must not outlast.
        self._last_timeout = aiohttp.ClientTimeout(
            total=total, connect=connect, ceil_threshold=math.inf
        )
        return self._last_timeout


def _proxy_for(base_url: str) -> str | None:
    """The proxy the environment names for ``base_url``, read once (``None``: direct)."""
    parts = urlsplit(base_url)
    proxies = urllib.request.getproxies_environment()
    if not parts.hostname or urllib.request.proxy_bypass_environment(parts.hostname, proxies):
        return None
    return proxies.get(parts.scheme)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

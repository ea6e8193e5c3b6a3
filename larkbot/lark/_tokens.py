"""The tenant access token cache: fetched lazily, refreshed early, one refresh at a time."""

from __future__ import annotations

import copy
import time
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["TokenCache"]

# Refresh when less than this many seconds remain, or 10% of the token's lifetime,
# whichever is smaller: a ~2 h token is renewed 5 minutes early, a short-lived test
# token just before it lapses.
_REFRESH_MARGIN = 300.0
_REFRESH_FRACTION = 0.1

TokenFetcher = Callable[[], Awaitable[tuple[str, float]]]


class TokenCache:
    """Holds the current tenant token and renews it through ``fetch``.

    ``fetch`` returns ``(token, expire_seconds)``. Concurrent callers that find the token
    missing or about to lapse queue on one lock, so exactly one refresh is in flight; the
    others take its result. If that refresh fails, the callers that were waiting for it
    get the same error instead of each retrying a failing endpoint in turn.
    """

    def __init__(self, fetch: TokenFetcher) -> None:
        """Create an empty cache that refreshes through ``fetch``."""
        self._fetch = fetch
        self._lock = anyio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._refreshes = 0
        self._last_error: Exception | None = None

    async def get(self) -> str:
        """Return a token that is not about to expire, refreshing it first when needed."""
        token = self._usable()
        if token is not None:
            return token
        refreshes_seen = self._refreshes
        async with self._lock:
            token = self._usable()
            if token is not None:
                return token
            if self._refreshes != refreshes_seen and self._last_error is not None:
                # The refresh this caller queued behind has just failed: report it
                # rather than hammer the token endpoint once per waiting caller.
                raise copy.copy(self._last_error)
            try:
                token, expire = await self._fetch()
            except Exception as exc:
                self._last_error = exc
                self._refreshes += 1
                raise
            margin = min(_REFRESH_MARGIN, _REFRESH_FRACTION * max(expire, 0.0))
            self._token = token
            self._refresh_at = time.monotonic() + max(expire, 0.0) - margin
            self._last_error = None
            self._refreshes += 1
            return token

    def peek(self) -> str | None:
        """The token, when one is held that is not about to expire; never fetches."""
        return self._usable()

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after the platform refused it.

        Only the token that was refused is dropped: when many calls fail with the same
        stale token at once, the first invalidation wins and the rest find the fresh one.
        """
        if self._token == token:
            self._token = None
            self._refresh_at = 0.0

    def _usable(self) -> str | None:
        # The monotonic clock asyncio's loop reads, without anyio's backend lookup: this
        # runs before every call (``anyio.current_time`` costs 1.2 µs, this 0.06 µs).
        if self._token is not None and time.monotonic() < self._refresh_at:
            return self._token
        return None

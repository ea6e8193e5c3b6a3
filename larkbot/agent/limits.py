"""Per-key rate limits for what the agent does on a user's behalf.

A sliding window (the timestamps of the calls made in the last minute) rather than a
token bucket: the limit users read in a reply ("N changes per minute") is exactly what
the window enforces, with no burst allowance to explain.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

__all__ = ["RateLimiter", "UserLimiter"]

_WINDOW_SECONDS = 60.0


class UserLimiter(Protocol):
    """A per-user limit as the agent applies it: this process's own, or one shared by replicas."""

    @property
    def per_minute(self) -> int:
        """The number of calls allowed per key and minute."""
        ...

    async def acquire(self, key: str) -> float | None:
        """Count a call for ``key`` and return ``None``, or the seconds until one is allowed."""
        ...


class RateLimiter:
    """Allow at most ``per_minute`` calls per key in any 60-second window.

    Memory stays bounded by the keys active in the last minute: keys are kept in order
    of last use, and the idle ones at the front are dropped on every call. ``clock`` is
    injectable so tests can move time without sleeping.
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Create a limiter; ``per_minute`` must be at least 1."""
        if isinstance(per_minute, bool) or not isinstance(per_minute, int):
            raise TypeError(f"per_minute must be an int, not {per_minute!r}")
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self._per_minute = per_minute
        self._clock = clock
        self._calls: OrderedDict[str, deque[float]] = OrderedDict()

    @property
    def per_minute(self) -> int:
        """The number of calls allowed per key and minute."""
        return self._per_minute

    def try_acquire(self, key: str) -> float | None:
        """Count a call for ``key`` and return ``None``, or return the seconds until one is allowed.

        A refused call is not counted, so retrying early never pushes the wait further out.
        """
        now = self._clock()
        horizon = now - _WINDOW_SECONDS
        self._drop_idle(horizon)
        calls = self._calls.get(key)
        if calls is None:
            calls = deque()
            self._calls[key] = calls
        while calls and calls[0] <= horizon:
            calls.popleft()
        if len(calls) >= self._per_minute:
            # Not moved to the end: the order must follow the last *counted* call.
            return max(calls[0] - horizon, 0.0)
        calls.append(now)
        self._calls.move_to_end(key)
        return None

    async def acquire(self, key: str) -> float | None:
        """:meth:`try_acquire`, as :class:`UserLimiter` asks for it."""
        return self.try_acquire(key)

    def __len__(self) -> int:
        """Return how many keys the limiter currently remembers."""
        return len(self._calls)

    def _drop_idle(self, horizon: float) -> None:
        # Keys are ordered by last use, so once the front key has a call inside the window
        # every key behind it does too.
        while self._calls:
            key, calls = next(iter(self._calls.items()))
            if calls and calls[-1] > horizon:
                break
            del self._calls[key]

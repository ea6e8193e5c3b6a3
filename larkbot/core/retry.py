"""The one backoff of larkbot: bounded attempts, exponential waits, a total deadline.

OpenAPI calls, the wait for the bot's identity and the long connection's reconnects use it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently an OpenAPI call is retried.

    ``max_attempts`` counts every try, the first one included. ``deadline`` bounds the
    whole call (attempts and the waits between them), in seconds. Backoff doubles from
    ``base_delay`` up to ``max_delay``; ``jitter`` spreads each wait by up to that fraction
    so that many callers hit by the same failure do not retry in lockstep.

    With ``jitter_limit`` set, jitter only lengthens a wait: by up to ``jitter`` of it and at
    most ``jitter_limit`` seconds, past ``max_delay`` if need be, so that callers which all
    reached the longest wait still spread out (the long connection's ``ReconnectNonce``).
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 10.0
    deadline: float = 60.0
    jitter: float = 0.2
    jitter_limit: float | None = None

    def __post_init__(self) -> None:
        """Reject a policy that could never make a request or could wait forever."""
        for name in ("base_delay", "max_delay", "deadline", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"RetryPolicy.{name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"RetryPolicy.{name} must be finite, not {value!r}")
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError(f"RetryPolicy.max_attempts must be an int, not {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.base_delay < 0:
            raise ValueError("RetryPolicy.base_delay must not be negative")
        if self.max_delay < self.base_delay:
            raise ValueError("RetryPolicy.max_delay must be at least base_delay")
        if self.deadline <= 0:
            raise ValueError("RetryPolicy.deadline must be positive")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1")
        if self.jitter_limit is not None and not 0 <= self.jitter_limit < math.inf:
            raise ValueError("RetryPolicy.jitter_limit must be a finite number, at least 0")

    def backoff(self, failures: int) -> float:
        """Return the wait, in seconds, after the ``failures``-th failed attempt (1-based)."""
        exponent = min(max(failures, 1) - 1, 62)
        delay = min(self.max_delay, self.base_delay * 2.0**exponent)
        if self.jitter_limit is not None:
            return delay + random.uniform(0.0, min(self.jitter_limit, self.jitter * delay))
        return self._spread(delay, random.uniform(-self.jitter, self.jitter))

    def rate_limit_wait(self, reset: float | None, failures: int) -> float:
        """Return the wait after a rate-limited attempt.

        ``reset`` is the platform's ``x-ogw-ratelimit-reset`` (seconds until the quota
        window reopens); without it the ordinary backoff applies. The wait is capped at
        ``max_delay`` and only ever lengthened by jitter, since retrying before the window
        reopens is a wasted attempt.
        """
        if reset is None:
            return self.backoff(failures)
        delay = min(max(reset, 0.0), self.max_delay)
        return self._spread(delay, random.uniform(0.0, self.jitter))

    def _spread(self, delay: float, fraction: float) -> float:
        return min(self.max_delay, max(0.0, delay * (1.0 + fraction)))

"""The two errors of the Redis store: Redis cannot be used now, or its settings are wrong."""

from __future__ import annotations

from larkbot.core.errors import EX_CONFIG, LarkbotError

__all__ = ["RedisConfigError", "RedisUnavailable"]


class RedisUnavailable(LarkbotError):  # noqa: N818 (names a state: Redis is unavailable)
    """Redis failed or did not answer in time; ``str()`` is one sentence, never a password.

    Every failure of a Redis call (refused or dropped connection, timeout, an error reply
    such as ``OOM`` or ``READONLY``) surfaces as this one type, so callers decide once what
    an outage means for them (admission answers a non-200 ack, the ownership loop retries).
    """


class RedisConfigError(LarkbotError, ValueError):
    """The Redis URL, a store option or a backup file is wrong; ``str()`` says what to fix."""

    exit_code = EX_CONFIG

"""The ``async with`` protocol the stand-ins and the webhook driver share."""

from __future__ import annotations

from typing import Self

__all__ = ["AsyncLifecycle"]


class AsyncLifecycle:
    """Something a test uses as ``async with``: ``_start`` on entry, ``_stop`` on any exit.

    ``_stop`` runs whether the block ends normally, raises or is cancelled; the block's
    own exception propagates unchanged.
    """

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # The block's exception is not ours to handle: stopping is the same either way.
        await self._stop()

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

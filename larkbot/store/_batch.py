"""Group commit: callers that write at the same time share one statement and one commit."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


class _Batch(Generic[T, R]):
    __slots__ = ("error", "items", "results", "started", "written")

    def __init__(self) -> None:
        self.items: list[T] = []
        self.results: Sequence[R] = ()
        self.error: BaseException | None = None
        self.started = False
        self.written = anyio.Event()


class GroupCommit(Generic[T, R]):
    """Write items in batches: each :meth:`write` returns once its own batch is committed.

    While one batch is being written, new items gather in the next one; the first of
    their callers to get the turn writes them all with one call of ``flush``, which
    returns one result per item, in order. With nothing else in flight a batch holds one
    item and costs what a lone write costs; under load one commit serves many callers,
    and none returns before the commit that holds its item. Batches are written one at a
    time, in the order they formed, so callers learn their results in that order too.
    """

    def __init__(
        self, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *, max_items: int
    ) -> None:
        """Write batches of at most ``max_items`` through ``flush``."""
        self._flush = flush
        self._max_items = max_items
        # Fair: batches are written in the order they formed. A free turn is taken without
        # a trip through the event loop's queue.
        self._turn = anyio.Semaphore(1, fast_acquire=True)
        self._open: _Batch[T, R] | None = None

    async def write(self, item: T) -> R:
        """Add ``item`` to the open batch and return its result once the batch is written.

        Shielded from cancellation: a caller that stopped waiting could not tell whether
        its item was committed.
        """
        batch = self._open
        if batch is None or len(batch.items) >= self._max_items:
            batch = self._open = _Batch()
        index = len(batch.items)
        batch.items.append(item)
        with anyio.CancelScope(shield=True):
            if not batch.started:
                async with self._turn:
                    if not batch.started:
                        batch.started = True
                        if self._open is batch:
                            self._open = None  # later items start the next batch
                        try:
                            batch.results = await self._flush(batch.items)
                        except Exception as exc:
                            batch.error = exc
                        batch.written.set()
            if not batch.written.is_set():  # (a set event still costs a trip through the loop)
                await batch.written.wait()
        if batch.error is not None:
            # Each caller raises its own copy: one exception object re-raised in many
            # tasks would collect all of their tracebacks.
            raise copy.copy(batch.error) from batch.error
        return batch.results[index]

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
    __slots__ = (
        "error",
        "items",
        "previous",
        "released",
        "results",
        "started",
        "unreleased",
        "written",
    )

    def __init__(self, previous: _Batch[T, R] | None) -> None:
        self.items: list[T] = []
        self.results: Sequence[R] = ()
        self.error: BaseException | None = None
        self.started = False
        self.written = anyio.Event()
        # Writers not yet given their result; once none is left, ``released`` is set and
        # the next batch's writers may have theirs.
        self.unreleased = 0
        self.released = anyio.Event()
        self.previous = previous


class GroupCommit(Generic[T, R]):
    """Write items in batches: each :meth:`write` returns once its own batch is committed.

    While one batch is being written, new items gather in the next one; the first of
    their callers to get the turn writes them all with one call of ``flush``, which
    returns one result per item, in order. With nothing else in flight a batch holds one
    item and costs what a lone write costs; under load one commit serves many callers,
    and none returns before the commit that holds its item.
    """

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_items: int,
        in_flight: int = 1,
    ) -> None:
        """Write batches of at most ``max_items`` through ``flush``.

        :param in_flight: batches being written at once. More than one only where
            ``flush`` calls that overlap still take effect in the order they were made
            (statements queued on one database connection): the next batch is then queued
            while the last is written, instead of waiting for its result to come back.
        """
        self._flush = flush
        self._max_items = max_items
        # Fair: batches are written in the order they formed. A free turn is taken without
        # a trip through the event loop's queue, which an admit (and its frame's ack)
        # would otherwise wait through behind every answer with work ready.
        self._turn = anyio.Semaphore(in_flight, fast_acquire=True)
        self._open: _Batch[T, R] | None = None
        self._last: _Batch[T, R] | None = None

    async def write(self, item: T) -> R:
        """Add ``item`` to the open batch and return its result once the batch is written.

        Shielded from cancellation: a caller that stopped waiting could not tell whether
        its item was committed.
        """
        batch = self._open
        if batch is None or len(batch.items) >= self._max_items:
            batch = self._open = self._last = _Batch(self._last)
        index = len(batch.items)
        batch.items.append(item)
        batch.unreleased += 1
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
            # Callers learn their results batch after batch, in the order the batches
            # formed, whichever write came back first: a caller that acts on its result
            # at once (dispatch, for admits) sees the items in the order they came.
            previous = batch.previous
            if previous is not None:
                if not previous.released.is_set():
                    await previous.released.wait()
                batch.previous = None
        batch.unreleased -= 1
        if batch.unreleased == 0:
            batch.released.set()
        if batch.error is not None:
            # Each caller raises its own copy: one exception object re-raised in many
            # tasks would collect all of their tracebacks.
            raise copy.copy(batch.error) from batch.error
        return batch.results[index]

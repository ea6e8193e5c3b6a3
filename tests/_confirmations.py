"""The compare-and-set rules of write confirmations, checked alike on every store kind."""

from __future__ import annotations

import anyio

from larkbot.store import Store
from larkbot.store.confirmations import ConfirmationMove, ConfirmationState, PendingWrite

_PENDING = ConfirmationState.PENDING
_APPROVING = ConfirmationState.APPROVING


def pending_write(confirmation_id: str) -> PendingWrite:
    """A new confirmation of a record creation, created at 0 and expiring at 600."""
    return PendingWrite(
        id=confirmation_id,
        tool="create_base_record",
        arguments={"table": "customers", "fields": {"Name": "CAS Ltd"}},
        requester="ou_user_1",
        chat_id="oc_p2p_1",
        message_id="om_cas",
        language="en",
        change="**create_base_record**",
        created_at=0.0,
        expires_at=600.0,
    )


async def check_confirmation_attempts(first: Store, second: Store) -> None:
    """Approving records its attempt; only the named attempt is taken over, or settled.

    ``first`` and ``second`` share their data (two processes or replicas, or one store).
    """
    await first.add_confirmation(pending_write("cf_cas"))
    approve = ConfirmationMove("cf_cas", expected=_PENDING, state=_APPROVING, approving_since=100.0)
    assert await first.settle_confirmation(approve)
    approving = await second.confirmation("cf_cas")
    assert approving is not None and approving.state == _APPROVING
    assert approving.approved_at == approving.approving_since == 100.0

    def retake(expected_since: float | None, since: float) -> ConfirmationMove:
        return ConfirmationMove(
            "cf_cas",
            expected=_APPROVING,
            state=_APPROVING,
            expected_since=expected_since,
            approving_since=since,
        )

    assert not await second.settle_confirmation(retake(99.0, 500.0))
    # Two replicas take the dead attempt over at once: one wins.
    won: list[bool] = []

    async def race(store: Store, since: float) -> None:
        won.append(await store.settle_confirmation(retake(100.0, since)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(race, first, 500.0)
        tg.start_soon(race, second, 501.0)
    assert sorted(won) == [False, True]
    retaken = await first.confirmation("cf_cas")
    assert retaken is not None and retaken.approved_at == 100.0
    since = retaken.approving_since
    assert since in (500.0, 501.0)
    # The attempt that was taken over cannot settle; the current one can.
    done = ConfirmationState.DONE
    stale = ConfirmationMove("cf_cas", _APPROVING, done, "made", expected_since=100.0)
    assert not await second.settle_confirmation(stale)
    current = ConfirmationMove("cf_cas", _APPROVING, done, "made", expected_since=since)
    assert await second.settle_confirmation(current)
    settled = await first.confirmation("cf_cas")
    assert settled is not None and (settled.state, settled.outcome) == (done, "made")
    assert (settled.approved_at, settled.approving_since) == (100.0, since)

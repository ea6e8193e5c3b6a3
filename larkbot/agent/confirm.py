"""Confirmed writes: a write tool waits on a card until its requester approves it.

:class:`WriteConfirmations` is both halves. The runner hands it each write it is asked to
make (:meth:`WriteConfirmations.request`): the change is read from Lark, kept in the store
as a :class:`~larkbot.store.confirmations.PendingWrite`, and shown on a card with Approve and
Cancel buttons. Admission hands it each click (:meth:`WriteConfirmations.on_action`): only
the requester may decide, an old confirmation expires, and approval runs the write through
the runner exactly once, because leaving ``pending`` is a compare-and-set in the store.
Every decision goes to the audit log.

Lark gives a callback 3 s. An approved write that is not done within
:data:`ANSWER_WITHIN` seconds goes on in the task group :meth:`WriteConfirmations.run`
owns (the daemon runs it for its whole life), shielded from cancellation so that it is
never left half done; the click is answered at once with the card saying the change is
being made, and the card is updated with the outcome (a message patch) when it is done.

A write whose process died before settling it (a crash, a lost node) would leave its
confirmation ``approving`` for good. The requester's click drives recovery: once the
attempt is older than ``stuck_after_seconds`` (longer than any write takes) and not
running in this process, the click takes it over (a compare-and-set on the attempt, so
one click or replica wins) and runs the write again, which Lark applies once because the
tool is idempotent and the rerun's key is the first run's. A tool that is not idempotent,
or an attempt past the hour Lark honours the keys, is settled failed with an outcome
that says it is unknown. A write that raises is settled failed too.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus
from pydantic import BaseModel

from larkbot.agent.i18n import humanise_duration, translate
from larkbot.agent.timezone import FALLBACK_TIMEZONE
from larkbot.agent.tools.base import Tool, ToolContext, ToolResult
from larkbot.core.cards import CardAction, CardAnswer
from larkbot.core.language import Language
from larkbot.lark.client import LarkAPIError
from larkbot.store.confirmations import ConfirmationMove, ConfirmationState, PendingWrite

if TYPE_CHECKING:
    from larkbot.agent.tools.runner import ToolRunner
    from larkbot.config.settings import BaseTableSettings
    from larkbot.core.conversation import Conversation
    from larkbot.lark.client import LarkClient

__all__ = ["ConfirmationStore", "WriteConfirmations", "confirmation_card"]

_log = logging.getLogger("larkbot.agent")
_audit = logging.getLogger("larkbot.agent.audit")

APPROVE = "approve"
CANCEL = "cancel"
_LANGUAGES: frozenset[str] = frozenset({"ja", "en", "zh"})

ANSWER_WITHIN = 1.5
"""Seconds an approved write may take before the click is answered with "in progress"
(Lark's limit is 3 s, and the answer still has to travel)."""
# The outcome's card update waits this long after an "in progress" answer, so it cannot
# reach Lark before that answer (which would then overwrite it).
_UPDATE_AFTER_ANSWER = 1.0
# How long updating the card with the outcome may hold up a stopping daemon.
_UPDATE_BOUND = 10.0

STUCK_AFTER = 300.0
"""Seconds after which an unsettled approved write is taken to have died with its process.

Longer than any write takes: each Lark call gives up at its 60 s deadline (the client's
:class:`~larkbot.core.retry.RetryPolicy`), and a write tool makes up to three in a row."""
# How long Lark honours an idempotency key (message uuid, client_token): an approved write
# is run again only if the rerun ends within this long of its first approval.
_KEYS_HONOURED = 3600.0


@dataclass(eq=False, slots=True)
class _Approval:
    """One approved write, between the click's handler and the task that makes it."""

    done: anyio.Event = field(default_factory=anyio.Event)
    answer: CardAnswer | None = None
    answered_at: float | None = None
    """When the click was answered with "in progress" (monotonic seconds)."""


class ConfirmationStore(Protocol):
    """Where pending confirmations live (every store kind implements it)."""

    async def add_confirmation(self, pending: PendingWrite) -> None: ...

    async def confirmation(self, confirmation_id: str) -> PendingWrite | None: ...

    async def settle_confirmation(self, move: ConfirmationMove) -> bool: ...


class ConversationSource(Protocol):
    """The conversation cache: where the outcome of a decision is recorded."""

    def get(self, key: str) -> Conversation: ...


class WriteConfirmations:
    """Asks the requester to approve each write on a card, and runs it on approval.

    :param store: where pending confirmations live (shared by replicas).
    :param ttl_seconds: how long a confirmation may be approved.
    :param clock: seconds since the epoch (tests move it).
    :param bases: the configured Base tables, for the approved write's context.
    :param allowed_bases: app tokens writes may go to besides those; ``None``: any.
    :param conversations: where each decision's outcome is added as an assistant turn, so
        the conversation goes on knowing what happened to the change.
    :param history: turns kept per conversation.
    :param answer_within: seconds an approved write may take before the click is answered
        with "in progress" (only while :meth:`run` runs; without it the click waits).
    :param stuck_after_seconds: after how long an unsettled approved write counts as dead.
    """

    def __init__(
        self,
        store: ConfirmationStore,
        *,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
        bases: Mapping[str, BaseTableSettings] | None = None,
        allowed_bases: frozenset[str] | None = None,
        conversations: ConversationSource | None = None,
        history: int = 50,
        answer_within: float = ANSWER_WITHIN,
        stuck_after_seconds: float = STUCK_AFTER,
    ) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._clock = clock
        # A copy: the caller's mapping may change later.
        self._bases = dict(bases or {})
        self._allowed_bases = allowed_bases
        self._conversations = conversations
        self._history = history
        self._answer_within = answer_within
        self._stuck_after = stuck_after_seconds
        # The confirmations whose write runs in this process now: never taken over here.
        self._running: set[str] = set()
        # Given by :meth:`bind` once the runner exists (it needs this object first).
        self._runner: ToolRunner | None = None
        self._client: LarkClient | None = None
        self._zone: Callable[[], Awaitable[tzinfo]] | None = None
        # The task group of approved writes that outlast a click's answer, while run() runs.
        self._writes: TaskGroup | None = None

    def bind(
        self,
        runner: ToolRunner,
        client: LarkClient,
        zone: Callable[[], Awaitable[tzinfo]] | None = None,
    ) -> None:
        """Give the runner approved writes go through, and the zone they are placed in."""
        self._runner = runner
        self._client = client
        self._zone = zone

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the approved writes that outlast a click's answer, until cancelled.

        Cancelling it waits for the writes in progress: each is shielded, so none is left
        half done (its confirmation stuck in ``approving``).
        """
        async with anyio.create_task_group() as writes:
            self._writes = writes
            try:
                task_status.started()
                await anyio.sleep_forever()
            finally:
                self._writes = None

    async def request(self, tool: Tool[Any], args: BaseModel, ctx: ToolContext) -> ToolResult:
        """Keep ``tool(args)`` for approval; the result carries the confirmation card."""
        rows = await tool.preview(ctx, args)
        now = self._clock()
        pending = PendingWrite(
            id=uuid.uuid4().hex,
            tool=tool.name,
            arguments=args.model_dump(mode="json"),
            requester=ctx.user_open_id,
            caller=ctx.caller,
            chat_id=ctx.chat_id,
            conversation_key=ctx.conversation_key or ctx.chat_id,
            message_id=ctx.message_id,
            language=ctx.language,
            change=_change_markdown(tool.name, rows),
            created_at=now,
            expires_at=now + self._ttl,
        )
        await self._store.add_confirmation(pending)
        _log.info(
            "message %s: %s awaits approval (confirmation %s)",
            ctx.message_id,
            tool.name,
            pending.id,
            extra={"message_id": ctx.message_id, "tool_name": tool.name},
        )
        text = translate("confirm_waiting", ctx.language, tool=tool.name)
        return ToolResult(
            ok=True,
            data={"status": "awaiting_confirmation", "confirmation_id": pending.id},
            text=text,
            card=confirmation_card(pending, minutes=max(1, round(self._ttl / 60))),
        )

    async def on_action(self, action: CardAction) -> CardAnswer:
        """Answer a click on a confirmation card (other cards' actions change nothing)."""
        kind = action.value_of("action")
        confirmation_id = action.value_of("id")
        if kind not in (APPROVE, CANCEL) or not confirmation_id:
            return CardAnswer()
        pending = await self._store.confirmation(confirmation_id)
        if pending is None:
            return CardAnswer(toast=translate("confirm_unknown", "en"), toast_type="error")
        language = _language(pending.language)
        if action.operator_open_id != pending.requester:
            self._decision(pending, action, "refused_not_requester")
            return CardAnswer(toast=translate("confirm_not_yours", language), toast_type="error")
        if pending.state == ConfirmationState.APPROVING and kind == APPROVE:
            return await self._approving(pending, action)
        if pending.state != ConfirmationState.PENDING:
            return CardAnswer(card=self._card(pending))
        if self._clock() >= pending.expires_at:
            return await self._settle_without_writing(pending, action, ConfirmationState.EXPIRED)
        if kind == CANCEL:
            return await self._settle_without_writing(pending, action, ConfirmationState.CANCELLED)
        return await self._approve(pending, action)

    async def _settle_without_writing(
        self, pending: PendingWrite, action: CardAction, state: ConfirmationState
    ) -> CardAnswer:
        won = await self._store.settle_confirmation(
            ConfirmationMove(pending.id, expected=ConfirmationState.PENDING, state=state)
        )
        current = await self._store.confirmation(pending.id) or pending
        if won:
            self._decision(current, action, state.value)
            self._remember(current)
        key = "confirm_expired" if current.state == ConfirmationState.EXPIRED else None
        toast = translate(key, _language(pending.language)) if key else None
        return CardAnswer(toast=toast, toast_type="warning", card=self._card(current))

    async def _approve(self, pending: PendingWrite, action: CardAction) -> CardAnswer:
        since = self._clock()
        won = await self._store.settle_confirmation(
            ConfirmationMove(
                pending.id,
                expected=ConfirmationState.PENDING,
                state=ConfirmationState.APPROVING,
                approving_since=since,
            )
        )
        if not won:
            # Another click, delivery or replica took it: show where it stands.
            current = await self._store.confirmation(pending.id) or pending
            return CardAnswer(card=self._card(current))
        self._decision(pending, action, "approved")
        attempt = pending.model_copy(
            update={
                "state": ConfirmationState.APPROVING,
                "approved_at": since,
                "approving_since": since,
            }
        )
        return await self._start(attempt, action)

    async def _approving(self, pending: PendingWrite, action: CardAction) -> CardAnswer:
        """A click on an approved write: where it stands, or a takeover of a dead attempt."""
        now = self._clock()
        since = pending.approving_since
        # Approved before attempts were recorded: it began before the confirmation expired.
        began = pending.expires_at if since is None else since
        if pending.id in self._running or now < began + self._stuck_after:
            return CardAnswer(card=self._card(pending))
        # The attempt outlasted any write: its process died before settling it.
        tool = self._runner.registry.get(pending.tool) if self._runner is not None else None
        approved_at = pending.approved_at
        if (
            tool is None
            or not tool.idempotent
            or approved_at is None
            or now + self._stuck_after > approved_at + _KEYS_HONOURED
        ):
            return await self._settle_unknown(pending, action)
        won = await self._store.settle_confirmation(
            ConfirmationMove(
                pending.id,
                expected=ConfirmationState.APPROVING,
                state=ConfirmationState.APPROVING,
                expected_since=since,
                approving_since=now,
            )
        )
        if not won:
            current = await self._store.confirmation(pending.id) or pending
            return CardAnswer(card=self._card(current))
        _log_about(
            pending,
            logging.WARNING,
            "message %s: confirmation %s unsettled %.0f s after its write began; running it again",
            pending.id,
            now - began,
        )
        self._decision(pending, action, "retaken")
        return await self._start(pending.model_copy(update={"approving_since": now}), action)

    async def _settle_unknown(self, pending: PendingWrite, action: CardAction) -> CardAnswer:
        """Settle a dead attempt that may not run again: whether it wrote is unknown."""
        language = _language(pending.language)
        outcome = translate("confirm_outcome_unknown", language)
        won = await self._store.settle_confirmation(
            ConfirmationMove(
                pending.id,
                expected=ConfirmationState.APPROVING,
                state=ConfirmationState.FAILED,
                outcome=outcome,
                expected_since=pending.approving_since,
            )
        )
        current = await self._store.confirmation(pending.id) or pending
        if won:
            self._decision(current, action, "outcome_unknown")
            self._remember(current)
        return CardAnswer(toast=outcome, toast_type="warning", card=self._card(current))

    async def _start(self, attempt: PendingWrite, action: CardAction) -> CardAnswer:
        """Run the write of ``attempt``, answering "in progress" if it outlasts the click."""
        writes = self._writes
        if writes is None:
            with anyio.CancelScope(shield=True):
                return await self._write(attempt, action)
        approval = _Approval()
        writes.start_soon(self._write_in_background, attempt, action, approval)
        with anyio.move_on_after(self._answer_within):
            await approval.done.wait()
        # No await from here on: either the write finished and its card is the answer, or
        # the write, when it finishes, sees that the click was answered and updates the card.
        if approval.answer is not None:
            return approval.answer
        language = _language(attempt.language)
        if approval.done.is_set():
            # Settling failed (logged): the store is unreachable. A click after the bound
            # takes the attempt over.
            return CardAnswer(toast=translate("error", language), toast_type="error")
        approval.answered_at = time.monotonic()
        _log_about(
            attempt,
            logging.INFO,
            "message %s: confirmation %s still running after %.1f s; answered in progress",
            attempt.id,
            self._answer_within,
        )
        return CardAnswer(
            toast=translate("confirm_running", language),
            toast_type="info",
            card=self._card(attempt),
        )

    async def _write(self, attempt: PendingWrite, action: CardAction) -> CardAnswer:
        """Run the approved write, settle its confirmation, and return the outcome's card."""
        self._running.add(attempt.id)
        try:
            try:
                result = await self._run(attempt)
            except Exception:
                # Whatever failed, the write may or may not have reached Lark: say so, and
                # keep the details (never shown on the card) in the log.
                _log_about(
                    attempt,
                    logging.ERROR,
                    "message %s: the approved write of confirmation %s failed unexpectedly",
                    attempt.id,
                    exc_info=True,
                )
                error = translate("confirm_write_error", _language(attempt.language))
                result = ToolResult(ok=False, error=error, text=error)
            state = ConfirmationState.DONE if result.ok else ConfirmationState.FAILED
            outcome = (result.text if result.ok else result.error or result.text) or ""
            won = await self._store.settle_confirmation(
                ConfirmationMove(
                    attempt.id,
                    expected=ConfirmationState.APPROVING,
                    state=state,
                    outcome=outcome,
                    expected_since=attempt.approving_since,
                )
            )
        finally:
            self._running.discard(attempt.id)
        if not won:
            # A later attempt took this one over (it outlasted the bound): that one's
            # outcome is the one that counts.
            current = await self._store.confirmation(attempt.id) or attempt
            _log_about(
                attempt,
                logging.WARNING,
                "message %s: confirmation %s was taken over while its write ran",
                attempt.id,
            )
            return CardAnswer(card=self._card(current))
        settled = attempt.model_copy(update={"state": state, "outcome": outcome})
        self._decision(settled, action, state.value)
        self._remember(settled)
        return CardAnswer(
            toast=outcome.splitlines()[0][:200] if outcome else None,
            toast_type="success" if result.ok else "error",
            card=self._card(settled),
        )

    async def _write_in_background(
        self, pending: PendingWrite, action: CardAction, approval: _Approval
    ) -> None:
        """:meth:`_write`, then the card's update if the click was answered meanwhile."""
        with anyio.CancelScope(shield=True):
            try:
                approval.answer = await self._write(pending, action)
            except Exception:
                # Settling failed (the write's own failures are settled): a task of the
                # daemon's group must not end the daemon. The confirmation stays
                # ``approving`` until a click after the bound takes it over.
                _log_about(
                    pending,
                    logging.ERROR,
                    "message %s: the approved write of confirmation %s could not be settled",
                    pending.id,
                    exc_info=True,
                )
                return
            finally:
                approval.done.set()
            if approval.answered_at is not None:
                await self._update_card(pending, action, approval.answer, approval.answered_at)

    async def _update_card(
        self, pending: PendingWrite, action: CardAction, answer: CardAnswer, answered_at: float
    ) -> None:
        """Show the outcome on the card the click was answered on ("in progress")."""
        assert self._client is not None and answer.card is not None
        with anyio.move_on_after(_UPDATE_BOUND):
            await anyio.sleep(max(0.0, answered_at + _UPDATE_AFTER_ANSWER - time.monotonic()))
            try:
                await self._client.patch(action.open_message_id, content=dict(answer.card))
            except LarkAPIError as exc:
                _log_about(
                    pending,
                    logging.WARNING,
                    "message %s: could not show the outcome of confirmation %s on its card: %s",
                    pending.id,
                    exc,
                )
                return
            _log_about(
                pending,
                logging.INFO,
                "message %s: card %s updated with the outcome of confirmation %s",
                action.open_message_id,
                pending.id,
            )

    async def _run(self, pending: PendingWrite) -> ToolResult:
        assert self._runner is not None and self._client is not None, "bind() was not called"
        zone = await self._zone() if self._zone is not None else FALLBACK_TIMEZONE
        ctx = ToolContext(
            client=self._client,
            user_open_id=pending.requester,
            chat_id=pending.chat_id,
            # The requesting message's id: the write's idempotency key is the one it
            # would have had without a confirmation, so Lark applies it once as well.
            message_id=pending.message_id,
            language=_language(pending.language),
            bases=self._bases,
            allowed_bases=self._allowed_bases,
            caller=pending.caller,
            timezone=zone,
        )
        return await self._runner.run_approved(pending.tool, pending.arguments, ctx)

    def _card(self, pending: PendingWrite) -> dict[str, Any]:
        return confirmation_card(pending, retry_after=self._stuck_after)

    def _remember(self, settled: PendingWrite) -> None:
        """Add what became of the change to its conversation, as the card now says it."""
        if self._conversations is None:
            return
        line = _outcome_line(settled)
        conversation = self._conversations.get(settled.conversation_key or settled.chat_id)
        conversation.add("assistant", f"{settled.tool}: {line}", self._history)

    def _decision(self, pending: PendingWrite, action: CardAction, decision: str) -> None:
        _audit.info(
            "confirmation %s of %s for %s in %s: %s by %s",
            pending.id,
            pending.tool,
            pending.requester,
            pending.chat_id,
            decision,
            action.operator_open_id,
            extra={
                "message_id": pending.message_id,
                "confirmation_id": pending.id,
                "tool_name": pending.tool,
                "user_open_id": pending.requester,
                "operator_open_id": action.operator_open_id,
                "chat_id": pending.chat_id,
                "decision": decision,
                "outcome": pending.outcome,
            },
        )


def _log_about(
    pending: PendingWrite, level: int, template: str, *args: object, exc_info: bool = False
) -> None:
    """Log ``template`` about ``pending``, with its message and confirmation ids as fields.

    The message id fills the template's first ``%s``, then ``args`` the rest.
    """
    extra = {"message_id": pending.message_id, "confirmation_id": pending.id}
    _log.log(level, template, pending.message_id, *args, extra=extra, exc_info=exc_info)


def _language(value: str) -> Language:
    return value if value in _LANGUAGES else "en"  # type: ignore[return-value]


def _change_markdown(tool: str, rows: list[tuple[str, str | None, str]]) -> str:
    """The change as the card shows it: one line per field, ``before → after`` for updates."""
    lines = [f"**{tool}**"]
    for name, before, after in rows:
        if before is None:
            lines.append(f"- {name}: {after}")
        else:
            lines.append(f"- {name}: {before} → {after}")
    return "\n".join(lines)


def confirmation_card(
    pending: PendingWrite, *, minutes: int | None = None, retry_after: float | None = None
) -> dict[str, Any]:
    """The card (JSON 2.0) of ``pending`` as it stands: buttons while it is pending.

    :param minutes: how long a pending one may be approved, as its prompt says.
    :param retry_after: seconds after which the requester may click an approving one again
        (a write whose process died is then taken over): said, with a button to do it.
    """
    language = _language(pending.language)
    title = translate("confirm_title", language, tool=pending.tool)
    elements: list[dict[str, Any]] = [{"tag": "markdown", "content": pending.change}]
    state = pending.state
    template = "orange"
    if state == ConfirmationState.PENDING:
        prompt = translate(
            "confirm_prompt",
            language,
            requester=f"<at id={pending.requester}></at>",
            minutes=minutes if minutes is not None else 10,
        )
        elements.append({"tag": "markdown", "content": prompt})
        elements.append(
            _button(translate("confirm_approve", language), "primary", APPROVE, pending)
        )
        elements.append(_button(translate("confirm_cancel", language), "default", CANCEL, pending))
    else:
        template = _TEMPLATES[state]
        elements.append({"tag": "markdown", "content": _outcome_line(pending)})
        if state == ConfirmationState.APPROVING and retry_after is not None:
            after = humanise_duration(retry_after, language)
            retry = translate("confirm_running_retry", language, after=after)
            elements.append({"tag": "markdown", "content": retry})
            elements.append(
                _button(translate("confirm_check", language), "default", APPROVE, pending)
            )
    return {
        "schema": "2.0",
        "config": {"update_multi": True},
        "header": {"title": {"tag": "plain_text", "content": title}, "template": template},
        "body": {"elements": elements},
    }


_TEMPLATES = {
    ConfirmationState.APPROVING: "blue",
    ConfirmationState.DONE: "green",
    ConfirmationState.FAILED: "red",
    ConfirmationState.CANCELLED: "grey",
    ConfirmationState.EXPIRED: "grey",
}


def _outcome_line(pending: PendingWrite) -> str:
    """What became of a confirmation that left ``pending``, in its requester's language."""
    language = _language(pending.language)
    if pending.state == ConfirmationState.DONE:
        return translate("confirm_done", language, outcome=pending.outcome)
    if pending.state == ConfirmationState.FAILED:
        return translate("confirm_failed", language, outcome=pending.outcome)
    key = {
        ConfirmationState.APPROVING: "confirm_running",
        ConfirmationState.CANCELLED: "confirm_cancelled",
        ConfirmationState.EXPIRED: "confirm_expired",
    }[pending.state]
    return translate(key, language)


def _button(label: str, kind: str, action: str, pending: PendingWrite) -> dict[str, Any]:
    return {
        "tag": "button",
        "text": {"tag": "plain_text", "content": label},
        "type": kind,
        "behaviors": [{"type": "callback", "value": {"action": action, "id": pending.id}}],
    }

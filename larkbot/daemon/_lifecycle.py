"""The daemon's lifecycle: start the assembled components in order, supervise, stop.

Start-up order matters and is fixed here::

    HTTP port (healthz answers, readyz 503) ─▶ store ─▶ bot identity ─▶ dispatch
        ─▶ resume the inbox ─▶ event source (readyz 200, READY=1)

With ``store.backend = redis`` the store step waits for Redis and checks the partition
layout, and "resume the inbox" becomes: take this replica's share of the partitions and
feed their messages to dispatch (other replicas' unanswered work is adopted the same way,
whenever a lease lapses). Shutdown then also hands the partitions over at once.

A stop request (SIGTERM, Ctrl-C) is honoured at every step: during start-up it ends the
step in progress (a Lark outage can make identification retry for a long time) and the
daemon exits without starting the rest. Once running, shutdown is the reverse of start-up:
close the event source so the platform routes new events to other replicas, stop
admitting, let in-flight answers finish within the grace period, and leave anything
unfinished in the inbox.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack

import anyio
from anyio.abc import TaskStatus

from larkbot import __version__
from larkbot.admission.admission import BotIdentity
from larkbot.config import Settings
from larkbot.core.agent import Agent
from larkbot.core.errors import LarkbotError
from larkbot.core.retry import RetryPolicy
from larkbot.daemon._assembly import Components, Overrides, Wiring, assemble
from larkbot.daemon._shared import RedisGuard, drain_shared, start_shared, verify_layout
from larkbot.dispatch.dispatcher import Dispatcher
from larkbot.lark.client import CredentialsError, LarkAPIError, LarkClient
from larkbot.ops import metrics
from larkbot.ops.http import HealthState, OpsServer, build_ops_app
from larkbot.ops.logging import log_context
from larkbot.ops.systemd import SystemdNotifier
from larkbot.sources import EventSource
from larkbot.store import Store, StoreError

__all__ = ["Daemon", "DaemonStatus"]

log = logging.getLogger("larkbot.daemon")

_INBOX_GAUGE_INTERVAL = 5.0
# How often a running daemon adopts the unanswered messages of a replica that died
# (the store only hands out items whose owner is gone).
_ADOPT_INTERVAL = 60.0
# Identification waits for Lark as long as it takes, doubling up to 30 s between tries.
_IDENTIFY_RETRY = RetryPolicy(
    max_attempts=1_000_000, base_delay=1.0, max_delay=30.0, deadline=1e9, jitter=0.1
)


class DaemonStatus:
    """Live figures of a running daemon, for the agent's ``status`` command."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    @property
    def version(self) -> str:
        """larkbot's version."""
        return __version__

    @property
    def uptime_seconds(self) -> float:
        """Seconds since the daemon was created."""
        return time.monotonic() - self._daemon._started

    @property
    def connected(self) -> bool:
        """Whether the event source can receive events."""
        return self._daemon.health.connected

    @property
    def events_handled(self) -> int:
        """Frames admission has seen."""
        return self._daemon.events_handled

    @property
    def backlog(self) -> int:
        """Messages queued or being answered, or waiting in the store for room."""
        return self._daemon.backlog

    @property
    def conversations(self) -> int:
        """Conversations held in the cache."""
        parts = self._daemon._parts
        return len(parts.conversations) if parts is not None else 0


class Daemon:
    """larkbot's whole pipeline; :meth:`run` until :meth:`request_stop` or cancellation.

    :param settings: the validated configuration.
    :param overrides: parts to use instead of the configured ones (see :class:`Overrides`).
    :param agent: shorthand for ``overrides=Overrides(agent=...)``.
    :param working_reaction_after: seconds the agent may think before the user's message
        gets a "working on it" reaction; ``None`` turns the reaction off.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        overrides: Overrides | None = None,
        agent: Agent | None = None,
        env: Mapping[str, str] | None = None,
        notifier: SystemdNotifier | None = None,
        working_reaction_after: float | None = 1.0,
    ) -> None:
        self.settings = settings
        self.health = HealthState()
        self.identity = BotIdentity()
        self.status = DaemonStatus(self)
        self.ops_port: int | None = None
        self.ready = anyio.Event()
        overrides = overrides or Overrides()
        if agent is not None:
            overrides = Overrides(**{**_fields(overrides), "agent": agent})
        env = os.environ if env is None else env
        self._notifier = notifier or SystemdNotifier.from_env(env)
        self._wiring = Wiring(
            overrides=overrides,
            identity=self.identity,
            status=self.status,
            on_source_state=self._on_source_state,
            env=env,
            working_reaction_after=working_reaction_after,
        )
        self._started = time.monotonic()
        self._stop = anyio.Event()
        self._parts: Components | None = None
        self._source_failure: LarkbotError | None = None
        self._hard_stop: anyio.CancelScope | None = None
        self._guard: RedisGuard | None = None

    # -- live figures -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the event source can receive events."""
        return self.health.connected

    @property
    def events_handled(self) -> int:
        """Frames admission has seen."""
        return self._parts.admission.events_handled if self._parts else 0

    @property
    def backlog(self) -> int:
        """Messages queued or being answered, or kept in the store until there is room."""
        if self._parts is None:
            return 0
        return self._parts.dispatcher.backlog + self._parts.dispatcher.spilled

    # -- lifecycle ----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful shutdown (first SIGTERM/SIGINT); honoured during start-up too."""
        self._stop.set()

    def stop_now(self) -> None:
        """Stop at once (second signal); unfinished messages stay in the inbox."""
        self._stop.set()
        if self._hard_stop is not None:
            self._hard_stop.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until stopped.

        :raises LarkbotError: the one error that ended the daemon (refused credentials,
            a refused connection, a port in use, a store that cannot open), raised plainly
            rather than inside an exception group so callers can name it in one line.
        """
        try:
            with anyio.CancelScope() as hard_stop:
                self._hard_stop = hard_stop
                await self._run(task_status)
        except BaseExceptionGroup as group:
            fatal = _sole_fatal(group)
            if fatal is None:
                raise
            raise fatal from None
        finally:
            self._hard_stop = None
        if self._source_failure is not None:
            raise self._source_failure

    async def _run(self, task_status: TaskStatus[None]) -> None:
        settings = self.settings
        async with AsyncExitStack() as stack, anyio.create_task_group() as tg:
            parts = self._parts = await assemble(settings, stack, self._wiring)
            ops = OpsServer(
                build_ops_app(self.health, routes=parts.source.routes),
                settings.server.host,
                settings.server.port,
            )
            self.ops_port = await tg.start(ops.run)
            if not await self._start_up(parts):
                tg.cancel_scope.cancel()
                return
            # Dispatch runs for the daemon's whole life, so it starts in the outer group.
            await tg.start(parts.dispatcher.run)
            for service in parts.services:
                await tg.start(service)
            if parts.shared is not None:
                self._guard = RedisGuard(parts.shared.store, self.health)
                await start_shared(tg, parts.shared, parts.dispatcher, self._guard)
                tg.start_soon(self._run_source, parts.source)
            else:
                assert parts.store is not None
                await self._resume(parts.store, parts.dispatcher)
                tg.start_soon(self._run_source, parts.source)
                tg.start_soon(parts.store.run_pruner)
                tg.start_soon(self._watch_inbox, parts.store)
                tg.start_soon(self._adopt_orphans, parts.store, parts.dispatcher)
            tg.start_soon(self._notifier.run_watchdog)
            tg.start_soon(self._notify_ready)
            task_status.started()

            await self._stop.wait()
            await self._drain(parts)
            tg.cancel_scope.cancel()

    async def _start_up(self, parts: Components) -> bool:
        """Identify the bot and warm up the brain.

        Returns ``False`` when a stop was requested before start-up completed; the steps
        run in a scope that the stop request cancels, so a stop is never kept waiting by
        a retry loop.
        """
        async with anyio.create_task_group() as steps:
            steps.start_soon(self._cancel_on_stop, steps.cancel_scope)
            if parts.shared is not None:
                await self._notifier.status("waiting for Redis")
                await verify_layout(parts.shared.store)
            await self._notifier.status("identifying the bot")
            await self._identify(parts.client)
            for warm_up in parts.warm_up:
                await warm_up()
            steps.cancel_scope.cancel()
        if self._stop.is_set():
            log.info("stop requested while starting: exiting without connecting")
            self.health.draining = True
            return False
        return True

    async def _cancel_on_stop(self, scope: anyio.CancelScope) -> None:
        await self._stop.wait()
        scope.cancel()

    async def _identify(self, client: LarkClient) -> None:
        """Learn the bot's open_id; retry while Lark is unreachable, stop on bad credentials."""
        failures = 0
        while True:
            try:
                info = await client.bot_info()
            except CredentialsError:
                raise
            except LarkAPIError as exc:
                failures += 1
                delay = _IDENTIFY_RETRY.backoff(failures)
                log.warning("bot identity not known yet (%s); retrying in %.0f s", exc, delay)
                await anyio.sleep(delay)
                continue
            self.identity.open_id = info.open_id
            self.identity.name = info.app_name
            self.health.bot_identity_known = True
            log.info("bot identity: %s (%s)", info.app_name, info.open_id)
            return

    async def _resume(self, store: Store, dispatcher: Dispatcher) -> None:
        """Answer what a previous run acked but did not answer; drop what is too old."""
        resumable, expired = await store.unfinished(self.settings.admission.stale_after_seconds)
        for message in expired:
            with log_context(message.message_id, message.chat_id):
                log.warning(
                    "not answering message %s: it waited longer than the stale cutoff",
                    message.message_id,
                )
        for message in resumable:
            with log_context(message.message_id, message.chat_id):
                log.info("resuming message %s from the inbox", message.message_id)
        # Acked before, so never refused; beyond dispatch's bounds they wait in the store
        # (a restart after a full overflow resumes up to max_spilled of them at once).
        waiting = dispatcher.resume(resumable)
        if waiting:
            log.info("%d resumed message(s) wait in the store until the backlog has room", waiting)

    async def _run_source(self, source: EventSource) -> None:
        # A source that cannot go on (refused credentials, reconnects used up) stops the
        # daemon gracefully: answers in flight still land before the error is raised.
        try:
            if self._guard is not None:
                await self._guard.run_source(source)  # closed while Redis fails
            else:
                await source.run()
        except LarkbotError as exc:
            self._source_failure = exc
            self._stop.set()

    def _on_source_state(self, up: bool) -> None:
        self.health.connected = up
        if up and self.health.ready and not self.ready.is_set():
            self.ready.set()

    async def _drain(self, parts: Components) -> None:
        grace = self.settings.shutdown.grace_seconds
        dispatcher = parts.dispatcher
        log.info("stopping: closing the event source, %d message(s) in flight", dispatcher.backlog)
        self.health.draining = True
        await self._notifier.stopping()
        if self._guard is not None:
            self._guard.stop()
        parts.source.close()
        if parts.shared is not None:
            await drain_shared(parts.shared, dispatcher, grace)
            return
        if not await dispatcher.drain(grace):
            log.warning(
                "grace period of %.0f s over: %d message(s) left in the inbox for the next start",
                grace,
                dispatcher.backlog,
            )
        if dispatcher.spilled:
            log.info(
                "%d message(s) waiting in the store for room in the backlog stay pending there "
                "for the next start",
                dispatcher.spilled,
            )

    async def _adopt_orphans(self, store: Store, dispatcher: Dispatcher) -> None:
        while True:
            await anyio.sleep(_ADOPT_INTERVAL)
            if dispatcher.accepting:
                # A passing store error (a locked database during a backup) is retried at the
                # next interval: it must not end a daemon that answers fine otherwise.
                try:
                    await self._resume(store, dispatcher)
                except StoreError as exc:
                    log.warning("adopting unanswered messages failed, next try later: %s", exc)

    async def _watch_inbox(self, store: Store) -> None:
        while True:
            try:
                metrics.INBOX_DEPTH.set(await store.depth())
            except StoreError as exc:
                log.warning("reading the inbox depth failed, next try later: %s", exc)
            await anyio.sleep(_INBOX_GAUGE_INTERVAL)

    async def _notify_ready(self) -> None:
        await self.ready.wait()
        await self._notifier.ready(f"connected to Lark as {self.identity.name or 'the bot'}")


def _fields(overrides: Overrides) -> dict[str, object]:
    return {name: getattr(overrides, name) for name in Overrides.__dataclass_fields__}


def _sole_fatal(group: BaseExceptionGroup) -> LarkbotError | None:
    """The one :class:`LarkbotError` inside ``group`` (cancellations aside), else ``None``."""
    leaves: list[BaseException] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                collect(inner)
        else:
            leaves.append(exc)

    collect(group)
    errors = [leaf for leaf in leaves if not isinstance(leaf, anyio.get_cancelled_exc_class())]
    if len(errors) == 1 and isinstance(errors[0], LarkbotError):
        return errors[0]
    return None

"""The daemon: every stage of the event path, wired into one task group.

Start-up order matters and is fixed here::

    HTTP port (healthz answers, readyz 503) ─▶ store ─▶ bot identity ─▶ dispatch
        ─▶ resume the inbox ─▶ long connection (readyz 200, READY=1)

Shutdown (``request_stop``, on SIGTERM) is the reverse: close the long connection so the
platform routes new events to other replicas, stop admitting, let in-flight answers
finish within the grace period, and leave anything unfinished in the inbox.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from larkbot import __version__
from larkbot.admission.admission import Admission, AdmissionPolicy, BotIdentity
from larkbot.config import Settings
from larkbot.core.agent import Agent
from larkbot.dispatch.dispatcher import Dispatcher
from larkbot.lark.client import CredentialsError, LarkAPIError, LarkClient
from larkbot.ops import metrics
from larkbot.ops.http import HealthState, OpsServer, build_ops_app
from larkbot.ops.systemd import SystemdNotifier
from larkbot.reply.responder import Responder
from larkbot.sources.longconn.connection import (
    LarkAuthError,
    LongConnection,
    TransientConnectError,
)
from larkbot.store import Store, open_store
from larkbot.store.conversations import ConversationCache

if TYPE_CHECKING:
    from larkbot.agent.llm import LLMBrain

__all__ = ["Daemon"]

log = logging.getLogger("larkbot.daemon")

_INBOX_GAUGE_INTERVAL = 5.0
# How often a running daemon adopts the unanswered messages of a replica that died
# (the store only hands out items whose owner is gone).
_ADOPT_INTERVAL = 60.0


class Daemon:
    """larkbot's whole pipeline; :meth:`run` until :meth:`request_stop` or cancellation.

    :param agent: replaces the configured assistant (tests and benchmarks plug in their own).
    :param working_reaction_after: seconds the agent may think before the user's message
        gets a "working on it" reaction; ``None`` turns the reaction off.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        agent: Agent | None = None,
        env: Mapping[str, str] | None = None,
        notifier: SystemdNotifier | None = None,
        working_reaction_after: float | None = 1.0,
    ) -> None:
        self.settings = settings
        self.health = HealthState()
        self.identity = BotIdentity()
        self.ops_port: int | None = None
        self.ready = anyio.Event()
        self._agent = agent
        self._env = os.environ if env is None else env
        self._notifier = notifier or SystemdNotifier.from_env(self._env)
        self._working_reaction_after = working_reaction_after
        self._started = time.monotonic()
        self._stop = anyio.Event()
        self._admission: Admission | None = None
        self._connection: LongConnection | None = None
        self._dispatcher: Dispatcher | None = None
        self._fatal: Exception | None = None
        self._hard_stop: anyio.CancelScope | None = None

    # -- RuntimeStatus, for the agent's ``status`` command ---------------------------------

    @property
    def version(self) -> str:
        """larkbot's version."""
        return __version__

    @property
    def uptime_seconds(self) -> float:
        """Seconds since the daemon object was created."""
        return time.monotonic() - self._started

    @property
    def connected(self) -> bool:
        """Whether the long connection is open."""
        return self.health.connected

    @property
    def events_handled(self) -> int:
        """Data frames admission has seen."""
        return self._admission.events_handled if self._admission else 0

    @property
    def backlog(self) -> int:
        """Messages queued or being answered."""
        return self._dispatcher.backlog if self._dispatcher else 0

    # -- lifecycle ----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful shutdown (first SIGTERM/SIGINT)."""
        self._stop.set()

    def stop_now(self) -> None:
        """Stop at once (second signal); unfinished messages stay in the inbox."""
        self._stop.set()
        if self._hard_stop is not None:
            self._hard_stop.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until stopped.

        :raises LarkAuthError: the app's credentials or connection were refused.
        :raises CredentialsError: the token endpoint refused the app's credentials.
        """
        settings = self.settings
        try:
            with anyio.CancelScope() as hard_stop:
                self._hard_stop = hard_stop
                async with (
                    LarkClient(
                        base_url=settings.lark.base_url,
                        app_id=settings.app.id,
                        app_secret=settings.app.secret,
                        timeout=settings.server.timeout,
                    ) as client,
                    open_store(
                        kind=settings.store.kind,
                        state_dir=(
                            settings.store.resolved_state_dir(self._env)
                            if settings.store.kind == "sqlite"
                            else None
                        ),
                        ledger_ttl_seconds=settings.store.ledger_ttl_hours * 3600,
                        ledger_max_entries=settings.store.ledger_max_entries,
                    ) as store,
                    AsyncExitStack() as stack,
                    anyio.create_task_group() as tg,
                ):
                    ops_app = build_ops_app(self.health)
                    ops = OpsServer(ops_app, settings.server.host, settings.server.port)
                    self.ops_port = await tg.start(ops.run)
                    await self._notifier.status("identifying the bot")
                    try:
                        await self._identify(client)
                    except CredentialsError as exc:
                        # Raised plainly after the task group, not wrapped in an exception
                        # group, so the CLI can name it in one line.
                        self._fatal = exc
                        tg.cancel_scope.cancel()
                        await anyio.lowlevel.checkpoint()  # the cancellation lands here

                    conversations = ConversationCache.from_settings(settings)
                    if self._agent is not None:
                        agent = self._agent
                    else:
                        agent, brain = _build_assistant(settings, client, self)
                        if brain is not None:
                            # Closed with everything else when the daemon stops.
                            stack.push_async_callback(brain.aclose)
                            # Load the LLM client before events arrive, so the first
                            # message's ack does not wait for it.
                            await brain.warm_up()
                    responder = Responder(
                        agent=agent,
                        client=client,
                        store=store,
                        conversations=conversations,
                        reply_in_thread=settings.lark.reply_in_thread,
                        working_reaction_after=self._working_reaction_after,
                    )
                    dispatcher = self._dispatcher = Dispatcher(
                        responder.answer,
                        max_concurrency=settings.dispatch.max_concurrency,
                        max_backlog=settings.dispatch.max_backlog,
                        max_per_chat=settings.dispatch.max_per_chat,
                        merge_window=settings.agent.merge_window_ms / 1000,
                    )
                    await tg.start(dispatcher.run)
                    await self._resume(store, dispatcher)

                    self._admission = Admission(
                        store=store,
                        dispatcher=dispatcher,
                        identity=self.identity,
                        policy=_policy(settings),
                    )
                    self._connection = LongConnection(
                        client=client,
                        handler=self._admission,
                        on_state=self._on_connection_state,
                    )
                    tg.start_soon(self._run_connection, self._connection)
                    tg.start_soon(store.run_pruner)
                    tg.start_soon(self._notifier.run_watchdog)
                    tg.start_soon(self._watch_inbox, store)
                    tg.start_soon(self._adopt_orphans, store, dispatcher)
                    tg.start_soon(self._notify_ready)
                    task_status.started()

                    await self._stop.wait()
                    await self._drain(dispatcher)
                    tg.cancel_scope.cancel()
        finally:
            self._hard_stop = None
        if self._fatal is not None:
            raise self._fatal

    async def _identify(self, client: LarkClient) -> None:
        """Learn the bot's open_id; retry while Lark is unreachable, stop on bad credentials."""
        delay = 1.0
        while True:
            try:
                info = await client.bot_info()
            except CredentialsError:
                raise
            except LarkAPIError as exc:
                log.warning("bot identity not known yet (%s); retrying in %.0f s", exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 30.0)
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
            log.warning(
                "not answering message %s: it waited longer than the stale cutoff",
                message.message_id,
                extra={"message_id": message.message_id, "chat_id": message.chat_id},
            )
        for message in resumable:
            log.info(
                "resuming message %s from the inbox",
                message.message_id,
                extra={"message_id": message.message_id, "chat_id": message.chat_id},
            )
            dispatcher.submit(message, force=True)

    async def _run_connection(self, connection: LongConnection) -> None:
        try:
            await connection.run()
        except (LarkAuthError, TransientConnectError) as exc:
            self._fatal = exc
            self._stop.set()

    def _on_connection_state(self, up: bool) -> None:
        self.health.connected = up
        if up and self.health.ready and not self.ready.is_set():
            self.ready.set()

    async def _drain(self, dispatcher: Dispatcher) -> None:
        grace = self.settings.shutdown.grace_seconds
        log.info(
            "stopping: closing the long connection, %d message(s) in flight", dispatcher.backlog
        )
        self.health.draining = True
        await self._notifier.stopping()
        if self._connection is not None:
            self._connection.close()
        dispatcher.stop_accepting()
        with anyio.move_on_after(grace) as scope:
            await dispatcher.wait_idle()
        if scope.cancelled_caught:
            log.warning(
                "grace period of %.0f s over: %d message(s) left in the inbox for the next start",
                grace,
                dispatcher.backlog,
            )

    async def _adopt_orphans(self, store: Store, dispatcher: Dispatcher) -> None:
        while True:
            await anyio.sleep(_ADOPT_INTERVAL)
            if dispatcher.accepting:
                await self._resume(store, dispatcher)

    async def _watch_inbox(self, store: Store) -> None:
        while True:
            metrics.INBOX_DEPTH.set(await store.depth())
            await anyio.sleep(_INBOX_GAUGE_INTERVAL)

    async def _notify_ready(self) -> None:
        await self.ready.wait()
        await self._notifier.ready(f"connected to Lark as {self.identity.name or 'the bot'}")


def _policy(settings: Settings) -> AdmissionPolicy:
    policy = settings.policy
    return AdmissionPolicy(
        stale_after_seconds=settings.admission.stale_after_seconds,
        respond_to_mention_all=settings.admission.respond_to_mention_all,
        max_payload_bytes=settings.admission.max_payload_bytes,
        allowed_users=frozenset(policy.allowed_users) if policy.allowed_users is not None else None,
        allowed_chats=frozenset(policy.allowed_chats) if policy.allowed_chats is not None else None,
    )


def _build_assistant(
    settings: Settings, client: LarkClient, status: Daemon
) -> tuple[Agent, LLMBrain | None]:
    """The configured assistant (tools, limits) and its LLM brain when one is configured."""
    from larkbot.agent.assistant import Assistant
    from larkbot.agent.limits import RateLimiter
    from larkbot.agent.tools.registry import default_registry
    from larkbot.agent.tools.runner import ToolRunner

    limits = settings.rate_limiting
    runner = ToolRunner(
        default_registry(),
        write_limiter=RateLimiter(limits.write_requests_per_minute) if limits.enabled else None,
        writers=settings.policy.writers,
        cache_ttl_seconds=settings.cache.ttl_minutes * 60,
    )
    brain = None
    if settings.llm.enabled:
        from larkbot.agent.llm import LLMBrain

        brain = LLMBrain(settings)
    return Assistant(settings, status=status, runner=runner, client=client, brain=brain), brain

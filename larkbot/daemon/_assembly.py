"""Assembly: build every component of the event path from settings, with overrides.

:func:`assemble` is the one place that knows which concrete class plays each part. It
opens what must be opened (the Lark client, the store) on the caller's exit stack and
returns :class:`Components`; the daemon's lifecycle then only starts, supervises and stops
them. Tests, the console, the benchmark and embedders replace a part through
:class:`Overrides` instead of patching anything.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import anyio

from larkbot.admission.admission import Admission, AdmissionPolicy, BotIdentity
from larkbot.config import Settings
from larkbot.core.agent import Agent, RuntimeStatus
from larkbot.core.cards import CardActions
from larkbot.core.frames import FrameHandler
from larkbot.core.message import InboundMessage
from larkbot.daemon._shared import RedisQueue, SharedParts, open_redis, ownership_for
from larkbot.dispatch.dispatcher import Dispatcher, SpilledLoader
from larkbot.lark.client import LarkClient
from larkbot.reply._posting import ReplyPoster
from larkbot.reply.responder import Responder
from larkbot.reply.shared import OwnedWork, SharedResponder
from larkbot.sources import EventSource, SourceFactory, StateCallback
from larkbot.store import Store, open_store
from larkbot.store.conversations import ConversationCache
from larkbot.store.redis import SharedRateLimiter

if TYPE_CHECKING:
    from larkbot.agent.brain import Brain
    from larkbot.agent.confirm import ConfirmationStore
    from larkbot.agent.limits import UserLimiter
    from larkbot.agent.tools.base import Tool
    from larkbot.agent.tools.registry import ToolRegistry

__all__ = ["Components", "Overrides", "Wiring", "assemble"]

log = logging.getLogger("larkbot.daemon")


@dataclass(frozen=True, slots=True)
class Overrides:
    """Parts to use instead of the ones the settings describe; ``None`` keeps the default.

    :param agent: answers every message (the configured assistant otherwise).
    :param brain: the assistant's brain (offline or LLM per settings otherwise).
    :param tools: extra tools added to the assistant's registry.
    :param store: an open store; its owner closes it (the daemon opens its own otherwise).
        It is used even when the settings say ``store.backend = redis``.
    :param lark_client: an open Lark client; its owner closes it.
    :param source: builds the event source (the long connection otherwise).
    """

    agent: Agent | None = None
    brain: Brain | None = None
    tools: Sequence[Tool] = ()
    store: Store | None = None
    lark_client: LarkClient | None = None
    source: SourceFactory | None = None


@dataclass(slots=True)
class Components:
    """Everything the daemon runs, built and wired but not yet started.

    Exactly one of ``store`` (one replica: the inbox store) and ``shared`` (replicas
    sharing Redis) is set.
    """

    settings: Settings
    client: LarkClient
    store: Store | None
    conversations: ConversationCache
    agent: Agent
    responder: Responder | SharedResponder
    dispatcher: Dispatcher
    admission: Admission
    source: EventSource
    warm_up: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    shared: SharedParts | None = None
    services: list[Callable[..., Awaitable[None]]] = field(default_factory=list)
    """Run for the daemon's whole life with ``task_group.start`` (the approved writes)."""


@dataclass(frozen=True, slots=True)
class Wiring:
    """What the daemon hands the assembly besides the settings.

    :param overrides: the parts to use instead of the configured ones.
    :param identity: the bot's identity, filled in at start-up; admission reads it.
    :param status: the daemon's live figures, for the agent's ``status`` command.
    :param on_source_state: called with ``True``/``False`` as the event source comes and goes.
    :param env: the environment the SQLite state directory is resolved in.
    :param working_reaction_after: seconds the agent may think before the user's message
        gets a "working on it" reaction; ``None`` turns the reaction off.
    """

    overrides: Overrides
    identity: BotIdentity
    status: RuntimeStatus
    on_source_state: StateCallback
    env: Mapping[str, str]
    working_reaction_after: float | None


class _AgentParts(NamedTuple):
    """The agent a replica answers with, its card action handler, and what warms it up."""

    agent: Agent
    card_actions: CardActions | None
    warm_up: list[Callable[[], Awaitable[object]]]


async def assemble(settings: Settings, stack: AsyncExitStack, wiring: Wiring) -> Components:
    """Build and wire every component; what needs closing is pushed on ``stack``."""
    # One client, and so one HTTP pool, for everything the daemon asks of Lark: OpenAPI
    # calls and the long connection's endpoint discovery.
    client = wiring.overrides.lark_client
    if client is None:
        client = await stack.enter_async_context(
            LarkClient(
                base_url=settings.lark.base_url,
                app_id=settings.app.id,
                app_secret=settings.app.secret,
                timeout=settings.server.timeout_seconds,
            )
        )
    build = _Build(settings, stack, client, wiring)
    store = wiring.overrides.store
    if store is None and settings.store.kind == "redis":
        return await build.shared()
    if store is None:
        store = await stack.enter_async_context(
            open_store(
                kind=settings.store.kind,
                state_dir=(
                    settings.store.resolved_state_dir(wiring.env)
                    if settings.store.kind == "sqlite"
                    else None
                ),
                ledger_ttl_seconds=settings.store.ledger_ttl_hours * 3600,
                ledger_max_entries=settings.store.ledger_max_entries,
            )
        )
    return await build.single(store)


@dataclass(frozen=True, slots=True)
class _Build:
    """Builds one replica's parts from the settings, the daemon's wiring and one Lark client."""

    settings: Settings
    stack: AsyncExitStack
    client: LarkClient
    wiring: Wiring

    async def single(self, store: Store) -> Components:
        """The parts of a replica alone with its inbox ``store`` (SQLite or memory)."""
        settings = self.settings
        conversations = ConversationCache.from_settings(settings)
        built = await self._agent(store, conversations)
        responder = Responder(
            agent=built.agent,
            client=self.client,
            store=store,
            conversations=conversations,
            reply_in_thread=settings.lark.reply_in_thread,
            working_reaction_after=self.wiring.working_reaction_after,
            streaming=_streaming(settings),
        )
        # A full backlog spills to this inbox if it outlives the process (the memory store
        # refuses instead); the shared Redis queue is pulled instead.
        load_spilled = (
            functools.partial(
                store.pending_messages,
                max_age_seconds=settings.admission.stale_after_seconds,
            )
            if store.durable
            else None
        )
        dispatcher = _dispatcher(settings, responder.answer, load_spilled=load_spilled)
        admission = self._admission(built, store=store, dispatcher=dispatcher, shared=None)
        return self._components(built, responder, conversations, dispatcher, admission, store=store)

    async def shared(self) -> Components:
        """The parts of a replica that shares Redis with others (``store.backend = redis``).

        Admission queues into Redis; the partitions this replica owns feed dispatch; answers
        read and write history in Redis and finish under the partition's lease.
        """
        settings = self.settings
        redis = await self.stack.enter_async_context(open_redis(settings))
        limits = settings.rate_limiting
        # Pending write confirmations live in Redis too, so a click on any replica counts
        # once. (The decision's outcome is not added to the shared history yet.)
        built = await self._agent(
            redis,
            None,
            limiter=SharedRateLimiter(redis, "msg", limits.requests_per_minute),
            write_limiter=SharedRateLimiter(redis, "write", limits.write_requests_per_minute),
        )
        ownership = ownership_for(settings, redis)
        work = OwnedWork(ownership)
        responder = SharedResponder(
            agent=built.agent,
            poster=ReplyPoster(
                self.client,
                reply_in_thread=settings.lark.reply_in_thread,
                working_reaction_after=self.wiring.working_reaction_after,
            ),
            store=redis,
            ownership=ownership,
            work=work,
            default_language=settings.agent.default_language,
            stale_after_seconds=settings.admission.stale_after_seconds,
            streaming=_streaming(settings),
        )
        shared = SharedParts(store=redis, ownership=ownership, work=work, responder=responder)
        conversations = ConversationCache.from_settings(settings)
        # Admission only queues into Redis: the partitions this replica owns feed dispatch.
        admission = self._admission(built, store=None, dispatcher=None, shared=RedisQueue(redis))
        dispatcher = _dispatcher(settings, responder.answer)
        return self._components(
            built, responder, conversations, dispatcher, admission, shared=shared
        )

    async def _agent(
        self,
        store: ConfirmationStore,
        conversations: ConversationCache | None,
        *,
        limiter: UserLimiter | None = None,
        write_limiter: UserLimiter | None = None,
    ) -> _AgentParts:
        """The overriding agent, else the configured assistant (see :func:`_build_assistant`)."""
        warm_up: list[Callable[[], Awaitable[object]]] = []
        overrides = self.wiring.overrides
        if overrides.agent is not None:
            return _AgentParts(overrides.agent, None, warm_up)
        registry = await anyio.to_thread.run_sync(_load_agent_registry)
        agent, card_actions = _build_assistant(
            self.settings,
            self.client,
            store,
            conversations,
            self.wiring.status,
            overrides,
            self.stack,
            warm_up,
            registry,
            limiter=limiter,
            write_limiter=write_limiter,
        )
        return _AgentParts(agent, card_actions, warm_up)

    def _admission(
        self,
        built: _AgentParts,
        *,
        store: Store | None,
        dispatcher: Dispatcher | None,
        shared: RedisQueue | None,
    ) -> Admission:
        """Admission into ``store`` and ``dispatcher`` (a replica alone), or into ``shared``."""
        return Admission(
            store=store,
            dispatcher=dispatcher,
            identity=self.wiring.identity,
            policy=_policy(self.settings),
            card_actions=built.card_actions,
            shared=shared,
        )

    def _components(
        self,
        built: _AgentParts,
        responder: Responder | SharedResponder,
        conversations: ConversationCache,
        dispatcher: Dispatcher,
        admission: Admission,
        *,
        store: Store | None = None,
        shared: SharedParts | None = None,
    ) -> Components:
        """The event source in front of ``admission``, and the whole replica.

        ``store`` is the inbox of a replica alone, ``shared`` the Redis parts of replicas
        sharing it (see :class:`Components`).
        """
        settings = self.settings
        agent, card_actions, warm_up = built
        source = self.wiring.overrides.source or (
            _webhook(settings)
            if settings.events.mode == "webhook"
            else _long_connection(self.client)
        )
        return Components(
            settings=settings,
            client=self.client,
            store=store,
            conversations=conversations,
            agent=agent,
            responder=responder,
            dispatcher=dispatcher,
            admission=admission,
            source=source(admission, self.wiring.on_source_state),
            warm_up=warm_up,
            shared=shared,
            services=_services(card_actions),
        )


def _services(card_actions: CardActions | None) -> list[Callable[..., Awaitable[None]]]:
    """What the daemon runs beside dispatch: the task group of the approved writes."""
    if card_actions is None:
        return []
    # Imported already (off the loop) by whatever built ``card_actions``.
    from larkbot.agent.confirm import WriteConfirmations

    if isinstance(card_actions, WriteConfirmations):
        return [card_actions.run]
    return []


def _dispatcher(
    settings: Settings,
    handler: Callable[[InboundMessage], Awaitable[None]],
    *,
    load_spilled: SpilledLoader | None = None,
) -> Dispatcher:
    return Dispatcher(
        handler,
        max_concurrency=settings.dispatch.max_concurrency,
        max_backlog=settings.dispatch.max_backlog,
        max_per_chat=settings.dispatch.max_per_chat,
        max_spilled=settings.dispatch.max_spilled,
        load_spilled=load_spilled,
        merge_window=settings.agent.merge_window_ms / 1000,
    )


def _long_connection(client: LarkClient) -> SourceFactory:
    from larkbot.sources.longconn import LongConnection

    def build(handler: FrameHandler, on_state: StateCallback) -> EventSource:
        return LongConnection(client=client, handler=handler, on_state=on_state)

    return build


def _webhook(settings: Settings) -> SourceFactory:
    from larkbot.sources.webhook import WebhookSource

    def build(handler: FrameHandler, on_state: StateCallback) -> EventSource:
        return WebhookSource(settings.events, handler, on_state)

    return build


def _streaming(settings: Settings) -> bool:
    """Whether answers stream into cards: ``reply.streaming``, else whether an LLM answers."""
    chosen = settings.reply.streaming
    return settings.llm.enabled if chosen is None else chosen


def _policy(settings: Settings) -> AdmissionPolicy:
    policy = settings.policy
    return AdmissionPolicy(
        stale_after_seconds=settings.admission.stale_after_seconds,
        respond_to_mention_all=settings.admission.respond_to_mention_all,
        max_payload_bytes=settings.admission.max_payload_bytes,
        allowed_users=frozenset(policy.allowed_users) if policy.allowed_users is not None else None,
        allowed_chats=frozenset(policy.allowed_chats) if policy.allowed_chats is not None else None,
    )


def _load_agent_registry() -> ToolRegistry:
    """Import the agent and build its tool registry, installed plug-ins included.

    Run in a worker thread: importing modules and reading package metadata (the
    ``larkbot.tools`` entry points) reads files, which the event loop must not wait for.
    """
    import larkbot.agent.assistant
    import larkbot.agent.confirm
    import larkbot.agent.llm
    import larkbot.agent.tools.runner  # noqa: F401
    from larkbot.agent.tools.registry import default_registry

    return default_registry(plugins=True)


def _build_assistant(
    settings: Settings,
    client: LarkClient,
    store: ConfirmationStore,
    conversations: ConversationCache | None,
    status: RuntimeStatus,
    overrides: Overrides,
    stack: AsyncExitStack,
    warm_up: list[Callable[[], Awaitable[object]]],
    registry: ToolRegistry,
    *,
    limiter: UserLimiter | None = None,
    write_limiter: UserLimiter | None = None,
) -> tuple[Agent, CardActions | None]:
    """The configured assistant (tools, limits), its brain, and its card action handler.

    ``limiter`` and ``write_limiter`` replace this process's own per-user limits (with
    Redis, replicas count them together).
    """
    from larkbot.agent.assistant import Assistant
    from larkbot.agent.confirm import WriteConfirmations
    from larkbot.agent.limits import RateLimiter
    from larkbot.agent.tools.runner import ToolRunner

    limits = settings.rate_limiting
    for tool in overrides.tools:
        registry.register(tool)
    if limits.enabled and write_limiter is None:
        write_limiter = RateLimiter(limits.write_requests_per_minute)
    confirmations = None
    if settings.agent.confirm_writes:
        allowed = settings.tools.allowed_bases
        confirmations = WriteConfirmations(
            store,
            ttl_seconds=settings.agent.confirm_ttl_minutes * 60,
            stuck_after_seconds=settings.agent.confirm_stuck_after_seconds,
            bases=dict(settings.bases),
            allowed_bases=None if allowed is None else frozenset(allowed),
            conversations=conversations,
            history=settings.agent.max_conversation_history,
        )
    runner = ToolRunner(
        registry,
        write_limiter=write_limiter if limits.enabled else None,
        writers=settings.policy.writers,
        cache_ttl_seconds=settings.cache.ttl_minutes * 60,
        confirmations=confirmations,
    )
    brain = overrides.brain
    if brain is None and settings.llm.enabled:
        from larkbot.agent.llm import LLMBrain

        llm = LLMBrain(settings)
        # Closed with everything else when the daemon stops; loaded before events arrive,
        # so the first message's ack does not wait for it.
        stack.push_async_callback(llm.aclose)
        warm_up.append(llm.warm_up)
        brain = llm
    assistant = Assistant(
        settings, status=status, runner=runner, client=client, brain=brain, limiter=limiter
    )
    if confirmations is not None:
        confirmations.bind(runner, client, assistant.timezone)
    return assistant, confirmations

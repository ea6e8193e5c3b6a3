"""The scenarios; each returns plain dicts of figures, ready for JSON."""

from __future__ import annotations

import gc
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psutil

from bench._bots import BENCH_DIR, BotProcess, bot_env, larkbot_bot, metric_value, sdk_bot
from bench._redis import REDIS_SERVER, BenchRedis, bench_redis
from larkbot.testing import LarkStandIn

__all__ = [
    "Load",
    "Sizes",
    "echo_load",
    "memory",
    "replicas",
    "reply_path",
    "slow_agent",
    "start_up",
]

_REDELIVERY_ACK_SECONDS = 3.0
_WARMUP_MESSAGES = 20
_MEMORY_WINDOW = 500
# A refused (non-200) ack comes back this much later, as the platform re-delivers it.
_REDELIVER_AFTER = 1.0
# A bot whose connection drops (the SDK's own keep-alive gives up when its handlers block
# its loop for 20 s) is told to reconnect after this long, not the platform's 2 minutes.
_RECONNECT_INTERVAL = 2


@dataclass(frozen=True)
class Load:
    """How echo messages are offered: ``window`` at most unanswered at once, or ``rate``
    per second, or (neither) all at once, flat out."""

    label: str
    window: int | None = None
    rate: float | None = None


_FULL_LOADS = (
    Load("20 in flight", window=20),
    Load("100 in flight", window=100),
    Load("200 in flight", window=200),
    Load("1000/s", rate=1000.0),
    Load("flat out"),
)
_QUICK_LOADS = (Load("20 in flight", window=20), Load("500/s", rate=500.0), Load("flat out"))


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does; ``quick()`` is the smoke-test size."""

    echo_count: int = 2000
    echo_loads: tuple[Load, ...] = _FULL_LOADS
    echo_chats: int = 50
    slow_chats: int = 20
    slow_delay: float = 1.0
    reply_count: int = 2000
    reply_concurrency: int = 50
    memory_chats: int = 1000
    memory_turns: int = 50
    start_runs: int = 5
    replica_counts: tuple[int, ...] = (1, 2, 3, 4)
    replica_messages: int = 600
    replica_chats: int = 120
    replica_delay: float = 0.2
    replica_concurrency: int = 8

    @classmethod
    def quick(cls) -> Sizes:
        """Small enough for a smoke test: a few seconds per scenario."""
        return cls(
            echo_count=200,
            echo_loads=_QUICK_LOADS,
            slow_chats=5,
            reply_count=200,
            memory_chats=50,
            memory_turns=5,
            start_runs=1,
            replica_counts=(1, 2),
            replica_messages=60,
            replica_chats=20,
        )


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class _Phase:
    """What one batch of messages produced on the stand-in."""

    ids: list[str]
    sent_at: dict[str, float]
    started: float
    send_seconds: float
    acks_from: int
    replies_from: int
    duplicates_from: int
    replies: dict[str, list[float]] = field(default_factory=dict)
    bot_cpu: float = 0.0
    standin_cpu: float = 0.0
    handshakes_from: int = 0

    def scan(self, lark: LarkStandIn) -> int:
        wanted = self.sent_at
        for record in lark.replies[self.replies_from :]:
            if record.to_message_id in wanted:
                self.replies.setdefault(record.to_message_id, []).append(record.at)
        self.replies_from = len(lark.replies)
        return len(self.replies)

    def figures(self, lark: LarkStandIn) -> dict[str, Any]:
        acks = {}
        refused = 0
        for ack in lark.acks[self.acks_from :]:
            if ack.chat_message_id not in self.sent_at:
                continue
            if ack.code != 200:
                refused += 1
            if ack.chat_message_id not in acks:
                acks[ack.chat_message_id] = ack
        ack_ms = [ack.latency_ms for ack in acks.values()]
        biz_ms = [float(ack.biz_rt) for ack in acks.values() if ack.biz_rt is not None]
        answered = max(len(self.replies), 1)
        reply_ms = []
        for message_id, times in self.replies.items():
            ack = acks.get(message_id)
            delivered = ack.delivered_at if ack is not None else self.sent_at[message_id]
            reply_ms.append((min(times) - delivered) * 1000.0)
        last_reply = max((max(t) for t in self.replies.values()), default=self.started)
        elapsed = max(last_reply - self.started, 1e-9)
        duplicates = sum(len(t) - 1 for t in self.replies.values())
        duplicates += lark.suppressed_duplicates - self.duplicates_from
        return {
            "messages": len(self.ids),
            "answered": len(self.replies),
            "lost": len(self.ids) - len(self.replies),
            "acked": len(acks),
            "offered_per_s": len(self.ids) / max(self.send_seconds, 1e-9),
            "replies_per_s": len(self.replies) / elapsed,
            "all_answered_s": elapsed if len(self.replies) == len(self.ids) else None,
            "ack_p50_ms": _percentile(ack_ms, 50),
            "ack_p99_ms": _percentile(ack_ms, 99),
            "ack_max_ms": max(ack_ms, default=None),
            "bot_ack_p50_ms": _percentile(biz_ms, 50),
            "bot_ack_p99_ms": _percentile(biz_ms, 99),
            "bot_ack_max_ms": max(biz_ms, default=None),
            "bot_cpu_ms_per_reply": self.bot_cpu * 1000 / answered,
            "standin_cpu_ms_per_reply": self.standin_cpu * 1000 / answered,
            "refused_acks": refused,
            "reconnects": lark.handshakes - self.handshakes_from,
            "reply_p50_ms": _percentile(reply_ms, 50),
            "reply_p99_ms": _percentile(reply_ms, 99),
            "acks_over_3s": sum(1 for ms in ack_ms if ms > _REDELIVERY_ACK_SECONDS * 1000),
            "duplicates": duplicates,
        }


async def _send_batch(
    lark: LarkStandIn,
    messages: Sequence[tuple[str, str]],
    rate: float | None,
    *,
    window: int | None = None,
) -> _Phase:
    """Deliver ``(chat, text)`` pairs on a schedule of ``rate`` per second (flat out: ``None``).

    With ``window`` no more than that many messages are left unanswered at once.
    """
    phase = _Phase([], {}, time.monotonic(), 0.0, len(lark.acks), len(lark.replies), 0)
    phase.duplicates_from = lark.suppressed_duplicates
    phase.handshakes_from = lark.handshakes
    answered_base = len(lark.replies)
    async with lark.watch_outbound(max_buffer=len(messages) + 1) as outbound:
        for index, (chat, text) in enumerate(messages):
            if rate is not None:
                # On a schedule, not after each send: a slow send does not lower the rate.
                delay = phase.started + index / rate - time.monotonic()
                if delay > 0:
                    await anyio.sleep(delay)
            if window is not None:
                # Woken by each reply the stand-in records, not by polling.
                while index - (len(lark.replies) - answered_base) >= window:
                    await outbound.receive()
            sent = time.monotonic()
            message_id = await lark.send_text(text, chat_id=chat, sender_open_id="ou_" + chat[3:])
            phase.ids.append(message_id)
            phase.sent_at[message_id] = sent
    phase.send_seconds = time.monotonic() - phase.started
    return phase


async def _await_answers(lark: LarkStandIn, phase: _Phase, limit_seconds: float) -> None:
    # Polled: a reply or an ack is only a record appended to the stand-in's lists.
    with anyio.move_on_after(limit_seconds):
        while phase.scan(lark) < len(phase.ids):  # noqa: ASYNC110
            await anyio.sleep(0.01)
    # Acks of the last few messages may trail their replies (the SDK acks after its handler).
    with anyio.move_on_after(2.0):
        while sum(1 for a in lark.acks[phase.acks_from :] if a.chat_message_id) < len(phase.ids):  # noqa: ASYNC110
            await anyio.sleep(0.01)
    phase.scan(lark)


def _chats(prefix: str, count: int) -> list[str]:
    return [f"oc_{prefix}{index:04d}" for index in range(count)]


async def _echo_phases(
    lark: LarkStandIn, bot: BotProcess, sizes: Sizes, text: str, label: str
) -> list[dict[str, Any]]:
    chats = _chats(f"{label}_", sizes.echo_chats)
    warmup = await _send_batch(lark, [(c, text) for c in chats[:_WARMUP_MESSAGES]], None)
    await _await_answers(lark, warmup, 30)
    results = []
    for load in sizes.echo_loads:
        batch = [(chats[i % len(chats)], text) for i in range(sizes.echo_count)]
        # The stand-in keeps every frame, ack and reply it saw: collected and frozen here,
        # between loads, they are not walked again by a collection in the middle of one.
        gc.collect()
        gc.freeze()
        bot_cpu, standin_cpu = bot.cpu_seconds(), time.process_time()
        phase = await _send_batch(lark, batch, load.rate, window=load.window)
        await _await_answers(lark, phase, 60 + sizes.echo_count / 50)
        phase.bot_cpu = bot.cpu_seconds() - bot_cpu
        phase.standin_cpu = time.process_time() - standin_cpu
        results.append(
            {"load": load.label, "rate": load.rate, "window": load.window, **phase.figures(lark)}
        )
        await anyio.sleep(0.5)
    return results


async def echo_load(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """Echo at each load, larkbot ("ping") and the SDK pattern, with CPU per answer.

    Refused acks are re-delivered a second later, as the platform does (later), so an
    overloaded bot loses nothing and the figures count every message once.
    """
    out: dict[str, Any] = {}
    standin = {"reconnect_interval": _RECONNECT_INTERVAL, "reconnect_nonce": 1}
    async with LarkStandIn(**standin) as lark, larkbot_bot(lark, workdir) as bot:
        lark.redeliver_after = _REDELIVER_AFTER
        out["larkbot"] = await _echo_phases(lark, bot, sizes, "ping", "lb")
        out["larkbot_rss_mb"] = bot.rss_bytes() / 2**20
    async with LarkStandIn(**standin) as lark, sdk_bot(lark, workdir) as bot:
        lark.redeliver_after = _REDELIVER_AFTER
        out["sdk"] = await _echo_phases(lark, bot, sizes, "ping", "sdk")
        out["sdk_rss_mb"] = bot.rss_bytes() / 2**20
    return out


async def _slow_round(lark: LarkStandIn, chats: int, label: str) -> dict[str, Any]:
    batch = [(chat, "Could you tell me something nice today?") for chat in _chats(label, chats)]
    phase = await _send_batch(lark, batch, None)
    await _await_answers(lark, phase, 30 + chats * 2)
    return phase.figures(lark)


async def slow_agent(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """A 1 s answer (LLM stand-in / sleeping handler) in many chats at once."""
    out: dict[str, Any] = {}
    if importlib.util.find_spec("larkbot.agent.llm") is None:
        out["larkbot"] = None
        out["larkbot_note"] = "larkbot.agent.llm is missing: the LLM brain cannot run"
    else:
        from larkbot.testing.openai_standin import OpenAIStandIn

        async with OpenAIStandIn(api_key="sk-test", delay=sizes.slow_delay) as llm:
            env = {
                "OPENAI_API_KEY": "sk-test",
                "OPENAI_BASE_URL": llm.base_url,
                "LLM_MODEL": "test-model",
            }
            async with LarkStandIn() as lark, larkbot_bot(lark, workdir, env) as _bot:
                out["larkbot"] = await _slow_round(lark, sizes.slow_chats, "slowlb")
    async with LarkStandIn() as lark, sdk_bot(lark, workdir, delay=sizes.slow_delay):
        out["sdk"] = await _slow_round(lark, sizes.slow_chats, "slowsdk")
    return out


async def _reply_client(impl: str, lark: LarkStandIn, sizes: Sizes) -> dict[str, Any]:
    command = [
        sys.executable,
        str(BENCH_DIR / "reply_client.py"),
        impl,
        lark.url,
        lark.app_id,
        lark.app_secret,
        str(sizes.reply_count),
        str(sizes.reply_concurrency),
    ]
    # The SDK's areply manages about 50 replies/s on an idle machine, far fewer on a busy one.
    with anyio.fail_after(60 + sizes.reply_count / 5):
        result = await anyio.run_process(command, env=bot_env({}), check=False)
    if result.returncode != 0:
        raise RuntimeError(f"reply client {impl} failed: {result.stderr.decode()[-2000:]}")
    figures = json.loads(result.stdout.decode().strip().splitlines()[-1])
    figures["replies_per_s"] = figures["ok"] / figures["seconds"]
    return dict(figures)


async def reply_path(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """``LarkClient.reply`` vs the SDK's ``areply``, each in its own process, N in flight."""
    out: dict[str, Any] = {}
    for impl in ("larkbot", "sdk"):
        async with LarkStandIn() as lark:
            out[impl] = await _reply_client(impl, lark, sizes)
            out[impl]["recorded"] = len(lark.replies)
    return out


async def memory(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """RSS of the real daemon after ``chats`` conversations of ``turns`` turns each."""
    chats = _chats("mem", sizes.memory_chats)
    batch = [
        (chat, f"Turn {turn}: please keep in mind item number {turn} of the list for {chat}.")
        for turn in range(sizes.memory_turns)
        for chat in chats
    ]
    async with LarkStandIn() as lark, larkbot_bot(lark, workdir) as bot:
        idle = bot.rss_bytes()
        phase = await _send_batch(lark, batch, None, window=_MEMORY_WINDOW)
        await _await_answers(lark, phase, 120)
        figures = phase.figures(lark)
        rss = bot.rss_bytes()
        cached = await metric_value(bot, "larkbot_conversations_cached")
    return {
        "chats": sizes.memory_chats,
        "turns": sizes.memory_turns,
        "messages": figures["messages"],
        "answered": figures["answered"],
        "seconds": figures["all_answered_s"],
        "replies_per_s": figures["replies_per_s"],
        "rss_idle_mb": idle / 2**20,
        "rss_mb": rss / 2**20,
        "conversations_cached": cached,
    }


async def start_up(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """Process spawn to ready (larkbot: ``/readyz`` 200; SDK: connected), median of runs."""
    times: dict[str, list[float]] = {"larkbot": [], "sdk": []}
    async with LarkStandIn() as lark:
        for _ in range(sizes.start_runs):
            async with larkbot_bot(lark, workdir) as bot:
                times["larkbot"].append(bot.ready_seconds)
            async with sdk_bot(lark, workdir) as bot:
                times["sdk"].append(bot.ready_seconds)
    return {
        name: {"median_s": statistics.median(values), "runs_s": values}
        for name, values in times.items()
    }


async def replicas(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """1, 2, 3, 4 ``larkbot run`` replicas on one Redis, the stand-in in cluster mode.

    Each replica answers with the LLM brain against the local OpenAI stand-in taking
    ``replica_delay`` s per answer, at most ``replica_concurrency`` at once (a replica's
    ``dispatch.max_concurrency``, as when an LLM's rate limit bounds each process). One
    batch of messages over ``replica_chats`` chats is offered with twice the replicas' joint
    concurrency left unanswered at any time (enough to keep every replica busy, without an
    ack storm that would measure the sender instead); Redis is emptied between runs. Redis
    work per message comes from ``INFO commandstats`` around the batch.
    """
    if REDIS_SERVER is None:
        return {"skipped": "redis-server is not installed (apt-get install redis-server)"}
    from larkbot.testing.openai_standin import OpenAIStandIn

    runs: list[dict[str, Any]] = []
    async with (
        bench_redis(workdir / "redis") as redis,
        OpenAIStandIn(api_key="sk-test", delay=sizes.replica_delay) as llm,
    ):
        env = {
            "REDIS_URL": redis.url,
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": llm.base_url,
            "LLM_MODEL": "test-model",
            "LARKBOT_DISPATCH__MAX_CONCURRENCY": str(sizes.replica_concurrency),
        }
        for count in sizes.replica_counts:
            await redis.flush()
            runs.append(await _replica_run(redis, env, count, sizes, workdir))
    return {
        "runs": runs,
        "delay_s": sizes.replica_delay,
        "concurrency_per_replica": sizes.replica_concurrency,
        "messages": sizes.replica_messages,
        "chats": sizes.replica_chats,
    }


async def _replica_run(
    redis: BenchRedis, env: dict[str, str], count: int, sizes: Sizes, workdir: Path
) -> dict[str, Any]:
    chats = _chats(f"r{count}_", sizes.replica_chats)
    text = "Could you tell me something nice today?"
    async with LarkStandIn() as lark, AsyncExitStack() as stack:
        lark.cluster_mode()
        bots = [
            await stack.enter_async_context(larkbot_bot(lark, workdir, env)) for _ in range(count)
        ]
        await lark.wait_connected(timeout=30, count=count)
        # Let the replicas see each other and share the partitions before measuring.
        await anyio.sleep(3.0)
        warmup = await _send_batch(lark, [(chat, text) for chat in chats[: 4 * count]], None)
        await _await_answers(lark, warmup, 60)
        before = await redis.command_calls()
        cpu_before = (*_cpu_seconds(bots), await redis.cpu_seconds())
        batch = [(chats[i % len(chats)], text) for i in range(sizes.replica_messages)]
        window = 2 * count * sizes.replica_concurrency
        phase = await _send_batch(lark, batch, None, window=window)
        await _await_answers(lark, phase, 60 + sizes.replica_messages)
        cpu_after = (*_cpu_seconds(bots), await redis.cpu_seconds())
        after = await redis.command_calls()
        figures = phase.figures(lark)
        order = _out_of_order_chats(lark, batch, phase)
    spent = [b - a for a, b in zip(cpu_before, cpu_after, strict=True)]
    per = 1000 / max(len(phase.ids), 1)
    return {
        "replicas": count,
        **figures,
        "chats_out_of_order": order,
        "redis_per_message": BenchRedis.per_message(before, after, len(phase.ids)),
        # CPU per message: every replica together, Redis, and this process (both stand-ins).
        "cpu_ms_per_message": {
            "larkbot": sum(spent[:count]) * per,
            "redis": spent[count] * per,
            "stand_ins": spent[count + 1] * per,
        },
    }


def _cpu_seconds(bots: Sequence[BotProcess]) -> tuple[float, ...]:
    """CPU time (user + system) of each bot, then of this process (the stand-ins)."""
    processes = [psutil.Process(bot.pid) for bot in bots] + [psutil.Process()]
    return tuple(sum(p.cpu_times()[:2]) for p in processes)


def _out_of_order_chats(lark: LarkStandIn, batch: Sequence[tuple[str, str]], phase: _Phase) -> int:
    """Chats whose replies did not come in the order their messages were sent."""
    sent: dict[str, list[str]] = {}
    chat_of: dict[str, str] = {}
    for (chat, _), message_id in zip(batch, phase.ids, strict=True):
        sent.setdefault(chat, []).append(message_id)
        chat_of[message_id] = chat
    answered: dict[str, list[str]] = {}
    for record in sorted(lark.replies, key=lambda r: r.at):
        message_id = record.to_message_id or ""
        chat = chat_of.get(message_id)
        if chat is not None and message_id not in answered.setdefault(chat, []):
            answered[chat].append(message_id)
    return sum(1 for chat, ids in answered.items() if ids != [m for m in sent[chat] if m in ids])

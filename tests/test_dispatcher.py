"""Per-chat order, cross-chat concurrency, bounded backlog."""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest

from larkbot.core.message import InboundMessage
from larkbot.dispatch.dispatcher import Dispatcher, MessageHandler
from tests._factories import inbound

pytestmark = pytest.mark.anyio


class _Handler:
    """Takes ``seconds`` over each message; records what it handled and the most at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.handled: list[tuple[str, str]] = []
        self.running = 0
        self.peak = 0

    async def __call__(self, message: InboundMessage) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await anyio.sleep(self.seconds)
        self.handled.append((message.chat_id, message.text))
        self.running -= 1


async def _handle_all(dispatcher: Dispatcher, messages: list[InboundMessage]) -> list[bool]:
    """Run ``dispatcher``, submit ``messages`` in order, wait until it is idle: what it took."""
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        accepted = [dispatcher.submit(message) for message in messages]
        with anyio.fail_after(5):
            await dispatcher.wait_idle()
        tg.cancel_scope.cancel()
    return accepted


async def test_order_is_kept_within_a_chat_and_chats_run_concurrently() -> None:
    handler = _Handler(0.02)
    dispatcher = Dispatcher(handler, max_concurrency=8)
    messages = [inbound(chat, str(i)) for i in range(5) for chat in ("a", "b", "c")]
    assert all(await _handle_all(dispatcher, messages))
    for chat in ("a", "b", "c"):
        assert [t for c, t in handler.handled if c == chat] == ["0", "1", "2", "3", "4"]
    assert handler.peak == 3  # one at a time per chat, three chats at once
    assert dispatcher.handled == 15 and dispatcher.backlog == 0


async def test_global_limit_bounds_concurrency() -> None:
    handler = _Handler(0.01)
    dispatcher = Dispatcher(handler, max_concurrency=4)
    await _handle_all(dispatcher, [inbound(f"chat{i}") for i in range(20)])
    assert handler.peak == 4


async def test_full_backlog_refuses_without_blocking() -> None:
    release = anyio.Event()

    async def handler(message: InboundMessage) -> None:
        await release.wait()

    dispatcher = Dispatcher(handler, max_concurrency=2, max_backlog=3, max_per_chat=2)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        assert dispatcher.submit(inbound("a"))
        assert dispatcher.submit(inbound("a"))
        assert not dispatcher.has_room("a")  # per-chat bound
        assert not dispatcher.submit(inbound("a"))
        assert dispatcher.submit(inbound("b"))
        assert not dispatcher.has_room("c")  # global bound
        assert not dispatcher.submit(inbound("c"))
        assert dispatcher.submit(inbound("c"), force=True)  # resumed inbox items always go in
        assert dispatcher.backlog == 4
        release.set()
        with anyio.fail_after(5):
            await dispatcher.wait_idle()
        assert dispatcher.has_room("c")
        tg.cancel_scope.cancel()


async def test_a_failing_handler_does_not_stop_the_chat(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    async def handler(message: InboundMessage) -> None:
        seen.append(message.text)
        if message.text == "boom":
            raise RuntimeError("agent bug")

    dispatcher = Dispatcher(handler)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        dispatcher.submit(inbound("a", "boom", message_id="om_boom"))
        dispatcher.submit(inbound("a", "next"))
        with anyio.fail_after(5):
            await dispatcher.wait_idle()
        tg.cancel_scope.cancel()
    assert seen == ["boom", "next"]
    assert "om_boom" in caplog.text


async def test_stop_accepting_refuses_new_work() -> None:
    async def handler(message: InboundMessage) -> None:
        pass

    dispatcher = Dispatcher(handler)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        dispatcher.stop_accepting()
        assert not dispatcher.submit(inbound())
        tg.cancel_scope.cancel()


async def test_drain_stops_accepting_and_says_whether_the_work_finished_in_time() -> None:
    release = anyio.Event()

    async def handler(message: InboundMessage) -> None:
        if message.chat_id == "slow":
            await release.wait()

    dispatcher = Dispatcher(handler)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        assert dispatcher.submit(inbound("slow"))
        with anyio.fail_after(5):
            assert not await dispatcher.drain(0.05)
        assert not dispatcher.accepting and not dispatcher.submit(inbound("fast"))
        assert dispatcher.backlog == 1
        release.set()
        with anyio.fail_after(5):
            assert await dispatcher.drain(5)
        assert dispatcher.backlog == 0
        tg.cancel_scope.cancel()


async def test_cancellation_leaves_the_backlog_consistent() -> None:
    async def handler(message: InboundMessage) -> None:
        await anyio.sleep_forever()

    dispatcher = Dispatcher(handler)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        for _ in range(3):
            dispatcher.submit(inbound("a"))
        await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert dispatcher.backlog == 0


def test_limits_are_validated() -> None:
    async def handler(message: InboundMessage) -> None:
        pass

    with pytest.raises(ValueError):
        Dispatcher(handler, max_concurrency=0)


async def test_burst_from_one_user_is_merged_into_one_turn() -> None:
    handled: list[InboundMessage] = []

    async def handler(message: InboundMessage) -> None:
        handled.append(message)

    dispatcher = Dispatcher(handler, merge_window=0.5)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        first = inbound("a", "find customers")
        dispatcher.submit(first)
        # The chat's task now waits out the window for more from the same sender; the next
        # message comes while it does (no sleep: a loaded machine could oversleep the window).
        await anyio.wait_all_tasks_blocked()
        assert not handled
        second = inbound("a", "in Tokyo")
        dispatcher.submit(second)
        other = inbound("a", "unrelated").model_copy(update={"sender_open_id": "ou_other"})
        dispatcher.submit(other)
        with anyio.fail_after(5):
            await dispatcher.wait_idle()
        tg.cancel_scope.cancel()
    assert [m.text for m in handled] == ["find customers\nin Tokyo", "unrelated"]
    assert handled[0].message_id == second.message_id
    assert handled[0].merged_ids == (first.message_id,)
    assert dispatcher.handled == 3 and dispatcher.backlog == 0


async def test_messages_further_apart_than_the_window_are_separate_turns() -> None:
    handled: list[str] = []

    async def handler(message: InboundMessage) -> None:
        handled.append(message.text)

    dispatcher = Dispatcher(handler, merge_window=0.05)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        dispatcher.submit(inbound("a", "one"))
        # Handled only once its window has passed with nothing more from the sender.
        with anyio.fail_after(5):
            await dispatcher.wait_idle()
        assert handled == ["one"]
        dispatcher.submit(inbound("a", "two"))
        with anyio.fail_after(5):
            await dispatcher.wait_idle()
        tg.cancel_scope.cancel()
    assert handled == ["one", "two"]


async def test_reservations_count_against_the_bounds() -> None:
    async def handler(message: InboundMessage) -> None:
        await anyio.sleep_forever()

    dispatcher = Dispatcher(handler, max_backlog=2, max_per_chat=1)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        assert dispatcher.reserve("a")
        assert not dispatcher.reserve("a")  # per-chat room is held
        assert dispatcher.reserve("b")
        assert not dispatcher.has_room("c")  # global room is held
        dispatcher.release("b")
        assert dispatcher.has_room("c")
        dispatcher.release("a")
        assert dispatcher.has_room("a")
        tg.cancel_scope.cancel()


async def test_no_answer_starts_while_frames_are_being_admitted() -> None:
    started: list[str] = []

    async def handler(message: InboundMessage) -> None:
        started.append(message.chat_id)

    dispatcher = Dispatcher(handler, max_concurrency=4, ack_first_wait=30.0)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        # Admission holds a reservation while it writes a frame to the store.
        assert dispatcher.reserve("oc_new")
        assert dispatcher.submit(inbound("oc_waiting"))
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        assert started == []  # the answer waits for the frame's ack
        dispatcher.release("oc_new")
        with anyio.fail_after(5):
            await dispatcher.wait_idle()
        assert started == ["oc_waiting"]

        # A flood of frames slows answers down but never stops them.
        dispatcher._ack_first_wait = 0.05
        assert dispatcher.reserve("oc_flood")
        assert dispatcher.submit(inbound("oc_patient"))
        with anyio.fail_after(5):
            await dispatcher.wait_idle()
        assert started == ["oc_waiting", "oc_patient"]
        dispatcher.release("oc_flood")
        tg.cancel_scope.cancel()


async def test_answers_that_keep_the_loop_busy_run_fewer_at_once_until_it_is_free() -> None:
    async def handler(message: InboundMessage) -> None:
        # An answer that computes: 20 ms of the loop's time, the way echoes add up.
        end = time.perf_counter() + 0.02
        while time.perf_counter() < end:
            pass
        await anyio.lowlevel.checkpoint()

    # The wall clock stands for the loop's CPU time: on a loaded machine the test's own
    # loop gets less than a core, which the dispatcher rightly reads as not computing.
    dispatcher = Dispatcher(handler, max_concurrency=32, loop_cpu_clock=time.perf_counter)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        for i in range(200):
            dispatcher.submit(inbound(f"chat{i % 100}"))
        with anyio.fail_after(30):
            while dispatcher.concurrency == 32:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            await dispatcher.wait_idle()
            # Idle again: the whole concurrency is back for the next messages.
            while dispatcher.concurrency < 32:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert dispatcher.handled == 200


class _Thinking:
    """Answers that wait for an LLM (no work for the loop meanwhile) until released."""

    def __init__(self) -> None:
        self.started = 0
        self.release = anyio.Event()

    async def __call__(self, message: InboundMessage) -> None:
        self.started += 1
        await self.release.wait()


async def test_answers_that_wait_keep_the_whole_concurrency() -> None:
    handler = _Thinking()
    dispatcher = Dispatcher(handler, max_concurrency=20)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        for i in range(20):
            dispatcher.submit(inbound(f"chat{i}"))
        with anyio.fail_after(10):
            while handler.started < 20:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            await anyio.sleep(0.2)  # several probes of the loop
            assert dispatcher.concurrency == 20
            handler.release.set()
            await dispatcher.wait_idle()
        tg.cancel_scope.cancel()


class _LoadedMachine:
    """Clocks of a machine whose other load makes every sleep of the loop end late.

    Each reading of :meth:`probe_clock` is ``lateness`` further ahead of the wall clock, so
    a probe (a sleep read before and after) ends that much later than it really did. While
    ``computing``, the loop's CPU time keeps pace with that clock; otherwise it stands still.
    """

    def __init__(self) -> None:
        self.lateness = 0.0
        self.computing = True
        self._ahead = 0.0
        self._cpu = 0.0

    def probe_clock(self) -> float:
        self._ahead += self.lateness
        return time.perf_counter() + self._ahead

    def loop_cpu_clock(self) -> float:
        if self.computing:
            self._cpu = time.perf_counter() + self._ahead
        return self._cpu

    def dispatcher(self, handler: MessageHandler, *, max_concurrency: int) -> Dispatcher:
        """A dispatcher that reads this machine's clocks."""
        return Dispatcher(
            handler,
            max_concurrency=max_concurrency,
            loop_cpu_clock=self.loop_cpu_clock,
            probe_clock=self.probe_clock,
        )

    async def compute_until(self, dispatcher: Dispatcher, concurrency: int) -> None:
        """Submit one message while the loop computes; return once ``concurrency`` may run.

        The loop is 20 ms late at every probe meanwhile.
        """
        self.lateness = 0.02
        assert dispatcher.submit(inbound("chat0"))
        with anyio.fail_after(10):
            while dispatcher.concurrency > concurrency:  # noqa: ASYNC110
                await anyio.sleep(0.01)


@pytest.mark.parametrize(("max_concurrency", "floor"), [(32, 4), (96, 12)])
async def test_answers_that_wait_get_the_whole_concurrency_back_on_a_loaded_machine(
    max_concurrency: int, floor: int
) -> None:
    # Regression: the concurrency grew back only while probes were under 2.5 ms late, and
    # was reset only with no answer in hand. On a loaded machine (probes 2.5-5 ms late
    # while the loop idles) with answers always waiting for the LLM, it stayed at its
    # floor of 4 after one burst of computing: answers starved and the backlog filled.
    machine = _LoadedMachine()
    handler = _Thinking()
    dispatcher = machine.dispatcher(handler, max_concurrency=max_concurrency)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        await machine.compute_until(dispatcher, floor)  # a burst of computing
        await anyio.sleep(0.1)  # several more probes, all of them late
        assert dispatcher.concurrency == floor  # 4, or an eighth of the maximum if more
        # Then answers wait for the LLM while the machine keeps every probe 3.5 ms late.
        machine.computing = False
        machine.lateness = 0.0035
        messages = max_concurrency + 8
        for i in range(1, messages):
            assert dispatcher.submit(inbound(f"chat{i}"))
        with anyio.fail_after(20):
            while handler.started < max_concurrency:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert dispatcher.concurrency == max_concurrency
        assert handler.started == max_concurrency  # none has finished, none more started
        assert dispatcher.backlog == messages
        handler.release.set()
        with anyio.fail_after(10):
            await dispatcher.wait_idle()
        tg.cancel_scope.cancel()
    assert dispatcher.handled == messages

"""The per-key sliding-window rate limiter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from larkbot.agent.limits import RateLimiter
from tests._factories import FakeClock


def test_allows_per_minute_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, clock=clock)
    assert [limiter.try_acquire("ou_a") for _ in range(3)] == [None, None, None]
    clock.now += 10
    assert limiter.try_acquire("ou_a") == pytest.approx(50.0)


def test_window_slides_one_call_at_a_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock)
    assert limiter.try_acquire("k") is None  # t=0
    clock.now += 30
    assert limiter.try_acquire("k") is None  # t=30
    clock.now += 29
    assert limiter.try_acquire("k") == pytest.approx(1.0)
    clock.now += 1  # t=60: the first call leaves the window
    assert limiter.try_acquire("k") is None
    assert limiter.try_acquire("k") == pytest.approx(30.0)


def test_refused_calls_are_not_counted() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, clock=clock)
    assert limiter.try_acquire("k") is None
    for _ in range(5):
        clock.now += 5
        assert limiter.try_acquire("k") is not None
    clock.now += 35  # 60 s after the only counted call
    assert limiter.try_acquire("k") is None


def test_keys_are_independent() -> None:
    limiter = RateLimiter(1, clock=FakeClock())
    assert limiter.try_acquire("ou_a") is None
    assert limiter.try_acquire("ou_a") is not None
    assert limiter.try_acquire("ou_b") is None


def test_idle_keys_are_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, clock=clock)
    for index in range(1000):
        limiter.try_acquire(f"user{index}")
    assert len(limiter) == 1000
    clock.now += 61
    limiter.try_acquire("late")
    assert len(limiter) == 1


@pytest.mark.parametrize("bad", [0, -1])
def test_rejects_a_limit_below_one(bad: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RateLimiter(bad)


def test_rejects_a_non_integer_limit() -> None:
    with pytest.raises(TypeError):
        RateLimiter(2.5)  # type: ignore[arg-type]


@given(
    limit=st.integers(min_value=1, max_value=5),
    steps=st.lists(st.floats(min_value=0, max_value=40, allow_nan=False), max_size=60),
)
def test_never_more_than_the_limit_in_any_window(limit: int, steps: list[float]) -> None:
    clock = FakeClock()
    limiter = RateLimiter(limit, clock=clock)
    allowed: list[float] = []
    for step in steps:
        clock.now += step
        wait = limiter.try_acquire("k")
        if wait is None:
            allowed.append(clock.now)
        else:
            assert wait > 0
    for index, at in enumerate(allowed):
        inside = [t for t in allowed[index:] if t < at + 60]
        assert len(inside) <= limit

"""The conversation cache: creation, LRU eviction, idle expiry, reset, the gauge."""

from __future__ import annotations

import pytest

from larkbot.config.settings import Settings
from larkbot.ops.metrics import CONVERSATIONS_CACHED
from larkbot.store.conversations import ConversationCache
from tests._factories import FakeClock


def gauge() -> float:
    return next(iter(CONVERSATIONS_CACHED.collect())).samples[0].value


def test_get_creates_once_and_returns_the_same_conversation() -> None:
    cache = ConversationCache()
    first = cache.get("oc_1")
    first.add("user", "hello", 10)
    again = cache.get("oc_1")
    assert again is first
    assert [t.text for t in again.turns] == ["hello"]
    assert first.key == "oc_1"
    assert "oc_1" in cache and "oc_2" not in cache
    assert len(cache) == 1


def test_least_recently_used_is_evicted_when_full() -> None:
    cache = ConversationCache(max_size=2)
    cache.get("a")
    cache.get("b")
    cache.get("a")  # "b" is now the least recently used
    cache.get("c")
    assert "a" in cache and "c" in cache
    assert "b" not in cache
    assert len(cache) == 2


def test_idle_conversations_expire_and_come_back_empty() -> None:
    clock = FakeClock()
    cache = ConversationCache(idle_seconds=60, clock=clock)
    cache.get("oc_1").add("user", "remember me", 10)
    clock.now += 59
    assert "oc_1" in cache
    clock.now += 2
    assert "oc_1" not in cache
    assert len(cache) == 0
    assert cache.get("oc_1").turns == []


def test_a_hit_restarts_the_idle_timer() -> None:
    clock = FakeClock()
    cache = ConversationCache(idle_seconds=60, clock=clock)
    cache.get("oc_1").add("user", "still here", 10)
    for _ in range(5):
        clock.now += 50
        assert [t.text for t in cache.get("oc_1").turns] == ["still here"]
    clock.now += 61
    assert "oc_1" not in cache


def test_reset_forgets_turns_language_and_profile() -> None:
    cache = ConversationCache()
    conversation = cache.get("oc_1")
    conversation.add("user", "hi", 10)
    conversation.language = "en"
    conversation.profile = "BaseExpert"
    cache.reset("oc_1")
    cache.reset("never-seen")
    fresh = cache.get("oc_1")
    assert fresh is not conversation
    assert (fresh.turns, fresh.language, fresh.profile) == ([], None, None)


def test_turns_beyond_max_turns_are_dropped_on_get() -> None:
    cache = ConversationCache(max_turns=3)
    conversation = cache.get("oc_1")
    for index in range(6):
        conversation.add("user", str(index), 100)
    assert [t.text for t in cache.get("oc_1").turns] == ["3", "4", "5"]


def test_gauge_follows_the_cache_size() -> None:
    clock = FakeClock()
    cache = ConversationCache(idle_seconds=10, clock=clock)
    cache.get("a")
    cache.get("b")
    assert gauge() == 2
    cache.reset("a")
    assert gauge() == 1
    clock.now += 11
    cache.get("c")  # "b" has expired meanwhile
    assert gauge() == 1


def test_from_settings_uses_cache_and_agent_sections() -> None:
    settings = Settings(
        cache={"max_size": 2, "idle_minutes": 1},
        agent={"max_conversation_history": 4},
    )
    clockless = ConversationCache.from_settings(settings)
    assert clockless.max_turns == 4
    for key in "abc":
        clockless.get(key)
    assert len(clockless) == 2


@pytest.mark.parametrize("bad", [{"max_size": 0}, {"max_turns": 0}, {"idle_seconds": 0}])
def test_nonsense_sizes_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        ConversationCache(**bad)

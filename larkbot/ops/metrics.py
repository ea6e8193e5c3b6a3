"""Every Prometheus metric larkbot exports, in one place.

Names without the ``larkbot_`` prefix (``agent_response_time_seconds``,
``tool_executions_total``, ``http_request_duration_seconds``) are the ones our users'
existing dashboards query; keep them stable. Labels never carry secrets or message text.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics import MetricWrapperBase

from larkbot import __version__

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# Label values each labelled counter exports at zero from the start (see _precreate_series).
EVENT_OUTCOMES = (
    "accepted",
    "duplicate",
    "stale",
    "self",
    "unmentioned",
    "not_allowed",
    "unsupported",
    "invalid",
    "overloaded",
    "unavailable",
)
REPLY_OUTCOMES = ("sent", "failed")
LLM_OUTCOMES = ("ok", "timeout", "rate_limited", "auth_error", "server_error", "error")
READ_TOOL_STATUSES = ("success", "error")
WRITE_TOOL_STATUSES = ("success", "error", "denied", "rate_limited")

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

EVENTS_RECEIVED = Counter(
    "larkbot_events_received_total",
    "Events received from Lark (long connection or webhook), by event type and admission "
    f"outcome ({', '.join(EVENT_OUTCOMES)}; unavailable: the shared queue in Redis did not "
    "store it).",
    ["event_type", "outcome"],
    registry=REGISTRY,
)
ACK_LATENCY = Histogram(
    "larkbot_ack_latency_seconds",
    "Time from receiving an event (a data frame, or a verified webhook request) to its ack.",
    buckets=_FAST,
    registry=REGISTRY,
)
CONNECTION_UP = Gauge(
    "larkbot_connection_up",
    "1 while the event source takes events (the long connection is open, or the webhook is "
    "served), else 0.",
    registry=REGISTRY,
)
RECONNECTS = Counter(
    "larkbot_reconnects_total",
    "Long-connection reconnect attempts after a drop.",
    registry=REGISTRY,
)
OPENAPI_REQUESTS = Counter(
    "larkbot_openapi_requests_total",
    "OpenAPI requests by route template and result (HTTP status, or 'error').",
    ["route", "status"],
    registry=REGISTRY,
)
OPENAPI_LATENCY = Histogram(
    "larkbot_openapi_request_duration_seconds",
    "OpenAPI request latency by route template (each attempt).",
    ["route"],
    buckets=(*_FAST, 10.0),
    registry=REGISTRY,
)
DISPATCH_BACKLOG = Gauge(
    "larkbot_dispatch_backlog",
    "Accepted messages waiting for or being handled by the agent.",
    registry=REGISTRY,
)
DISPATCH_SPILLED = Gauge(
    "larkbot_dispatch_spilled",
    "Accepted messages kept in the store while the dispatch backlog is full, not yet moved "
    "back into it.",
    registry=REGISTRY,
)
REPLIES = Counter(
    "larkbot_replies_total",
    f"Replies by outcome ({', '.join(REPLY_OUTCOMES)}).",
    ["outcome"],
    registry=REGISTRY,
)
CONVERSATIONS_CACHED = Gauge(
    "larkbot_conversations_cached",
    "Conversations held in the conversation cache.",
    registry=REGISTRY,
)
INBOX_DEPTH = Gauge(
    "larkbot_inbox_depth",
    "Accepted messages in the inbox not yet answered.",
    registry=REGISTRY,
)
LLM_REQUESTS = Counter(
    "larkbot_llm_requests_total",
    f"LLM completions by outcome ({', '.join(LLM_OUTCOMES)}).",
    ["outcome"],
    registry=REGISTRY,
)
AGENT_RESPONSE_TIME = Histogram(
    "agent_response_time_seconds",
    "Time the agent takes to produce a reply, by agent profile and intent.",
    ["agent_name", "intent_type"],
    buckets=_SLOW,
    registry=REGISTRY,
)
TOOL_EXECUTIONS = Counter(
    "tool_executions_total",
    f"Tool executions by tool and status ({', '.join(WRITE_TOOL_STATUSES)}; tools that "
    "only read: success, error).",
    ["tool_name", "status"],
    registry=REGISTRY,
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Requests to larkbot's own HTTP port (/healthz, /readyz, /metrics and the webhook).",
    ["method", "path", "status"],
    buckets=_FAST,
    registry=REGISTRY,
)

REDIS_UP = Gauge(
    "larkbot_redis_up",
    "1 while the Redis store answers, 0 while it fails (store.backend = redis only).",
    registry=REGISTRY,
)
REDIS_BACKLOG = Gauge(
    "larkbot_redis_backlog",
    "Messages admitted into a Redis partition and not yet answered, by partition.",
    ["partition"],
    registry=REGISTRY,
)
REDIS_OLDEST_PENDING_AGE = Gauge(
    "larkbot_redis_oldest_pending_age_seconds",
    "Age of the oldest message not yet answered in a Redis partition (0 when none), by partition.",
    ["partition"],
    registry=REGISTRY,
)

WEBHOOK_REQUESTS = Counter(
    "larkbot_webhook_requests_total",
    "Requests to the webhook by outcome: ok, challenge, bad_signature, bad_token, bad_body, "
    "too_large, throttled (failure budget spent), refused_overload (admission did not take "
    "the event: busy, failing or too slow; Lark retries).",
    ["outcome"],
    registry=REGISTRY,
)
WEBHOOK_OUTCOMES = (
    "ok",
    "challenge",
    "bad_signature",
    "bad_token",
    "bad_body",
    "too_large",
    "throttled",
    "refused_overload",
)


BUILD_INFO = Gauge(
    "larkbot_build_info",
    "Always 1; its labels name the running larkbot, Python and lark-oapi versions.",
    ["version", "python", "lark_oapi"],
    registry=REGISTRY,
)


_Metric = TypeVar("_Metric", bound=MetricWrapperBase)
_children: dict[tuple[int, tuple[str, ...]], Any] = {}
# Label sets remembered at most; past this (label values from outside, such as an unknown
# event type) ``labels`` is simply called each time.
_MAX_CHILDREN = 4096


def labelled(metric: _Metric, *values: str) -> _Metric:
    """``metric.labels(*values)``, looked up once per label set.

    ``labels`` validates its arguments and takes a lock on every call; on the path of
    every message the series are the same few, so the child is kept and reused.
    """
    key = (id(metric), values)
    child = _children.get(key)
    if child is None:
        child = metric.labels(*values)
        if len(_children) < _MAX_CHILDREN:
            _children[key] = child
    return child  # type: ignore[no-any-return]


def build_versions() -> dict[str, str]:
    """The versions ``larkbot_build_info`` reports: larkbot, Python and lark-oapi."""
    return dict(_VERSIONS)


def precreate_tool_series(tools: Iterable[tuple[str, bool]]) -> None:
    """Export ``tool_executions_total`` at zero for every ``(tool name, writes)`` pair.

    Write tools can also be denied or rate limited; read tools only succeed or fail.
    """
    for name, write in tools:
        for status in WRITE_TOOL_STATUSES if write else READ_TOOL_STATUSES:
            TOOL_EXECUTIONS.labels(tool_name=name, status=status)
    # What a model's invented tool name counts as (its name must not grow the metric).
    TOOL_EXECUTIONS.labels(tool_name="unknown", status="error")


def _lark_oapi_version() -> str:
    # Read once at import, before any event loop: the metadata lives in files.
    try:
        return importlib.metadata.version("lark-oapi")
    except importlib.metadata.PackageNotFoundError:
        return "none"


_VERSIONS = {
    "version": __version__,
    "python": platform.python_version(),
    "lark_oapi": _lark_oapi_version(),
}


def _precreate_series() -> None:
    """Export every documented label value at zero from the start.

    ``increase()`` cannot see the first failure of a series that appears only when that
    failure happens; a series that exists at 0 from the start makes the alert fire on it.
    """
    BUILD_INFO.labels(**_VERSIONS).set(1)
    for outcome in REPLY_OUTCOMES:
        REPLIES.labels(outcome=outcome)
    for outcome in LLM_OUTCOMES:
        LLM_REQUESTS.labels(outcome=outcome)
    # Parse failures and unknown frame kinds are counted before any event type is known.
    for outcome in EVENT_OUTCOMES:
        event_type = "unknown" if outcome in ("invalid", "unsupported") else _MESSAGE_RECEIVE
        EVENTS_RECEIVED.labels(event_type=event_type, outcome=outcome)
    for outcome in WEBHOOK_OUTCOMES:
        WEBHOOK_REQUESTS.labels(outcome=outcome)


def precreate_partitions(partitions: int) -> None:
    """Export every partition's Redis series at 0, before the first backlog poll.

    The partition count is a setting (at most 1024), so the label values are bounded.
    """
    for partition in range(partitions):
        REDIS_BACKLOG.labels(partition=str(partition))
        REDIS_OLDEST_PENDING_AGE.labels(partition=str(partition))


_MESSAGE_RECEIVE = "im.message.receive_v1"
_precreate_series()

"""Every Prometheus metric larkbot exports, in one place.

Names without the ``larkbot_`` prefix (``agent_response_time_seconds``,
``tool_executions_total``, ``http_request_duration_seconds``) are the ones our users'
existing dashboards query; keep them stable. Labels never carry secrets or message text.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

EVENTS_RECEIVED = Counter(
    "larkbot_events_received_total",
    "Events received on the long connection, by event type and admission outcome "
    "(accepted, duplicate, stale, self, unmentioned, not_allowed, unsupported, invalid, "
    "overloaded, unavailable: the shared queue in Redis did not store it).",
    ["event_type", "outcome"],
    registry=REGISTRY,
)
ACK_LATENCY = Histogram(
    "larkbot_ack_latency_seconds",
    "Time from receiving a data frame to sending its ack.",
    buckets=_FAST,
    registry=REGISTRY,
)
CONNECTION_UP = Gauge(
    "larkbot_connection_up",
    "1 while the long connection is open, else 0.",
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
REPLIES = Counter(
    "larkbot_replies_total",
    "Replies by outcome (sent, failed).",
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
    "LLM completions by outcome (ok, timeout, rate_limited, auth_error, server_error, error).",
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
    "Tool executions by tool and status (success, error, denied, rate_limited).",
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


def _precreate_series() -> None:
    """Export zero-valued series for the outcomes alerts watch.

    ``increase()`` cannot see the first failure of a series that appears only when that
    failure happens; a series that exists at 0 from the start makes the alert fire on it.
    """
    for outcome in ("sent", "failed"):
        REPLIES.labels(outcome=outcome)
    for outcome in ("accepted", "duplicate", "stale", "overloaded", "invalid", "unavailable"):
        EVENTS_RECEIVED.labels(event_type="im.message.receive_v1", outcome=outcome)
    for outcome in WEBHOOK_OUTCOMES:
        WEBHOOK_REQUESTS.labels(outcome=outcome)


def precreate_partitions(partitions: int) -> None:
    """Export every partition's Redis series at 0, before the first backlog poll.

    The partition count is a setting (at most 1024), so the label values are bounded.
    """
    for partition in range(partitions):
        REDIS_BACKLOG.labels(partition=str(partition))
        REDIS_OLDEST_PENDING_AGE.labels(partition=str(partition))


_precreate_series()

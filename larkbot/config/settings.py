"""The daemon's settings: one frozen, validated model per section.

Constructing :class:`Settings` directly gives the defaults plus whatever is passed in; it
never reads the environment or a file. :func:`larkbot.config.load_settings` is the one
place that reads them, layers them and records where every value came from, which
:func:`describe_settings` then reports.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from larkbot.config._schema import Key, dotted, is_secret
from larkbot.core.errors import EX_CONFIG, LarkbotError
from larkbot.core.language import Language
from larkbot.core.retry import RetryPolicy

__all__ = [
    "EX_CONFIG",
    "AdmissionSettings",
    "AgentProfileSettings",
    "AgentSettings",
    "AppSettings",
    "BaseTableSettings",
    "CacheSettings",
    "ConfigError",
    "DispatchSettings",
    "EventsSettings",
    "LarkSettings",
    "LlmSettings",
    "LogSettings",
    "McpSettings",
    "PolicySettings",
    "RateLimitSettings",
    "SentrySettings",
    "ServerSettings",
    "SettingRow",
    "Settings",
    "ShutdownSettings",
    "StoreSettings",
    "ToolsSettings",
    "describe_settings",
]


_MIN_TIMEOUT_MS = 1_000
_MAX_TIMEOUT_MS = 600_000
# Real Lark app secrets have 32 characters; a shorter value is a truncated paste or a typo.
_MIN_APP_SECRET_LENGTH = 16

# An approved write is taken over only once it has outlasted any write: each Lark call
# gives up at the client's deadline, a write tool makes up to three in a row, and a minute
# more covers the rest (the tenant token, the time zone, settling in the store).
_LARK_CALL_DEADLINE = RetryPolicy().deadline
_LARK_CALLS_PER_WRITE = 3
_MIN_STUCK_AFTER_SECONDS = _LARK_CALL_DEADLINE * _LARK_CALLS_PER_WRITE + 60.0

# The deployment guide's and our examples' stand-ins for real values.
_PLACEHOLDER_ID = re.compile(r"(?i)cli_(?:x{3,}|\.\.\.|<.*>|.*your.*|.*replace.*)")
_PLACEHOLDER_SECRET = re.compile(
    r"(?i)(?:.*your.*secret.*|replace[-_ ].*|x{8,}|<.*>|changeme|placeholder)"
)
_LOGGER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")

_DOMAINS = {"feishu": "https://open.feishu.cn", "lark": "https://open.larksuite.com"}
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}
_MASK = "****"
_OPS_PATHS = {"/healthz", "/readyz", "/metrics"}
_UNSET = "(unset)"
_EMPTY = "(empty)"


class ConfigError(LarkbotError):
    """A setting is missing or wrong; the message is one sentence naming the key and the fix."""

    exit_code = EX_CONFIG

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _number(value: Any) -> float | None:
    """``value`` as a number when it reads as one (settings from text arrive as strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _log_level(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    level = value.strip().upper()
    level = "WARNING" if level == "WARN" else level
    if level not in _LOG_LEVELS:
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return level


def _casefold(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _reveal(secret: SecretStr | str | None) -> str:
    # ``model_copy(update=...)`` skips validation, so a plain ``str`` can land in a
    # secret field; treat it the same rather than fail on ``get_secret_value``.
    if secret is None:
        return ""
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def _none_if_blank(value: Any) -> Any:
    # An empty secret means "not configured": ``llm.enabled`` must not switch on for "".
    if value is None:
        return None
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    return None if isinstance(text, str) and not text.strip() else value


def _check_http_url(value: str, *, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be {what}")
    if parts.query or parts.fragment:
        raise ValueError(f"must be {what} without a query or fragment")
    try:
        # urlsplit parses the port lazily; touch it so "host:99999" is refused here.
        _ = parts.port
    except ValueError:
        raise ValueError(f"must be {what} with a valid port") from None
    return value


_Lower = BeforeValidator(_casefold)
_BlankIsNone = BeforeValidator(_none_if_blank)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AppSettings(_Section):
    """The Lark app's credentials (``APP_ID`` / ``APP_SECRET``)."""

    id: str = Field("", description="The Lark app's ID (``cli_...``), from the developer console.")
    secret: SecretStr = Field(
        SecretStr(""),
        description=(
            "The Lark app's secret. Prefer APP_SECRET_FILE or systemd's LoadCredential= to a value"
            " in a file or the environment."
        ),
    )


class ServerSettings(_Section):
    """The HTTP port for ``/healthz``, ``/readyz`` and ``/metrics``."""

    host: str = Field(
        "127.0.0.1",
        description=(
            "Address of the HTTP port for /healthz, /readyz and /metrics; 0.0.0.0 in a container."
        ),
    )
    port: int = Field(
        3000,
        ge=0,
        le=65535,
        description="Port for /healthz, /readyz and /metrics; 0 binds any free port.",
    )
    timeout: int = Field(
        30_000,
        ge=_MIN_TIMEOUT_MS,
        le=_MAX_TIMEOUT_MS,
        description=(
            "Milliseconds an OpenAPI or endpoint-discovery request may take (connecting: at "
            "most 10 s), as in the deployment guide's config.json: 30000 is 30 s."
        ),
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout_in_milliseconds(cls, value: Any) -> Any:
        # Checked before the bounds so that a value meant as seconds gets a sentence of its own.
        number = _number(value)
        if number is not None and not _MIN_TIMEOUT_MS <= number <= _MAX_TIMEOUT_MS:
            hint = (
                f"for {number:g} s write {number * 1000:g}"
                if 0 < number < _MIN_TIMEOUT_MS
                else "1 s to 10 min"
            )
            raise ValueError(
                f"is in milliseconds and must be between {_MIN_TIMEOUT_MS} and "
                f"{_MAX_TIMEOUT_MS} ({hint})"
            )
        return value

    @property
    def timeout_seconds(self) -> float:
        """``timeout`` in seconds, as HTTP clients take it."""
        return self.timeout / 1000


class LarkSettings(_Section):
    """Which Lark deployment to talk to and how to reply."""

    domain: str = Field(
        "feishu",
        description=(
            "``feishu`` (open.feishu.cn), ``lark`` (open.larksuite.com) or the URL of another "
            "deployment."
        ),
    )
    reply_in_thread: bool = Field(
        False, description="Answer in a thread under the user's message instead of in the chat."
    )

    @field_validator("domain", mode="before")
    @classmethod
    def _valid_domain(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        alias = value.strip().lower()
        if alias in _DOMAINS:
            return alias
        return _check_http_url(
            value.strip(), what="feishu, lark or an http(s) URL such as https://open.feishu.cn"
        )

    @property
    def base_url(self) -> str:
        """The OpenAPI origin: Feishu's or Lark's for an alias, else the URL minus a final ``/``."""
        return _DOMAINS.get(self.domain, self.domain.rstrip("/"))


class LogSettings(_Section):
    """Log level, output format and an optional log file (``auto``: rich on a terminal)."""

    level: str = Field(
        "INFO", description="DEBUG, INFO, WARNING or ERROR: the level of larkbot's own logs."
    )
    levels: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Levels of other libraries' loggers, which otherwise stay at WARNING: "
            "``aiosqlite=DEBUG,httpx=INFO`` in the environment, a table in a file."
        ),
    )
    format: Annotated[Literal["auto", "json", "rich"], _Lower] = Field(
        "auto",
        description=(
            "``json`` (one object per line), ``rich`` (for people), or ``auto``: rich on a "
            "terminal, JSON otherwise."
        ),
    )
    file: Path | None = Field(
        None,
        description=(
            "Also write JSON lines to this file (for hosts without journald), rotated by size; "
            "unset: standard error only."
        ),
    )
    file_max_bytes: int = Field(
        10 * 1024 * 1024,
        ge=4096,
        description="Size at which the log file is rotated (renamed to ``<file>.1``).",
    )
    file_backups: int = Field(
        5, ge=1, le=100, description="Rotated log files kept (``<file>.1`` to ``<file>.N``)."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _valid_level(cls, value: Any) -> Any:
        return _log_level(value)

    @field_validator("levels", mode="before")
    @classmethod
    def _valid_levels(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        checked = {}
        for name, level in value.items():
            if not isinstance(name, str) or not _LOGGER_NAME.fullmatch(name):
                raise ValueError(f"must map logger names to levels, but {name!r} is no logger name")
            try:
                checked[name] = _log_level(level)
            except ValueError:
                raise ValueError(
                    f"must map logger names to DEBUG, INFO, WARNING or ERROR, got {level!r} "
                    f"for {name}"
                ) from None
        return checked


class AgentProfileSettings(_Section):
    """A named persona: its instructions, language, temperature and allowed tools."""

    name: str = Field(
        min_length=1, description="The profile's name, as users pick it with ``agent NAME``."
    )
    instructions: str = Field("", description="Instructions given to the LLM for this profile.")
    language: Annotated[Language, _Lower] | None = Field(
        None,
        description=(
            "Language the profile answers in until a conversation shows its own; unset: "
            "agent.default_language."
        ),
    )
    temperature: float | None = Field(
        None, ge=0, le=2, description="LLM temperature of this profile; unset: agent.temperature."
    )
    tools: list[str] | None = Field(
        None, description="Names of the tools this profile may use; unset: every tool."
    )


class AgentSettings(_Section):
    """How the agent answers."""

    default_language: Annotated[Language, _Lower] = Field(
        "ja",
        description=(
            "``ja``, ``en`` or ``zh``: the language used until a conversation shows its own."
        ),
    )
    temperature: float = Field(0.7, ge=0, le=2, description="LLM sampling temperature.")
    max_tokens: int = Field(2000, ge=1, description="Longest LLM answer, in tokens.")
    max_conversation_history: int = Field(50, ge=1, description="Turns kept per conversation.")
    profile: str = Field("LarkAssistant", description="The profile a new conversation starts with.")
    timezone: str | None = Field(
        None,
        description=(
            "IANA time zone (``Asia/Tokyo``, ``Europe/London``) where dates and times without "
            "an offset are placed and today or this month are counted; unset: the host's zone "
            "(``TZ``, else ``/etc/localtime``), else Asia/Tokyo."
        ),
    )
    merge_window_ms: int = Field(
        0,
        ge=0,
        le=60_000,
        description=(
            "Messages of one chat arriving within this many milliseconds of each other are "
            "answered as one turn; 0 answers each on its own."
        ),
    )
    confirm_writes: bool = Field(
        True,
        description=(
            "A write tool (create, update or delete a record, send a message, book an event) "
            "waits for the requester to approve the exact change on a card before it runs."
        ),
    )
    confirm_ttl_minutes: float = Field(
        10,
        gt=0,
        le=1440,
        description="How long a write confirmation card can be approved; then it expires.",
    )
    confirm_stuck_after_seconds: float = Field(
        300,
        ge=_MIN_STUCK_AFTER_SECONDS,
        le=1800,
        description=(
            "An approved write still unsettled after this many seconds is taken to have died "
            "with its process (a crash, a lost node): the requester's next click on its card "
            "runs it again if the tool is idempotent, else reports its outcome as unknown. "
            f"At least {_MIN_STUCK_AFTER_SECONDS:g}: each Lark call gives up after "
            f"{_LARK_CALL_DEADLINE:g} s and a write makes up to {_LARK_CALLS_PER_WRITE} calls in "
            "a row, so a shorter bound could run a write again while it is still running."
        ),
    )
    profiles: list[AgentProfileSettings] = Field(
        default_factory=list,
        description=(
            "Extra personas (``[[agent.profiles]]`` tables), chosen in a chat with ``agent NAME``."
        ),
    )

    @field_validator("timezone", mode="before")
    @classmethod
    def _known_timezone(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        name = value.strip()
        if not name:
            return None
        try:
            # Reads the time zone database: settings are loaded before the event loop.
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                "must be an IANA time zone name such as Asia/Tokyo, Europe/London or UTC"
            ) from None
        return name

    @field_validator("confirm_stuck_after_seconds", mode="before")
    @classmethod
    def _outlasts_any_write(cls, value: Any) -> Any:
        # Checked before the bounds, so that the sentence says why the minimum is what it is.
        number = _number(value)
        if number is not None and number < _MIN_STUCK_AFTER_SECONDS:
            raise ValueError(
                f"must be at least {_MIN_STUCK_AFTER_SECONDS:g} seconds, longer than any write "
                f"takes (each Lark call may take {_LARK_CALL_DEADLINE:g} s and a write makes up "
                f"to {_LARK_CALLS_PER_WRITE}), or a click could run a write again while it runs"
            )
        return value

    @field_validator("profiles")
    @classmethod
    def _unique_names(cls, profiles: list[AgentProfileSettings]) -> list[AgentProfileSettings]:
        seen: set[str] = set()
        for profile in profiles:
            if profile.name in seen:
                raise ValueError(f"must have unique names, but {profile.name!r} appears twice")
            seen.add(profile.name)
        return profiles


class RateLimitSettings(_Section):
    """Per-user request limits."""

    enabled: bool = Field(True, description="Whether the per-user limits below apply.")
    requests_per_minute: int = Field(
        50, ge=1, description="Messages one user may send the bot per minute."
    )
    write_requests_per_minute: int = Field(
        10, ge=1, description="Tool calls that change data one user may make per minute."
    )


class CacheSettings(_Section):
    """The conversation cache (LRU with a time to live)."""

    ttl_minutes: float = Field(
        5.0,
        gt=0,
        le=1440,
        description="Minutes a read tool's result is reused for the same question.",
    )
    max_size: int = Field(
        1000, ge=1, description="Conversations kept in memory; the least recently used goes first."
    )
    idle_minutes: float = Field(
        60.0, gt=0, le=10_080, description="Minutes after which an idle conversation is forgotten."
    )


class AdmissionSettings(_Section):
    """Which delivered events are taken on."""

    stale_after_seconds: float = Field(
        1800.0,
        gt=0,
        le=604_800,
        description="Messages older than this are not answered (a backlog after a long outage).",
    )
    respond_to_mention_all: bool = Field(
        False, description="Whether an @all in a group counts as a mention of the bot."
    )
    max_payload_bytes: int = Field(
        1_048_576, ge=1, description="Events larger than this are dropped as invalid."
    )


class PolicySettings(_Section):
    """Allowlists; ``None`` means everyone, ``[]`` means no one."""

    allowed_users: list[str] | None = Field(
        None, description="open_ids that may talk to the bot; unset: everyone."
    )
    allowed_chats: list[str] | None = Field(
        None, description="chat_ids the bot answers in; unset: every chat."
    )
    writers: list[str] | None = Field(
        None, description="open_ids that may use tools that change data; unset: everyone."
    )


class DispatchSettings(_Section):
    """Concurrency across chats and the bounds of the queues."""

    max_concurrency: int = Field(
        32,
        ge=1,
        description=(
            "Messages answered at the same time, across all chats, at most; fewer while "
            "answers keep the event loop busy, so acks never wait long behind them."
        ),
    )
    max_backlog: int = Field(
        1000,
        ge=1,
        description=(
            "Accepted messages waiting or in progress in memory; beyond it messages are kept in "
            "the store (see max_spilled)."
        ),
    )
    max_per_chat: int = Field(
        100,
        ge=1,
        description=(
            "Messages waiting in one chat, in memory or kept in the store; beyond it the chat's "
            "events are refused so Lark re-delivers them later."
        ),
    )
    max_spilled: int = Field(
        100_000,
        ge=0,
        description=(
            "Accepted messages kept in the SQLite store (only their ids in memory) while the "
            "backlog is full, moved back in arrival order as it frees; beyond it events are "
            "refused so Lark re-delivers them later. 0 refuses at once, as does the memory "
            "store, which does not outlive the process. With the Redis store the shared queue "
            "holds what waits, and this setting is not used."
        ),
    )


class StoreSettings(_Section):
    """Where conversations and the seen-message ledger live."""

    backend: Annotated[Literal["sqlite", "redis", "memory"] | None, _Lower, _BlankIsNone] = Field(
        None,
        # ``kind`` is the key's name before Redis came; config files written then still load.
        validation_alias=AliasChoices("backend", "kind"),
        description=(
            "``sqlite`` (one replica; kept in the state directory, survives restarts), "
            "``redis`` (several replicas share it) or ``memory`` (tests; forgets on restart). "
            "Unset: ``redis`` when ``redis_url`` is set, else ``sqlite``."
        ),
    )
    redis_url: Annotated[SecretStr | None, _BlankIsNone] = Field(
        None,
        description=(
            "Redis (or Valkey) URL for ``backend = redis``: ``redis://host:6379/0`` or "
            "``rediss://`` for TLS; a password in it is kept secret."
        ),
    )
    redis_password: Annotated[SecretStr | None, _BlankIsNone] = Field(
        None, description="Redis password, when it is not in the URL (wins over the URL's)."
    )
    redis_prefix: str = Field(
        "lb",
        pattern=r"^[A-Za-z0-9_.-]{1,32}$",
        description="Prefix of larkbot's Redis keys, so two deployments can share one Redis.",
    )
    partitions: int = Field(
        64,
        ge=1,
        le=1024,
        description=(
            "Partitions of the Redis event stream (chats are spread over them); every replica "
            "must use the same number."
        ),
    )
    lease_seconds: float = Field(
        10.0,
        ge=2.0,
        le=120.0,
        description=(
            "Seconds a replica's claim on a partition lasts without renewal: the longest a dead "
            "replica's chats wait before another replica adopts them."
        ),
    )
    state_dir: Path | None = Field(
        None,
        description=(
            "Directory of the SQLite state; unset: $STATE_DIRECTORY, $XDG_STATE_HOME/larkbot or "
            "~/.local/state/larkbot."
        ),
    )
    ledger_ttl_hours: float = Field(
        24.0,
        gt=0,
        le=720,
        description="Hours a handled message id is remembered, to drop re-deliveries.",
    )
    ledger_max_entries: int = Field(
        1_000_000, ge=1, description="Most message ids remembered; the oldest go first."
    )

    @property
    def kind(self) -> Literal["sqlite", "redis", "memory"]:
        """The backend in force: ``backend``, else ``redis`` when a Redis URL is set."""
        if self.backend is not None:
            return self.backend
        return "redis" if self.redis_url is not None else "sqlite"

    def resolved_state_dir(self, env: Mapping[str, str] | None = None) -> Path:
        """Return the state directory to use.

        Order: ``store.state_dir`` (which ``LARKBOT_STATE_DIR`` sets, read with the rest of
        the configuration), then systemd's ``$STATE_DIRECTORY`` (its first entry when several
        are listed), then ``$XDG_STATE_HOME/larkbot``, then ``~/.local/state/larkbot``.
        ``env`` defaults to ``os.environ``. Nothing is created or touched on disk.
        """
        env = os.environ if env is None else env
        if self.state_dir is not None:
            return self.state_dir.expanduser()
        systemd = env.get("STATE_DIRECTORY", "").split(":")[0].strip()
        if systemd:
            return Path(systemd)
        if xdg := env.get("XDG_STATE_HOME", "").strip():
            return Path(xdg) / "larkbot"
        home = env.get("HOME", "").strip()
        return (Path(home) if home else Path.home()) / ".local" / "state" / "larkbot"


class EventsSettings(_Section):
    """Where events come from: the long connection, or a webhook Lark POSTs to."""

    mode: Annotated[Literal["websocket", "webhook"], _Lower] = Field(
        "websocket",
        description=(
            "``websocket`` (dial Lark's long connection; no public endpoint) or ``webhook`` (serve"
            " events.webhook_path on the HTTP port for Lark to POST events to)."
        ),
    )
    webhook_path: str = Field(
        "/webhook", description="Path of the webhook on the HTTP port, as set in the console."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1, description="Webhook requests larger than this are refused (413)."
    )
    encrypt_key: Annotated[SecretStr | None, _BlankIsNone] = Field(
        None,
        description=(
            "The app's Encrypt Key; when set, webhook requests must be signed and encrypted with"
            " it. Unset: Lark neither signs nor encrypts them."
        ),
    )
    verification_token: Annotated[SecretStr | None, _BlankIsNone] = Field(
        None,
        description=(
            "The app's Verification Token, which every webhook request must carry; required in"
            " webhook mode."
        ),
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "Addresses or CIDR networks of reverse proxies whose X-Forwarded-For names the"
            " client; empty: the peer's own address counts."
        ),
    )
    failure_budget_per_minute: int = Field(
        20,
        ge=1,
        description=(
            "Failed webhook requests one client address may make per minute before it gets 429;"
            " verified requests are never throttled."
        ),
    )

    @field_validator("webhook_path", mode="before")
    @classmethod
    def _valid_path(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        path = value.strip()
        parts = urlsplit(path)
        if (
            not path.startswith("/")
            or path.startswith("//")
            or parts.query
            or parts.fragment
            or any(char.isspace() for char in path)
        ):
            raise ValueError("must be a path such as /webhook (a leading /, no query, no spaces)")
        if path.rstrip("/") in _OPS_PATHS:
            raise ValueError(f"must not be {path.rstrip('/')}, which the HTTP port serves already")
        return path

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _valid_proxies(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        networks = []
        for item in value:
            if not isinstance(item, str):
                return value  # the type check names what is wrong
            try:
                networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                raise ValueError(
                    f"must list IP addresses or CIDR networks such as 10.0.0.0/8, but {item!r} "
                    "is neither"
                ) from None
        return networks

    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """Return ``trusted_proxies`` parsed, for membership tests."""
        return tuple(ipaddress.ip_network(item) for item in self.trusted_proxies)


class ShutdownSettings(_Section):
    """How long in-flight work may take to finish on SIGTERM."""

    grace_seconds: float = Field(
        25.0,
        ge=0,
        le=3600,
        description=(
            "Seconds in-flight answers get to finish after SIGTERM; the rest wait in the inbox for"
            " the next start."
        ),
    )


class LlmSettings(_Section):
    """An OpenAI-compatible LLM; without an API key the offline brain answers."""

    api_key: Annotated[SecretStr | None, _BlankIsNone] = Field(
        None, description="API key of an OpenAI-compatible LLM; unset: the offline brain answers."
    )
    base_url: Annotated[str | None, _BlankIsNone] = Field(
        None, description="API root of an OpenAI-compatible server; unset: OpenAI's."
    )
    model: str = Field("gpt-4o-mini", min_length=1, description="Chat model name.")
    timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="Seconds one completion may take."
    )
    max_tool_rounds: int = Field(
        5, ge=1, description="Completions per answer, tool calls included."
    )

    @field_validator("base_url")
    @classmethod
    def _valid_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _check_http_url(
            value.strip(), what="an http(s) URL such as https://api.openai.com/v1"
        )

    @property
    def enabled(self) -> bool:
        """Whether an API key is configured."""
        return self.api_key is not None


class ReplySettings(_Section):
    """How answers are posted."""

    streaming: bool | None = Field(
        None,
        description=(
            "Stream LLM answers into a card as they are written (CardKit; needs the "
            "``cardkit:card:write`` scope, else answers arrive whole); unset: on when an "
            "LLM is configured."
        ),
    )


class SentrySettings(_Section):
    """Error reporting to Sentry; off unless a DSN is set."""

    dsn: Annotated[SecretStr | None, _BlankIsNone] = Field(
        None, description="Sentry DSN; unset: no error reporting."
    )
    environment: str = Field("production", description="Sentry environment name.")
    traces_sample_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of requests traced for Sentry performance monitoring (0 to 1).",
    )

    @field_validator("dsn")
    @classmethod
    def _valid_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here so that a pasted-wrong DSN fails at start, not silently at the first
        # error; the message must not repeat the DSN, which carries the project key.
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value().strip())
        if parts.scheme not in ("http", "https") or not parts.username or not parts.hostname:
            raise ValueError("must be a Sentry DSN such as https://<key>@<host>/<project>")
        if not parts.path.strip("/"):
            raise ValueError("must be a Sentry DSN ending in a project id")
        return value


class BaseTableSettings(_Section):
    """A bitable table the tools may use, under a name users can say."""

    app_token: str = Field(min_length=1, description="The bitable app's token (``bascn...``).")
    table_id: str = Field(min_length=1, description="The table's id (``tbl...``).")
    aliases: list[str] = Field(
        default_factory=list, description="Other names users may call the table by."
    )
    description: str = Field("", description="What the table holds, for the LLM and for ``help``.")


class ToolsSettings(_Section):
    """Where the Lark tools may act, beyond the tables configured under ``bases``."""

    allowed_bases: list[str] | None = Field(
        None,
        description=(
            "Bases (app tokens or Base links) that tools may write to, besides the tables under"
            " ``bases``; unset: any Base the app can reach."
        ),
    )

    @field_validator("allowed_bases")
    @classmethod
    def _app_tokens(cls, value: list[str] | None) -> list[str] | None:
        # A pasted link names its Base by the path segment after /base/; keep only that.
        if value is None:
            return None
        tokens: list[str] = []
        for entry in value:
            token = _base_app_token(entry)
            if not token:
                raise ValueError(f"must list app tokens or Base links, but {entry!r} is neither")
            tokens.append(token)
        return tokens


class McpSettings(_Section):
    """``larkbot mcp``: the bearer token HTTP clients must send."""

    token: Annotated[SecretStr | None, _BlankIsNone] = Field(
        None,
        description=(
            "Bearer token every HTTP request to ``larkbot mcp`` must carry; unset: its HTTP modes"
            " serve loopback only."
        ),
    )


def _base_app_token(entry: str) -> str:
    """Return the app token named by ``entry``: the token itself, or a Base link's token."""
    text = entry.strip()
    if "/" not in text:
        return text
    path = urlsplit(text).path
    parts = [part for part in path.split("/") if part]
    if "base" in parts and parts.index("base") + 1 < len(parts):
        return parts[parts.index("base") + 1]
    return ""


class Settings(BaseSettings):
    """Everything the daemon can be told, section by section."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    app: AppSettings = Field(default_factory=AppSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    lark: LarkSettings = Field(default_factory=LarkSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    rate_limiting: RateLimitSettings = Field(default_factory=RateLimitSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    reply: ReplySettings = Field(default_factory=ReplySettings)
    sentry: SentrySettings = Field(default_factory=SentrySettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    bases: dict[str, BaseTableSettings] = Field(default_factory=dict)
    tools: ToolsSettings = Field(default_factory=ToolsSettings)
    mcp: McpSettings = Field(default_factory=McpSettings)

    # Filled by ``load_settings``: dotted-path tuples -> "file <path>", "env NAME", ...
    _sources: dict[Key, str] = PrivateAttr(default_factory=dict)
    _config_file: Path | None = PrivateAttr(default=None)
    _warnings: tuple[str, ...] = PrivateAttr(default=())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Use only the arguments given.

        ``load_settings`` layers the file, secret files and environment itself, because it
        must know where each value came from and reject misspelt keys, which the stock
        sources cannot do.
        """
        return (init_settings,)

    @property
    def config_file(self) -> Path | None:
        """The configuration file these settings were loaded from, if any."""
        return self._config_file

    @property
    def warnings(self) -> tuple[str, ...]:
        """Sentences about risky but working choices, such as a secret in the config file."""
        return self._warnings

    def secrets(self) -> list[str]:
        """Return the non-empty secret values, for redacting them from logs."""
        values = (
            self.app.secret,
            self.llm.api_key,
            self.sentry.dsn,
            self.events.encrypt_key,
            self.events.verification_token,
            self.store.redis_url,
            self.store.redis_password,
            self.mcp.token,
        )
        found = [text for text in map(_reveal, values) if text]
        # A password written into the Redis URL is a secret of its own.
        url_password = urlsplit(_reveal(self.store.redis_url)).password
        return [*found, url_password] if url_password else found

    def require_credentials(self) -> None:
        """Raise :class:`ConfigError` unless the credentials the daemon needs are set and real.

        The app's ID and secret always (in webhook mode the verification token too).
        Placeholders from the examples (``cli_your_app_id``, ``your_app_secret``) and secrets
        too short to be real are refused here, before anything is sent to Lark.
        """
        self.require_app_credentials()
        if self.events.mode == "webhook" and not _reveal(self.events.verification_token).strip():
            where = str(self._config_file) if self._config_file else "the configuration file"
            raise ConfigError(
                "LARK_VERIFICATION_TOKEN is not set: webhook mode needs it, so set "
                "LARK_VERIFICATION_TOKEN or LARK_VERIFICATION_TOKEN_FILE (or "
                f"events.verification_token in {where}) to the Verification Token shown on your "
                "app's Events & Callbacks page."
            )

    def require_app_credentials(self) -> None:
        """Raise :class:`ConfigError` unless the Lark app's ID and secret are set and real."""
        where = str(self._config_file) if self._config_file else "the configuration file"
        if not self.app.id.strip():
            raise ConfigError(
                f"APP_ID is not set: set APP_ID (or app.id in {where}) to your Lark app's ID."
            )
        if _PLACEHOLDER_ID.fullmatch(self.app.id.strip()):
            raise ConfigError(
                f"APP_ID is a placeholder ({self.app.id.strip()}): set it to your Lark app's ID, "
                "from the developer console's Credentials page."
            )
        secret = _reveal(self.app.secret).strip()
        if not secret:
            raise ConfigError(
                "APP_SECRET is not set: set APP_SECRET or APP_SECRET_FILE "
                f"(or app.secret in {where}) to your Lark app's secret."
            )
        if _PLACEHOLDER_SECRET.fullmatch(secret):
            raise ConfigError(
                "APP_SECRET is a placeholder, not a secret: set it to your Lark app's secret, "
                "from the developer console's Credentials page."
            )
        if len(secret) < _MIN_APP_SECRET_LENGTH:
            raise ConfigError(
                "APP_SECRET is too short to be a Lark app secret (those have 32 characters): "
                "copy the whole App Secret from the developer console's Credentials page."
            )


@dataclass(frozen=True, slots=True)
class SettingRow:
    """One leaf setting as shown to an operator: dotted key, printable value, origin."""

    key: str
    value: str
    source: str


def describe_settings(settings: Settings) -> list[SettingRow]:
    """List every leaf setting with its value (secrets masked) and where it came from.

    Sources read ``default``, ``file <path>``, ``env <NAME>``, ``secret file <path>``, or
    ``argument`` for values passed to :class:`Settings` in code.
    """
    return [
        SettingRow(dotted(path), _show(value, secret), _source_of(settings, path))
        for path, value, secret in _leaves(settings, ())
    ]


def _leaves(node: Any, path: Key) -> Iterator[tuple[Key, Any, bool]]:
    for name, info in type(node).model_fields.items():
        value = getattr(node, name)
        here = (*path, name)
        if isinstance(value, BaseModel):
            yield from _leaves(value, here)
        elif (
            isinstance(value, dict) and value and isinstance(next(iter(value.values())), BaseModel)
        ):
            for key, item in value.items():
                yield from _leaves(item, (*here, key))
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            for index, item in enumerate(value):
                yield from _leaves(item, (*here, index))
        else:
            yield here, value, is_secret(info.annotation)


def _show(value: Any, secret: bool) -> str:
    if secret:
        return _MASK if _reveal(value) else _UNSET
    if value is None:
        return _UNSET
    if value == "":
        return _EMPTY
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(repr(item) for item in value) + "]"
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items()) if value else "{}"
    return str(value)


def _source_of(settings: Settings, path: Key) -> str:
    sources = settings._sources
    for end in range(len(path), 0, -1):
        if (found := sources.get(path[:end])) is not None:
            return found
    # A table of plain values (``[log.levels]``) is shown as one row but set key by key.
    deeper = {origin for key, origin in sources.items() if key[: len(path)] == path}
    if deeper:
        return ", ".join(sorted(deeper))
    if _explicitly_set(settings, path):
        return "argument"
    return "default"


def _explicitly_set(settings: Settings, path: Key) -> bool:
    node: Any = settings
    for part in path:
        if isinstance(node, BaseModel):
            if not isinstance(part, str) or part not in node.model_fields_set:
                return False
            node = getattr(node, part)
        elif isinstance(node, dict | list):
            node = node[part]
        else:
            return False
    return True

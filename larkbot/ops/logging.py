"""Log output for the daemon: JSON lines for machines, rich text for people, secrets never.

``setup_logging`` installs one handler on the root logger. Every record that reaches it passes
two filters first: one copies the current ``log_context`` (message id, chat id, connection id)
onto the record, the other rewrites the message, its arguments and any traceback through
``redact``, so a registered secret or anything shaped like a token never reaches the output.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, TextIO

from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

__all__ = ["LogFormat", "add_secrets", "log_context", "redact", "setup_logging"]

LogFormat = Literal["auto", "json", "rich"]

_CONTEXT_FIELDS = ("message_id", "chat_id", "conn_id")
_MASK = "***"

# Shorter values would mask ordinary words all over the output; real credentials are longer.
_MIN_SECRET_LENGTH = 4

# Shapes of credentials that must be masked even when nobody registered them: bearer headers,
# Lark tenant/user access tokens (``t-...``, ``u-...``) and OpenAI-style API keys (``sk-...``).
# The look-behind keeps words such as ``task-...`` or ``get-...`` intact.
_TOKEN_PATTERNS = (
    r"(?<![A-Za-z0-9_-])[tu]-[A-Za-z0-9][A-Za-z0-9_.-]{15,}",
    r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9][A-Za-z0-9_-]{15,}",
)
_TOKEN_SHAPE = re.compile("|".join(_TOKEN_PATTERNS))
# Eight characters at least, so that prose such as "the bearer of" stays readable.
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")

_MAX_ROTATING_SECRETS = 256

_pinned_secrets: set[str] = set()
_rotating_secrets: dict[str, None] = {}  # insertion-ordered: the oldest is evicted first
_secrets_lock = threading.Lock()
_secret_pattern: re.Pattern[str] = re.compile("|".join(_TOKEN_PATTERNS))

_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "larkbot_log_context", default=MappingProxyType({})
)

# Marks the handler this module installed, so a second ``setup_logging`` replaces it and leaves
# handlers owned by others (pytest's capture, an embedding application) alone.
_OWNED = "_larkbot_handler"

# Libraries that log every request at INFO; their lines add noise, not information.
# aiosqlite logs every statement with its parameters (message ids and texts) at DEBUG.
_CHATTY_LOGGERS = ("httpx", "httpcore", "aiosqlite")


def add_secrets(*values: str) -> None:
    """Register values that must never appear in log output or error reports.

    Call it as secrets become known (the app secret at start-up, each tenant token as it is
    fetched). Empty values and values shorter than four characters are ignored, and so are
    values the token shapes already catch. Only the latest 256 values registered this way are
    kept (the ones given to ``setup_logging`` are kept for good): a token refreshed every two
    hours must not grow the pattern for as long as the daemon runs.
    """
    _register(values, pinned=False)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret and token-shaped value replaced by ``***``."""
    if not text:
        return text
    text = _BEARER.sub(rf"\1 {_MASK}", text)
    return _secret_pattern.sub(_MASK, text)


@contextlib.contextmanager
def log_context(
    message_id: str | None = None, chat_id: str | None = None, conn_id: str | None = None
) -> Iterator[None]:
    """Attach ids to every log line emitted inside the block (in this task only).

    Nested blocks inherit the outer ids and may override them; ``None`` leaves a field as it is.
    """
    given = {"message_id": message_id, "chat_id": chat_id, "conn_id": conn_id}
    merged = {**_context.get(), **{key: value for key, value in given.items() if value}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def setup_logging(
    *,
    level: str = "INFO",
    fmt: LogFormat = "auto",
    secrets: Sequence[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Send all logging to ``stream`` (standard error by default) as JSON lines or rich text.

    ``fmt="auto"`` picks JSON lines unless the stream is a terminal; the ``LOG_FORMAT``
    environment variable (``json`` or ``rich``) overrides that guess. Calling it again replaces
    the handler it installed before. ``secrets`` are masked like those of ``add_secrets``, and
    kept for as long as the process runs.
    """
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(
            f"unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    out = stream if stream is not None else sys.stderr
    resolved = _resolve_format(fmt, out)
    _register(secrets, pinned=True)
    handler = _rich_handler(out) if resolved == "rich" else _json_handler(out)
    handler.addFilter(_ContextFilter())
    handler.addFilter(_RedactionFilter())
    setattr(handler, _OWNED, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OWNED, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    quiet = numeric_level if numeric_level <= logging.DEBUG else logging.WARNING
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)


def _register(values: Sequence[str], *, pinned: bool) -> None:
    """Add ``values`` to the secrets to mask and rebuild the pattern if anything changed."""
    global _secret_pattern
    fresh = [
        value
        for value in values
        if value and len(value.strip()) >= _MIN_SECRET_LENGTH and not _TOKEN_SHAPE.fullmatch(value)
    ]
    with _secrets_lock:
        changed = False
        for value in fresh:
            if value in _pinned_secrets:
                continue
            if pinned:
                _rotating_secrets.pop(value, None)
                _pinned_secrets.add(value)
                changed = True
            elif value not in _rotating_secrets:
                _rotating_secrets[value] = None
                changed = True
        while len(_rotating_secrets) > _MAX_ROTATING_SECRETS:
            del _rotating_secrets[next(iter(_rotating_secrets))]
        if changed:
            every = _pinned_secrets | _rotating_secrets.keys()
            # Longest first, so a secret that contains another is masked whole.
            literals = [re.escape(value) for value in sorted(every, key=len, reverse=True)]
            _secret_pattern = re.compile("|".join([*literals, *_TOKEN_PATTERNS]))


def _resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["json", "rich"]:
    """Turn ``auto`` into a concrete format for ``stream``."""
    if fmt != "auto":
        if fmt not in ("json", "rich"):
            raise ValueError(f"unknown log format {fmt!r}: use auto, json or rich")
        return fmt
    forced = os.environ.get("LOG_FORMAT", "").strip().lower()
    if forced in ("json", "rich"):
        return forced  # type: ignore[return-value]
    isatty = getattr(stream, "isatty", None)
    return "rich" if isatty is not None and isatty() else "json"


def _json_handler(stream: TextIO) -> logging.Handler:
    """Build a handler writing one JSON object per line."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_JsonFormatter())
    return handler


def _rich_handler(stream: TextIO) -> logging.Handler:
    """Build a coloured handler for a terminal."""
    console = Console(file=stream)
    return _RichLineHandler(
        console=console,
        show_time=True,
        show_level=True,
        show_path=False,
        rich_tracebacks=False,  # tracebacks arrive as redacted text, see _RedactionFilter
        markup=False,
    )


class _ContextFilter(logging.Filter):
    """Copy the ``log_context`` ids onto the record unless ``extra=`` already set them."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Fill missing context fields; never drops a record."""
        for key, value in _context.get().items():
            if not getattr(record, key, None):
                setattr(record, key, value)
        return True


class _RedactionFilter(logging.Filter):
    """Rewrite the record so that what the formatter sees is already redacted.

    The record object is shared: handlers that run after this one see the redacted version
    too, which can only help.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact message, arguments, traceback and stack; never drops a record."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            # Without the live exception no handler can re-render it unredacted.
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key in _CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class _JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, ids, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the JSON line for ``record`` (without the newline)."""
        created = datetime.fromtimestamp(record.created, tz=UTC)
        line: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value:
                line[key] = str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class _RichLineHandler(RichHandler):
    """``RichHandler`` that shows the logger name and, dimmed, the ids of the event."""

    def render_message(self, record: logging.LogRecord, message: str) -> Text:
        """Prefix the logger name and append the context ids to the highlighted message."""
        body = super().render_message(record, message)
        text = Text.assemble((record.name, "cyan"), " ")
        text.append_text(body if isinstance(body, Text) else Text(message))
        ids = [f"{key}={value}" for key in _CONTEXT_FIELDS if (value := getattr(record, key, None))]
        if ids:
            text.append("  " + " ".join(ids), style="dim")
        return text

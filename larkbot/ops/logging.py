"""Log output for the daemon: JSON lines for machines, rich text for people, secrets never.

``setup_logging`` installs one handler on the root logger (standard error), and a second one
writing a rotated file when asked. Every record that reaches them passes two filters first:
one copies the current ``log_context`` (message id, chat id, connection id) onto the record,
the other rewrites the message, its arguments and any traceback through
:func:`larkbot.core.redact.redact`, so a registered secret or anything shaped like a token
never reaches the output.

Levels: larkbot's own loggers (``larkbot.*``) log at the configured level; other libraries'
loggers stay at WARNING (at DEBUG the SQLite driver alone logs every statement with its
parameters, which hold users' messages) unless ``levels`` names them. Their lines below INFO
never show their arguments, so no user text reaches the output through them.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import json
import logging
import logging.handlers
import math
import os
import queue
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TextIO

from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from larkbot.core.redact import add_secrets, pin_secrets, redact

__all__ = ["ContextFilter", "LogFormat", "add_secrets", "log_context", "redact", "setup_logging"]

LogFormat = Literal["auto", "json", "rich"]

_CONTEXT_FIELDS = ("message_id", "chat_id", "conn_id")
_OURS = "larkbot"

# syslog priorities, for the ``<N>`` prefix journald reads from a service's output.
_JOURNAL_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "larkbot_log_context", default=MappingProxyType({})
)

# Marks the handlers this module installed, so a second ``setup_logging`` replaces them and
# leaves handlers owned by others (pytest's capture, an embedding application) alone.
_OWNED = "_larkbot_handler"
# Loggers whose level ``setup_logging`` set from ``levels``, reset by the next call.
_tuned: set[str] = set()
_listener: logging.handlers.QueueListener | None = None


def log_context(
    message_id: str | None = None, chat_id: str | None = None, conn_id: str | None = None
) -> contextlib.AbstractContextManager[None]:
    """Attach ids to every log line emitted inside the block (in this task only).

    Nested blocks inherit the outer ids and may override them; ``None`` leaves a field as it is.
    Tasks started inside the block inherit the ids too (they copy the context when started).
    """
    return _LogContext(message_id, chat_id, conn_id)


class _LogContext(contextlib.AbstractContextManager[None]):
    """The block of :func:`log_context`: a plain class, as it runs once per message."""

    __slots__ = ("_given", "_token")

    def __init__(self, message_id: str | None, chat_id: str | None, conn_id: str | None) -> None:
        given = {"message_id": message_id, "chat_id": chat_id, "conn_id": conn_id}
        self._given = {key: value for key, value in given.items() if value}
        self._token: contextvars.Token[Mapping[str, str]] | None = None

    def __enter__(self) -> None:
        self._token = _context.set({**_context.get(), **self._given})

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _context.reset(self._token)
            self._token = None


def setup_logging(
    *,
    level: str = "INFO",
    fmt: LogFormat = "auto",
    secrets: Sequence[str] = (),
    stream: TextIO | None = None,
    levels: Mapping[str, str] | None = None,
    file: Path | None = None,
    file_max_bytes: int = 10 * 1024 * 1024,
    file_backups: int = 5,
) -> None:
    """Send all logging to ``stream`` (standard error by default) as JSON lines or rich text.

    ``fmt="auto"`` picks JSON lines unless the stream is a terminal (the ``LOG_FORMAT``
    setting, read with the rest of the configuration, is what the CLI passes). When the stream is
    the journal's (``JOURNAL_STREAM`` names it, as systemd does), each JSON line starts with
    its syslog priority (``<4>`` for a warning), so ``journalctl -p warning`` filters it.
    Calling it again replaces the handlers it installed before. ``secrets`` are masked for
    as long as the process runs.

    :param level: the level of larkbot's own loggers.
    :param levels: levels of other loggers by name (``{"aiosqlite": "DEBUG"}``); every
        logger not named stays at WARNING (or ``level``, when that is higher).
    :param file: also write JSON lines to this file, rotated when it reaches
        ``file_max_bytes``, keeping ``file_backups`` old files (``larkbot.log.1``...).
    """
    global _listener
    numeric_level = _level(level)
    named = {name: _level(value) for name, value in (levels or {}).items()}
    out = stream if stream is not None else sys.stderr
    resolved = _resolve_format(fmt, out)
    pin_secrets(*secrets)
    handler = _rich_handler(out) if resolved == "rich" else _json_handler(out, _journal_stream(out))
    handlers: list[logging.Handler] = [handler]
    listener = None
    if file is not None:
        file_handler, listener = _file_handler(file, file_max_bytes, file_backups)
        handlers.append(file_handler)
    for each in handlers:
        each.addFilter(ContextFilter())
        each.addFilter(_RedactionFilter())
        setattr(each, _OWNED, True)

    # What no line of ours shows is not gathered for each record either (the standard
    # library's documented switches): the caller's file and line, thread and process.
    # Together about 4 of the 20 µs of CPU a reply's log line took (one line per message).
    # Without the caller lookup ``stack_info=True`` gathers no stack either; no line of
    # larkbot asks for one (a traceback, ``exc_info``, is kept).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OWNED, False)]:
        root.removeHandler(old)
        old.close()
    _stop_listener()
    for name in _tuned:
        logging.getLogger(name).setLevel(logging.NOTSET)
    _tuned.clear()

    for each in handlers:
        root.addHandler(each)
    if listener is not None:
        listener.start()
        _listener = listener
    root.setLevel(max(numeric_level, logging.WARNING))
    logging.getLogger(_OURS).setLevel(numeric_level)
    for name, value in named.items():
        logging.getLogger(name).setLevel(value)
        _tuned.add(name)


def _level(name: str) -> int:
    numeric = logging.getLevelName(name.strip().upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {name!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return numeric


def _resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["json", "rich"]:
    """Turn ``auto`` into a concrete format for ``stream``."""
    if fmt != "auto":
        if fmt not in ("json", "rich"):
            raise ValueError(f"unknown log format {fmt!r}: use auto, json or rich")
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "rich" if isatty is not None and isatty() else "json"


def _journal_stream(stream: TextIO) -> bool:
    """Whether ``stream`` is connected to the journal (systemd sets ``JOURNAL_STREAM``).

    The variable holds ``device:inode`` of the journal's socket; it is inherited by child
    processes whose output may go elsewhere, hence the comparison.
    """
    expected = os.environ.get("JOURNAL_STREAM", "").strip()
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def _json_handler(stream: TextIO, journal: bool) -> logging.Handler:
    """Build a handler writing one JSON object per line."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_JsonFormatter(journal=journal))
    return handler


def _file_handler(
    path: Path, max_bytes: int, backups: int
) -> tuple[logging.Handler, logging.handlers.QueueListener]:
    """A handler that formats in the caller and writes the file on a thread of its own.

    Writing (and renaming at rotation) would block the event loop; the queue hands finished
    lines to the listener's thread, which is stopped when the process exits.
    """
    path = path.expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(
            f"cannot write the log file {path} ({reason}): fix LOG_FILE or its folder"
        ) from None
    writer.setFormatter(logging.Formatter("%(message)s"))
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = _FormattingQueueHandler(lines)
    handler.setFormatter(_JsonFormatter(journal=False))
    listener = logging.handlers.QueueListener(lines, writer)
    return handler, listener


def _stop_listener() -> None:
    """Write what is queued, stop the file writer's thread and close the file."""
    global _listener
    if _listener is not None:
        _listener.stop()
        for writer in _listener.handlers:
            writer.close()
        _listener = None


atexit.register(_stop_listener)


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
        omit_repeated_times=False,
        log_time_format=_local_time,
    )


def _local_time(moment: datetime) -> Text:
    """``2026-11-30 08:07:01+09:00``: ISO order, with the zone, to the second."""
    return Text(moment.astimezone().isoformat(sep=" ", timespec="seconds"))


class ContextFilter(logging.Filter):
    """Copy the ``log_context`` ids onto the record unless ``extra=`` already set them.

    ``setup_logging`` puts it on its handlers; add it to a handler of your own (an embedding
    application's, a test's log capture) to see the ids there too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Fill missing context fields; never drops a record."""
        for key, value in _context.get().items():
            if not getattr(record, key, None):
                setattr(record, key, value)
        return True


class _RedactionFilter(logging.Filter):
    """Rewrite the record so that what the formatter sees is already redacted.

    The record object is shared: handlers that run after this one see the redacted version
    too, which can only help. Other libraries' lines below INFO lose their arguments (shown
    by type only): the SQLite driver's carry statements with users' message text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact message, arguments, traceback and stack; never drops a record."""
        if record.args and record.levelno < logging.INFO and not _is_ours(record.name):
            record.args = _types_only(record.args)
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


def _is_ours(name: str) -> bool:
    return name == _OURS or name.startswith(_OURS + ".")


def _types_only(args: Any) -> Any:
    """Replace each argument but numbers by ``<type>``, keeping the shape for ``%``."""

    def shown(value: Any) -> Any:
        if isinstance(value, bool | int | float) or value is None:
            return value
        return f"<{type(value).__name__}>"

    if isinstance(args, Mapping):
        return {key: shown(value) for key, value in args.items()}
    if isinstance(args, tuple):
        return tuple(shown(value) for value in args)
    return shown(args)


# What ``json.dumps(line, ensure_ascii=False, default=str)`` gives, from an encoder built
# once: with those options ``json.dumps`` builds one per call (2 µs of a reply's line).
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


class _JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, ids, exc."""

    def __init__(self, *, journal: bool) -> None:
        super().__init__()
        self._journal = journal
        # The time up to the second, as last formatted: a line per reply, and most share
        # their second with the line before.
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        """``2026-11-30T08:07:01.123Z``: the record's time in UTC, to the millisecond."""
        # Rounded to the microsecond first, as ``datetime.fromtimestamp`` does.
        fraction, second = math.modf(created)
        micros = round(fraction * 1e6)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        elif micros < 0:
            second, micros = second - 1, micros + 1_000_000
        millis = micros // 1000
        if second != self._second:
            moment = datetime.fromtimestamp(second, tz=UTC)
            self._second_text = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._second_text}.{millis:03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """Return the JSON line for ``record`` (without the newline)."""
        line: dict[str, Any] = {
            "time": self._time(record.created),
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
        text = _LINE_ENCODER.encode(line)
        if self._journal:
            priority = _JOURNAL_PRIORITY.get(record.levelno)
            if priority is None:
                priority = 7 if record.levelno < logging.INFO else 3
            return f"<{priority}>{text}"
        return text


class _FormattingQueueHandler(logging.handlers.QueueHandler):
    """Queue the finished JSON line, formatted here, where the log context is known."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Return a copy of ``record`` whose message is the formatted line."""
        line = self.format(record)
        prepared = logging.makeLogRecord({"name": record.name, "levelno": record.levelno})
        prepared.msg = line
        return prepared


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

"""Log output: JSON lines, rich text, context ids and redaction of secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel

from larkbot.agent.tools.base import Tool, ToolContext, ToolResult
from larkbot.config import load_settings
from larkbot.daemon import Overrides
from larkbot.ops.logging import add_secrets, log_context, redact, setup_logging
from larkbot.testing import LarkStandIn, OpenAIStandIn
from tests._daemon import answered, llm_settings, running_daemon
from tests._factories import tool_call

APP_SECRET = "Zq8cVb3nL0pQ7rS2tU5wX9yA1dE4fG6h"
TENANT_TOKEN = "t-g1044ghJRUIJJ5ELPPKWD7K3ZQKPPNIN3ODGNZCP"
API_KEY = "sk-proj-4f9aB7cD2eF1gH8iJ3kL6mN0"

_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

log = logging.getLogger("larkbot.test")


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal, as a console does."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_root_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give each test a clean environment and put the root logger back afterwards."""
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("larkbot", "aiosqlite")}
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    # setup_logging sets larkbot's own level and those of named libraries: tests elsewhere
    # (caplog at DEBUG) must find them as they were.
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_documented_fields() -> None:
    stream = io.StringIO()
    setup_logging(level="INFO", fmt="json", stream=stream)
    log.debug("not shown at INFO")
    log.info("reply sent for %s", "om_1", extra={"message_id": "om_1", "chat_id": "oc_9"})
    log.warning("no ids here")

    first, second = _lines(stream)
    assert first["message"] == "reply sent for om_1"
    assert first["level"] == "INFO"
    assert first["logger"] == "larkbot.test"
    assert _TIME.match(first["time"])
    assert first["message_id"] == "om_1"
    assert first["chat_id"] == "oc_9"
    assert "conn_id" not in first
    assert "exc" not in first
    assert second["level"] == "WARNING"
    assert set(second) == {"time", "level", "logger", "message"}


def test_log_context_adds_ids_and_nests() -> None:
    stream = io.StringIO()
    setup_logging(fmt="json", stream=stream)
    with log_context(conn_id="c1"):
        log.info("connected")
        with log_context(message_id="om_2", chat_id="oc_2"):
            log.info("handling om_2")
            log.info("explicit wins", extra={"message_id": "om_3"})
        log.info("after the message")
    log.info("outside")

    connected, handling, explicit, after, outside = _lines(stream)
    assert connected["conn_id"] == "c1" and "message_id" not in connected
    assert (handling["conn_id"], handling["message_id"], handling["chat_id"]) == (
        "c1",
        "om_2",
        "oc_2",
    )
    assert explicit["message_id"] == "om_3"
    assert "message_id" not in after and after["conn_id"] == "c1"
    assert "conn_id" not in outside


@pytest.mark.anyio
async def test_log_context_is_per_task() -> None:
    stream = io.StringIO()
    setup_logging(fmt="json", stream=stream)

    async def handle(message_id: str) -> None:
        with log_context(message_id=message_id):
            for step in range(3):
                log.info("step %d of %s", step, message_id)
                await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(handle, "om_a")
        tg.start_soon(handle, "om_b")

    lines = _lines(stream)
    assert len(lines) == 6
    # The tasks interleaved, so each line's id came from its own task's context.
    assert {lines[0]["message_id"], lines[1]["message_id"]} == {"om_a", "om_b"}
    for line in lines:
        assert line["message"].endswith(line["message_id"])


def test_registered_secrets_never_reach_the_output() -> None:
    stream = io.StringIO()
    setup_logging(fmt="json", stream=stream, secrets=[APP_SECRET])
    log.info("credentials %s", {"app_secret": APP_SECRET})
    log.info("token " + TENANT_TOKEN + " fetched")
    log.info("calling with Authorization: Bearer abc.def-ghi")
    log.info("llm key %s", API_KEY)
    try:
        raise RuntimeError(f"bad secret {APP_SECRET} for token {TENANT_TOKEN}")
    except RuntimeError:
        log.exception("token fetch failed")

    output = stream.getvalue()
    for secret in (APP_SECRET, TENANT_TOKEN, "abc.def-ghi", API_KEY):
        assert secret not in output
    lines = _lines(stream)
    assert lines[0]["message"] == "credentials {'app_secret': '***'}"
    assert lines[1]["message"] == "token *** fetched"
    assert lines[2]["message"] == "calling with Authorization: Bearer ***"
    assert lines[3]["message"] == "llm key ***"
    failure = lines[4]
    assert failure["message"] == "token fetch failed"
    assert "Traceback (most recent call last)" in failure["exc"]
    assert "RuntimeError: bad secret *** for token ***" in failure["exc"]


def test_secrets_added_later_are_redacted_from_then_on() -> None:
    stream = io.StringIO()
    setup_logging(fmt="json", stream=stream)
    later = "late-registered-secret-0042"
    add_secrets(later)
    log.error("oops %s", later)
    assert later not in stream.getvalue()
    assert _lines(stream)[0]["message"] == "oops ***"


def test_redact_leaves_ordinary_text_alone() -> None:
    add_secrets("", "ab")  # empty and tiny values would mask ordinary words; ignored
    text = "task-scheduler-configuration get-bot-info t-short sk-1 the bearer of news"
    assert redact(text) == text
    assert redact("") == ""


def test_redact_masks_a_registered_secret_as_a_whole_token() -> None:
    add_secrets(APP_SECRET)
    assert redact(f"secret={APP_SECRET}&x") == "secret=***&x"
    assert redact(f"({APP_SECRET}).") == "(***)."
    assert redact(f"シークレット{APP_SECRET}です") == "シークレット***です"
    # Inside a longer token it is not this secret, and masking it would garble the text.
    assert redact(f"x{APP_SECRET}y") == f"x{APP_SECRET}y"


def test_secrets_from_setup_outlive_many_rotating_ones() -> None:
    pinned = "pinned-app-secret-7781"
    setup_logging(fmt="json", stream=io.StringIO(), secrets=[pinned])
    first_rotating = "rotating-secret-00000"
    add_secrets(first_rotating)
    add_secrets(*(f"rotating-secret-{n:05d}" for n in range(1, 300)))
    assert redact(pinned) == "***"
    assert redact("rotating-secret-00299") == "***"
    # The oldest rotating value made room for newer ones.
    assert redact(first_rotating) == first_rotating


def test_redact_masks_token_shapes_without_registration() -> None:
    assert redact(f"token={TENANT_TOKEN}&x=1") == "token=***&x=1"
    assert redact("u-5Y3bvK9lqZ8xW2nM4pR7sT1c") == "***"
    assert redact(f'{{"key": "{API_KEY}"}}') == '{"key": "***"}'
    assert redact("authorization: bearer eyJhbGciOi.J9.x") == "authorization: bearer ***"


def test_rich_output_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = _Terminal()
    setup_logging(fmt="auto", stream=terminal, secrets=[APP_SECRET])
    log.warning("reply failed for om_7 with %s", APP_SECRET, extra={"message_id": "om_7"})
    try:
        raise ValueError(APP_SECRET)
    except ValueError:
        log.exception("crash")

    output = terminal.getvalue()
    assert "\x1b[" in output  # coloured
    assert "larkbot.test" in output
    assert "reply failed for om_7" in output
    assert "message_id=om_7" in output
    assert "WARNING" in output
    assert "ValueError: ***" in output
    assert APP_SECRET not in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output.splitlines()[0])


def test_auto_picks_json_off_a_terminal_and_log_format_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = io.StringIO()
    setup_logging(stream=plain)
    log.info("to a pipe")
    assert _lines(plain)[0]["message"] == "to a pipe"

    terminal = _Terminal()
    setup_logging(fmt=load_settings(env={"LOG_FORMAT": "json"}).log.format, stream=terminal)
    log.info("to a terminal, as JSON")
    assert _lines(terminal)[0]["message"] == "to a terminal, as JSON"

    forced = io.StringIO()
    setup_logging(fmt=load_settings(env={"LOG_FORMAT": "rich"}).log.format, stream=forced)
    log.info("rich into a pipe")
    assert "rich into a pipe" in forced.getvalue()
    assert not forced.getvalue().startswith("{")


def test_setup_twice_replaces_its_handler_and_keeps_others() -> None:
    root = logging.getLogger()
    foreign = logging.StreamHandler(io.StringIO())
    root.addHandler(foreign)
    try:
        first, second = io.StringIO(), io.StringIO()
        setup_logging(fmt="json", stream=first)
        setup_logging(fmt="json", level="warning", stream=second)
        log.info("below the new level")
        log.warning("once")

        assert first.getvalue() == ""
        assert [line["message"] for line in _lines(second)] == ["once"]
        assert foreign in root.handlers
        owned = [h for h in root.handlers if getattr(h, "_larkbot_handler", False)]
        assert len(owned) == 1
    finally:
        root.removeHandler(foreign)


def test_unknown_level_or_format_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        setup_logging(level="LOUD")
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        setup_logging(fmt="xml")  # type: ignore[arg-type]


def test_terminal_timestamps_are_iso_with_the_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        terminal = _Terminal()
        setup_logging(fmt="rich", stream=terminal)
        log.info("hello")
    finally:
        monkeypatch.undo()
        time.tzset()
    first = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue().splitlines()[0])
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+09:00 ", first), first


def test_journal_lines_start_with_their_syslog_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "journal").open("w", encoding="utf-8") as journal:
        info = os.fstat(journal.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        setup_logging(fmt="json", level="DEBUG", stream=journal)
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("e")
        journal.flush()
        lines = (tmp_path / "journal").read_text(encoding="utf-8").splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>"]
    assert json.loads(lines[2][3:])["message"] == "w"

    # Inherited by a process whose output goes elsewhere: no prefix there.
    other = io.StringIO()
    setup_logging(fmt="json", stream=other)
    log.warning("w")
    assert other.getvalue().startswith("{")


def test_log_file_gets_json_lines_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "larkbot.log"
    setup_logging(
        fmt="json",
        stream=io.StringIO(),
        secrets=[APP_SECRET],
        file=path,
        file_max_bytes=4096,
        file_backups=2,
    )
    with log_context(message_id="om_9"):
        for n in range(100):
            log.warning("line %03d with %s %s", n, APP_SECRET, "x" * 60)
    setup_logging(fmt="json", stream=io.StringIO())  # stops the writer, flushing the queue

    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["larkbot.log", "larkbot.log.1", "larkbot.log.2"]
    newest = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert newest[-1]["message"].startswith("line 099 with *** ")
    assert newest[-1]["message_id"] == "om_9"
    assert all(APP_SECRET not in p.read_text(encoding="utf-8") for p in path.parent.iterdir())


def test_other_libraries_stay_at_warning_unless_named() -> None:
    stream = io.StringIO()
    setup_logging(fmt="json", level="DEBUG", stream=stream)
    logging.getLogger("aiosqlite").debug("executing %s", "INSERT 'user text'")
    logging.getLogger("markdown_it.rules_block.code").debug("entering code: %s", "x")
    logging.getLogger("httpx").info("HTTP Request: POST https://open.feishu.cn")
    logging.getLogger("httpx").warning("a warning from httpx")
    log.debug("our own debug line")
    assert [(line["logger"], line["message"]) for line in _lines(stream)] == [
        ("httpx", "a warning from httpx"),
        ("larkbot.test", "our own debug line"),
    ]


def test_named_libraries_log_at_their_level_without_user_text() -> None:
    stream = io.StringIO()
    setup_logging(fmt="json", stream=stream, levels={"aiosqlite": "DEBUG"})
    logging.getLogger("aiosqlite").debug(
        "executing %s (%d rows)", "INSERT INTO inbox VALUES ('機密の相談です')", 3
    )
    logging.getLogger("aiosqlite").info("closing %s", "db")
    log.debug("not at INFO")
    (debug, info) = _lines(stream)
    assert debug["message"] == "executing <str> (3 rows)"
    assert info["message"] == "closing db"

    # The next setup forgets the levels named before.
    setup_logging(fmt="json", stream=io.StringIO())
    assert logging.getLogger("aiosqlite").level == logging.NOTSET


class _NoteInput(BaseModel):
    """What to note."""

    text: str


class _Note(Tool[_NoteInput]):
    """A tool that logs a line without naming the message it works for."""

    name: ClassVar[str] = "note"
    description: ClassVar[str] = "Note a text."

    async def run(self, ctx: ToolContext, args: _NoteInput) -> ToolResult:
        logging.getLogger("larkbot.agent.tools.note").warning("noted %d characters", len(args.text))
        return ToolResult(ok=True, data={"noted": True}, text="noted")


@pytest.mark.anyio
async def test_lines_logged_while_answering_carry_the_message_ids() -> None:
    stream = io.StringIO()
    setup_logging(level="INFO", fmt="json", stream=stream)
    async with LarkStandIn() as lark, OpenAIStandIn(api_key=API_KEY) as llm:
        llm.script(tool_call("note", text="remember this"), {"content": "Noted."})
        overrides = Overrides(tools=[_Note()])
        async with running_daemon(await llm_settings(lark, llm), overrides=overrides):
            sent = await answered(lark, "please note: remember this")

    lines = _lines(stream)
    (noted,) = [line for line in lines if line["logger"] == "larkbot.agent.tools.note"]
    assert noted["message"] == "noted 13 characters"
    assert noted["message_id"] == sent
    assert noted["chat_id"].startswith("oc_")
    (replied,) = [line for line in lines if line["message"].startswith("replied to message")]
    assert (replied["message_id"], replied["chat_id"]) == (sent, noted["chat_id"])
    # Outside the answer, no line borrows the message's ids.
    (stopping,) = [line for line in lines if line["message"].startswith("stopping:")]
    assert "message_id" not in stopping


def test_json_time_is_the_records_utc_time_to_the_millisecond() -> None:
    from datetime import UTC, datetime

    from larkbot.ops.logging import _JsonFormatter

    formatter = _JsonFormatter(journal=False)
    # Within one second (the cached part), across seconds, and where rounding to the
    # microsecond carries into the next millisecond or second.
    for created in (1755337209.1, 1755337209.8789997, 1755337209.9999996, 1755337210.0, 0.0005):
        expected = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")
        assert formatter._time(created) == expected.replace("+00:00", "Z")

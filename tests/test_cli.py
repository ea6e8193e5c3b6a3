"""The ``larkbot`` command line as an operator meets it: help, version, and failing starts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from larkbot import __version__
from larkbot.cli import app
from larkbot.testing import LarkStandIn

_SECRET = "cli-secret-4b1d8e"


def _help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    return result.output


def test_top_level_help_lists_every_command() -> None:
    text = _help()
    for command in ("run", "console", "doctor", "config", "state", "version"):
        assert command in text
    assert "long connection" in text


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("run", ("SIGTERM", "/healthz", "--config")),
        ("console", ("local Lark", "echo help | larkbot console", "--verbose")),
        ("doctor", ("--json", "--timeout", "78")),
    ],
)
def test_command_help(command: str, words: tuple[str, ...]) -> None:
    text = _help(command)
    for word in words:
        assert word in text


def test_config_show_help() -> None:
    assert "--json" in _help("config", "show")


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("backup", ("FILE", "online backup API", "--json")),
        ("restore", ("FILE", "--replace", "--force", "78")),
        ("inspect", ("pending", "conversations", "--json")),
    ],
)
def test_state_help(command: str, words: tuple[str, ...]) -> None:
    text = _help("state", command)
    for word in words:
        assert word in text


def test_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output == f"larkbot {__version__}\n"


async def _larkbot(*args: str, env: dict[str, str], stdin: bytes = b"") -> tuple[int, str, str]:
    full = {"PATH": os.environ.get("PATH", ""), "HOME": env.get("HOME", "/nonexistent"), **env}
    # Bounded, so a command that hangs fails the test instead of hanging the suite.
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [sys.executable, "-m", "larkbot", *args], input=stdin, env=full, check=False
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@pytest.mark.anyio
async def test_run_without_app_id_exits_78_with_one_line() -> None:
    code, out, err = await _larkbot("run", env={"APP_SECRET": _SECRET})
    assert code == 78
    assert out == ""
    (line,) = err.strip().splitlines()
    assert "APP_ID" in line
    assert _SECRET not in err


@pytest.mark.anyio
async def test_run_with_a_wrong_secret_exits_78_with_one_line(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        env = {
            "APP_ID": "cli_test",
            "APP_SECRET": _SECRET,
            "LARK_DOMAIN": lark.url,
            "PORT": "0",
            "LARKBOT_STATE_DIR": str(tmp_path),
            "LOG_LEVEL": "WARNING",
        }
        code, out, err = await _larkbot("run", env=env)
    assert code == 78
    (line,) = err.strip().splitlines()
    assert "Lark refused the app credentials (code 10014)" in line
    assert "APP_SECRET" in line
    assert _SECRET not in out + err
    assert "Traceback" not in err


@pytest.mark.anyio
async def test_wrong_secret_at_info_level_ends_with_the_reason_and_no_traceback(
    tmp_path: Path,
) -> None:
    async with LarkStandIn() as lark:
        env = {
            "APP_ID": "cli_test",
            "APP_SECRET": _SECRET,
            "LARK_DOMAIN": lark.url,
            "PORT": "0",
            "LARKBOT_STATE_DIR": str(tmp_path),
        }
        code, _, err = await _larkbot("run", env=env)
    assert code == 78
    *logs, last = err.strip().splitlines()
    assert last.startswith("larkbot: Lark refused the app credentials")
    for line in logs:  # start-up log lines before the failure, as JSON
        assert isinstance(json.loads(line), dict)
    assert "Traceback" not in err and _SECRET not in err


@pytest.mark.anyio
async def test_console_answers_help_in_japanese() -> None:
    code, out, err = await _larkbot("console", env={}, stdin=b"help\n")
    assert code == 0, err
    assert "使い方" in out

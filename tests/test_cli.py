"""The ``larkbot`` command line as an operator meets it: help, version, and failing starts."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import anyio.abc
import pytest
from typer.testing import CliRunner

from larkbot import __version__
from larkbot.cli import app
from larkbot.testing import LarkStandIn
from tests._proc import run_larkbot

_SECRET = "cli-secret-4b1d8e"


def _help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    return result.output


def test_top_level_help_lists_every_command() -> None:
    text = _help()
    for command in ("run", "console", "standin", "doctor", "config", "state", "version"):
        assert f"\n  {command} " in text
    assert "long connection" in text


@pytest.mark.parametrize(
    "command", [(), ("run",), ("console",), ("standin",), ("doctor",), ("config", "show")]
)
def test_help_reads_like_a_well_kept_cli(command: tuple[str, ...]) -> None:
    text = _help(*command)
    assert text.startswith("Usage: larkbot")
    # No type placeholders, boxes or padding: the same text in a terminal and a pipe.
    assert "<bool>" not in text and "<float" not in text and "<int" not in text
    assert "╭" not in text and "│" not in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_run_help_lists_every_environment_variable_it_reads() -> None:
    from larkbot.config._sources import FLAT_ENV, SECRET_FILES

    text = _help("run")
    names = [*FLAT_ENV, *(variable for variable, _ in SECRET_FILES.values()), "LARKBOT_CONFIG"]
    missing = [name for name in names if name not in text]
    assert missing == []
    assert "LARKBOT_<SECTION>__<FIELD>" in text


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flag(flag: str) -> None:
    result = CliRunner().invoke(app, [flag])
    assert result.exit_code == 0
    assert result.output == f"larkbot {__version__}\n"


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


@pytest.mark.anyio
async def test_run_without_app_id_exits_78_with_one_line() -> None:
    code, out, err = await run_larkbot("run", env={"APP_SECRET": _SECRET})
    assert code == 78
    assert out == ""
    (line,) = err.strip().splitlines()
    assert "APP_ID" in line
    assert _SECRET not in err


def _wrong_secret_env(lark: LarkStandIn, state_dir: Path) -> dict[str, str]:
    """``larkbot run`` against ``lark`` with a secret it does not know."""
    return {
        "APP_ID": "cli_test",
        "APP_SECRET": _SECRET,
        "LARK_DOMAIN": lark.url,
        "PORT": "0",
        "LARKBOT_STATE_DIR": str(state_dir),
    }


@pytest.mark.anyio
async def test_run_with_a_wrong_secret_exits_78_with_one_line(tmp_path: Path) -> None:
    async with LarkStandIn() as lark:
        env = {**_wrong_secret_env(lark, tmp_path), "LOG_LEVEL": "WARNING"}
        code, out, err = await run_larkbot("run", env=env)
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
        code, _, err = await run_larkbot("run", env=_wrong_secret_env(lark, tmp_path))
    assert code == 78
    *logs, last = err.strip().splitlines()
    assert last.startswith("larkbot: Lark refused the app credentials")
    for line in logs:  # start-up log lines before the failure, as JSON
        assert isinstance(json.loads(line), dict)
    assert "Traceback" not in err and _SECRET not in err


@pytest.mark.anyio
async def test_console_answers_help_in_japanese() -> None:
    code, out, err = await run_larkbot("console", env={}, stdin=b"help\n")
    assert code == 0, err
    assert "使い方" in out


@pytest.mark.anyio
async def test_piped_console_output_is_clean() -> None:
    lines = b"lang en\nsearch the customers table for Acme\nwho is emma.wilson@example.com\n"
    code, out, err = await run_larkbot("console", env={"COLUMNS": "40"}, stdin=lines)
    assert code == 0, err
    assert out.startswith("bot › I will answer in English from now on.\n")
    rows = out.splitlines()
    # Not wrapped at 40 columns, not padded, no colour codes.
    assert any(len(row) > 60 for row in rows)
    assert all(row == row.rstrip() for row in rows)
    assert "\x1b[" not in out
    # Lines after the first of a reply are indented under its text.
    assert all(row.startswith(("bot › ", "      ")) or not row for row in rows)


@pytest.mark.anyio
async def test_console_verbose_does_not_warn_about_its_own_memory_store() -> None:
    code, _, err = await run_larkbot(
        "console", "--verbose", env={"LOG_FORMAT": "json"}, stdin=b"ping\n"
    )
    assert code == 0, err
    messages = [json.loads(line)["message"] for line in err.splitlines() if line.startswith("{")]
    assert messages, err  # -v shows larkbot's lines...
    assert not [m for m in messages if "forget" in m]  # ...but not this one
    assert all(json.loads(line)["logger"].startswith("larkbot") for line in err.splitlines())


@pytest.mark.anyio
async def test_config_show_into_a_pipe_is_one_unpadded_line_per_setting() -> None:
    env = {"APP_ID": "cli_a1b2c3", "COLUMNS": "40", "LARKBOT_STATE_DIR": "/a/rather/long/path" * 4}
    code, out, err = await run_larkbot("config", "show", env=env)
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    assert all(len(row) == 3 for row in rows)
    assert ["app.id", "cli_a1b2c3", "env APP_ID"] in rows
    assert ["store.state_dir", "/a/rather/long/path" * 4, "env LARKBOT_STATE_DIR"] in rows

    code, out, _ = await run_larkbot("config", "show", "--json", env=env)
    document = json.loads(out)
    assert document["warnings"] == []
    assert {"key": "app.id", "value": "cli_a1b2c3", "source": "env APP_ID"} in document["settings"]


@pytest.mark.anyio
async def test_run_refuses_the_guides_placeholders(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"app": {"id": "cli_your_app_id", "secret": "your_app_secret"}}),
        encoding="utf-8",
    )
    code, out, err = await run_larkbot("run", "--config", str(config), env={})
    assert code == 78 and out == ""
    (line,) = err.strip().splitlines()
    assert line == (
        "larkbot: APP_ID is a placeholder (cli_your_app_id): set it to your Lark app's ID, "
        "from the developer console's Credentials page."
    )


@pytest.mark.anyio
async def test_run_warns_when_the_secret_is_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "larkbot.toml"
    config.write_text(f'[app]\nid = "cli_test"\nsecret = "{_SECRET}"\n', encoding="utf-8")
    async with LarkStandIn() as lark:  # another secret: the start ends at the token
        env = {
            "LARK_DOMAIN": lark.url,
            "PORT": "0",
            "LARKBOT_STATE_DIR": str(tmp_path / "state"),
            "LOG_FORMAT": "json",
        }
        code, _, err = await run_larkbot("run", "--config", str(config), env=env)
    assert code == 78
    warnings = [
        json.loads(line)["message"]
        for line in err.splitlines()
        if line.startswith("{") and json.loads(line)["level"] == "WARNING"
    ]
    assert f"app.secret is written in the configuration file {config}: move it" in "".join(warnings)
    assert _SECRET not in err


@pytest.mark.anyio
async def test_standin_on_a_taken_port_is_one_line_and_78() -> None:
    taken = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with taken:
        port = taken.extra(anyio.abc.SocketAttribute.local_port)
        code, out, err = await run_larkbot("standin", "--port", str(port), env={})
    assert (code, out) == (78, "")
    assert (
        err == f"larkbot: cannot listen on 127.0.0.1:{port}: choose another --port (0 picks one).\n"
    )


@pytest.mark.anyio
async def test_start_up_garbage_is_collected_not_frozen_once_ready() -> None:
    # Regression: the heap was frozen without a collection first, so whatever start-up
    # left unreachable in reference cycles was kept for the daemon's whole life.
    import gc
    import weakref
    from types import SimpleNamespace

    from larkbot.cli.main import _freeze_heap_when_ready

    class _Cycle:
        def __init__(self) -> None:
            self.me = self

    daemon = SimpleNamespace(ready=anyio.Event())
    was_enabled = gc.isenabled()
    thresholds = gc.get_threshold()
    gc.disable()  # only the collection before the freeze may reclaim the cycle
    try:
        garbage = weakref.ref(_Cycle())
        async with anyio.create_task_group() as tg:
            tg.start_soon(_freeze_heap_when_ready, daemon)
            await anyio.wait_all_tasks_blocked()
            assert garbage() is not None  # nothing happens before the daemon is ready
            daemon.ready.set()
        assert garbage() is None
        assert gc.get_freeze_count() > 0
        # Serving, the young generation is collected far less often than by default.
        assert gc.get_threshold() == (20_000, *thresholds[1:])
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        if was_enabled:
            gc.enable()

"""``larkbot doctor`` and ``larkbot config show`` against the real local Lark and LLM."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from larkbot.cli.doctor import CheckResult, run_checks
from larkbot.testing import LarkStandIn
from larkbot.testing.openai_standin import OpenAIStandIn
from tests._daemon import settings_for
from tests._proc import run_larkbot

pytestmark = pytest.mark.anyio

_SECRET = "doctor-secret-7f3a9c"


def _by_name(checks: list[CheckResult]) -> dict[str, CheckResult]:
    return {check.name: check for check in checks}


def _env(lark: LarkStandIn, state_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "APP_ID": lark.app_id,
        "APP_SECRET": lark.app_secret,
        "LARK_DOMAIN": lark.url,
        "PORT": "0",
        "LARKBOT_STATE_DIR": str(state_dir),
        **extra,
    }


async def test_all_checks_pass_against_the_local_lark(tmp_path: Path) -> None:
    async with LarkStandIn(app_secret=_SECRET) as lark:
        settings = await settings_for(lark, state_dir=tmp_path / "state")
        checks = _by_name(await run_checks(settings, env={}))
    assert {name: c.status for name, c in checks.items()} == {
        "credentials": "ok",
        "bot identity": "ok",
        "long connection": "ok",
        "llm": "skip",
        "state directory": "ok",
        "port": "ok",
    }
    assert "ou_bot" in checks["bot identity"].detail
    # Only the endpoint's origin is shown, never its query (connection tickets).
    assert checks["long connection"].detail.endswith(lark.url.replace("http", "ws"))
    assert (tmp_path / "state" / "larkbot.sqlite3").is_file()


async def test_wrong_secret_fails_credentials_with_a_clear_reason(tmp_path: Path) -> None:
    async with LarkStandIn(app_secret=_SECRET) as lark:
        settings = await settings_for(lark, APP_SECRET="wrong-" + _SECRET)
        checks = _by_name(await run_checks(settings, env={}))
    credentials = checks["credentials"]
    assert credentials.status == "fail"
    assert "Lark refused the app id and app secret (code 10014" in credentials.detail
    assert checks["bot identity"].status == checks["long connection"].status == "skip"
    assert _SECRET not in json.dumps([c.detail for c in checks.values()])


async def test_endpoint_refusal_and_port_in_use_are_reported(tmp_path: Path) -> None:
    taken = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with LarkStandIn() as lark, taken:
        port = taken.extra(anyio.abc.SocketAttribute.local_port)
        settings = await settings_for(lark, PORT=str(port))
        lark.endpoint_busy_times = 10
        checks = _by_name(await run_checks(settings, env={}))
    assert checks["long connection"].status == "fail"
    assert "busy" in checks["long connection"].detail
    assert checks["port"].status == "fail"
    assert f"port {port} on 127.0.0.1 is already in use" in checks["port"].detail
    assert checks["state directory"].status == "skip"  # memory store


async def test_unwritable_state_directory_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    await anyio.Path(blocker).write_text("not a directory")
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, state_dir=blocker / "state")
        checks = _by_name(await run_checks(settings, env={}))
    assert checks["state directory"].status == "fail"
    assert "is not writable" in checks["state directory"].detail


async def test_llm_endpoint_is_checked_when_configured() -> None:
    async with LarkStandIn() as lark, OpenAIStandIn(api_key="sk-doctor-key-123456789") as llm:
        good = await settings_for(
            lark,
            OPENAI_API_KEY=llm.api_key,
            OPENAI_BASE_URL=llm.base_url,
            LLM_MODEL=llm.model,
        )
        wrong_model = await settings_for(
            lark, OPENAI_API_KEY=llm.api_key, OPENAI_BASE_URL=llm.base_url, LLM_MODEL="nope"
        )
        wrong_key = await settings_for(
            lark, OPENAI_API_KEY="sk-wrong-key-123456789", OPENAI_BASE_URL=llm.base_url
        )
        ok = _by_name(await run_checks(good, env={}))["llm"]
        missing = _by_name(await run_checks(wrong_model, env={}))["llm"]
        refused = _by_name(await run_checks(wrong_key, env={}))["llm"]
    assert ok.status == "ok" and llm.model in ok.detail
    assert missing.status == "fail" and "does not offer model nope" in missing.detail
    assert refused.status == "fail" and "refused the API key (HTTP 401)" in refused.detail
    assert "sk-wrong-key" not in refused.detail


async def test_doctor_cli_exit_codes_and_json(tmp_path: Path) -> None:
    async with LarkStandIn(app_secret=_SECRET) as lark:
        code, out, err = await run_larkbot("doctor", env=_env(lark, tmp_path))
        assert code == 0, out + err
        assert "All checks passed." in out

        env = _env(lark, tmp_path, APP_SECRET="wrong-" + _SECRET)
        code, out, err = await run_larkbot("doctor", "--json", env=env)
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    rows = {row["name"]: row for row in report["checks"]}
    assert rows["credentials"]["status"] == "fail"
    assert "code 10014" in rows["credentials"]["detail"]
    assert _SECRET not in out + err


async def test_doctor_exits_78_when_the_config_does_not_load(tmp_path: Path) -> None:
    code, out, _ = await run_larkbot("doctor", "--json", env={"LOG_LEVEL": "loud"})
    assert code == 78
    rows = json.loads(out)["checks"]
    assert rows[0]["name"] == "config" and rows[0]["status"] == "fail"
    assert "LOG_LEVEL" in rows[0]["detail"]
    assert {row["status"] for row in rows[1:]} == {"skip"}


async def test_config_show_masks_secrets_and_names_sources(tmp_path: Path) -> None:
    config = tmp_path / "larkbot.toml"
    await anyio.Path(config).write_text("[dispatch]\nmax_concurrency = 8\n")
    env = {"APP_ID": "cli_x", "APP_SECRET": _SECRET, "SENTRY_DSN": "https://key@sentry.io/1"}
    code, out, err = await run_larkbot("config", "show", "--config", str(config), "--json", env=env)
    assert code == 0, err
    document = json.loads(out)
    assert document["config_file"] == str(config)
    rows = {row["key"]: row for row in document["settings"]}
    assert rows["app.secret"] == {"key": "app.secret", "value": "****", "source": "env APP_SECRET"}
    assert rows["dispatch.max_concurrency"]["source"] == f"file {config}"
    assert rows["server.port"] == {"key": "server.port", "value": "3000", "source": "default"}
    assert _SECRET not in out and "key@sentry" not in out

    code, table, _ = await run_larkbot("config", "show", "--config", str(config), env=env)
    assert code == 0 and "dispatch.max_concurrency" in table and _SECRET not in table


async def test_config_show_with_a_bad_config_is_one_line_and_78(tmp_path: Path) -> None:
    code, out, err = await run_larkbot("config", "show", env={"PORT": "99999"})
    assert code == 78 and out == ""
    assert len(err.strip().splitlines()) == 1 and "server.port" in err

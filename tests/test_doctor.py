"""``larkbot doctor`` and ``larkbot config show`` against the real local Lark and LLM."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

# The tools are imported here, before any event loop: importing reads their time-zone data.
from larkbot.agent.tools.registry import default_registry
from larkbot.cli._permissions import scope_needs, tools_needing
from larkbot.cli.doctor import CheckResult, run_checks
from larkbot.store import open_store
from larkbot.store.sqlite import SCHEMA_VERSION
from larkbot.testing import ApiRequest, LarkStandIn, OpenApiRoute, app_scopes_route
from larkbot.testing.openai_standin import OpenAIStandIn
from tests._daemon import WEBHOOK_KEY, WEBHOOK_TOKEN, settings_for, webhook_env
from tests._factories import inbound
from tests._proc import run_larkbot
from tests._redis import REDIS_SERVER, RedisServer, redis_server, requires_redis

pytestmark = pytest.mark.anyio

_SECRET = "doctor-secret-7f3a9c"


def _all_scopes() -> list[str]:
    return [need.scope for need in scope_needs()]


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
    scopes = app_scopes_route(_all_scopes())
    async with LarkStandIn(app_secret=_SECRET, extra_routes=[scopes]) as lark:
        settings = await settings_for(lark, state_dir=tmp_path / "state")
        checks = _by_name(await run_checks(settings, env={}))
    assert {name: c.status for name, c in checks.items()} == {
        "credentials": "ok",
        "bot identity": "ok",
        "permissions": "ok",
        "long connection": "ok",
        "llm": "skip",
        "state directory": "ok",
        "redis": "skip",
        "port": "ok",
    }
    assert "ou_bot" in checks["bot identity"].detail
    assert checks["permissions"].detail == f"all {len(_all_scopes())} scopes larkbot uses"
    # Only the endpoint's origin is shown, never its query (connection tickets).
    assert checks["long connection"].detail.endswith(lark.url.replace("http", "ws"))
    # Doctor only reads: the folder the daemon would create is left to the daemon.
    assert "creates it at the first start" in checks["state directory"].detail
    assert not (tmp_path / "state").exists()


async def test_missing_scopes_name_what_they_disable() -> None:
    tools_missing = [s for s in _all_scopes() if s not in ("bitable:app", "calendar:calendar")]
    bot_missing = [s for s in _all_scopes() if s != "im:message:send_as_bot"]
    async with LarkStandIn(extra_routes=[app_scopes_route(tools_missing)]) as lark:
        warned = _by_name(await run_checks(await settings_for(lark), env={}))["permissions"]
    async with LarkStandIn(extra_routes=[app_scopes_route(bot_missing)]) as lark:
        failed = _by_name(await run_checks(await settings_for(lark), env={}))["permissions"]
    async with LarkStandIn() as lark:  # a Lark that does not answer the scopes route
        unknown = _by_name(await run_checks(await settings_for(lark), env={}))["permissions"]

    assert warned.status == "warn"
    bitable_tools = ", ".join(t.name for t in default_registry() if "bitable:app" in t.scopes)
    assert warned.detail.startswith(
        f"missing bitable:app (tools {bitable_tools}); calendar:calendar (tool "
        "create_calendar_event), which stop working: add them in the developer console and "
        "publish a new version"
    )
    assert failed.status == "fail"
    assert failed.detail.startswith("missing im:message:send_as_bot (reply; tool send_message)")
    assert unknown.status == "skip" and "README" in unknown.detail


async def test_a_scope_granted_through_a_broader_one_counts() -> None:
    broad = [s for s in _all_scopes() if s != "bitable:app:readonly"]  # bitable:app covers it
    async with LarkStandIn(extra_routes=[app_scopes_route(broad)]) as lark:
        checks = _by_name(await run_checks(await settings_for(lark), env={}))
    assert checks["permissions"].status == "ok"


async def test_a_scope_listing_not_understood_is_skipped_not_reported_missing() -> None:
    async def garbled(request: ApiRequest) -> dict[str, Any]:
        return {"scopes": "im:message:send_as_bot"}

    listing = OpenApiRoute("GET", "application/v6/scopes", garbled)
    async with LarkStandIn(extra_routes=[listing]) as lark:
        checks = _by_name(await run_checks(await settings_for(lark), env={}))
    assert checks["permissions"].status == "skip"
    assert "not understood" in checks["permissions"].detail


async def test_one_unreadable_scope_entry_leaves_the_others_checked() -> None:
    scopes = [{"scope_name": name, "grant_status": 1} for name in _all_scopes()]
    scopes.append({"scope_name": "im:message:send_as_bot", "grant_status": "yes"})

    async def listing(request: ApiRequest) -> dict[str, Any]:
        return {"scopes": scopes}

    route = OpenApiRoute("GET", "application/v6/scopes", listing)
    async with LarkStandIn(extra_routes=[route]) as lark:
        checks = _by_name(await run_checks(await settings_for(lark), env={}))
    assert checks["permissions"].status == "ok", checks["permissions"].detail


async def test_state_directory_is_inspected_without_writing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with open_store("sqlite", state) as store:
        assert await store.admit(inbound(message_id="om_waiting"))
    before = _snapshot(state)
    async with LarkStandIn() as lark:
        settings = await settings_for(lark, state_dir=state)
        check = _by_name(await run_checks(settings, env={}))["state directory"]
    assert check.status == "ok"
    assert check.detail == (
        f"{state} is writable; database schema version {SCHEMA_VERSION} "
        "(1 message(s) waiting in the inbox)"
    )
    assert _snapshot(state) == before


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


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
    assert checks["state directory"].detail == (
        f"{blocker / 'state'} is not writable ({blocker} is a file): set LARKBOT_STATE_DIR "
        "to a writable directory"
    )


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
        # Into a pipe: one tab-separated line per check, no padding, nothing else.
        rows = [line.split("\t") for line in out.splitlines()]
        assert [row[0] for row in rows] == [
            "config",
            "credentials",
            "bot identity",
            "permissions",
            "long connection",
            "llm",
            "state directory",
            "redis",
            "port",
        ]
        assert all(len(row) == 3 and row[1] in ("ok", "skip") for row in rows)
        assert all(line == line.rstrip() for line in out.splitlines())
        assert err == ""

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

    # The path of a file that does not load is still reported.
    broken = tmp_path / "larkbot.toml"
    await anyio.Path(broken).write_text("[server]\nport = = 1\n")
    code, out, _ = await run_larkbot("doctor", "--json", "--config", str(broken), env={})
    assert code == 78
    assert json.loads(out)["config_file"] == str(broken)


async def test_a_short_secret_is_a_config_error_and_garbles_nothing(tmp_path: Path) -> None:
    # Issue 12's reports: APP_SECRET=127 printed "****.0.0.1:3000 can be bound", and
    # APP_SECRET=x "(0 message(s) in the inbo****)".
    async with open_store("sqlite", tmp_path):
        pass
    for secret in ("127", "x"):
        env = {"APP_ID": "cli_a1b2c3", "APP_SECRET": secret, "PORT": "0"}
        env["LARKBOT_STATE_DIR"] = str(tmp_path)
        code, out, err = await run_larkbot("doctor", "--json", env=env)
        assert code == 78, out + err
        rows = {row["name"]: row for row in json.loads(out)["checks"]}
        assert rows["config"]["detail"].startswith("APP_SECRET is too short")
        assert rows["credentials"]["status"] == "skip"
        assert rows["port"]["detail"] == "127.0.0.1:0 can be bound"
        assert rows["state directory"]["detail"].endswith("waiting in the inbox)")
        assert "*" not in out


async def test_retries_print_nothing_beside_the_report(tmp_path: Path) -> None:
    # A closed port: the OpenAPI client retries, and used to log each attempt to stderr.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    env = {
        "APP_ID": "cli_a1b2c3",
        "APP_SECRET": "Zq8cVb3nL0pQ7rS2tU5wX9yA1dE4fG6h",
        "LARK_DOMAIN": f"http://127.0.0.1:{closed}",
        "PORT": "0",
        "LARKBOT_STATE_DIR": str(tmp_path),
    }
    code, out, err = await run_larkbot("doctor", "--timeout", "2", env=env)
    assert code == 1
    assert err == ""
    assert out.splitlines()[1].startswith("credentials\tfail\t")


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


def test_a_no_permission_error_names_the_tools_it_stops() -> None:
    message = (
        "Access denied. One of the following scopes is required: [bitable:app, "
        "calendar:calendar]. (code 99991672)"
    )
    needing = tools_needing(message)
    assert needing[:3] == ["create_base_record", "update_base_record", "delete_base_record"]
    assert "create_calendar_event" in needing
    assert sorted(needing) == sorted(
        tool.name
        for tool in default_registry()
        if {"bitable:app", "calendar:calendar"} & set(tool.scopes)
    )
    assert tools_needing("no scopes named here") == []


async def test_webhook_mode_checks_the_keys_and_skips_the_long_connection(tmp_path: Path) -> None:
    async with LarkStandIn(app_secret=_SECRET) as lark:
        settings = await settings_for(lark, tmp_path / "state", **webhook_env())
        checks = _by_name(await run_checks(settings, env={}))
    assert {name: c.status for name, c in checks.items()} == {
        "credentials": "ok",
        "bot identity": "ok",
        # This stand-in does not answer the scopes route.
        "permissions": "skip",
        "long connection": "skip",
        "verification token": "ok",
        "encrypt key": "ok",
        "llm": "skip",
        "state directory": "ok",
        "redis": "skip",
        "port": "ok",
    }
    assert lark.endpoint_calls == 0
    assert checks["long connection"].detail == "webhook mode: Lark POSTs to /webhook"
    assert checks["verification token"].detail.startswith("set (env LARK_VERIFICATION_TOKEN)")
    assert checks["encrypt key"].detail.startswith("set (env LARK_ENCRYPT_KEY)")
    assert "Lark must reach POST /webhook on it" in checks["port"].detail
    shown = json.dumps([c.detail for c in checks.values()])
    assert WEBHOOK_KEY not in shown and WEBHOOK_TOKEN not in shown


async def test_webhook_mode_without_an_encrypt_key_warns_but_passes(tmp_path: Path) -> None:
    async with LarkStandIn(app_secret=_SECRET) as lark:
        env = _env(lark, tmp_path, **webhook_env(LARK_ENCRYPT_KEY=""))
        code, out, err = await run_larkbot("doctor", "--json", env=env)
        assert code == 0, out + err
        table_code, table, _ = await run_larkbot("doctor", env=env)
    rows = {row["name"]: row for row in json.loads(out)["checks"]}
    assert json.loads(out)["ok"] is True
    assert rows["encrypt key"]["status"] == "warn"
    assert "accepted on the verification token alone" in rows["encrypt key"]["detail"]
    assert rows["verification token"]["status"] == "ok"
    assert table_code == 0
    # Into a pipe, one check<TAB>status<TAB>detail line per check.
    assert "encrypt key\twarn\t" in table
    assert WEBHOOK_TOKEN not in out + err + table


async def test_webhook_mode_without_the_token_fails_that_row_only(tmp_path: Path) -> None:
    async with LarkStandIn(app_secret=_SECRET) as lark:
        env = _env(lark, tmp_path, **webhook_env(LARK_VERIFICATION_TOKEN=""))
        code, out, err = await run_larkbot("doctor", "--json", env=env)
    assert code == 1, out + err
    rows = {row["name"]: row for row in json.loads(out)["checks"]}
    assert {name: row["status"] for name, row in rows.items() if row["status"] != "ok"} == {
        "permissions": "skip",
        "long connection": "skip",
        "verification token": "fail",
        "llm": "skip",
        "redis": "skip",
    }
    assert "LARK_VERIFICATION_TOKEN" in rows["verification token"]["detail"]


# --- Redis -------------------------------------------------------------------------------------

_ROOT = Path(__file__).resolve().parent.parent
_REDIS_PASSWORD = "redis-doctor-pw-91c2"


async def _redis_check(lark: LarkStandIn, url: str, **env: str) -> CheckResult:
    settings = await settings_for(lark, REDIS_URL=url, LARKBOT_STORE="", **env)
    checks = _by_name(await run_checks(settings, env={}, check_seconds=5))
    assert checks["state directory"].status == "skip"
    return checks["redis"]


@requires_redis
async def test_redis_set_up_as_shipped_passes(tmp_path: Path) -> None:
    """redis-server running config/redis.conf (as Compose and Kubernetes run it) passes."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory, _free_port())
    assert REDIS_SERVER is not None
    process = await anyio.open_process(
        [
            REDIS_SERVER,
            str(_ROOT / "config" / "redis.conf"),
            *("--port", str(server.port), "--bind", "127.0.0.1", "--dir", str(directory)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    async with process, LarkStandIn() as lark:
        try:
            with anyio.fail_after(15):
                while not await server._answers():
                    assert process.returncode is None, "redis-server refused config/redis.conf"
                    await anyio.sleep(0.05)
            check = await _redis_check(lark, server.url)
        finally:
            if process.returncode is None:
                process.kill()
    assert check.status == "ok", check.detail
    for words in ("redis 7.", "noeviction", "AOF on (appendfsync everysec)", "64 partitions"):
        assert words in check.detail


@requires_redis
async def test_redis_set_up_wrong_fails_and_says_what_to_fix(tmp_path: Path) -> None:
    async with redis_server(tmp_path / "redis") as server, LarkStandIn() as lark:
        good = await _redis_check(lark, server.url)
        assert good.status == "ok", good.detail

        client = Redis.from_url(server.url)
        async with client:
            await client.config_set("maxmemory-policy", "allkeys-lru")
            await client.config_set("appendonly", "no")
        bad = await _redis_check(lark, server.url)
        assert bad.status == "fail"
        assert "maxmemory-policy is allkeys-lru: set it to noeviction" in bad.detail
        assert "AOF is off (appendonly no): set appendonly yes" in bad.detail

        async with client:
            await client.config_set("maxmemory-policy", "noeviction")
            await client.config_set("appendonly", "yes")
            await client.config_set("appendfsync", "no")
        unsynced = await _redis_check(lark, server.url)
        assert unsynced.status == "fail"
        assert unsynced.detail.startswith("appendfsync is no: set appendfsync everysec")

        # Another deployment's partition count under the same prefix.
        async with client:
            await client.config_set("appendfsync", "everysec")
        other = await _redis_check(lark, server.url, LARKBOT_STORE__PARTITIONS="16")
        assert other.status == "fail"
        assert "use the same partition count on every replica" in other.detail


@requires_redis
async def test_redis_unreachable_or_refusing_the_password_fails_in_bounded_time(
    tmp_path: Path,
) -> None:
    async with (
        redis_server(tmp_path / "redis", password=_REDIS_PASSWORD) as server,
        LarkStandIn() as lark,
    ):
        ok = await _redis_check(lark, server.url, REDIS_PASSWORD=_REDIS_PASSWORD)
        assert ok.status == "ok", ok.detail
        wrong = await _redis_check(lark, server.url, REDIS_PASSWORD="not-" + _REDIS_PASSWORD)
        assert wrong.status == "fail"
        assert "refused the credentials" in wrong.detail
        assert _REDIS_PASSWORD not in wrong.detail

        # A Redis that accepts the connection and never answers (frozen) fails in bound.
        server.freeze()
        try:
            started = anyio.current_time()
            frozen = await _redis_check(lark, server.url, REDIS_PASSWORD=_REDIS_PASSWORD)
            elapsed = anyio.current_time() - started
        finally:
            server.thaw()
        assert frozen.status == "fail"
        assert elapsed < 15

        closed = await _redis_check(lark, f"redis://127.0.0.1:{_free_port()}/0")
    assert closed.status == "fail"
    assert "check REDIS_URL, and that Redis runs" in closed.detail


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

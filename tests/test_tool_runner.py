"""The tool runner: validation, policy, write limits, caching, error sentences, metrics, audit."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from larkbot.agent.limits import RateLimiter
from larkbot.agent.tools import (
    Tool,
    ToolContext,
    ToolRegistry,
    ToolResult,
    ToolRunner,
    default_registry,
)
from larkbot.agent.tools.lark_tools import SearchBaseRecordsInput, lark_tools
from larkbot.core.retry import RetryPolicy
from larkbot.lark.client import LarkClient
from larkbot.ops.logging import log_context
from larkbot.testing.sample_data import SAMPLE_BASES
from larkbot.testing.workspace import BaseField, FieldType
from tests._factories import FakeClock, Sample, console_context, metric

pytestmark = pytest.mark.anyio

SEARCH_ROUTE = "bitable/v1/apps/{app_token}/tables/{table_id}/records/search"
FAST = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02, deadline=5.0)


@pytest.fixture
def lark_retry() -> RetryPolicy:
    """Failures in these tests are retried fast and only once."""
    return FAST


@dataclass
class Env(Sample):
    ctx: ToolContext
    clock: FakeClock = field(default_factory=FakeClock)

    def runner(self, **options: Any) -> ToolRunner:
        settings: dict[str, Any] = {
            "write_limiter": None,
            "writers": None,
            "cache_ttl_seconds": 300,
            "clock": self.clock,
        }
        settings.update(options)
        registry = settings.pop("registry", default_registry())
        return ToolRunner(registry, **settings)


@pytest.fixture
def env(sample: Sample) -> Env:
    ctx = console_context(sample.client, message_id="om_runner_1", language="en")
    return Env(sample.ws, sample.lark, sample.client, ctx)


def executions(tool: str, status: str) -> float:
    return metric("tool_executions_total", tool_name=tool, status=status)


# ------------------------------------------------------------------------ arguments


async def test_invalid_arguments_become_one_sentence(env: Env) -> None:
    runner = env.runner()
    before = executions("search_base_records", "error")
    result = await runner.run(
        "search_base_records", {"record_id": "", "limit": 500, "colour": "red"}, env.ctx
    )
    assert not result.ok
    assert result.error == (
        "The arguments for search_base_records are not valid: limit: Input should be less "
        "than or equal to 100; record_id is not an accepted argument; colour is not an "
        "accepted argument."
    )
    assert result.text == result.error
    no_table = await runner.run("search_base_records", {"query": "x"}, env.ctx)
    assert no_table.error == (
        "The arguments for search_base_records are not valid: give table (a name or a Base "
        "link), or app_token and table_id."
    )
    assert executions("search_base_records", "error") == before + 2
    ja = await runner.run(
        "delete_base_record", {"table": "customers"}, replace(env.ctx, language="ja")
    )
    assert ja.error == "delete_base_record の引数に問題があります: record_id は必須です"
    exactly_one = await runner.run("send_message", {"text": "hi"}, env.ctx)
    assert exactly_one.error == (
        "The arguments for send_message are not valid: give exactly one of chat_id and "
        "user_open_id."
    )
    assert env.lark.api_calls == []


async def test_arguments_may_be_json_text_or_a_model(env: Env) -> None:
    runner = env.runner()
    as_text = await runner.run(
        "search_base_records", json.dumps({"table": "customers", "query": "acme"}), env.ctx
    )
    as_model = await runner.run(
        "search_base_records", SearchBaseRecordsInput(table="customer", query="Initech"), env.ctx
    )
    assert [r["fields"]["Name"] for r in as_text.data["records"]] == ["John Smith"]
    assert [r["fields"]["Name"] for r in as_model.data["records"]] == ["Michael Brown"]
    broken = await runner.run("search_base_records", "{table: customers", env.ctx)
    assert broken.error == "The arguments for search_base_records are not valid JSON."
    not_an_object = await runner.run("search_base_records", "[1, 2]", env.ctx)
    assert not not_an_object.ok


async def test_unknown_tool_names_the_available_ones(env: Env) -> None:
    before = executions("unknown", "error")
    result = await env.runner().run("drop_database", {}, env.ctx)
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("There is no tool called “drop_database”. Available tools: ")
    assert "search_base_records, create_base_record" in result.error
    assert executions("unknown", "error") == before + 1


# --------------------------------------------------------------------- policy, limits


async def test_writers_policy_denies_writes_but_not_reads(env: Env) -> None:
    runner = env.runner(writers=["ou_sato"])
    # Shared as it is with ask_larkbot's own runner over MCP.
    assert runner.writers == frozenset({"ou_sato"})
    before = executions("create_base_record", "denied")
    denied = await runner.run(
        "create_base_record", {"table": "customers", "fields": {"Name": "X"}}, env.ctx
    )
    assert denied.error == (
        "You are not allowed to make changes with create_base_record; ask an administrator "
        "to add you to the writers."
    )
    assert executions("create_base_record", "denied") == before + 1
    assert env.ws.writes == []
    read = await runner.run("search_base_records", {"table": "customers"}, env.ctx)
    assert read.ok
    allowed = await runner.run(
        "create_base_record",
        {"table": "customers", "fields": {"Name": "X"}},
        replace(env.ctx, user_open_id="ou_sato"),
    )
    assert allowed.ok and len(env.ws.writes) == 1


async def test_eleventh_write_in_a_minute_is_refused_with_the_wait(env: Env) -> None:
    limiter = RateLimiter(10, clock=env.clock)
    runner = env.runner(write_limiter=limiter)
    assert runner.write_limiter is limiter
    before = executions("send_message", "rate_limited")
    for index in range(10):
        result = await runner.run(
            "send_message", {"text": f"n{index}", "chat_id": "oc_sales"}, env.ctx
        )
        assert result.ok, result.error
    env.clock.now += 15
    refused = await runner.run("send_message", {"text": "n10", "chat_id": "oc_sales"}, env.ctx)
    assert refused.error == "You can make 10 changes per minute; try again in 45 seconds."
    assert executions("send_message", "rate_limited") == before + 1
    assert len([r for r in env.lark.replies if r.kind == "send"]) == 10
    zh = await runner.run(
        "send_message", {"text": "n10", "chat_id": "oc_sales"}, replace(env.ctx, language="zh")
    )
    assert zh.error == "每分钟最多可进行 10 次更改；请在 45 秒后重试。"
    # Another user has a budget of their own; reads are never limited.
    other = await runner.run(
        "send_message",
        {"text": "hi", "chat_id": "oc_sales"},
        replace(env.ctx, user_open_id="ou_emma"),
    )
    assert other.ok
    assert (await runner.run("search_base_records", {"table": "tasks"}, env.ctx)).ok
    env.clock.now += 46
    assert (await runner.run("send_message", {"text": "later", "chat_id": "oc_sales"}, env.ctx)).ok


# --------------------------------------------------------------------------- caching


async def test_identical_reads_are_served_from_the_cache_until_a_write(env: Env) -> None:
    runner = env.runner()
    arguments = {"table": "customers", "date_range": "this_month"}
    first = await runner.run("search_base_records", arguments, env.ctx)
    second = await runner.run("search_base_records", dict(arguments), env.ctx)
    assert first == second and first.ok
    assert env.calls(SEARCH_ROUTE) == 1
    # A caller changing its copy cannot poison the cache.
    second.data["records"].clear()
    assert (await runner.run("search_base_records", arguments, env.ctx)).data["records"]
    assert env.calls(SEARCH_ROUTE) == 1
    # Another user does not share the cached answer.
    await runner.run("search_base_records", arguments, replace(env.ctx, user_open_id="ou_sato"))
    assert env.calls(SEARCH_ROUTE) == 2
    created = await runner.run(
        "create_base_record",
        {"table": "customers", "fields": {"Name": "Fresh", "Last contact": "2030-01-01"}},
        env.ctx,
    )
    assert created.ok
    await runner.run("search_base_records", arguments, env.ctx)
    assert env.calls(SEARCH_ROUTE) == 3


async def test_cached_reads_expire_after_the_ttl(env: Env) -> None:
    runner = env.runner(cache_ttl_seconds=60)
    arguments = {"table": "tasks"}
    await runner.run("search_base_records", arguments, env.ctx)
    env.clock.now += 59
    await runner.run("search_base_records", arguments, env.ctx)
    assert env.calls(SEARCH_ROUTE) == 1
    env.clock.now += 2
    await runner.run("search_base_records", arguments, env.ctx)
    assert env.calls(SEARCH_ROUTE) == 2


async def test_failed_reads_are_not_cached(env: Env) -> None:
    runner = env.runner()
    env.ws.denied_routes.add(SEARCH_ROUTE)
    assert not (await runner.run("search_base_records", {"table": "tasks"}, env.ctx)).ok
    env.ws.denied_routes.clear()
    assert (await runner.run("search_base_records", {"table": "tasks"}, env.ctx)).ok
    assert env.calls(SEARCH_ROUTE) == 2


# ----------------------------------------------------------------------- Lark errors


async def test_lark_refusals_become_sentences(env: Env) -> None:
    runner = env.runner()
    before = executions("delete_base_record", "error")
    missing = await runner.run(
        "delete_base_record", {"table": "customers", "record_id": "recNope"}, env.ctx
    )
    assert missing.error == "That record was not found (it was deleted, or the ID is wrong)."
    assert executions("delete_base_record", "error") == before + 1
    env.ws.denied_routes.add(SEARCH_ROUTE)
    no_scope = await runner.run("search_base_records", {"table": "customers"}, env.ctx)
    assert no_scope.error == (
        "The app lacks the Lark permission this needs (bitable:app:readonly); an "
        "administrator can grant it in the developer console."
    )
    # The scope Lark names is the one reported, not every scope the tool may use.
    env.ws.denied_routes.add("contact/v3/users/{user_id}")
    no_contact = await runner.run("get_user_info", {"user_open_id": "ou_emma"}, env.ctx)
    assert no_contact.error is not None
    assert "(contact:user.base:readonly);" in no_contact.error
    env.ws.denied_routes.clear()
    wrong_chat = await runner.run("list_chat_members", {"chat_id": "oc_board"}, env.ctx)
    assert wrong_chat.error == "That chat was not found, or the bot is not a member of it."
    nobody = await runner.run("get_user_info", {"user_open_id": "ou_nobody"}, env.ctx)
    assert nobody.error == "That user was not found, or is outside the contacts the app may see."
    unknown_table = await runner.run("search_base_records", {"table": "invoices"}, env.ctx)
    assert unknown_table.error is not None and "No table called “invoices”" in unknown_table.error


async def test_config_pointing_at_a_missing_table_is_explained(env: Env) -> None:
    bases = {"customers": SAMPLE_BASES["customers"].model_copy(update={"table_id": "tblGone"})}
    result = await env.runner().run(
        "search_base_records", {"table": "customers"}, replace(env.ctx, bases=bases)
    )
    assert result.error == (
        "The table does not exist in Lark; check its app_token and table_id (in the link, or "
        "under bases in the configuration)."
    )


async def test_lark_rate_limit_and_outages_become_sentences(env: Env) -> None:
    runner = env.runner()
    env.lark.fail_next(2, status=429, route=SEARCH_ROUTE, reset_seconds=0.01)
    busy = await runner.run("search_base_records", {"table": "tasks"}, env.ctx)
    assert busy.error == "Lark is busy right now; please try again in a moment."
    env.lark.fail_next(2, status=503, route=SEARCH_ROUTE)
    down = await runner.run("search_base_records", {"table": "tasks", "query": "x"}, env.ctx)
    assert down.error == "Lark did not answer; please try again."
    async with LarkClient("http://127.0.0.1:9", "cli_x", "secret", retry=FAST) as nowhere:
        unreachable = await runner.run(
            "list_chat_members", {}, replace(env.ctx, client=nowhere, language="ja")
        )
    assert unreachable.error == "Lark から応答がありませんでした。もう一度お試しください。"


class _NoArguments(BaseModel):
    pass


class _Broken(Tool):
    name: ClassVar[str] = "broken"
    description: ClassVar[str] = "Always fails."
    input_model: ClassVar[type[BaseModel]] = _NoArguments

    async def run(self, ctx: ToolContext, args: BaseModel) -> ToolResult:
        raise RuntimeError("bug")


async def test_a_bug_in_a_tool_is_logged_and_answered_politely(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    runner = env.runner(registry=ToolRegistry([_Broken()]))
    # The responder sets the message's log context around the agent and its tools.
    with (
        caplog.at_level(logging.ERROR, logger="larkbot.agent"),
        log_context(env.ctx.message_id),
    ):
        result = await runner.run("broken", {}, env.ctx)
    assert result.error == "Something went wrong while running broken."
    record = next(r for r in caplog.records if r.name == "larkbot.agent")
    assert record.exc_info is not None and "om_runner_1" in record.getMessage()
    assert record.message_id == "om_runner_1"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- audit


async def test_writes_are_audited_with_secrets_redacted(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.ws.table("顧客一覧").fields.append(BaseField("API key", FieldType.TEXT, "fldApiKey001"))
    runner = env.runner(registry=ToolRegistry(lark_tools()))
    with caplog.at_level(logging.INFO, logger="larkbot.agent.audit"):
        result = await runner.run(
            "create_base_record",
            {"table": "customers", "fields": {"Name": "Vault Inc", "API key": "sk-live-123"}},
            env.ctx,
        )
        await runner.run("search_base_records", {"table": "customers"}, env.ctx)
    assert result.ok
    audits = [r for r in caplog.records if r.name == "larkbot.agent.audit"]
    assert len(audits) == 1  # reads are not audited
    record = audits[0]
    message = record.getMessage()
    assert record.levelno == logging.INFO
    assert "create_base_record" in message and "ou_console_user" in message
    assert "oc_console" in message and "om_runner_1" in message
    assert "Vault Inc" in message and "sk-live-123" not in message and '"***"' in message
    assert record.arguments == {  # type: ignore[attr-defined]
        "table": "customers",
        "fields": {"Name": "Vault Inc", "API key": "***"},
    }
    assert record.outcome == "success"  # type: ignore[attr-defined]
    assert record.message_id == "om_runner_1"  # type: ignore[attr-defined]
    # The stored record still has the real value: only the log is redacted.
    assert any(r.get("API key") == "sk-live-123" for r in env.ws.table("顧客一覧").records.values())


async def test_refused_writes_are_audited_too(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    runner = env.runner(writers=[])
    with caplog.at_level(logging.INFO, logger="larkbot.agent.audit"):
        await runner.run(
            "send_message", '{"text": "hi", "chat_id": "oc_sales", "password": "hunter2"}', env.ctx
        )
    record = next(r for r in caplog.records if r.name == "larkbot.agent.audit")
    assert record.outcome == "error"  # type: ignore[attr-defined]
    assert "hunter2" not in record.getMessage()
    assert record.arguments["password"] == "***"  # type: ignore[attr-defined]

    # A valid write refused by the writers policy is audited as denied.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="larkbot.agent.audit"):
        result = await runner.run("send_message", {"text": "hi", "chat_id": "oc_sales"}, env.ctx)
    assert not result.ok
    denied = next(r for r in caplog.records if r.name == "larkbot.agent.audit")
    assert denied.outcome == "denied"  # type: ignore[attr-defined]

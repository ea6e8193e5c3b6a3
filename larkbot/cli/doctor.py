"""``larkbot doctor``: check every outside dependency of the daemon, one row per check.

The checks run in the order an operator fixes things: the configuration loads, Lark takes
the app's credentials, the bot identity and the long-connection endpoint answer, the LLM
endpoint answers (when one is configured), the state directory opens (or, with the Redis
store, Redis answers and is set up not to lose or evict messages), the port binds. A
check whose prerequisite failed is skipped rather than failed again for the same reason.
Nothing a check prints contains a secret: details are built from our own sentences and
error codes, and scrubbed of every configured secret on top of that.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import httpx
import openai
from rich.console import Console
from rich.table import Table
from rich.text import Text

from larkbot import __version__
from larkbot.cli._errors import EX_CONFIG, EX_FAILURE
from larkbot.cli._redis import redis_store
from larkbot.config import ConfigError, Settings, load_settings
from larkbot.core.retry import RetryPolicy
from larkbot.lark.client import LarkAPIError, LarkClient
from larkbot.ops.logging import redact
from larkbot.sources.longconn.connection import (
    LarkAuthError,
    TransientConnectError,
    discover_endpoint,
)
from larkbot.store import StoreError, open_store
from larkbot.store.redis import RedisConfigError, RedisServerInfo, RedisUnavailable

__all__ = ["CheckResult", "DoctorReport", "diagnose", "doctor_command", "run_checks"]

Status = Literal["ok", "fail", "skip"]

_MASK = "****"
# Lark codes worth a sentence of their own (in the developer console's wording).
_HINTS = {
    99991672: "the app lacks a permission this call needs: add the scope in the developer "
    "console and publish a new version",
    99991663: "the tenant token was refused",
    1000040350: "the app already has 50 long connections open: stop other instances",
}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One row of the report: what was checked, how it went, and why."""

    name: str
    status: Status
    detail: str


@dataclass(frozen=True, slots=True)
class DoctorReport:
    """Every check's result, and the exit status they add up to."""

    checks: tuple[CheckResult, ...]
    config_file: str | None = None

    @property
    def ok(self) -> bool:
        """Whether no check failed (skipped checks are fine)."""
        return all(check.status != "fail" for check in self.checks)

    @property
    def exit_code(self) -> int:
        """0 when all passed, 78 when the configuration itself does not load, 1 otherwise."""
        if self.ok:
            return 0
        if self.checks and self.checks[0].name == "config" and self.checks[0].status == "fail":
            return EX_CONFIG
        return EX_FAILURE

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON-ready document."""
        return {
            "ok": self.ok,
            "version": __version__,
            "config_file": self.config_file,
            "checks": [asdict(check) for check in self.checks],
        }


def diagnose(
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    timeout: float = 10.0,
) -> DoctorReport:
    """Load the configuration, then run every check in a fresh event loop.

    The configuration is read here, before the loop starts (it reads files).
    """
    env = os.environ if env is None else env
    try:
        settings = load_settings(config_path, env=env)
    except ConfigError as exc:
        failed = CheckResult("config", "fail", str(exc))
        rest = [CheckResult(name, "skip", "needs a configuration that loads") for name in _NAMES]
        return DoctorReport((failed, *rest))
    config_file = str(settings.config_file) if settings.config_file else None
    loaded = CheckResult("config", "ok", f"loaded from {config_file or 'defaults and environment'}")
    checks = anyio.run(lambda: run_checks(settings, env=env, check_seconds=timeout))
    return DoctorReport((loaded, *checks), config_file=config_file)


async def run_checks(
    settings: Settings, *, env: Mapping[str, str], check_seconds: float = 10.0
) -> list[CheckResult]:
    """Run the checks that follow a loaded configuration, each bounded by ``check_seconds``."""
    secrets = settings.secrets()
    results: list[CheckResult] = []

    async def bounded(name: str, check: Callable[[], Awaitable[CheckResult]]) -> CheckResult:
        with anyio.move_on_after(check_seconds):
            result = await check()
            return CheckResult(result.name, result.status, _scrub(result.detail, secrets))
        return CheckResult(name, "fail", f"no answer within {check_seconds:g} s")

    lark = _LarkChecks(settings, check_seconds)
    async with lark:
        credentials = await bounded("credentials", lark.credentials)
        results.append(credentials)
        for name, check in (("bot identity", lark.identity), ("long connection", lark.endpoint)):
            if credentials.status == "ok":
                results.append(await bounded(name, check))
            else:
                results.append(CheckResult(name, "skip", "needs working credentials"))
    results.append(await bounded("llm", lambda: _check_llm(settings, check_seconds)))
    results.append(await bounded("state directory", lambda: _check_state_dir(settings, env)))
    results.append(await bounded("redis", lambda: _check_redis(settings, check_seconds)))
    results.append(await bounded("port", lambda: _check_port(settings)))
    return results


def doctor_command(config_path: Path | None, *, as_json: bool, timeout: float) -> int:
    """Run the checks, print the report (a table, or JSON), and return the exit status."""
    report = diagnose(config_path, timeout=timeout)
    if as_json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        _print_table(report)
    return report.exit_code


_NAMES = (
    "credentials",
    "bot identity",
    "long connection",
    "llm",
    "state directory",
    "redis",
    "port",
)


class _LarkChecks:
    """The checks that talk to Lark, sharing one HTTP pool and one OpenAPI client."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self._settings = settings
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout))
        # Few, quick attempts: the doctor reports a failure, the daemon is the one that waits.
        self._client = LarkClient(
            settings.lark.base_url,
            settings.app.id,
            settings.app.secret,
            http=self._http,
            retry=RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=1.0, deadline=timeout),
        )

    async def __aenter__(self) -> _LarkChecks:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    async def credentials(self) -> CheckResult:
        try:
            self._settings.require_credentials()
        except ConfigError as exc:
            return CheckResult("credentials", "fail", str(exc))
        try:
            await self._client.tenant_token()
        except LarkAPIError as exc:
            return CheckResult("credentials", "fail", _lark_failure(exc))
        app, where = self._settings.app.id, self._settings.lark.base_url
        return CheckResult("credentials", "ok", f"{where} issued a tenant token to app {app}")

    async def identity(self) -> CheckResult:
        try:
            info = await self._client.bot_info()
        except LarkAPIError as exc:
            return CheckResult("bot identity", "fail", _lark_failure(exc))
        return CheckResult("bot identity", "ok", f"{info.app_name or 'the bot'} ({info.open_id})")

    async def endpoint(self) -> CheckResult:
        settings = self._settings
        try:
            url = await discover_endpoint(
                self._http,
                base_url=settings.lark.base_url,
                app_id=settings.app.id,
                app_secret=settings.app.secret.get_secret_value(),
            )
        except (LarkAuthError, TransientConnectError) as exc:
            return CheckResult("long connection", "fail", f"{exc}.".replace("..", "."))
        # The URL's query carries connection tickets: show where it points, nothing more.
        parts = urlsplit(url)
        return CheckResult(
            "long connection", "ok", f"endpoint discovery answered {parts.scheme}://{parts.netloc}"
        )


def _lark_failure(exc: LarkAPIError) -> str:
    hint = _HINTS.get(exc.code)
    return f"{exc} ({hint})" if hint else str(exc)


async def _check_llm(settings: Settings, request_seconds: float) -> CheckResult:
    llm = settings.llm
    if llm.api_key is None:
        return CheckResult(
            "llm", "skip", "not configured (no OPENAI_API_KEY): the offline brain answers"
        )
    where = llm.base_url or "https://api.openai.com/v1"
    # Building a client imports its HTTP stack and loads CA certificates, which read files:
    # not on the event loop.
    client = await anyio.to_thread.run_sync(
        lambda: openai.AsyncOpenAI(
            api_key=llm.api_key.get_secret_value() if llm.api_key else "",
            base_url=llm.base_url,
            timeout=request_seconds,
            max_retries=0,
        )
    )
    try:
        async with client:
            try:
                page = await client.models.list()
            except openai.NotFoundError:
                # Some OpenAI-compatible servers have no model list: ask for one token instead.
                await client.chat.completions.create(
                    model=llm.model,
                    messages=[{"role": "user", "content": "ping"}],
                    max_tokens=1,
                )
                return CheckResult("llm", "ok", f"{where} answered a completion with {llm.model}")
    except openai.AuthenticationError:
        return CheckResult(
            "llm", "fail", f"{where} refused the API key (HTTP 401): check OPENAI_API_KEY"
        )
    except openai.APIStatusError as exc:
        return CheckResult("llm", "fail", f"{where} answered HTTP {exc.status_code}")
    except openai.APIConnectionError as exc:
        return CheckResult("llm", "fail", f"cannot reach {where}: {exc}")
    offered = sorted(model.id for model in page.data)
    if offered and llm.model not in offered:
        listed = ", ".join(offered[:8]) + (", …" if len(offered) > 8 else "")
        return CheckResult(
            "llm",
            "fail",
            f"{where} does not offer model {llm.model} (it offers {listed}): set LLM_MODEL",
        )
    return CheckResult("llm", "ok", f"{where} answers and offers model {llm.model}")


async def _check_state_dir(settings: Settings, env: Mapping[str, str]) -> CheckResult:
    store = settings.store
    if store.kind == "memory":
        return CheckResult("state directory", "skip", "store = memory: nothing is kept on disk")
    if store.kind == "redis":
        return CheckResult("state directory", "skip", "store = redis: the state lives in Redis")
    path = store.resolved_state_dir(env)
    try:
        async with open_store("sqlite", path) as opened:
            waiting = await opened.depth()
    except StoreError as exc:
        return CheckResult("state directory", "fail", str(exc))
    return CheckResult(
        "state directory",
        "ok",
        f"{path} is writable and its database opens ({waiting} message(s) in the inbox)",
    )


async def _check_redis(settings: Settings, check_seconds: float) -> CheckResult:
    """Redis answers in time, is recent enough, evicts nothing, persists, and agrees on P."""
    kind = settings.store.kind
    if kind != "redis":
        return CheckResult("redis", "skip", f"store = {kind}: Redis is not used")
    try:
        async with redis_store(settings, command_timeout=check_seconds) as store:
            try:
                seconds = await store.ping(bound=check_seconds)
            except RedisUnavailable as exc:
                return CheckResult("redis", "fail", _unreachable(str(exc)))
            info = await store.info()
            problems = _redis_problems(info)
            try:
                await store.verify_layout()
            except RedisConfigError as exc:
                problems.append(str(exc))
            where, keys = store.endpoint, store.keys
    except (RedisConfigError, RedisUnavailable) as exc:
        return CheckResult("redis", "fail", str(exc))
    if problems:
        return CheckResult("redis", "fail", "; ".join(problems))
    return CheckResult(
        "redis",
        "ok",
        f"{info.server} {info.version} at {where} answers in {seconds * 1000:.1f} ms; "
        f"maxmemory-policy noeviction, AOF on (appendfsync {info.appendfsync or 'unknown'}); "
        f"{keys.partitions} partitions under prefix {keys.prefix!r}",
    )


def _redis_problems(info: RedisServerInfo) -> list[str]:
    """What in Redis' setup puts acknowledged messages at risk, one sentence each."""
    problems = info.problems()
    if info.aof_enabled and info.appendfsync == "no":
        problems.append(
            "appendfsync is no: set appendfsync everysec, or a crash of the host can lose "
            "up to 30 s of acknowledged messages"
        )
    return problems


def _unreachable(reason: str) -> str:
    if "credentials" in reason:
        return reason
    return f"{reason}: check REDIS_URL, and that Redis runs and this host can reach it"


async def _check_port(settings: Settings) -> CheckResult:
    host, port = settings.server.host, settings.server.port
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except OSError as exc:
        return CheckResult("port", "fail", _bind_failure(exc, host, port))
    await listener.aclose()
    return CheckResult("port", "ok", f"{host}:{port} can be bound")


def _bind_failure(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use (a running larkbot?): "
            "stop it or set PORT to a free port"
        )
    if exc.errno == errno.EACCES:
        return f"port {port} on {host} needs privileges: set PORT to 1024 or above"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: it is not an address of this machine (set HOST)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return redact(text)


def _print_table(report: DoctorReport) -> None:
    out = Console(highlight=False)
    table = Table(title=f"larkbot {__version__} doctor", title_justify="left")
    table.add_column("Check", no_wrap=True)
    table.add_column("Result", no_wrap=True)
    table.add_column("Detail", overflow="fold")
    styles = {"ok": "[green]ok[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}
    for check in report.checks:
        # Details are plain text: "agent.profiles[0]" must not be read as rich markup.
        table.add_row(check.name, styles[check.status], Text(check.detail))
    out.print(table)
    failed = [check.name for check in report.checks if check.status == "fail"]
    if failed:
        out.print(f"[bold red]{len(failed)} check(s) failed:[/] {', '.join(failed)}")
    else:
        out.print("[green]All checks passed.[/]")

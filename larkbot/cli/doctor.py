"""``larkbot doctor``: check every outside dependency of the daemon, one row per check.

The checks run in the order an operator fixes things: the configuration loads and names
the app's credentials, Lark takes them, the bot identity answers, the app holds the scopes
the bot and its tools need, the long-connection endpoint answers (in webhook mode it is
skipped and the webhook's keys are checked instead), the LLM endpoint answers (when one is
configured), the state directory is usable (or, with the Redis store, Redis answers and is
set up not to lose or evict messages), the port binds. A check whose prerequisite
failed is skipped rather than failed again for the same reason; a setup that works but is
weaker than it should be gets a warning, which does not fail the run.

Doctor only reads: it creates no folder, no database and no file (run as root on a
service's folder, it must not leave root-owned files behind), and its output is the table
or the JSON document alone. Nothing a check prints contains a secret: details are built
from our own sentences and error codes, and redacted on top of that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import anyio
import openai
from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from larkbot import __version__
from larkbot.cli._errors import EX_CONFIG, EX_FAILURE
from larkbot.cli._permissions import missing_scopes, scope_needs, tools_needing
from larkbot.cli._redis import redis_store
from larkbot.config import ConfigError, Settings, describe_settings, load_settings
from larkbot.config._sources import find_config_file
from larkbot.core.redact import redact
from larkbot.core.retry import RetryPolicy
from larkbot.lark.client import LarkAPIError, LarkClient
from larkbot.ops.http import explain_bind_error
from larkbot.sources.longconn.connection import (
    LarkAuthError,
    TransientConnectError,
    discover_endpoint,
)
from larkbot.store.redis import RedisConfigError, RedisServerInfo, RedisUnavailable
from larkbot.store.sqlite import DATABASE_NAME, SCHEMA_VERSION

__all__ = ["CheckResult", "DoctorReport", "diagnose", "doctor_command", "run_checks"]

Status = Literal["ok", "warn", "fail", "skip"]

# Lark codes worth a sentence of their own (in the developer console's wording).
_HINTS = {
    99991672: "the app lacks a permission this call needs: add the scope in the developer "
    "console and publish a new version",
    99991679: "the app lacks a permission this call needs: add the scope in the developer "
    "console and publish a new version",
    99991663: "the tenant token was refused",
    1000040350: "the app already has 50 long connections open: stop other instances",
}
_NO_SCOPE = frozenset({99991672, 99991679})


class _ScopeGrant(BaseModel):
    """One of the app's scopes as ``application/v6/scopes`` lists it."""

    model_config = ConfigDict(extra="ignore")

    scope_name: str
    grant_status: int

    @property
    def granted(self) -> bool:
        """Whether the tenant granted it (status 1; 2 is requested, not yet granted)."""
        return self.grant_status == 1


class _ScopeListing(BaseModel):
    """The answer of ``application/v6/scopes``."""

    model_config = ConfigDict(extra="ignore")

    # Read entry by entry (see :meth:`granted`): one entry Lark writes differently must
    # not hide the others.
    scopes: list[Any] | None = None

    def granted(self) -> set[str]:
        """The names of the scopes the tenant granted; an unreadable entry is left out."""
        names: set[str] = set()
        for entry in self.scopes or ():
            try:
                scope = _ScopeGrant.model_validate(entry)
            except ValidationError:
                continue
            if scope.granted:
                names.add(scope.scope_name)
        return names


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
        """Whether no check failed (skipped checks and warnings are fine)."""
        return all(check.status != "fail" for check in self.checks)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 78 when the configuration is at fault, 1 otherwise."""
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

    The configuration is read here, before the loop starts (it reads files). Log records
    of the checks (an OpenAPI retry, say) are held back: the report says what matters.
    """
    env = os.environ if env is None else env
    try:
        settings = load_settings(config_path, env=env)
    except ConfigError as exc:
        failed = CheckResult("config", "fail", str(exc))
        rest = [CheckResult(name, "skip", "needs a configuration that loads") for name in _NAMES]
        return DoctorReport((failed, *rest), config_file=_shown_path(config_path, env))
    shown = str(settings.config_file) if settings.config_file else None
    loaded = f"loaded from {shown or 'defaults and environment'}"
    try:
        # The webhook's token has a row of its own (see _check_webhook_keys).
        settings.require_app_credentials()
    except ConfigError as exc:
        config = CheckResult("config", "fail", str(exc))
        credentials = False
    else:
        credentials = True
        if settings.warnings:
            config = CheckResult("config", "warn", f"{loaded}; " + " ".join(settings.warnings))
        else:
            config = CheckResult("config", "ok", loaded)
    with _quiet_logging():
        checks = anyio.run(
            lambda: run_checks(settings, env=env, check_seconds=timeout, lark=credentials)
        )
    return DoctorReport((config, *checks), config_file=shown)


async def run_checks(
    settings: Settings,
    *,
    env: Mapping[str, str],
    check_seconds: float = 10.0,
    lark: bool = True,
) -> list[CheckResult]:
    """Run the checks that follow a loaded configuration, each bounded by ``check_seconds``.

    :param lark: ``False`` skips the checks that talk to Lark (the credentials are missing).
    """
    secrets = settings.secrets()
    results: list[CheckResult] = []

    async def bounded(name: str, check: Callable[[], Awaitable[CheckResult]]) -> CheckResult:
        with anyio.move_on_after(check_seconds):
            result = await check()
            return CheckResult(result.name, result.status, redact(result.detail, also=secrets))
        return CheckResult(name, "fail", f"no answer within {check_seconds:g} s")

    webhook = settings.events.mode == "webhook"
    checks = _LarkChecks(settings, check_seconds)
    async with checks:
        if lark:
            credentials = await bounded("credentials", checks.credentials)
        else:
            credentials = CheckResult("credentials", "skip", "needs the app's ID and secret")
        results.append(credentials)
        for name, check in (
            ("bot identity", checks.identity),
            ("permissions", checks.permissions),
            ("long connection", checks.endpoint),
        ):
            if name == "long connection" and webhook:
                where = settings.events.webhook_path
                results.append(CheckResult(name, "skip", f"webhook mode: Lark POSTs to {where}"))
            elif credentials.status == "ok":
                results.append(await bounded(name, check))
            else:
                results.append(CheckResult(name, "skip", "needs working credentials"))
    if webhook:
        results += _check_webhook_keys(settings)
    results.append(await bounded("llm", lambda: _check_llm(settings, check_seconds)))
    results.append(await bounded("state directory", lambda: _check_state_dir(settings, env)))
    results.append(await bounded("redis", lambda: _check_redis(settings, check_seconds)))
    results.append(await bounded("port", lambda: _check_port(settings)))
    return results


def doctor_command(config_path: Path | None, *, as_json: bool, timeout: float) -> int:
    """Run the checks, print the report (a table, or JSON), and return the exit status."""
    report = diagnose(config_path, timeout=timeout)
    if as_json:
        sys.stdout.write(json.dumps(report.as_json(), ensure_ascii=False, indent=2) + "\n")
    else:
        _print_report(report)
    return report.exit_code


_NAMES = (
    "credentials",
    "bot identity",
    "permissions",
    "long connection",
    "llm",
    "state directory",
    "redis",
    "port",
)


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """Hold back every log record while the checks run (no handler, no last resort)."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _shown_path(config_path: Path | None, env: Mapping[str, str]) -> str | None:
    """The config file that was to be read, even when it could not be."""
    if config_path is not None:
        return str(config_path.expanduser().absolute())
    named = env.get("LARKBOT_CONFIG", "").strip()
    if named:
        return str(Path(named).expanduser().absolute())
    with contextlib.suppress(ConfigError):
        found = find_config_file(None, env)
        return str(found) if found else None
    return None


class _LarkChecks:
    """The checks that talk to Lark, sharing one OpenAPI client and its connection pool."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self._settings = settings
        # Few, quick attempts: the doctor reports a failure, the daemon is the one that waits.
        self._client = LarkClient(
            settings.lark.base_url,
            settings.app.id,
            settings.app.secret,
            timeout=timeout,
            retry=RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=1.0, deadline=timeout),
        )

    async def __aenter__(self) -> _LarkChecks:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()

    async def credentials(self) -> CheckResult:
        try:
            # The webhook's token has a row of its own.
            self._settings.require_app_credentials()
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

    async def permissions(self) -> CheckResult:
        try:
            data = await self._client.request(
                "GET", "application/v6/scopes", route="application/v6/scopes"
            )
        except LarkAPIError as exc:
            return CheckResult(
                "permissions",
                "skip",
                f"Lark did not list the app's scopes ({exc}): compare the app's scopes with "
                "the README's table",
            )
        try:
            listing = _ScopeListing.model_validate(data)
        except ValidationError:
            return CheckResult(
                "permissions",
                "skip",
                "Lark's list of the app's scopes was not understood: compare the app's scopes "
                "with the README's table",
            )
        granted = listing.granted()
        needs = scope_needs()
        missing = missing_scopes(granted, needs)
        if not missing:
            return CheckResult("permissions", "ok", f"all {len(needs)} scopes larkbot uses")
        shown = "; ".join(f"{need.scope} ({need.uses.replace('`', '')})" for need in missing)
        publish = "add them in the developer console and publish a new version"
        if any(need.bot_needs for need in missing):
            return CheckResult("permissions", "fail", f"missing {shown}: {publish}")
        return CheckResult("permissions", "warn", f"missing {shown}, which stop working: {publish}")

    async def endpoint(self) -> CheckResult:
        try:
            url = await discover_endpoint(self._client)
        except (LarkAuthError, TransientConnectError) as exc:
            return CheckResult("long connection", "fail", f"{exc}.".replace("..", "."))
        # The URL's query carries connection tickets: show where it points, nothing more.
        parts = urlsplit(url)
        return CheckResult(
            "long connection", "ok", f"endpoint discovery answered {parts.scheme}://{parts.netloc}"
        )


def _check_webhook_keys(settings: Settings) -> list[CheckResult]:
    """The verification token (required) and the encrypt key (strongly advised)."""
    events = settings.events
    sources = {row.key: row.source for row in describe_settings(settings)}
    if events.verification_token is None:
        token = CheckResult(
            "verification token",
            "fail",
            "not set: webhook mode refuses to start without it. Set LARK_VERIFICATION_TOKEN or "
            "LARK_VERIFICATION_TOKEN_FILE to the Verification Token under Events & Callbacks → "
            "Encryption strategy in the developer console",
        )
    else:
        token = CheckResult(
            "verification token",
            "ok",
            f"set ({sources['events.verification_token']}); every request must carry it",
        )
    if events.encrypt_key is None:
        key = CheckResult(
            "encrypt key",
            "warn",
            "not set: Lark neither signs nor encrypts requests, so they are accepted on the "
            "verification token alone. Set an Encrypt Key under Events & Callbacks → Encryption "
            "strategy and give it as LARK_ENCRYPT_KEY or LARK_ENCRYPT_KEY_FILE",
        )
    else:
        key = CheckResult(
            "encrypt key",
            "ok",
            f"set ({sources['events.encrypt_key']}); requests must be signed and encrypted with it",
        )
    return [token, key]


def _lark_failure(exc: LarkAPIError) -> str:
    hint = _HINTS.get(exc.code)
    tools = tools_needing(str(exc)) if exc.code in _NO_SCOPE else []
    if tools:
        hint = f"{hint}; without it {', '.join(tools)} cannot work"
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
    # Only stat, access and a read-only open: files, never on the event loop.
    return await anyio.to_thread.run_sync(_inspect_state_dir, path)


def _inspect_state_dir(path: Path) -> CheckResult:
    """Say whether the daemon could use ``path``, without creating or changing anything."""
    fix = "set LARKBOT_STATE_DIR to a writable directory"
    if not path.exists():
        ancestor = next(parent for parent in path.parents if parent.exists())
        if not ancestor.is_dir():
            return _state("fail", f"{path} is not writable ({ancestor} is a file): {fix}")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            return _state(
                "fail", f"{path} does not exist and {ancestor} is not writable by this user: {fix}"
            )
        return _state("ok", f"{path} does not exist yet; larkbot creates it at the first start")
    if not path.is_dir():
        return _state("fail", f"{path} is not writable (it is a file): {fix}")
    if not os.access(path, os.W_OK | os.X_OK):
        return _state("fail", f"{path} is not writable by this user: {fix}")
    database = path / DATABASE_NAME
    if not database.exists():
        return _state("ok", f"{path} is writable; the database is created at the first start")
    try:
        version, waiting = _read_database(database)
    except sqlite3.Error as exc:
        return _state(
            "fail",
            f"{database} cannot be read ({exc}): move it aside or set LARKBOT_STATE_DIR to "
            "another directory",
        )
    if version > SCHEMA_VERSION:
        return _state(
            "fail",
            f"{database} has schema version {version} from a newer larkbot (this one knows "
            f"{SCHEMA_VERSION}): upgrade larkbot or set LARKBOT_STATE_DIR to another directory",
        )
    if version < SCHEMA_VERSION:
        upgrade = f"; it migrates to version {SCHEMA_VERSION} at the next start"
    else:
        upgrade = ""
    return _state(
        "ok",
        f"{path} is writable; database schema version {version}{upgrade} "
        f"({waiting} message(s) waiting in the inbox)",
    )


def _state(status: Status, detail: str) -> CheckResult:
    return CheckResult("state directory", status, detail)


def _read_database(database: Path) -> tuple[int, int]:
    """Schema version and pending inbox items, read without writing a byte.

    A database in WAL mode that a daemon has open has its ``-wal`` and ``-shm`` files:
    a read-only connection reads through them. Without them (a clean stop checkpointed
    everything), ``immutable`` reads the file alone and creates no ``-shm`` beside it.
    """
    live = all(Path(f"{database}-{suffix}").exists() for suffix in ("wal", "shm"))
    mode = "mode=ro" if live else "mode=ro&immutable=1"
    uri = f"file:{quote(str(database))}?{mode}"
    connection = sqlite3.connect(uri, uri=True, timeout=2.0)
    try:
        ((version,),) = connection.execute("PRAGMA user_version").fetchall()
        if version == 0:
            return 0, 0
        ((waiting,),) = connection.execute(
            "SELECT count(*) FROM inbox WHERE status = 'pending'"
        ).fetchall()
    finally:
        connection.close()
    return int(version), int(waiting)


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
        return CheckResult("port", "fail", explain_bind_error(exc, host, port))
    await listener.aclose()
    if settings.events.mode == "webhook":
        path = settings.events.webhook_path
        return CheckResult(
            "port",
            "ok",
            f"{host}:{port} can be bound; Lark must reach POST {path} on it through your HTTPS "
            "proxy",
        )
    return CheckResult("port", "ok", f"{host}:{port} can be bound")


def _print_report(report: DoctorReport) -> None:
    """A table on a terminal; into a pipe, ``check<TAB>status<TAB>detail`` lines, unpadded."""
    out = Console(highlight=False)
    if not out.is_terminal:
        sys.stdout.writelines(
            f"{check.name}\t{check.status}\t{check.detail}\n" for check in report.checks
        )
        return
    table = Table(title=f"larkbot {__version__} doctor", title_justify="left")
    table.add_column("Check", no_wrap=True)
    table.add_column("Result", no_wrap=True)
    table.add_column("Detail", overflow="fold")
    styles = {
        "ok": "[green]ok[/]",
        "warn": "[yellow]warn[/]",
        "fail": "[bold red]FAIL[/]",
        "skip": "[dim]skip[/]",
    }
    for check in report.checks:
        # Details are plain text: "agent.profiles[0]" must not be read as rich markup.
        table.add_row(check.name, styles[check.status], Text(check.detail))
    out.print(table)
    failed = [check.name for check in report.checks if check.status == "fail"]
    warned = [check.name for check in report.checks if check.status == "warn"]
    if failed:
        out.print(f"[bold red]{len(failed)} check(s) failed:[/] {', '.join(failed)}")
    elif warned:
        out.print(f"[green]All checks passed[/], [yellow]with warnings:[/] {', '.join(warned)}")
    else:
        out.print("[green]All checks passed.[/]")

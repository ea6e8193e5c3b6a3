"""``larkbot run | console | standin | mcp | doctor | config show | state | version``."""

from __future__ import annotations

import gc
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import anyio
import typer

from larkbot import __version__
from larkbot.cli._errors import EX_CONFIG, fail, leaf_exceptions
from larkbot.config import ConfigError, Settings, load_settings
from larkbot.core.errors import LarkbotError

if TYPE_CHECKING:
    from larkbot.mcp import McpOptions

__all__ = ["app", "main"]

_HELP = """An AI assistant for Lark/Feishu chats, over the long connection (no public endpoint).

\b
Get started:
  larkbot console              chat with the bot here, on a built-in local Lark
  larkbot doctor               check credentials, permissions, state and port
  larkbot run                  connect to Lark and answer chats

Documentation: README.md, docs/configuration.md, docs/operations.md.
"""

app = typer.Typer(
    name="larkbot",
    help=_HELP,
    no_args_is_help=True,
    add_completion=False,
    # Plain help, as uv and gh print it: aligned columns, no boxes, no type placeholders,
    # and the same text in a terminal and in a pipe.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="PATH",
        help="TOML or JSON config file [default: $LARKBOT_CONFIG, ./config/larkbot.toml, "
        "/etc/larkbot/larkbot.toml].",
        show_default=False,
    ),
]
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON document, for scripts.", show_default=False)
]

_log = logging.getLogger("larkbot.cli")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"larkbot {__version__}")
        raise typer.Exit()


@app.callback()
def _larkbot(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
            show_default=False,
        ),
    ] = False,
) -> None:
    pass


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        fail(str(exc), EX_CONFIG)


@app.command(
    short_help="Connect to Lark and answer chats.",
    epilog="""\b
Environment (each also as a key of the config file; every key also as
LARKBOT_<SECTION>__<FIELD>, see docs/configuration.md):
  APP_ID, APP_SECRET          the Lark app's ID and secret (required)
  APP_SECRET_FILE             a file holding the secret (or systemd's
                              $CREDENTIALS_DIRECTORY/app_secret)
  LARK_DOMAIN                 feishu (default), lark, or the URL of another Lark
  HOST, PORT                  the health and metrics port [127.0.0.1:3000]
  LARKBOT_CONFIG              the config file, like --config
  LARKBOT_STATE_DIR           the state folder [$STATE_DIRECTORY,
                              ~/.local/state/larkbot]
  LOG_LEVEL, LOG_FORMAT       INFO; auto, json or rich
  LOG_LEVELS                  other libraries' levels: aiosqlite=DEBUG,aiohttp=INFO
  LOG_FILE                    also log to this file, rotated at LOG_FILE_MAX_BYTES,
                              keeping LOG_FILE_BACKUPS
  MAX_CONVERSATION_HISTORY    turns kept per conversation [50]
  CACHE_TTL_MINUTES           minutes a tool's answer is reused [5]
  OPENAI_API_KEY              an OpenAI-compatible LLM (OPENAI_API_KEY_FILE);
  OPENAI_BASE_URL, LLM_MODEL  without one, the offline brain answers
  SENTRY_DSN                  report errors to Sentry (SENTRY_DSN_FILE,
  SENTRY_ENVIRONMENT          SENTRY_ENVIRONMENT)
  LARK_EVENT_MODE             websocket (default: the long connection) or webhook
  LARK_VERIFICATION_TOKEN     webhook mode: the app's Verification Token
                              (LARK_VERIFICATION_TOKEN_FILE)
  LARK_ENCRYPT_KEY            webhook mode: the app's Encrypt Key
                              (LARK_ENCRYPT_KEY_FILE)
  LARKBOT_STORE               sqlite (default), redis or memory
  REDIS_URL                   Redis for several replicas; setting it selects redis
                              (REDIS_URL_FILE)
  REDIS_PASSWORD              when not in the URL (REDIS_PASSWORD_FILE)
  LARKBOT_MCP_TOKEN           larkbot mcp: the bearer token HTTP clients must send
                              (LARKBOT_MCP_TOKEN_FILE)

\b
Examples:
  APP_ID=cli_a1b2c3 APP_SECRET_FILE=./app_secret larkbot run
  larkbot run --config /etc/larkbot/larkbot.toml
""",
)
def run(config: ConfigOption = None) -> None:
    """Connect to Lark and answer chats until SIGTERM or Ctrl-C.

    Health, readiness and metrics are served on HOST:PORT (/healthz, /readyz,
    /metrics). A first SIGTERM or Ctrl-C lets answers in flight finish; a second one
    stops at once. Exit status: 0 stopped, 1 Lark unreachable for good, 78 a
    configuration error (nothing to retry).
    """
    settings = _settings(config)
    try:
        settings.require_credentials()
    except ConfigError as exc:
        fail(str(exc), EX_CONFIG)
    _setup_observability(settings)
    _announce_start(settings)
    _run_daemon_sync(settings)


@app.command(
    short_help="Chat with the bot here, on a built-in local Lark.",
    epilog="""\b
Examples:
  larkbot console
  echo help | larkbot console
  printf 'lang en\\nsearch the customers table for Acme\\n' | larkbot console
""",
)
def console(
    config: ConfigOption = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show larkbot's log lines too.", show_default=False),
    ] = False,
) -> None:
    """Chat with the bot in the terminal, on a built-in local Lark (no credentials).

    Each line you type is a message from a user in a one-to-one chat; the bot's replies
    print as they arrive. Ctrl-D or Ctrl-C quits. Works with piped input too:
    echo help | larkbot console
    """
    from larkbot.cli.console import run_console

    settings = _settings(config)
    # The chat is the output here: only errors interrupt it unless asked for more.
    _setup_observability(settings, level="DEBUG" if verbose else "ERROR")
    try:
        code = anyio.run(run_console, settings)
    except KeyboardInterrupt:
        code = 0
    except BaseException as exc:
        _exit_for(exc)
        raise
    raise typer.Exit(code)


@app.command(
    short_help="Serve a local Lark for trying `larkbot run` without credentials.",
    epilog="""\b
Examples:
  larkbot standin                  then, in another terminal, paste the
                                   export lines and run `larkbot run`
  larkbot standin --port 0 </dev/null >standin.env &
""",
)
def standin(
    port: Annotated[
        int,
        typer.Option(
            "--port", "-p", min=0, max=65535, metavar="PORT", help="Port to listen on; 0 picks one."
        ),
    ] = 3900,
    host: Annotated[
        str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on.")
    ] = "127.0.0.1",
) -> None:
    """Serve a local Lark, with sample data, for trying `larkbot run` without credentials.

    Prints the LARK_DOMAIN, APP_ID and APP_SECRET to give `larkbot run` (as export
    lines), then reads lines: each is a one-to-one message from a sample user to the
    connected bot, whose replies print as they arrive. Ctrl-C stops.
    """
    from larkbot.cli.standin import run_standin

    # uvicorn reports a port it cannot bind on its own logger, which Python would print
    # for want of any handler; the sentence below says it once.
    logging.getLogger("uvicorn").addHandler(logging.NullHandler())
    try:
        code = anyio.run(run_standin, host, port)
    except KeyboardInterrupt:
        code = 0
    except OSError:
        fail(f"cannot listen on {host}:{port}: choose another --port (0 picks one).", EX_CONFIG)
    raise typer.Exit(code)


@app.command(short_help="Check the setup, one row per check.")
def doctor(
    config: ConfigOption = None,
    as_json: JsonFlag = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, metavar="SECONDS", help="Time each check may take."),
    ] = 10.0,
) -> None:
    """Check the setup: config, credentials, permissions, connection, LLM, state, Redis, port.

    One row per check; in webhook mode the webhook's keys replace the long connection.
    Doctor only reads: it creates no file or folder. Exit status: 0 when nothing failed
    (warnings and skipped checks are fine), 1 when a check failed, 78 when the
    configuration does not load or lacks the app's credentials. Secrets are never printed.
    """
    from larkbot.cli.doctor import doctor_command

    raise typer.Exit(doctor_command(config, as_json=as_json, timeout=timeout))


@app.command()
def mcp(
    config: ConfigOption = None,
    mode: Annotated[
        Literal["stdio", "sse", "streamable"],
        typer.Option(
            "--mode",
            "-m",
            help="stdio (for Claude Desktop, Cursor...), sse (/sse) or streamable (/mcp).",
        ),
    ] = "stdio",
    host: Annotated[
        str | None,
        typer.Option(
            help="Address of the HTTP modes. Default: HOST, else 127.0.0.1.", show_default=False
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            "-p",
            min=0,
            max=65535,
            help="Port of the HTTP modes. Default: PORT, else 3000.",
            show_default=False,
        ),
    ] = None,
    tools: Annotated[
        str,
        typer.Option(
            "--tools",
            "-t",
            help="Tool names and presets, comma-separated (preset.default, preset.light, "
            "preset.base, preset.doc, preset.im). Default: preset.default.",
            show_default=False,
        ),
    ] = "",
    allow_writes: Annotated[
        bool, typer.Option("--allow-writes", help="Expose the tools that change data too.")
    ] = False,
    token_mode: Annotated[
        Literal["tenant", "user", "auto"],
        typer.Option(
            "--token-mode",
            help="tenant: act as the app; user: as the caller (their bearer token is their "
            "Lark user access token); auto: as the app unless a call sets use_user_token.",
        ),
    ] = "tenant",
    language: Annotated[
        Literal["ja", "en", "zh"] | None,
        typer.Option(
            "--language",
            "-l",
            help="Language of tool descriptions and errors. Default: agent.default_language.",
            show_default=False,
        ),
    ] = None,
    list_tools: Annotated[
        bool, typer.Option("--list-tools", help="Print the tools this selection exposes, and exit.")
    ] = False,
) -> None:
    """Serve larkbot's Lark tools to AI clients over MCP (Model Context Protocol).

    Same configuration as `larkbot run`. Read-only tools unless `--allow-writes`. The HTTP
    modes serve /healthz and /metrics on the same port and need LARKBOT_MCP_TOKEN unless
    they listen on loopback only. More in docs/mcp.md.
    """
    from larkbot.mcp import McpOptions

    settings = _settings(config)
    options = McpOptions(
        mode=mode,
        host=host if host is not None else settings.server.host,
        port=port if port is not None else settings.server.port,
        tools=tuple(item.strip() for item in tools.split(",") if item.strip()),
        allow_writes=allow_writes,
        token_mode=token_mode,
        language=language or settings.agent.default_language,
    )
    _run_mcp(settings, options, list_only=list_tools)


config_app = typer.Typer(
    help="Inspect the configuration.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(config_app, name="config")


@config_app.command("show", short_help="Show every setting, its value and its source.")
def config_show(config: ConfigOption = None, as_json: JsonFlag = False) -> None:
    """Show every setting: its value (secrets masked) and where it came from.

    Sources read default, file PATH, env NAME or secret file PATH. Into a pipe the
    table becomes tab-separated lines (key, value, source), one per setting.
    """
    from larkbot.cli.config_cmd import print_config

    print_config(_settings(config), as_json=as_json)


state_app = typer.Typer(
    help="Back up, restore and inspect the state: the SQLite database, or larkbot's keys in Redis.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(state_app, name="state")

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print a JSON document instead of plain lines.")
]


@state_app.command("backup")
def state_backup(
    file: Annotated[Path, typer.Argument(help="Where to write the backup (replaced if present).")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a consistent backup of the state to FILE, also while the daemon runs.

    SQLite: a copy of the database taken with SQLite's online backup API. Redis: this
    deployment's keys (its key prefix) as JSON lines. The file is readable by its owner only.
    """
    from larkbot.cli.state import backup_state

    backup_state(_settings(config), file, as_json=as_json)


@state_app.command("restore")
def state_restore(
    file: Annotated[Path, typer.Argument(help="A file written by `larkbot state backup`.")],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Drop what the store holds first (default: keep it, add the rest)."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Restore even while a daemon has the state open."),
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Load a backup from FILE into the configured store.

    Every message in the backup counts as seen afterwards (a re-delivery is a duplicate);
    messages still pending in it are answered by the next daemon to start. Stop the daemon
    first: the restore refuses while one has the state open, unless --force.
    Exits 78 when the file or the configuration is wrong.
    """
    from larkbot.cli.state import restore_state

    restore_state(_settings(config), file, replace=replace, force=force, as_json=as_json)


@state_app.command("inspect")
def state_inspect(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Count what the state holds: seen message ids, pending (per partition on Redis),
    done, failed, conversations, and the processes that have it open.
    """
    from larkbot.cli.state import inspect_state

    inspect_state(_settings(config), as_json=as_json)


@app.command()
def version() -> None:
    """Print larkbot's version."""
    typer.echo(f"larkbot {__version__}")


def main() -> None:
    """Entry point of the ``larkbot`` console script."""
    app()


def _setup_observability(settings: Settings, *, level: str | None = None) -> None:
    from larkbot.ops.logging import setup_logging
    from larkbot.ops.sentry import init_sentry

    log = settings.log
    try:
        setup_logging(
            level=level or log.level,
            fmt=log.format,
            secrets=settings.secrets(),
            levels=log.levels,
            file=log.file,
            file_max_bytes=log.file_max_bytes,
            file_backups=log.file_backups,
        )
    except ValueError as exc:
        fail(f"{exc}.", EX_CONFIG)
    dsn = settings.sentry.dsn
    init_sentry(
        dsn=dsn.get_secret_value() if dsn is not None else None,
        environment=settings.sentry.environment,
        release=__version__,
        secrets=settings.secrets(),
        traces_sample_rate=settings.sentry.traces_sample_rate,
    )


def _announce_start(settings: Settings) -> None:
    """The start-up line, the configuration's warnings, and metrics at zero for every tool."""
    from larkbot.agent.tools.registry import default_registry
    from larkbot.ops.metrics import precreate_tool_series
    from larkbot.ops.startup import log_startup_banner

    log_startup_banner(settings, os.environ)
    for warning in settings.warnings:
        _log.warning("%s", warning)
    precreate_tool_series((tool.name, tool.write) for tool in default_registry())


def _run_daemon_sync(settings: Settings) -> None:
    try:
        anyio.run(_run_daemon, settings)
    except BaseException as exc:
        _exit_for(exc)
        raise


async def _run_daemon(settings: Settings) -> None:
    from larkbot.daemon import Daemon

    daemon = Daemon(settings, env=os.environ)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_relay_signals, daemon)
        tg.start_soon(_freeze_heap_when_ready, daemon)
        await daemon.run()
        tg.cancel_scope.cancel()


async def _freeze_heap_when_ready(daemon: object) -> None:
    """Once serving, keep what start-up built out of GC, and collect young objects less often.

    A full collection walks every live object: with the start-up heap in it, one took
    60-170 ms under load, and every frame arriving meanwhile waited that long for its
    ack. Frozen, those objects are never scanned again; what the daemon allocates while
    serving is collected as usual. What start-up left as garbage is collected first, or
    it would be frozen with the rest for good; that one collection happens as the
    daemon becomes ready (this task waits for it before the one that tells systemd).
    """
    await daemon.ready.wait()  # type: ignore[attr-defined]
    gc.collect()
    gc.freeze()
    # Python's default runs a young collection every 700 net container allocations: one
    # every 12-14 answered echoes under load, 15-25 µs a message in all, with single
    # pauses of 1-6 ms that every waiting ack sat through. Every 20,000 they nearly vanish
    # (1 young collection in 2,000 echoes). Reference counting frees nearly all of a
    # message's objects anyway: a larger young generation only keeps cyclic garbage a
    # little longer.
    gc.set_threshold(_YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])


# Allocations between two collections of the young generation once serving (default 700).
_YOUNG_COLLECTION_EVERY = 20_000


async def _relay_signals(daemon: object) -> None:
    """First SIGTERM/SIGINT: graceful stop. Second: stop at once (nothing is lost either way)."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        count = 0
        async for _ in signals:
            count += 1
            if count == 1:
                daemon.request_stop()  # type: ignore[attr-defined]
            else:
                daemon.stop_now()  # type: ignore[attr-defined]


def _run_mcp(settings: Settings, options: McpOptions, *, list_only: bool) -> None:
    """List the tools, or serve them until stdin ends (stdio) or SIGTERM/SIGINT."""
    from larkbot.agent.tools.registry import default_registry
    from larkbot.mcp import check_options, exposed_tools, serve_mcp

    # Plug-ins too: built once, before the event loop, since it reads package metadata.
    registry = default_registry(plugins=True)
    try:
        chosen = exposed_tools(settings, options, registry=registry)
        if list_only:
            for tool in chosen:
                kind = "write" if tool.write else "read"
                summary = tool.description.split(". ")[0].rstrip(".")
                typer.echo(f"{tool.name:<24} {kind:<5}  {summary}.")
            return
        check_options(settings, options)
        settings.require_credentials()
    except LarkbotError as exc:
        fail(f"{exc}.".replace("..", "."), exc.exit_code)
    _setup_observability(settings)

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, tg.cancel_scope)
            await serve_mcp(settings, options, registry=registry)
            tg.cancel_scope.cancel()

    try:
        anyio.run(serve)
    except BaseException as exc:
        _exit_for(exc)
        raise


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


def _exit_for(exc: BaseException) -> None:
    """Exit with one clear line for errors a user can cause; re-raise anything else."""
    from larkbot.lark.client import CredentialsError

    for leaf in leaf_exceptions(exc):
        if isinstance(leaf, KeyboardInterrupt):
            raise SystemExit(0) from None
        if isinstance(leaf, CredentialsError):
            fail(
                f"Lark refused the app credentials (code {leaf.code}): check APP_ID and "
                "APP_SECRET.",
                leaf.exit_code,
            )
        if isinstance(leaf, LarkbotError):
            fail(f"{leaf}.".replace("..", "."), leaf.exit_code)

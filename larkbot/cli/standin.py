"""``larkbot standin``: the local Lark, with the sample workspace, for a real ``larkbot run``.

It serves the long connection and the OpenAPI on a port, prints the ``export`` lines that
point ``larkbot run`` (or ``larkbot doctor``) at it, and then reads lines: each one is a
one-to-one message from the sample user 田中 健 to the connected bot, whose replies print
as they arrive. So the whole daemon can be tried end to end without Lark credentials.
"""

from __future__ import annotations

import shlex
import sys

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from rich.console import Console
from rich.text import Text

from larkbot.cli._permissions import scope_needs
from larkbot.cli._terminal import StdinLines, cancel_on_signals, print_block
from larkbot.cli.console import reply_body
from larkbot.testing import LarkStandIn, OutboundRecord, ReplyRecord, app_scopes_route
from larkbot.testing.sample_data import sample_workspace
from larkbot.testing.workspace import workspace_routes

__all__ = ["STANDIN_APP_ID", "STANDIN_APP_SECRET", "run_standin"]

STANDIN_APP_ID = "cli_standin0000001"
# Shaped like a real app secret (32 letters and digits); it opens nothing but this stand-in.
STANDIN_APP_SECRET = "StandInSecretForLocalTrials00001"

_CHAT_ID = "oc_console"
_USER_OPEN_ID = "ou_console_user"
_BOT = Text("bot › ", style="bold magenta")
_INDENT = "      "


async def run_standin(host: str, port: int) -> int:
    """Serve the local Lark until Ctrl-C or SIGTERM; return the exit status."""
    out = Console(highlight=False)
    note = Console(stderr=True, highlight=False)
    lines = StdinLines()
    routes = [
        *workspace_routes(sample_workspace()),
        app_scopes_route(need.scope for need in scope_needs()),
    ]
    lark = LarkStandIn(
        app_id=STANDIN_APP_ID,
        app_secret=STANDIN_APP_SECRET,
        host=host,
        port=port,
        extra_routes=routes,
    )
    async with lark, lark.watch_outbound() as outbound, anyio.create_task_group() as tg:
        tg.start_soon(cancel_on_signals, tg.cancel_scope, None)
        _print_exports(lark)
        note.print(
            f"# The local Lark, with sample data, listens on {lark.url}. In another terminal,\n"
            "# paste the lines above and start `larkbot run`. Then type a message here: it\n"
            "# comes from 田中 健 in a one-to-one chat. Ctrl-C stops.",
            markup=False,
        )
        tg.start_soon(_print_replies, outbound, out)
        tg.start_soon(_report_connections, lark, note)
        await _send_lines(lark, lines, note)
        if not lines.interactive:
            note.print("# End of input: still serving until Ctrl-C.", markup=False)
        await anyio.sleep_forever()
    return 0


def _print_exports(lark: LarkStandIn) -> None:
    variables = {
        "LARK_DOMAIN": lark.url,
        "APP_ID": lark.app_id,
        "APP_SECRET": lark.app_secret,
    }
    for name, value in variables.items():
        sys.stdout.write(f"export {name}={shlex.quote(value)}\n")
    sys.stdout.flush()


async def _send_lines(lark: LarkStandIn, lines: StdinLines, note: Console) -> None:
    while (line := await lines.readline()) is not None:
        text = line.strip()
        if not text:
            continue
        if lark.connections == 0:
            note.print(
                "# No bot is connected yet: start `larkbot run` with the variables above.",
                markup=False,
            )
            continue
        await lark.send_text(text, chat_id=_CHAT_ID, sender_open_id=_USER_OPEN_ID)


async def _print_replies(outbound: MemoryObjectReceiveStream[OutboundRecord], out: Console) -> None:
    async for record in outbound:
        if isinstance(record, ReplyRecord):
            print_block(out, reply_body(record), first=_BOT, rest=_INDENT)


async def _report_connections(lark: LarkStandIn, note: Console) -> None:
    """Say when a bot connects or goes, so the person typing knows someone listens."""
    shown = 0
    while True:
        # The stand-in signals no event when a connection comes or goes.
        while lark.connections == shown:  # noqa: ASYNC110
            await anyio.sleep(0.1)
        shown = lark.connections
        if shown:
            note.print(f"# A bot is connected ({shown} connection(s)).", markup=False)
        else:
            note.print("# The bot disconnected.", markup=False)

"""Run lark-oapi's own long-connection client against a Lark stand-in.

Used by ``test_standin_sdk_fidelity.py`` as a subprocess: ``lark_oapi.ws.Client`` binds
an event loop at import time and ``start()`` never returns, so it needs a process of its
own. Usage: ``python lark_sdk_client.py DOMAIN APP_ID APP_SECRET``. Every message the
handler receives is printed as one line ``RECEIVED <message_id> <content>``; the SDK's
own log lines go to stdout as well. It connects as the benchmark's SDK bot does
(``bench.sdk_bot.listen``), so the repository's root must be importable.
"""

from __future__ import annotations

import sys

import lark_oapi as lark
from lark_oapi.api.im.v1 import P2ImMessageReceiveV1

from bench.sdk_bot import listen


def _on_message(data: P2ImMessageReceiveV1) -> None:
    message = data.event.message
    print("RECEIVED", message.message_id, message.content, flush=True)


def main() -> None:
    """Connect and handle events until killed."""
    domain, app_id, app_secret = sys.argv[1:4]
    listen(domain, app_id, app_secret, _on_message, log_level=lark.LogLevel.INFO)


if __name__ == "__main__":
    main()

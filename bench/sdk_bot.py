"""The official SDK's own bot pattern, as lark-oapi's README shows it.

``lark_oapi.ws.Client`` with an ``EventDispatcherHandler`` whose handler replies "pong"
through a synchronous ``client.im.v1.message.reply``. Run as its own process by the
benchmark: ``python bench/sdk_bot.py DOMAIN APP_ID APP_SECRET [DELAY_SECONDS]``; with a
delay the handler sleeps that long before replying (the slow-agent scenario).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

import lark_oapi as lark
from lark_oapi.api.im.v1 import (
    P2ImMessageReceiveV1,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)

__all__ = ["listen", "main"]


def main() -> None:
    """Connect and answer every message until killed."""
    domain, app_id, app_secret = sys.argv[1:4]
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    client = lark.Client.builder().app_id(app_id).app_secret(app_secret).domain(domain).build()

    def on_message(data: P2ImMessageReceiveV1) -> None:
        if delay:
            time.sleep(delay)
        request = (
            ReplyMessageRequest.builder()
            .message_id(data.event.message.message_id)
            .request_body(
                ReplyMessageRequestBody.builder()
                .content(json.dumps({"text": "pong"}))
                .msg_type("text")
                .build()
            )
            .build()
        )
        response = client.im.v1.message.reply(request)
        if not response.success():
            print("reply failed", response.code, response.msg, flush=True)

    listen(domain, app_id, app_secret, on_message)


def listen(
    domain: str,
    app_id: str,
    app_secret: str,
    on_message: Callable[[P2ImMessageReceiveV1], None],
    log_level: lark.LogLevel = lark.LogLevel.WARNING,
) -> None:
    """Open lark-oapi's long connection and hand it every message; never returns."""
    handler = (
        lark.EventDispatcherHandler.builder("", "")
        .register_p2_im_message_receive_v1(on_message)
        .build()
    )
    ws_client = lark.ws.Client(
        app_id, app_secret, event_handler=handler, domain=domain, log_level=log_level
    )
    ws_client.start()


if __name__ == "__main__":
    main()

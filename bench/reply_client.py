"""One side of the reply-path scenario, run as its own process by the benchmark.

``python bench/reply_client.py {larkbot|sdk} DOMAIN APP_ID APP_SECRET COUNT CONCURRENCY``
posts ``COUNT`` text replies with ``CONCURRENCY`` in flight, through larkbot's
``LarkClient.reply`` or lark-oapi's ``client.im.v1.message.areply``, and prints one JSON
line: ``{"seconds": ..., "ok": ..., "failed": ...}``. One warm-up reply (which also
fetches the tenant token) goes before the clock starts.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["main"]

_TEXT = json.dumps({"text": "pong"})


def _larkbot_sender(
    domain: str, app_id: str, app_secret: str, concurrency: int
) -> tuple[Callable[[str], Awaitable[bool]], Callable[[], Awaitable[None]]]:
    from larkbot.lark.client import LarkClient, reply_uuid

    client = LarkClient(domain, app_id, app_secret, max_connections=concurrency)

    async def send(message_id: str) -> bool:
        await client.reply(
            message_id, msg_type="text", content={"text": "pong"}, uuid=reply_uuid(message_id)
        )
        return True

    return send, client.aclose


def _sdk_sender(
    domain: str, app_id: str, app_secret: str, concurrency: int
) -> tuple[Callable[[str], Awaitable[bool]], Callable[[], Awaitable[None]]]:
    import lark_oapi as lark
    from lark_oapi.api.im.v1 import ReplyMessageRequest, ReplyMessageRequestBody

    client = lark.Client.builder().app_id(app_id).app_secret(app_secret).domain(domain).build()

    async def send(message_id: str) -> bool:
        request = (
            ReplyMessageRequest.builder()
            .message_id(message_id)
            .request_body(ReplyMessageRequestBody.builder().content(_TEXT).msg_type("text").build())
            .build()
        )
        response = await client.im.v1.message.areply(request)
        return bool(response.success())

    async def close() -> None:
        return None

    return send, close


async def _run(impl: str, domain: str, app_id: str, secret: str, count: int, width: int) -> None:
    factory = _larkbot_sender if impl == "larkbot" else _sdk_sender
    send, close = factory(domain, app_id, secret, width)
    await send("om_bench_warmup")
    # One shared iterator: each of the `width` workers takes the next id when it is free.
    message_ids = iter([f"om_bench_reply_{impl}_{index}" for index in range(count)])
    ok = failed = 0

    async def worker() -> None:
        nonlocal ok, failed
        for message_id in message_ids:
            try:
                success = await send(message_id)
            except Exception:
                success = False
            if success:
                ok += 1
            else:
                failed += 1

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(width):
            tg.start_soon(worker)
    seconds = time.perf_counter() - started
    await close()
    print(json.dumps({"seconds": seconds, "ok": ok, "failed": failed}), flush=True)


def main() -> None:
    """Parse the command line and run one side."""
    impl, domain, app_id, secret, count, width = sys.argv[1:7]
    if impl not in {"larkbot", "sdk"}:
        raise SystemExit("first argument: larkbot or sdk")
    anyio.run(_run, impl, domain, app_id, secret, int(count), int(width))


if __name__ == "__main__":
    main()

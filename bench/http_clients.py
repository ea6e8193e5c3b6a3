"""httpx vs aiohttp as the Lark client's HTTP library: CPU per request, requests per second.

``python -m bench.http_clients [--count N] [--width W]`` starts a minimal HTTP/1.1 server
(raw asyncio, keep-alive, a fixed JSON answer) in a process of its own, then posts ``N``
JSON bodies through one pooled ``httpx.AsyncClient`` and through one ``aiohttp``
``ClientSession``, ``W`` in flight and then one at a time, parsing every answer. It prints
requests/s and this process's CPU time per request for each. The server's own CPU is
outside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import time
from collections.abc import Awaitable, Callable

__all__ = ["main"]

_ANSWER = json.dumps({"code": 0, "msg": "success", "data": {"message_id": "om_1"}}).encode()
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_ANSWER)).encode()
    + b"\r\n\r\n"
    + _ANSWER
)
_BODY = {"msg_type": "text", "content": json.dumps({"text": "pong"}), "uuid": "x" * 36}


class _Protocol(asyncio.Protocol):
    """Answers every request on a keep-alive connection with the same JSON body."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self._buffer[:head_end].lower()
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                length = int(head[marker + 15 :].split(b"\r\n", 1)[0])
            end = head_end + 4 + length
            if len(self._buffer) < end:
                return
            self._buffer = self._buffer[end:]
            self._transport.write(_RESPONSE)  # type: ignore[attr-defined]


def _serve(sock: socket.socket) -> None:
    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(_Protocol, sock=sock)
        await server.serve_forever()

    asyncio.run(run())


async def _drive(
    send: Callable[[], Awaitable[None]], count: int, width: int
) -> tuple[float, float]:
    """Run ``count`` sends ``width`` at a time; return (requests/s, CPU ms per request)."""
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await send()

    for _ in range(20):
        await send()  # warm the pool and the code paths
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(width)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, cpu / count * 1000


async def _httpx(url: str, count: int, width: int) -> tuple[float, float]:
    import httpx

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits) as http:

        async def send() -> None:
            response = await http.post(url, json=_BODY)
            response.json()

        return await _drive(send, count, width)


async def _aiohttp(url: str, count: int, width: int) -> tuple[float, float]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def send() -> None:
            async with http.post(url, json=_BODY) as response:
                await response.json()

        return await _drive(send, count, width)


def main() -> None:
    """Start the server process, measure both libraries, print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.http_clients", description=__doc__)
    parser.add_argument("--count", type=int, default=4000, help="requests per measurement")
    parser.add_argument("--width", type=int, default=50, help="requests in flight")
    args = parser.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/open-apis/im/v1/messages/om_1/reply"
    server = multiprocessing.get_context("fork").Process(target=_serve, args=(sock,), daemon=True)
    server.start()
    sock.close()
    try:
        print(f"{args.count} JSON POSTs to a raw asyncio server in another process")
        print(f"{'library':<10} {'in flight':>9} {'requests/s':>11} {'CPU ms/request':>15}")
        for width in (args.width, 1):
            count = args.count if width > 1 else max(args.count // 4, 100)
            for name, run in (("httpx", _httpx), ("aiohttp", _aiohttp)):
                rate, cpu_ms = asyncio.run(run(url, count, width))
                print(f"{name:<10} {width:>9} {rate:>11,.0f} {cpu_ms:>15.3f}", flush=True)
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()

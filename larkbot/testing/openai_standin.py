"""A local OpenAI-compatible chat completions server, for tests, the console and the benchmark.

``OpenAIStandIn`` serves ``POST /v1/chat/completions`` and ``GET /v1/models`` on 127.0.0.1
inside the caller's event loop, with the request and answer shapes of OpenAI's API, so
the real ``openai`` client talks to it over real HTTP. It records every request body and
answers with scripted turns, or, when the script is empty, with a small deterministic
responder that calls ``search_base_records`` for Base searches and quotes tool results.

Faults are switched on from the test: ``fail_next`` (OpenAI-shaped 500, 429 or 401
errors), ``hang_next`` (no answer at all, for client timeouts), ``delay`` (a slow
model that still serves many requests at once), ``hold``/``release`` (a model that
answers when the test says so) and ``stall_next_stream`` (a streamed answer that stops
half way until ``release``, for a crash in the middle of an answer).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from larkbot.testing._lifecycle import AsyncLifecycle
from larkbot.testing._serving import ServedApp

__all__ = ["OpenAIStandIn", "Responder", "default_responder"]

logger = logging.getLogger("larkbot.testing")

Responder = Callable[[dict[str, Any]], dict[str, Any]]

_QUOTE_CHARS = 600
_SHUTDOWN_SECONDS = 3.0

# What the default responder treats as "the customers table" and as "search for".
_TABLE_WORDS = re.compile(r"customers?|顧客|客户|客戶", re.IGNORECASE)
_SEARCH_WORDS = re.compile(
    r"\b(?:search|find|look\s*up|look\s+for|list|show|query)\b"
    r"|検索|探し|探す|調べ|一覧|搜索|查找|查询|查詢|找|查",
    re.IGNORECASE,
)
_QUERY_AFTER_FOR = re.compile(r"\bfor\s+[\"'“「]?([^\s\"'”」,.!?]+)", re.IGNORECASE)

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    # status: (type, code, message) as OpenAI words them.
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key in your account settings.",
    ),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
}


def default_responder(body: dict[str, Any]) -> dict[str, Any]:
    """Answer a chat completions request deterministically.

    The last message a tool result -> ``"Here is what I found:\\n"`` and a short quote of
    it; else tools offered and the last user text names the customers table with a
    search verb -> a ``search_base_records`` call (``query`` = the word after "for", if
    any); else ``"LLM: "`` and the last user text.
    """
    messages: list[dict[str, Any]] = body.get("messages") or []
    if messages and messages[-1].get("role") == "tool":
        quoted = _text_of(messages[-1].get("content"))
        if len(quoted) > _QUOTE_CHARS:
            quoted = quoted[:_QUOTE_CHARS] + "…"
        return {"content": "Here is what I found:\n" + quoted}
    user_text = next(
        (_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    offered = {(tool.get("function") or {}).get("name") for tool in body.get("tools") or []}
    if (
        "search_base_records" in offered
        and _TABLE_WORDS.search(user_text)
        and _SEARCH_WORDS.search(user_text)
    ):
        arguments: dict[str, Any] = {"table": "customers"}
        if found := _QUERY_AFTER_FOR.search(user_text):
            arguments["query"] = found.group(1)
        return {"tool_calls": [{"name": "search_base_records", "arguments": arguments}]}
    return {"content": "LLM: " + user_text}


def _text_of(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


@dataclass(eq=False, kw_only=True)
class OpenAIStandIn(AsyncLifecycle):
    """A local OpenAI-compatible server; use it as an async context manager.

    ``base_url`` is what an OpenAI client takes; ``requests`` holds every request body
    received, in order. ``delay`` (seconds each completion takes), ``default_responder``
    and the fault switches are plain attributes read when a request arrives.
    """

    api_key: str = field(default="sk-test", repr=False)
    model: str = "test-model"
    delay: float = 0.0
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.default_responder: Responder = default_responder
        self.held = 0  # completions waiting for ``release``
        self.stalled = 0  # streamed answers stopped half way, waiting for ``release``

        self._script: deque[dict[str, Any]] = deque()
        self._failures: deque[tuple[int, float | None]] = deque()
        self._hangs = 0
        self._stalls: deque[int] = deque()
        self._unstall = anyio.Event()
        self._release: anyio.Event | None = None
        self._ids = count(1)
        self._closing = anyio.Event()
        self._served = ServedApp("the OpenAI stand-in")

    # ----------------------------------------------------------------------------- lifecycle

    async def _start(self) -> None:
        routes = [
            Route("/v1/chat/completions", self._completions, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ]
        self._closing = anyio.Event()
        self.port = await self._served.start(Starlette(routes=routes), self.host, self.port)
        logger.info("OpenAI stand-in listening on %s", self.base_url)

    async def _stop(self) -> None:
        # Hanging and held requests end now, so uvicorn's graceful shutdown does not wait
        # on them.
        self._closing.set()
        self.release()
        await self._served.stop(grace=_SHUTDOWN_SECONDS)

    # --------------------------------------------------------------------------- controls

    @property
    def base_url(self) -> str:
        """The API root an OpenAI client takes (``http://127.0.0.1:<port>/v1``)."""
        if self.port == 0:
            raise RuntimeError("the stand-in has not started; use it as `async with`")
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *turns: dict[str, Any]) -> None:
        """Queue assistant turns, answered in order before the default responder.

        Each turn is ``{"content": "..."}`` and/or ``{"tool_calls": [{"name": ...,
        "arguments": {...}}]}``.
        """
        self._script.extend(turns)

    def fail_next(self, n: int = 1, *, status: int = 500, retry_after: float | None = None) -> None:
        """Answer the next ``n`` completions with an OpenAI-shaped error of ``status``.

        ``retry_after`` (seconds) is sent as the ``retry-after`` header when given.
        """
        self._failures.extend([(status, retry_after)] * n)

    def hang_next(self, n: int = 1) -> None:
        """Never answer the next ``n`` completions (until the stand-in stops)."""
        self._hangs += n

    def stall_next_stream(self, after_words: int) -> None:
        """Stop the next streamed answer after ``after_words`` words until ``release``.

        ``stalled`` counts the answers stopped so, so a test can wait for the moment.
        """
        self._stalls.append(after_words)
        if self._unstall.is_set():
            self._unstall = anyio.Event()

    def hold(self) -> None:
        """Keep every completion unanswered from now on until ``release``: a model thinking.

        ``held`` counts the completions waiting, so a test can wait until they have all
        arrived instead of guessing how long a ``delay`` must be.
        """
        if self._release is None or self._release.is_set():
            self._release = anyio.Event()

    def release(self) -> None:
        """Answer the held completions and the stalled streams, and hold no more."""
        if self._release is not None:
            self._release.set()
        self._unstall.set()

    # --------------------------------------------------------------------------- handlers

    async def _models(self, request: Request) -> Response:
        if not self._authorised(request):
            return _error(401)
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "larkbot"}
        return JSONResponse({"object": "list", "data": [model]})

    async def _completions(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "invalid_request_error", None, "The body is not valid JSON.")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", None, "The body must be a JSON object.")
        self.requests.append(body)
        if not self._authorised(request):
            return _error(401)
        if not body.get("messages"):
            return _error(400, "invalid_request_error", "messages", "'messages' is required.")
        if self._failures:
            status, retry_after = self._failures.popleft()
            return _error(status, retry_after=retry_after)
        if self._hangs:
            self._hangs -= 1
            await self._closing.wait()
            return _error(503, "server_error", None, "The server is shutting down.")
        release = self._release
        if release is not None and not release.is_set():
            self.held += 1
            try:
                await release.wait()
            finally:
                self.held -= 1
            if self._closing.is_set():
                return _error(503, "server_error", None, "The server is shutting down.")
        if self.delay > 0:
            await anyio.sleep(self.delay)
        turn = self._script.popleft() if self._script else self.default_responder(body)
        completion = self._completion(body, turn)
        if body.get("stream"):
            chunks = _chunks(completion)
            if self._stalls:
                chunks = self._stalling(chunks, self._stalls.popleft(), self._unstall)
            return StreamingResponse(chunks, media_type="text/event-stream")
        return JSONResponse(completion)

    async def _stalling(
        self, chunks: AsyncIterator[bytes], after: int, release: anyio.Event
    ) -> AsyncIterator[bytes]:
        """``chunks``, stopping after the first ``after`` until ``release`` is set."""
        sent = 0
        async for chunk in chunks:
            if sent == after:
                self.stalled += 1
                try:
                    await release.wait()
                finally:
                    self.stalled -= 1
                if self._closing.is_set():
                    return
            yield chunk
            sent += 1

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization", "") == f"Bearer {self.api_key}"

    def _completion(self, body: dict[str, Any], turn: dict[str, Any]) -> dict[str, Any]:
        number = next(self._ids)
        message: dict[str, Any] = {"role": "assistant", "content": turn.get("content")}
        calls = turn.get("tool_calls") or []
        if calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{number}_{index}",
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": call["arguments"]
                        if isinstance(call.get("arguments"), str)
                        else json.dumps(call.get("arguments") or {}, ensure_ascii=False),
                    },
                }
                for index, call in enumerate(calls, 1)
            ]
        prompt = len(json.dumps(body.get("messages"), ensure_ascii=False)) // 4
        answer = len(json.dumps(message, ensure_ascii=False)) // 4
        return {
            "id": f"chatcmpl-standin{number:06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or self.model),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": answer,
                "total_tokens": prompt + answer,
            },
        }


def _error(
    status: int,
    kind: str | None = None,
    param: str | None = None,
    message: str | None = None,
    *,
    retry_after: float | None = None,
) -> Response:
    default_kind, code, default_message = _ERRORS.get(
        status, ("server_error", None, f"The server answered {status}.")
    )
    body = {
        "error": {
            "message": message or default_message,
            "type": kind or default_kind,
            "param": param,
            "code": code,
        }
    }
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _chunks(completion: dict[str, Any]) -> AsyncIterator[bytes]:
    """The completion as ``chat.completion.chunk`` events and ``[DONE]``.

    Text comes a word at a time (each word with the space before it), as a model writes
    it; tool calls come whole in one chunk.
    """
    choice = completion["choices"][0]
    message = dict(choice["message"])
    head = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
    }
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "content": piece}
        for piece in re.findall(r"\s*\S+|\s+$", message.get("content") or "")
    ] or [{"role": "assistant", "content": message.get("content")}]
    if "tool_calls" in message:
        deltas.append(
            {
                "tool_calls": [
                    {"index": index, **call} for index, call in enumerate(message["tool_calls"])
                ]
            }
        )
    for number, delta in enumerate(deltas, 1):
        finish = choice["finish_reason"] if number == len(deltas) else None
        chunk = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
    yield b"data: [DONE]\n\n"

"""The LLM brain: an OpenAI-compatible chat model that answers and calls Lark tools.

Per message it sends the profile's instructions, the answer language, what the bot can
do, the conversation so far and the user's text, offering the profile's tools. Each
tool call the model makes runs through the :class:`~larkbot.agent.tools.runner.ToolRunner`
(policy, limits, cache, metrics and audit apply there), and its result goes back to the
model, for at most ``llm.max_tool_rounds`` completions. Any failure of the model's
service becomes a polite sentence in the user's language; the API key never leaves the
client.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from larkbot.agent.brain import TurnContext
from larkbot.agent.i18n import translate
from larkbot.agent.tools.base import ToolResult
from larkbot.core.agent import Reply
from larkbot.core.conversation import Conversation
from larkbot.core.language import Language
from larkbot.core.message import InboundMessage
from larkbot.core.streaming import ReplyStream, current_reply_stream
from larkbot.ops.metrics import LLM_REQUESTS

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion

    from larkbot.config.settings import Settings

__all__ = ["LLMBrain"]

logger = logging.getLogger("larkbot.agent")

# A tool result longer than this is cut before it goes to the model: a search over a big
# table must not fill the context window (or the bill) with rows nobody reads.
_TOOL_RESULT_CHARS = 12_000
# The most a chat's history may take of the context, in tokens: whatever the model asks
# for, list_chat_messages stops there (its answer then fits in _TOOL_RESULT_CHARS).
_HISTORY_TOKENS = 2_000

_LANGUAGE_NAMES: dict[Language, str] = {
    "ja": "Japanese (日本語)",
    "en": "English",
    "zh": "Simplified Chinese (简体中文)",
}


class _CompletionError(Exception):
    """A completion that got no usable answer; ``key`` names the sentence to reply."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class LLMBrain:
    """Answers with an OpenAI-compatible chat model, calling Lark tools through the runner.

    Without ``client`` the brain builds, on first use, an ``openai.AsyncOpenAI`` for
    ``settings.llm`` and owns it (:meth:`aclose` closes it); a given client stays the
    caller's.
    """

    name = "llm"

    def __init__(self, settings: Settings, *, client: openai.AsyncOpenAI | None = None) -> None:
        """Create the brain; a missing API key is a programming error (``llm.enabled``)."""
        if client is None and settings.llm.api_key is None:
            raise ValueError("the LLM brain needs llm.api_key")
        self._settings = settings
        self._owns_client = client is None
        self._client = client
        self._sdk: ModuleType | None = None
        self._client_lock = anyio.Lock()

    async def aclose(self) -> None:
        """Close the HTTP client if this brain created it."""
        if self._owns_client and self._client is not None:
            await self._client.close()

    async def warm_up(self) -> None:
        """Load the ``openai`` package and build the client now rather than on the first message.

        Loading takes a few hundred milliseconds of a worker thread that competes with
        the event loop for the interpreter; done before events flow, it cannot slow acks.
        """
        await self._openai()

    async def _openai(self) -> tuple[ModuleType, openai.AsyncOpenAI]:
        """The ``openai`` package and the client, both loaded on first use in a worker thread.

        Importing ``openai`` reads hundreds of files (about 0.3 s) and building a client
        loads CA certificates; the brain lives inside the running event loop, which must
        not wait on disk, and a daemon without a model never pays for either.
        """
        if self._sdk is None or self._client is None:
            async with self._client_lock:
                if self._sdk is None:
                    self._sdk = await anyio.to_thread.run_sync(_import_openai)
                if self._client is None:
                    self._client = await anyio.to_thread.run_sync(self._new_client, self._sdk)
        return self._sdk, self._client

    def _new_client(self, sdk: ModuleType) -> openai.AsyncOpenAI:
        llm = self._settings.llm
        assert llm.api_key is not None
        client = sdk.AsyncOpenAI(
            api_key=llm.api_key.get_secret_value(),
            base_url=llm.base_url,
            timeout=llm.timeout_seconds,
            max_retries=1,
            # The SDK's defaults, without its own wrapper: that one, when collected
            # unclosed, starts a closing task in whatever event loop runs at that moment.
            http_client=sdk.DefaultAsyncHttpxClient(),
        )
        return client

    async def think(
        self, message: InboundMessage, conversation: Conversation, turn: TurnContext
    ) -> Reply:
        """Answer ``message`` in ``turn.language``, letting the model call tools."""
        turn.intent = "llm"
        language = turn.language
        tools = self._tool_schemas(turn)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self._system_prompt(turn, tools, message)},
            *({"role": t.role, "content": t.text} for t in conversation.turns),
            {"role": "user", "content": message.text},
        ]
        temperature = turn.profile.temperature
        for _ in range(self._settings.llm.max_tool_rounds):
            try:
                completion = await self._complete(messages, tools, temperature, message)
            except _CompletionError as failure:
                return Reply(translate(failure.key, language))
            answer = completion.choices[0].message if completion.choices else None
            if answer is None:
                return Reply(translate("llm_error", language))
            calls = answer.tool_calls or []
            if not calls:
                text = (answer.content or "").strip()
                return Reply(text or translate("llm_error", language), markdown=bool(text))
            messages.append(
                {
                    "role": "assistant",
                    "content": answer.content,
                    "tool_calls": [call.model_dump(mode="json") for call in calls],
                }
            )
            stream = current_reply_stream.get()
            for call in calls:
                if stream is not None and getattr(call, "function", None) is not None:
                    await stream.status(f"⚙️ {call.function.name}…")
                content, result = await self._run_tool(call, turn)
                if result is not None and result.card is not None:
                    # A write waits for the user's approval on its card: that card is the
                    # answer, and the model has nothing to add until the user decides.
                    return Reply(result.text, card=result.card)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
        logger.info(
            "message %s: the model was still calling tools after %d rounds",
            message.message_id,
            self._settings.llm.max_tool_rounds,
        )
        return Reply(translate("llm_too_many_steps", language))

    async def _complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        temperature: float,
        message: InboundMessage,
    ) -> ChatCompletion:
        """One chat completion; a failure is counted, logged and raised as its sentence."""
        body: dict[str, Any] = {
            "model": self._settings.llm.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": self._settings.agent.max_tokens,
        }
        if tools:
            body["tools"] = tools
        sdk, client = await self._openai()
        stream = current_reply_stream.get()
        try:
            if stream is not None:
                return await self._streamed(sdk, client, body, stream)
            # The SDK's generic ``post`` (same retries, timeouts and errors) rather than
            # ``chat.completions.create``, whose type-driven walk over the tool schemas costs
            # about 5 ms of event loop per request; the body here is already plain JSON.
            completion = await client.post(
                "/chat/completions", body=body, cast_to=sdk.types.chat.ChatCompletion
            )
        except sdk.OpenAIError as exc:
            outcome, key = _classify(exc, sdk)
            LLM_REQUESTS.labels(outcome=outcome).inc()
            # The exception's text can quote the server's answer; the type and status
            # say enough, and never carry the key.
            logger.warning(
                "message %s: LLM request failed (%s: %s, status %s)",
                message.message_id,
                outcome,
                type(exc).__name__,
                getattr(exc, "status_code", "-"),
                extra={"outcome": outcome},
            )
            raise _CompletionError(key) from None
        LLM_REQUESTS.labels(outcome="ok").inc()
        return completion

    async def _streamed(
        self, sdk: ModuleType, client: openai.AsyncOpenAI, body: dict[str, Any], stream: ReplyStream
    ) -> ChatCompletion:
        """One completion read as it is generated, its text shown on ``stream`` as it grows.

        The chunks are put back together into the completion the non-streamed request
        returns, so the tool loop works the same either way.
        """
        chat = sdk.types.chat
        chunks = await client.post(
            "/chat/completions",
            body={**body, "stream": True},
            cast_to=chat.ChatCompletion,
            stream=True,
            stream_cls=sdk.AsyncStream[chat.ChatCompletionChunk],
        )
        text = ""
        calls: dict[int, dict[str, Any]] = {}
        finish = "stop"
        last: Any = None
        async for chunk in chunks:
            last = chunk
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            finish = choice.finish_reason or finish
            delta = choice.delta
            for part in delta.tool_calls or []:
                call = calls.setdefault(
                    part.index,
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = part.id or call["id"]
                if part.function is not None:
                    call["function"]["name"] += part.function.name or ""
                    call["function"]["arguments"] += part.function.arguments or ""
            if delta.content:
                text += delta.content
                if not calls:
                    await stream.text(text)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = [calls[index] for index in sorted(calls)]
        return chat.ChatCompletion.model_validate(
            {
                "id": getattr(last, "id", "") or "streamed",
                "object": "chat.completion",
                "created": getattr(last, "created", 0) or 0,
                "model": getattr(last, "model", "") or self._settings.llm.model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                ],
            }
        )

    async def _run_tool(self, call: Any, turn: TurnContext) -> tuple[str, ToolResult | None]:
        """Run one tool call: what the model reads (JSON data or a sentence), and the result."""
        assert turn.runner is not None and turn.tool_ctx is not None
        function = getattr(call, "function", None)
        if function is None:
            # Only function tools are offered; anything else gets a plain refusal.
            return translate("llm_error", turn.language), None
        if (refusal := turn.refusal(function.name)) is not None:
            # The schema list already hides such tools; a model naming one anyway is told no.
            result = ToolResult(ok=False, error=refusal, text=refusal)
        else:
            arguments = _bounded(function.name, function.arguments)
            result = await turn.runner.run(function.name, arguments, turn.tool_ctx)
        return _tool_content(result), result

    def _tool_schemas(self, turn: TurnContext) -> list[dict[str, Any]]:
        """The tools offered for this turn: those the profile allows."""
        if turn.runner is None or turn.tool_ctx is None:
            return []
        return turn.runner.registry.openai_schemas(turn.profile.tools)

    def _system_prompt(
        self, turn: TurnContext, tools: list[dict[str, Any]], message: InboundMessage
    ) -> str:
        language = _LANGUAGE_NAMES[turn.language]
        now = datetime.now(turn.timezone)
        parts = [
            turn.profile.instructions.strip()
            or "You are a helpful assistant inside Lark. Answer concisely and accurately.",
            f"Always answer in {language}, whatever language the tools return.",
            "Format answers with simple Markdown (bold, lists, links); keep them short.",
            f"The current date and time is {now:%Y-%m-%d %H:%M} ({turn.timezone}).",
        ]
        if tools:
            names = ", ".join(tool["function"]["name"] for tool in tools)
            parts.append(
                f"You can act in Lark with these tools: {names}. Use them instead of "
                "guessing, report only what they return, and if a tool answers with a "
                "sentence explaining a problem, pass that explanation on to the user."
            )
            parts.extend(_content_guidance({t["function"]["name"] for t in tools}, message))
            bases = turn.tool_ctx.bases if turn.tool_ctx is not None else {}
            if bases:
                lines = [
                    f"- {name}"
                    + (f" (also called: {', '.join(table.aliases)})" if table.aliases else "")
                    + (f": {table.description}" if table.description else "")
                    for name, table in bases.items()
                ]
                parts.append("Lark Base tables you can use:\n" + "\n".join(lines))
        else:
            parts.append(
                "No Lark tools are available right now: if the user asks you to look "
                "something up or change something in Lark, say that you cannot at the moment."
            )
        return "\n\n".join(parts)


def _import_openai() -> ModuleType:
    # Deferred on purpose, and run on a worker thread: see ``LLMBrain._openai``.
    import openai
    import openai.types.chat

    return openai


def _classify(exc: Exception, sdk: ModuleType) -> tuple[str, str]:
    """Map a client error to its metric outcome and the sentence key for the user."""
    # APITimeoutError is an APIConnectionError, so it is checked first.
    if isinstance(exc, sdk.APITimeoutError):
        return "timeout", "llm_timeout"
    if isinstance(exc, sdk.RateLimitError):
        return "rate_limited", "llm_rate_limited"
    if isinstance(exc, sdk.AuthenticationError | sdk.PermissionDeniedError):
        return "auth_error", "llm_auth_error"
    if isinstance(exc, sdk.InternalServerError) or (
        isinstance(exc, sdk.APIStatusError) and exc.status_code >= 500
    ):
        return "server_error", "llm_server_error"
    if isinstance(exc, sdk.APIConnectionError):
        return "error", "llm_unreachable"
    return "error", "llm_error"


def _content_guidance(names: set[str], message: InboundMessage) -> list[str]:
    """How to use the history and document tools in this conversation (those offered)."""
    guidance: list[str] = []
    if "list_chat_messages" in names:
        where = f"chat {message.chat_id}"
        if message.thread_id:
            where += f", in topic thread {message.thread_id}"
        guidance.append(
            f"This conversation is in {where}. To summarise it or catch up on it, read its "
            "history with list_chat_messages (with thread_id for the thread); the history "
            "is cut to fit, so say so when older messages were left out."
        )
    if "read_document" in names:
        guidance.append(
            "When the user pastes a Lark link or asks what a document says: read a docx "
            "link with read_document (give 'query' for a question about one topic) and "
            "answer with a short quote from it; resolve a wiki link with get_wiki_node "
            "first and make the call its 'next' names; a Base link goes to "
            "list_base_tables or list_base_fields."
        )
    return guidance


def _bounded(name: str, arguments: str) -> str:
    """The model's arguments, with a chat history's token budget held to ours."""
    if name != "list_chat_messages":
        return arguments
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return arguments  # the runner explains bad JSON
    if not isinstance(parsed, dict):
        return arguments
    asked = parsed.get("token_budget")
    if not isinstance(asked, int) or isinstance(asked, bool) or asked > _HISTORY_TOKENS:
        parsed["token_budget"] = _HISTORY_TOKENS
    return json.dumps(parsed, ensure_ascii=False)


def _tool_content(result: ToolResult) -> str:
    """What the model reads of a tool result: its data as JSON, or its error sentence."""
    if not result.ok:
        return result.error or result.text or "The tool failed."
    if result.data is None:
        content = result.text or "Done."
    else:
        content = json.dumps(result.data, ensure_ascii=False, default=str)
    if len(content) > _TOOL_RESULT_CHARS:
        content = content[:_TOOL_RESULT_CHARS] + " …(cut: ask for fewer results)"
    return content

"""Run tools on a user's behalf: validation, policy, limits, caching, metrics and audit.

Both brains call tools only through :class:`ToolRunner`, so every rule about what a user
may do, and every sentence explaining why not, lives here once.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache
from pydantic import BaseModel, ValidationError

from larkbot.agent.i18n import translate
from larkbot.agent.limits import UserLimiter
from larkbot.agent.tools._common import FIELD_NOT_FOUND_CODES
from larkbot.agent.tools.base import Tool, ToolContext, ToolError, ToolResult
from larkbot.agent.tools.registry import ToolRegistry
from larkbot.core.language import Language
from larkbot.core.redact import redact_fields
from larkbot.lark.client import LarkAPIError
from larkbot.ops.metrics import TOOL_EXECUTIONS

if TYPE_CHECKING:
    from larkbot.agent.confirm import WriteConfirmations

__all__ = ["ToolRunner"]

_log = logging.getLogger("larkbot.agent")
_audit = logging.getLogger("larkbot.agent.audit")

_SCOPE_LIST = re.compile(r"\[([^\]]+)\]")
_PROBLEMS_SHOWN = 3

# Lark error codes, grouped by what the user should be told. The client reports a call
# that got no answer from Lark as code -1.
_NO_CODE = -1
_NO_SCOPE = frozenset({99991672, 99991679})
_RATE_LIMITED = frozenset({99991400})
_RECORD_NOT_FOUND = frozenset({1254006, 1254043})
_TABLE_NOT_FOUND = frozenset({1254003, 1254004, 1254040, 1254041})
_CONVERSION = frozenset(range(1254060, 1254075))
_BASE_FORBIDDEN = frozenset({1254302, 91403})
_USER_NOT_FOUND = frozenset({41050, 40013})
_CHAT_NOT_FOUND = frozenset({232006, 232009, 232011, 230002})
_USER_UNREACHABLE = frozenset({230013})
# Refusals whose sentence needs nothing from the error: the codes, and the sentence's key.
_PLAIN_REFUSALS: tuple[tuple[frozenset[int], str], ...] = (
    (_RECORD_NOT_FOUND, "record_not_found"),
    (_TABLE_NOT_FOUND, "table_not_found"),
    (FIELD_NOT_FOUND_CODES, "field_not_found"),
    (_BASE_FORBIDDEN, "base_forbidden"),
    (_USER_NOT_FOUND, "user_not_found"),
    (_CHAT_NOT_FOUND, "chat_not_found"),
    (_USER_UNREACHABLE, "user_unreachable"),
)

_StatusResult = tuple[str, ToolResult]


class ToolRunner:
    """Run a named tool with arguments from a brain; never raises for user-caused problems.

    ``writers`` (``None`` = everyone) may use write tools; ``write_limiter`` (``None`` = no
    limit) caps each user's writes per minute. Successful read results are cached for
    ``cache_ttl_seconds`` per (tool, arguments, user, chat, language, time zone), except
    those of a tool that is not ``cacheable``; any write clears the cache, since it may
    change what every read would return. A failure carries its sentence in both
    ``error`` and ``text``, so a caller can always show ``text``.

    With ``confirmations``, a write tool does not run when called: the result carries a
    card asking the requester to approve it, and the write runs (limits counted then)
    only through :meth:`run_approved`.
    """

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        write_limiter: UserLimiter | None,
        writers: Iterable[str] | None,
        cache_ttl_seconds: float,
        cache_max_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        confirmations: WriteConfirmations | None = None,
    ) -> None:
        """Create a runner over ``registry``; ``clock`` drives cache expiry (tests move it)."""
        self._registry = registry
        self._confirmations = confirmations
        self._write_limiter = write_limiter
        self._writers = None if writers is None else frozenset(writers)
        self._cache: TTLCache[tuple[str, ...], ToolResult] | None = None
        if cache_ttl_seconds > 0 and cache_max_size > 0:
            self._cache = TTLCache(maxsize=cache_max_size, ttl=cache_ttl_seconds, timer=clock)
        # Bumped by every write, so a read that started before the write cannot put its
        # (possibly stale) result into the freshly cleared cache.
        self._generation = 0

    @property
    def registry(self) -> ToolRegistry:
        """The tools this runner can run."""
        return self._registry

    @property
    def write_limiter(self) -> UserLimiter | None:
        """What caps each user's writes per minute (``None``: no limit)."""
        return self._write_limiter

    @property
    def writers(self) -> frozenset[str] | None:
        """The open_ids that may use write tools (``None``: everyone)."""
        return self._writers

    @property
    def confirms_writes(self) -> bool:
        """Whether writes wait for their requester's approval."""
        return self._confirmations is not None

    async def run(
        self, name: str, arguments: dict[str, Any] | str | BaseModel, ctx: ToolContext
    ) -> ToolResult:
        """Run tool ``name``; problems come back as ``ToolResult(ok=False, error=...)``."""
        return await self._run(name, arguments, ctx, approved=False)

    async def run_approved(
        self, name: str, arguments: dict[str, Any], ctx: ToolContext
    ) -> ToolResult:
        """Run a write its requester approved: policy and limits apply, no new confirmation."""
        return await self._run(name, arguments, ctx, approved=True)

    async def _run(
        self,
        name: str,
        arguments: dict[str, Any] | str | BaseModel,
        ctx: ToolContext,
        *,
        approved: bool,
    ) -> ToolResult:
        tool = self._registry.get(name)
        if tool is None:
            # The label is fixed: tool names invented by a model must not grow the metric.
            TOOL_EXECUTIONS.labels(tool_name="unknown", status="error").inc()
            message = translate(
                "unknown_tool", ctx.language, name=name, names=", ".join(self._registry.names())
            )
            _log.info(
                "unknown tool %r requested (message %s)",
                name,
                ctx.message_id,
            )
            return _failure(message)
        parsed = _parse(tool, arguments, ctx.language)
        if isinstance(parsed, str):
            status, result = "error", _failure(parsed)
        elif tool.write and self._confirmations is not None and not approved:
            status, result = await self._ask(tool, parsed, ctx)
        elif tool.write:
            status, result = await self._write(tool, parsed, ctx)
        else:
            status, result = await self._read(tool, parsed, ctx)
        TOOL_EXECUTIONS.labels(tool_name=tool.name, status=status).inc()
        if tool.write:
            self._audit(tool, arguments if isinstance(parsed, str) else parsed, ctx, status)
        return result

    async def _read(self, tool: Tool[Any], args: BaseModel, ctx: ToolContext) -> _StatusResult:
        key = (
            tool.name,
            args.model_dump_json(),
            ctx.user_open_id,
            ctx.chat_id,
            ctx.language,
            str(ctx.timezone),
        )
        # A tool may opt out: a chat's history changes with every message, not only on writes.
        cache = self._cache if tool.cacheable else None
        if cache is not None:
            cached = cache.get(key)
            if cached is not None:
                return "success", cached.model_copy(deep=True)
        generation = self._generation
        status, result = await self._execute(tool, args, ctx)
        if cache is not None and result.ok and generation == self._generation:
            cache[key] = result.model_copy(deep=True)
        return status, result

    async def _ask(self, tool: Tool[Any], args: BaseModel, ctx: ToolContext) -> _StatusResult:
        """Put a write up for its requester's approval instead of running it."""
        assert self._confirmations is not None
        # Who may write is known now: a card nobody may approve would only mislead.
        if self._writers is not None and ctx.user_open_id not in self._writers:
            return "denied", _failure(translate("denied", ctx.language, tool=tool.name))
        try:
            return "awaiting_confirmation", await self._confirmations.request(tool, args, ctx)
        except ToolError as exc:
            return "error", _failure(str(exc))
        except LarkAPIError as exc:
            return "error", _failure(_explain(exc, tool, ctx.language))
        except (OSError, TimeoutError):
            return "error", _failure(translate("lark_unreachable", ctx.language))

    async def _write(self, tool: Tool[Any], args: BaseModel, ctx: ToolContext) -> _StatusResult:
        if self._writers is not None and ctx.user_open_id not in self._writers:
            return "denied", _failure(translate("denied", ctx.language, tool=tool.name))
        if self._write_limiter is not None:
            wait = await self._write_limiter.acquire(ctx.limit_key)
            if wait is not None:
                message = translate(
                    "write_limited",
                    ctx.language,
                    limit=self._write_limiter.per_minute,
                    seconds=max(1, math.ceil(wait)),
                )
                return "rate_limited", _failure(message)
        try:
            return await self._execute(tool, args, ctx)
        finally:
            # Even a failed write may have reached Lark (a timeout after the change), so
            # cached reads are dropped whatever the outcome.
            self._generation += 1
            if self._cache is not None:
                self._cache.clear()

    async def _execute(self, tool: Tool[Any], args: BaseModel, ctx: ToolContext) -> _StatusResult:
        extra = {"tool_name": tool.name}
        try:
            result = await tool.run(ctx, args)
        except ToolError as exc:
            return "error", _failure(str(exc))
        except LarkAPIError as exc:
            code = getattr(exc, "code", None)
            _log.warning(
                "tool %s: Lark answered code %s on %s (message %s)",
                tool.name,
                code,
                getattr(exc, "route", "?"),
                ctx.message_id,
                extra={**extra, "lark_code": code},
            )
            return "error", _failure(_explain(exc, tool, ctx.language))
        except (OSError, TimeoutError) as exc:
            _log.warning(
                "tool %s: Lark unreachable: %s (message %s)",
                tool.name,
                type(exc).__name__,
                ctx.message_id,
                extra=extra,
            )
            return "error", _failure(translate("lark_unreachable", ctx.language))
        except Exception:
            _log.exception(
                "tool %s failed unexpectedly (message %s)", tool.name, ctx.message_id, extra=extra
            )
            return "error", _failure(translate("internal_error", ctx.language, tool=tool.name))
        if not result.ok:
            return "error", result
        return "success", result

    def _audit(self, tool: Tool[Any], arguments: Any, ctx: ToolContext, status: str) -> None:
        if isinstance(arguments, BaseModel):
            # Unset optional arguments (None) say nothing about the change.
            shown: Any = arguments.model_dump(mode="json", exclude_none=True)
        elif isinstance(arguments, str):
            try:
                shown = json.loads(arguments)
            except json.JSONDecodeError:
                shown = "<not JSON>"
        else:
            shown = arguments
        redacted = redact_fields(shown)
        text = json.dumps(redacted, ensure_ascii=False, sort_keys=True, default=str)
        _audit.info(
            "write tool %s by %s in %s: %s -> %s (message %s)",
            tool.name,
            ctx.limit_key,
            ctx.chat_id,
            text,
            status,
            ctx.message_id,
            extra={
                "message_id": ctx.message_id,
                "user_open_id": ctx.user_open_id,
                "caller": ctx.limit_key,
                "chat_id": ctx.chat_id,
                "tool_name": tool.name,
                "arguments": redacted,
                "outcome": status,
            },
        )


def _failure(message: str) -> ToolResult:
    return ToolResult(ok=False, error=message, text=message)


def _parse(tool: Tool[Any], arguments: Any, language: Language) -> BaseModel | str:
    """Validate ``arguments`` against the tool's input model, or return the sentence why not."""
    if isinstance(arguments, tool.input_model):
        return arguments
    if isinstance(arguments, BaseModel):
        arguments = arguments.model_dump()
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments.strip() or "{}")
        except json.JSONDecodeError:
            return translate("bad_json", language, tool=tool.name)
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return translate("bad_json", language, tool=tool.name)
    try:
        return tool.input_model.model_validate(arguments)
    except ValidationError as exc:
        problems = [_problem(error, language) for error in exc.errors()[:_PROBLEMS_SHOWN]]
        return translate("invalid_args", language, tool=tool.name, problems="; ".join(problems))


def _problem(error: Any, language: Language) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()))
    kind = error.get("type", "")
    if kind == "missing":
        return translate("arg_missing", language, field=where)
    if kind == "extra_forbidden":
        return translate("arg_extra", language, field=where)
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _explain(exc: Exception, tool: Tool[Any], language: Language) -> str:
    """Turn a Lark refusal into a sentence the user can act on."""
    code = getattr(exc, "code", None)
    status = getattr(exc, "status", None)
    if code == _NO_CODE or (status is not None and status >= 500):
        # No Lark code means no answer (network failure, retries exhausted); a 5xx means
        # no usable one. Either way the user can only try again.
        return translate("lark_unreachable", language)
    if code in _NO_SCOPE:
        # Lark names the scopes it wants ("...required: [a, b]"); the tool's own list is
        # the fallback when the message does not.
        named = _SCOPE_LIST.search(str(getattr(exc, "msg", "")))
        scopes = named.group(1).strip() if named else ", ".join(tool.scopes)
        return translate("no_scope", language, scopes=scopes or "?")
    if code in _RATE_LIMITED or status == 429:
        return translate("lark_busy", language)
    if code in _CONVERSION:
        return translate("value_conversion", language, detail=getattr(exc, "msg", "") or code)
    for codes, key in _PLAIN_REFUSALS:
        if code in codes:
            return translate(key, language)
    return translate("lark_refused", language, code=code, msg=getattr(exc, "msg", "") or "")

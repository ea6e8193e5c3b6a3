"""Masking secrets in text meant for people: log lines, error sentences, reports.

A value is masked only where a secret is actually printed, never inside other words:

- a registered secret (the app secret, each tenant token as it is fetched), as a whole
  token: ``127`` is never masked inside ``127.0.0.1``, nor ``inbox`` inside ``inboxes``;
- credentials recognisable by their shape: Lark access tokens (``t-…``, ``u-…``), JSON web
  tokens (``eyJ…``) and OpenAI-style keys (``sk-…``);
- the credential after ``Bearer``/``Basic`` and in ``Authorization``-like headers;
- the value of a secret-named field: ``app_secret=…`` (URL query, form, keyword argument)
  and ``"access_token": "…"`` (JSON, a dict's repr).

Values shorter than :data:`MIN_SECRET_LENGTH` are never registered: masking them would
garble ordinary text (a secret ``x`` would turn ``inbox`` into ``inbo***``) and reveal the
secret to anyone reading the garbled output. The configuration refuses such secrets.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "add_secrets",
    "is_secret_key",
    "pin_secrets",
    "redact",
    "redact_fields",
]

MASK = "***"
"""What a masked value is replaced with."""

MIN_SECRET_LENGTH = 8
"""Shorter values are not treated as secrets (Lark app secrets have 32 characters)."""

_MAX_ROTATING = 256

# A registered secret counts only as a whole token: not preceded or followed by a letter,
# digit, ``_`` or ``-``, nor joined to one by a dot (``127`` inside ``127.0.0.1``). ASCII
# only, so that a secret written right after Japanese or Chinese text is still masked.
_BEFORE = r"(?<![A-Za-z0-9_\-])(?<![A-Za-z0-9]\.)"
_AFTER = r"(?![A-Za-z0-9_\-])(?!\.[A-Za-z0-9])"

_SHAPES = (
    # Lark tenant/user access tokens; the look-behind keeps ``task-…`` or ``get-…`` intact.
    r"(?<![A-Za-z0-9_\-])[tu]-[A-Za-z0-9][A-Za-z0-9_.\-]{15,}",
    # OpenAI-style API keys.
    r"(?<![A-Za-z0-9_\-])sk-[A-Za-z0-9][A-Za-z0-9_\-]{15,}",
    # JSON web tokens (Lark's newer tenant tokens have this form).
    r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
)
_SHAPE = re.compile("|".join(_SHAPES))

# ``Authorization: Bearer …``, ``bearer …``: the scheme stays, the credential goes. Eight
# characters at least, so that prose such as "the bearer of news" stays readable.
_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=\-]{8,}")
# Whether ``_SCHEME`` can match at all: its word, found without its look-arounds.
_SCHEME_WORD = re.compile(r"(?i)bearer|basic")
_HEADER = re.compile(
    r"(?i)(?<![A-Za-z0-9_\-])((?:proxy-)?authorization|x-api-key|api-key|cookie)(\s*:\s*)"
    r"(?!(?:bearer|basic)\s)([^\s,;]+)"
)
# Field names whose value is a secret: ``app_secret``, ``AppSecret``, ``access_token``,
# ``api_key``, ``password``, or just ``token``; not ``max_tokens`` nor ``app_token``
# (a Base's id, printed in every Base URL).
_FIELD_NAME = (
    r"(?:[A-Za-z0-9_\-]*(?:secret|password|passwd|api[_\-]?key|access[_\-]?token"
    r"|refresh[_\-]?token|access[_\-]?key)|token|ticket)"
)
_ASSIGNED = re.compile(
    rf"(?i)(?<![A-Za-z0-9_\-])({_FIELD_NAME})=(\"[^\"]*\"|'[^']*'|[^\s&\"',;<>)}}\]]+)"
)
_QUOTED = re.compile(rf"(?i)([\"']{_FIELD_NAME}[\"']\s*:\s*)(\"[^\"]*\"|'[^']*')")

# Keys of structured data (tool arguments, event fields) whose values are masked whole.
# ``app_token`` names a Base, not a credential: an audit line must say which Base changed.
_SECRET_KEY = re.compile(
    r"(?i)secret|passw|api[\s_\-]?key|credential|authorization|cookie|session|private"
    r"|(?<!app_)token(?!s)"
)

_lock = threading.Lock()
_pinned: set[str] = set()
_rotating: dict[str, None] = {}  # insertion-ordered: the oldest is dropped first
# The pattern of the registered values, and those values while there are few enough to
# look for one by one (else ``None``); replaced as one, as ``redact`` reads it unlocked.
_registered: tuple[re.Pattern[str], tuple[str, ...] | None] | None = None
_FEW = 8


def pin_secrets(*values: str) -> None:
    """Register secrets kept for as long as the process runs (those of the configuration).

    Empty values, values shorter than :data:`MIN_SECRET_LENGTH` and values the token
    shapes already catch are ignored.
    """
    _register(values, pinned=True)


def add_secrets(*values: str) -> None:
    """Register secrets that rotate, such as tenant tokens fetched every two hours.

    Only the latest 256 are kept, so a long-running process does not grow its pattern
    forever; values given to :func:`pin_secrets` are kept regardless.
    """
    _register(values, pinned=False)


def redact(text: str, *, also: Iterable[str] = ()) -> str:
    """Return ``text`` with every printed secret replaced by ``***``.

    :param also: further secret values to mask in this text only (for example the token
        of the call that failed), under the same rules as registered ones.
    """
    if not text:
        return text
    # Each pattern runs only when the text holds a character it cannot match without: the
    # look-behinds make a pass cost microseconds per line, and every log line is redacted.
    if ("b" in text or "B" in text) and _SCHEME_WORD.search(text):
        text = _SCHEME.sub(rf"\1\2{MASK}", text)
    if ":" in text:
        text = _HEADER.sub(rf"\1\2{MASK}", text)
    if "=" in text:
        text = _ASSIGNED.sub(_mask_assigned, text)
    if ":" in text and ('"' in text or "'" in text):
        text = _QUOTED.sub(_mask_quoted, text)
    if "-" in text or "eyJ" in text:
        text = _SHAPE.sub(MASK, text)
    registered = _registered
    if registered is not None:
        pattern, few = registered
        # A few registered values (the usual case) are looked for as plain substrings
        # first: the pattern's look-behinds, tried at every position, cost more (with the
        # two checks here, redacting a reply's log line went from 4.5 to 1.7 µs).
        if few is None or any(value in text for value in few):
            text = pattern.sub(MASK, text)
    extra = _usable(also)
    if extra:
        text = _whole_tokens(extra).sub(MASK, text)
    return text


def redact_fields(value: Any) -> Any:
    """Return a copy of ``value`` whose secret-named keys, at any depth, hold ``***``.

    For structured data shown to people or written to an audit log: tool arguments,
    request bodies. Strings elsewhere are left as they are (:func:`redact` is for text).
    """
    if isinstance(value, dict):
        return {
            key: MASK if is_secret_key(str(key)) else redact_fields(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_fields(item) for item in value]
    return value


def is_secret_key(name: str) -> bool:
    """Whether a field called ``name`` holds a secret (``app_secret``, ``Authorization``...)."""
    return _SECRET_KEY.search(name) is not None


def _mask_assigned(match: re.Match[str]) -> str:
    return f"{match.group(1)}={_masked_value(match.group(2))}"


def _mask_quoted(match: re.Match[str]) -> str:
    return f"{match.group(1)}{_masked_value(match.group(2))}"


def _masked_value(value: str) -> str:
    """Keep the quotes around a masked value, so the shape of the text survives."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return f"{value[0]}{MASK}{value[0]}" if len(value) > 2 else value
    return MASK


def _usable(values: Iterable[str]) -> list[str]:
    return [
        value
        for value in values
        if value and len(value.strip()) >= MIN_SECRET_LENGTH and not _SHAPE.fullmatch(value)
    ]


def _whole_tokens(values: Iterable[str]) -> re.Pattern[str]:
    # Longest first, so a secret that contains another is masked whole.
    literals = "|".join(re.escape(value) for value in sorted(set(values), key=len, reverse=True))
    return re.compile(f"{_BEFORE}(?:{literals}){_AFTER}")


def _register(values: Iterable[str], *, pinned: bool) -> None:
    global _registered
    fresh = _usable(values)
    if not fresh:
        return
    with _lock:
        changed = False
        for value in fresh:
            if value in _pinned:
                continue
            if pinned:
                _rotating.pop(value, None)
                _pinned.add(value)
                changed = True
            elif value not in _rotating:
                _rotating[value] = None
                changed = True
        while len(_rotating) > _MAX_ROTATING:
            del _rotating[next(iter(_rotating))]
        if changed:
            values = _pinned | _rotating.keys()
            _registered = (_whole_tokens(values), tuple(values) if len(values) <= _FEW else None)

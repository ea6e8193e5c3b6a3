"""Layer the sources into one validated :class:`Settings`, or one clear :class:`ConfigError`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from larkbot.config import _sources
from larkbot.config._schema import Key, dotted, is_secret, shape_of, unwrap
from larkbot.config.settings import ConfigError, Settings

__all__ = ["load_settings"]

_LOWER_BOUNDS = (annotated_types.Ge, annotated_types.Gt)
_UPPER_BOUNDS = (annotated_types.Le, annotated_types.Lt)


def load_settings(
    config_path: Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read the configuration file and the environment into validated :class:`Settings`.

    ``config_path`` is the file named by ``--config``; ``env`` defaults to ``os.environ``.
    Reads files synchronously: call it before the event loop starts. Raises
    :class:`ConfigError` with one sentence naming the key and the fix.
    """
    env = os.environ if env is None else env
    path = _sources.find_config_file(config_path, env)
    layers = _sources.Layers()
    if path is not None:
        origin = f"file {path}"
        for key, value in _sources.leaves(_sources.read_config_file(path)):
            layers.put(key, value, origin)
    from_env = _sources.env_entries(env)
    explicit = {key for key, _, _ in from_env}
    for key, secret, origin in _sources.secret_file_entries(env, explicit):
        layers.put(key, secret, origin)
    for key, value, origin in from_env:
        layers.put(key, value, origin)
    try:
        settings = Settings(**layers.data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, layers.origins, path)) from None
    settings._sources = dict(layers.origins)
    settings._config_file = path
    settings._warnings = tuple(_sources.secret_warnings(layers.origins))
    return settings


def _explain(exc: ValidationError, origins: Mapping[Key, str], file: Path | None) -> str:
    error = exc.errors(include_url=False)[0]
    loc: Key = tuple(error["loc"])
    key = dotted(loc)
    origin = _origin_of(loc, origins)
    field, rest = _field_at(loc)
    secret = field is not None and is_secret(field.annotation)
    expected = _expectation(error, field, rest)
    got = ""
    if error["type"] != "missing":
        value = error["input"]
        if secret or isinstance(value, SecretStr):
            got = " (value not shown)"
        elif value is None or isinstance(value, str | int | float | bool):
            got = f", got {_brief(value)}"
    where = f" ({origin})" if origin else ""
    return f"Invalid setting {key}{where}: {expected}{got}. {_fix(key, origin, file)}"


def _origin_of(loc: Key, origins: Mapping[Key, str]) -> str | None:
    for end in range(len(loc), 0, -1):
        if (found := origins.get(loc[:end])) is not None:
            return found
    # A missing key has no origin of its own: name whoever supplied its parent table.
    parent = loc[:-1]
    return next((o for k, o in origins.items() if parent and k[: len(parent)] == parent), None)


def _fix(key: str, origin: str | None, file: Path | None) -> str:
    if origin is None:
        return f"Set {key} in the configuration file." if file is None else f"Fix {key} in {file}."
    kind, _, where = origin.partition(" ")
    if kind == "env":
        return f"Fix {where} or {key} in {file}." if file is not None else f"Fix {where}."
    if kind == "secret":
        return f"Fix the secret in {where.removeprefix('file ')}."
    return f"Fix {key} in {where}."


def _field_at(loc: Key) -> tuple[FieldInfo | None, Key]:
    """Find the field an error location points into, and the part of it left over."""
    model: Any = Settings
    found: FieldInfo | None = None
    index = 0
    while index < len(loc) and model is not None:
        part = loc[index]
        if not isinstance(part, str) or part not in model.model_fields:
            break
        found = model.model_fields[part]
        kind, model, _ = shape_of(found.annotation)
        index += 1
        if kind in ("list", "dict") and model is not None and index < len(loc):
            index += 1
        elif kind in ("list", "dict"):
            break
    return found, loc[index:]


def _expectation(error: ErrorDetails, field: FieldInfo | None, rest: Key) -> str:
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if field is not None:
        if not rest:
            described = _describe(field.annotation, field.metadata)
        else:
            kind, _, item = shape_of(field.annotation)
            described = _describe(item, []) if kind in ("list", "dict") else None
        if described:
            return described
    message = error["msg"]
    return f"is not valid: {message[:1].lower()}{message[1:]}"


def _describe(annotation: Any, metadata: list[Any]) -> str | None:
    kind, model, bare = shape_of(annotation)
    if kind == "model":
        return "must be a table of settings"
    if kind == "dict":
        return "must be a table"
    if kind == "list":
        return "must be a list of tables" if model else f"must be a list of {_plural(bare)}"
    if get_origin(bare) is Literal:
        return "must be one of " + ", ".join(repr(choice) for choice in get_args(bare))
    if bare is bool:
        return "must be true or false"
    if bare is int:
        return "must be an integer" + _bounds(metadata)
    if bare is float:
        return "must be a number" + _bounds(metadata)
    if bare in (str, SecretStr):
        empty = any(getattr(m, "min_length", 0) for m in metadata)
        return "must be a non-empty string" if empty else "must be a string"
    if bare is Path:
        return "must be a path"
    return None


def _plural(bare: Any) -> str:
    return {str: "strings", int: "integers", float: "numbers"}.get(unwrap(bare), "values")


def _bounds(metadata: list[Any]) -> str:
    low = next((m for m in metadata if isinstance(m, _LOWER_BOUNDS)), None)
    high = next((m for m in metadata if isinstance(m, _UPPER_BOUNDS)), None)
    if isinstance(low, annotated_types.Ge) and isinstance(high, annotated_types.Le):
        return f" between {low.ge:g} and {high.le:g}"
    parts = []
    if isinstance(low, annotated_types.Ge):
        parts.append(f"of at least {low.ge:g}")
    elif isinstance(low, annotated_types.Gt):
        parts.append(f"greater than {low.gt:g}")
    if isinstance(high, annotated_types.Le):
        parts.append(f"at most {high.le:g}")
    elif isinstance(high, annotated_types.Lt):
        parts.append(f"less than {high.lt:g}")
    return (" " + " and ".join(parts)) if parts else ""


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

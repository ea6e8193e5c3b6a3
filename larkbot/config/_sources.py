"""Where settings come from: the configuration file, secret files and the environment.

Each source yields ``(path, value, origin)`` entries, ``path`` being a tuple of
snake_case keys (``("server", "port")``) and ``origin`` a phrase such as
``file /etc/larkbot/larkbot.toml`` or ``env PORT``. Everything here reads the
filesystem synchronously: it runs once, before any event loop starts.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel
from pydantic.alias_generators import to_camel, to_snake

from larkbot.config._schema import Key, dotted, shape_of
from larkbot.config.settings import ConfigError, Settings

__all__: list[str] = []

DEFAULT_LOCATIONS = (Path("config/larkbot.toml"), Path("/etc/larkbot/larkbot.toml"))

ENV_PREFIX = "LARKBOT_"

FLAT_ENV: dict[str, tuple[str, str]] = {
    "APP_ID": ("app", "id"),
    "APP_SECRET": ("app", "secret"),
    "PORT": ("server", "port"),
    "HOST": ("server", "host"),
    "LOG_LEVEL": ("log", "level"),
    "LOG_FORMAT": ("log", "format"),
    "MAX_CONVERSATION_HISTORY": ("agent", "max_conversation_history"),
    "CACHE_TTL_MINUTES": ("cache", "ttl_minutes"),
    "LARK_DOMAIN": ("lark", "domain"),
    "LARKBOT_STATE_DIR": ("store", "state_dir"),
    "LARKBOT_STORE": ("store", "backend"),
    "REDIS_URL": ("store", "redis_url"),
    "REDIS_PASSWORD": ("store", "redis_password"),
    "OPENAI_API_KEY": ("llm", "api_key"),
    "OPENAI_BASE_URL": ("llm", "base_url"),
    "LLM_MODEL": ("llm", "model"),
    "SENTRY_DSN": ("sentry", "dsn"),
    "SENTRY_ENVIRONMENT": ("sentry", "environment"),
    "LARK_EVENT_MODE": ("events", "mode"),
    "LARK_ENCRYPT_KEY": ("events", "encrypt_key"),
    "LARK_VERIFICATION_TOKEN": ("events", "verification_token"),
    "LARKBOT_MCP_TOKEN": ("mcp", "token"),
}

# Secret -> (variable naming a file that holds it, file name under systemd's
# $CREDENTIALS_DIRECTORY, as set by LoadCredential=).
SECRET_FILES: dict[tuple[str, str], tuple[str, str]] = {
    ("app", "secret"): ("APP_SECRET_FILE", "app_secret"),
    ("llm", "api_key"): ("OPENAI_API_KEY_FILE", "openai_api_key"),
    ("sentry", "dsn"): ("SENTRY_DSN_FILE", "sentry_dsn"),
    ("events", "encrypt_key"): ("LARK_ENCRYPT_KEY_FILE", "lark_encrypt_key"),
    ("store", "redis_url"): ("REDIS_URL_FILE", "redis_url"),
    ("store", "redis_password"): ("REDIS_PASSWORD_FILE", "redis_password"),
    ("events", "verification_token"): (
        "LARK_VERIFICATION_TOKEN_FILE",
        "lark_verification_token",
    ),
    ("mcp", "token"): ("LARKBOT_MCP_TOKEN_FILE", "mcp_token"),
}


@dataclass(slots=True)
class Layers:
    """Settings data merged so far, and the origin of every value in it."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[Key, str] = field(default_factory=dict)

    def put(self, path: tuple[str, ...], value: Any, origin: str) -> None:
        """Set ``path`` to ``value``, replacing whatever an earlier layer put there."""
        node = self.data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
        for key in [k for k in self.origins if k[: len(path)] == path]:
            del self.origins[key]
        self.origins[path] = origin


# --- the configuration file ------------------------------------------------------------


def find_config_file(config_path: Path | None, env: Mapping[str, str]) -> Path | None:
    """Return the configuration file to read, or ``None`` when there is none.

    An explicitly named file (``config_path``, then ``LARKBOT_CONFIG``) must exist; the
    default locations are used only when present.
    """
    named = [(config_path, "the path given to --config")] if config_path is not None else []
    if not named and (from_env := env.get("LARKBOT_CONFIG", "").strip()):
        named = [(Path(from_env), "LARKBOT_CONFIG")]
    for path, how in named:
        path = path.expanduser().absolute()
        if path.is_dir():
            raise ConfigError(f"Configuration file {path} is a directory: fix {how}.")
        if not path.is_file():
            raise ConfigError(f"Configuration file {path} does not exist: fix {how}.")
        return path
    return next((path.absolute() for path in DEFAULT_LOCATIONS if path.is_file()), None)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse ``path`` (JSON when it ends in ``.json``, TOML otherwise) into snake_case keys."""
    is_json = path.suffix.lower() == ".json"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"Cannot read configuration file {path} ({reason}): fix its path or permissions."
        ) from None
    try:
        parsed: Any = (
            json.loads(raw.decode("utf-8-sig")) if is_json else tomllib.loads(raw.decode("utf-8"))
        )
    except UnicodeDecodeError:
        raise ConfigError(f"Cannot parse {path}: it is not UTF-8 text; save it as UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"Cannot parse {path}: {exc.msg} (at line {exc.lineno}, column {exc.colno}); "
            "fix the JSON syntax there."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        raise ConfigError(
            f"Cannot parse {path}: {message[:1].lower()}{message[1:]}; fix the TOML syntax there."
        ) from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"Cannot use {path}: its top level must be an object of sections.")
    return normalise_keys(parsed, Settings, where=f"in {path}")


def leaves(
    data: Mapping[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Yield ``(path, value)`` for every value of parsed file data that is not a table.

    An empty section sets nothing, so its keys keep their defaults; an empty table
    deeper down (``[bases.sales]``) is a value of its own, to be validated.
    """
    for key, value in data.items():
        if isinstance(value, dict) and (value or not path):
            yield from leaves(value, (*path, key))
        else:
            yield (*path, key), value


# --- keys ----------------------------------------------------------------------------------


def normalise_keys(
    data: Mapping[str, Any], model: type[BaseModel], *, where: str, shown: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Turn camelCase (or kebab-case) keys into snake_case, checking each against ``model``.

    Keys of user-named maps (the names under ``bases``) are kept as written. An unknown
    key raises :class:`ConfigError` naming the closest valid one. ``where`` ends the
    error sentence (``in /path/to/file``); ``shown`` is the parent path as the user spelt it.
    """
    out: dict[str, Any] = {}
    spelt: dict[str, str] = {}
    for key, value in data.items():
        name = to_snake(key.strip()).replace("-", "_")
        name = _former_names(model).get(name, name)
        if name not in model.model_fields:
            raise ConfigError(_unknown_key(key, model, where, shown))
        if name in out:
            raise ConfigError(
                f"Setting {'.'.join((*shown, key))} is given twice {where} "
                f"(also as {spelt[name]}): keep one."
            )
        spelt[name] = key
        annotation = model.model_fields[name].annotation
        out[name] = _normalise_value(value, annotation, where, (*shown, key))
    return out


def _former_names(model: type[BaseModel]) -> dict[str, str]:
    """Earlier names of ``model``'s fields (``AliasChoices`` beyond the field's own name)."""
    names: dict[str, str] = {}
    for field_name, info in model.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str) and choice != field_name:
                    names[choice] = field_name
    return names


def _normalise_value(value: Any, annotation: Any, where: str, shown: tuple[str, ...]) -> Any:
    kind, model, _ = shape_of(annotation)
    if model is None:
        return value
    if kind == "model" and isinstance(value, Mapping):
        return normalise_keys(value, model, where=where, shown=shown)
    if kind == "list" and isinstance(value, list):
        return [
            normalise_keys(item, model, where=where, shown=(*shown[:-1], f"{shown[-1]}[{i}]"))
            if isinstance(item, Mapping)
            else item
            for i, item in enumerate(value)
        ]
    if kind == "dict" and isinstance(value, Mapping):
        return {
            name: normalise_keys(item, model, where=where, shown=(*shown, name))
            if isinstance(item, Mapping)
            else item
            for name, item in value.items()
        }
    return value


def _unknown_key(key: str, model: type[BaseModel], where: str, shown: tuple[str, ...]) -> str:
    wanted = to_snake(key.strip()).replace("-", "_")
    valid = list(model.model_fields)
    match = difflib.get_close_matches(wanted, valid, n=1, cutoff=0.6)
    full = ".".join((*shown, key))
    if match:
        # Suggest in the user's own spelling so the fix is a copy-paste.
        suggestion = to_camel(match[0]) if key != wanted else match[0]
        return f"Unknown setting {full} {where}: did you mean {'.'.join((*shown, suggestion))}?"
    return f"Unknown setting {full} {where}: valid keys here are {', '.join(valid)}."


# --- secret files --------------------------------------------------------------------------


def secret_file_entries(
    env: Mapping[str, str], explicit: set[tuple[str, ...]]
) -> Iterator[tuple[tuple[str, ...], str, str]]:
    """Yield secrets read from ``*_FILE`` variables or ``$CREDENTIALS_DIRECTORY``.

    A secret already set explicitly in the environment (``explicit``) is skipped: the
    variable wins over any file.
    """
    credentials = env.get("CREDENTIALS_DIRECTORY", "").strip()
    for path, (variable, credential) in SECRET_FILES.items():
        if path in explicit:
            continue
        if named := env.get(variable, "").strip():
            file, how = Path(named).expanduser(), variable
        elif credentials and (Path(credentials) / credential).is_file():
            file, how = Path(credentials) / credential, "the LoadCredential= of the unit"
        else:
            continue
        yield path, _read_secret(file, how), f"secret file {file}"


def _read_secret(file: Path, how: str) -> str:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"Cannot read secret file {file} ({reason}): fix {how}.") from None
    # Editors and ``echo`` add a final newline that is no part of the secret.
    secret = text.rstrip("\r\n")
    if not secret.strip():
        raise ConfigError(f"Secret file {file} is empty: put the secret in it or fix {how}.")
    return secret


# --- environment variables -----------------------------------------------------------------


def env_entries(env: Mapping[str, str]) -> list[tuple[tuple[str, ...], Any, str]]:
    """Return the settings given by environment variables, flat names first.

    The generic ``LARKBOT_<SECTION>__<FIELD>`` names come last so they win over the
    flat ones. Empty variables count as unset (``EnvironmentFile=`` templates leave
    placeholders like ``APP_SECRET=``).
    """
    entries: list[tuple[tuple[str, ...], Any, str]] = []
    for name, path in FLAT_ENV.items():
        if (value := env.get(name, "")).strip():
            entries.append((path, _env_value(name, path, value), f"env {name}"))
    for name in sorted(env):
        value = env[name]
        if not value.strip() or not name.upper().startswith(ENV_PREFIX):
            continue
        path = _generic_path(name)
        if path is not None:
            entries.append((path, _env_value(name, path, value), f"env {name}"))
    return entries


def _generic_path(name: str) -> tuple[str, ...] | None:
    parts = name[len(ENV_PREFIX) :].lower().split("__")
    fields = Settings.model_fields
    if len(parts) == 1:
        # Only top-level maps (``LARKBOT_BASES``) take this form; other single names
        # such as LARKBOT_CONFIG are not settings.
        kind = shape_of(fields[parts[0]].annotation)[0] if parts[0] in fields else None
        return (parts[0],) if kind == "dict" else None
    section = parts[0]
    kind, model, _ = shape_of(fields[section].annotation) if section in fields else ("", None, None)
    if kind != "model" or model is None:
        valid = [s for s, f in fields.items() if shape_of(f.annotation)[0] == "model"]
        rest = "__".join(parts[1:]).upper()
        pattern = f"{ENV_PREFIX}{{}}__{rest}"
        raise ConfigError(_unknown_env(name, section, valid, "section", pattern))
    if len(parts) != 2:
        raise ConfigError(
            f"Environment variable {name} is nested too deeply: use "
            f"{ENV_PREFIX}{section.upper()}__<FIELD> with a JSON value."
        )
    if parts[1] not in model.model_fields:
        valid = list(model.model_fields)
        pattern = f"{ENV_PREFIX}{section.upper()}__{{}}"
        raise ConfigError(_unknown_env(name, parts[1], valid, "field", pattern))
    return (section, parts[1])


def _unknown_env(name: str, wrong: str, valid: list[str], what: str, pattern: str) -> str:
    match = difflib.get_close_matches(wrong, valid, n=1, cutoff=0.6)
    hint = (
        f"did you mean {pattern.format(match[0].upper())}?"
        if match
        else f"valid {what}s are {', '.join(valid)}."
    )
    return f"Unknown setting in environment variable {name}: there is no {what} {wrong}; {hint}"


def _env_value(name: str, path: tuple[str, ...], text: str) -> Any:
    model: type[BaseModel] = Settings
    annotation: Any = None
    for part in path:
        annotation = model.model_fields[part].annotation
        inner = shape_of(annotation)[1]
        if inner is not None:
            model = inner
    kind, inner, _ = shape_of(annotation)
    if kind == "scalar":
        return text
    stripped = text.strip()
    if kind == "list" and inner is None and not stripped.startswith("["):
        # A plain list of ids reads best as ``ou_a,ou_b``; JSON is accepted too.
        return [part.strip() for part in stripped.split(",") if part.strip()]
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"Invalid setting {dotted(path)} (env {name}): must be JSON, but {exc.msg[:1].lower()}"
            f"{exc.msg[1:]} at column {exc.colno}. Fix {name}."
        ) from None
    return _normalise_value(value, annotation, f"in environment variable {name}", (dotted(path),))

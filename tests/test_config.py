"""Tests of configuration loading: files, environment, secret files, errors and reports."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic.alias_generators import to_camel

from larkbot.config import (
    EX_CONFIG,
    ConfigError,
    SettingRow,
    Settings,
    describe_settings,
    load_settings,
)

REPO = Path(__file__).resolve().parent.parent

GUIDE_JSON = {
    "app": {"id": "cli_x", "secret": "s"},
    "server": {"port": 3000, "host": "0.0.0.0", "timeout": 30000},
    "agent": {
        "defaultLanguage": "ja",
        "temperature": 0.7,
        "maxTokens": 2000,
        "maxConversationHistory": 50,
    },
    "rateLimiting": {"enabled": True, "requestsPerMinute": 50, "writeRequestsPerMinute": 10},
    "cache": {"ttlMinutes": 5, "maxSize": 1000},
}


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory so that no ``./config/larkbot.toml`` is picked up."""
    monkeypatch.chdir(tmp_path)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _toml(tmp_path: Path, text: str) -> Path:
    return _write(tmp_path / "larkbot.toml", text)


def _error(config_path: Path | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path, env={} if env is None else env)
    return caught.value.message


def _rows(settings: Settings) -> dict[str, SettingRow]:
    return {row.key: row for row in describe_settings(settings)}


# --- defaults and files ----------------------------------------------------------------


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(env={})

    assert settings.config_file is None
    assert settings.app.id == ""
    assert settings.app.secret.get_secret_value() == ""
    assert (settings.server.host, settings.server.port, settings.server.timeout) == (
        "127.0.0.1",
        3000,
        30_000,
    )
    assert settings.server.timeout_seconds == 30.0
    assert settings.lark.domain == "feishu"
    assert settings.lark.base_url == "https://open.feishu.cn"
    assert settings.lark.reply_in_thread is False
    assert (settings.log.level, settings.log.format) == ("INFO", "auto")
    assert settings.agent.default_language == "ja"
    assert settings.agent.max_conversation_history == 50
    assert settings.agent.profile == "LarkAssistant"
    assert settings.agent.profiles == []
    assert settings.rate_limiting.requests_per_minute == 50
    assert settings.cache.ttl_minutes == 5
    assert settings.admission.max_payload_bytes == 1_048_576
    assert settings.policy.allowed_users is None
    assert settings.dispatch.max_concurrency == 32
    assert settings.store.kind == "sqlite"
    assert settings.store.state_dir is None
    assert settings.shutdown.grace_seconds == 25
    assert settings.llm.enabled is False
    assert settings.llm.model == "gpt-4o-mini"
    assert settings.sentry.dsn is None
    assert settings.bases == {}
    assert settings.secrets() == []
    assert EX_CONFIG == 78


def test_direct_construction_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "1234")
    monkeypatch.setenv("LARKBOT_DISPATCH__MAX_CONCURRENCY", "2")

    settings = Settings(server={"port": 0})

    assert settings.server.port == 0
    assert settings.dispatch.max_concurrency == 32


def test_toml_file_in_snake_case(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        """
        [app]
        id = "cli_toml"
        [server]
        port = 8080
        [lark]
        domain = "lark"
        reply_in_thread = true
        [agent]
        default_language = "en"
        max_tokens = 500
        [[agent.profiles]]
        name = "Support"
        temperature = 0.2
        tools = ["search"]
        [policy]
        allowed_users = ["ou_a", "ou_b"]
        [store]
        kind = "memory"
        state_dir = "/srv/larkbot"
        [bases.Sales]
        app_token = "bascn1"
        table_id = "tbl1"
        aliases = ["deals"]
        """,
    )

    settings = load_settings(path, env={})

    assert settings.config_file == path
    assert settings.app.id == "cli_toml"
    assert settings.server.port == 8080
    assert settings.lark.base_url == "https://open.larksuite.com"
    assert settings.lark.reply_in_thread is True
    assert settings.agent.default_language == "en"
    assert settings.agent.max_tokens == 500
    assert settings.agent.profiles[0].name == "Support"
    assert settings.agent.profiles[0].temperature == 0.2
    assert settings.agent.profiles[0].tools == ["search"]
    assert settings.agent.profiles[0].language is None
    assert settings.policy.allowed_users == ["ou_a", "ou_b"]
    assert settings.store.kind == "memory"
    assert settings.store.state_dir == Path("/srv/larkbot")
    assert settings.bases["Sales"].table_id == "tbl1"
    assert settings.bases["Sales"].aliases == ["deals"]


def test_deployment_guide_json_loads_as_is(tmp_path: Path) -> None:
    path = _write(tmp_path / "config.json", json.dumps(GUIDE_JSON))

    settings = load_settings(path, env={})

    assert settings.app.id == "cli_x"
    assert settings.app.secret.get_secret_value() == "s"
    # The guide's config.json gives milliseconds, and means them.
    assert (settings.server.host, settings.server.port, settings.server.timeout) == (
        "0.0.0.0",
        3000,
        30_000,
    )
    assert settings.server.timeout_seconds == 30.0
    assert settings.agent.default_language == "ja"
    assert settings.agent.temperature == 0.7
    assert settings.agent.max_tokens == 2000
    assert settings.agent.max_conversation_history == 50
    assert settings.rate_limiting.enabled is True
    assert settings.rate_limiting.requests_per_minute == 50
    assert settings.rate_limiting.write_requests_per_minute == 10
    assert settings.cache.ttl_minutes == 5
    assert settings.cache.max_size == 1000


@pytest.mark.parametrize("name", ["config/larkbot.example.toml", "config/config.example.json"])
def test_shipped_examples_load(name: str) -> None:
    settings = load_settings(REPO / name, env={})

    assert settings.server.port == 3000
    assert settings.agent.max_conversation_history == 50


def test_config_file_discovery_order(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    local = _write(tmp_path / "config" / "larkbot.toml", "[server]\nport = 1001\n")
    named = _write(tmp_path / "named.toml", "[server]\nport = 1002\n")
    explicit = _write(tmp_path / "explicit.toml", "[server]\nport = 1003\n")

    assert load_settings(env={}).server.port == 1001
    assert load_settings(env={}).config_file == local
    assert load_settings(env={"LARKBOT_CONFIG": str(named)}).server.port == 1002
    assert load_settings(explicit, env={"LARKBOT_CONFIG": str(named)}).server.port == 1003


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    assert _error(missing) == (
        f"Configuration file {missing} does not exist: fix the path given to --config."
    )
    assert _error(env={"LARKBOT_CONFIG": str(missing)}) == (
        f"Configuration file {missing} does not exist: fix LARKBOT_CONFIG."
    )
    assert "is a directory" in _error(tmp_path)


def test_invalid_toml_names_line_and_column(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[server]\nport = 3000\nhost = = "x"\n')

    message = _error(path)

    assert message.startswith(f"Cannot parse {path}: ")
    assert "line 3, column 8" in message
    assert message.endswith("fix the TOML syntax there.")


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "config.json", '{\n  "server": {"port": 3000,}\n}\n')

    message = _error(path)

    assert message.startswith(f"Cannot parse {path}: ")
    assert "(at line 2, column 27)" in message


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    snake = _toml(tmp_path, "[dispatch]\nmax_concurency = 4\n")
    camel = _write(tmp_path / "c.json", json.dumps({"rateLimiting": {"requestsPerMinut": 4}}))
    section = _write(tmp_path / "s.toml", "[servr]\nport = 1\n")

    assert _error(snake) == (
        f"Unknown setting dispatch.max_concurency in {snake}: "
        "did you mean dispatch.max_concurrency?"
    )
    assert _error(camel) == (
        f"Unknown setting rateLimiting.requestsPerMinut in {camel}: "
        "did you mean rateLimiting.requestsPerMinute?"
    )
    assert "did you mean servr" not in _error(section)
    assert "did you mean server?" in _error(section)


def test_unknown_key_inside_a_list_of_tables(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[[agent.profiles]]\nname = "a"\ninstruction = "x"\n')

    assert _error(path) == (
        f"Unknown setting agent.profiles[0].instruction in {path}: "
        "did you mean agent.profiles[0].instructions?"
    )


def test_same_key_in_both_spellings_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.json", json.dumps({"agent": {"maxTokens": 1, "max_tokens": 2}}))

    assert (
        _error(path)
        == f"Setting agent.max_tokens is given twice in {path} (also as maxTokens): keep one."
    )


def test_empty_base_table_is_validated(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[bases.sales]\n")

    assert _error(path) == (
        f"Invalid setting bases.sales.app_token (file {path}): is required. "
        f"Fix bases.sales.app_token in {path}."
    )


# --- environment ----------------------------------------------------------------------------


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[server]\nport = 8080\nhost = "0.0.0.0"\n[app]\nid = "cli_file"\n')

    settings = load_settings(path, env={"PORT": "9090", "APP_ID": "cli_env"})

    assert settings.server.port == 9090
    assert settings.server.host == "0.0.0.0"
    assert settings.app.id == "cli_env"


@pytest.mark.parametrize(
    ("name", "value", "key", "read", "expected"),
    [
        ("APP_ID", "cli_env", "app.id", lambda s: s.app.id, "cli_env"),
        ("APP_SECRET", "shh", "app.secret", lambda s: s.app.secret.get_secret_value(), "shh"),
        ("PORT", "0", "server.port", lambda s: s.server.port, 0),
        ("HOST", "0.0.0.0", "server.host", lambda s: s.server.host, "0.0.0.0"),
        ("LOG_LEVEL", "debug", "log.level", lambda s: s.log.level, "DEBUG"),
        ("LOG_LEVEL", "warn", "log.level", lambda s: s.log.level, "WARNING"),
        ("LOG_FORMAT", "JSON", "log.format", lambda s: s.log.format, "json"),
        (
            "MAX_CONVERSATION_HISTORY",
            "7",
            "agent.max_conversation_history",
            lambda s: s.agent.max_conversation_history,
            7,
        ),
        ("CACHE_TTL_MINUTES", "1.5", "cache.ttl_minutes", lambda s: s.cache.ttl_minutes, 1.5),
        (
            "LARK_DOMAIN",
            "lark",
            "lark.domain",
            lambda s: s.lark.base_url,
            "https://open.larksuite.com",
        ),
        (
            "LARKBOT_STATE_DIR",
            "/var/lib/x",
            "store.state_dir",
            lambda s: s.store.state_dir,
            Path("/var/lib/x"),
        ),
        ("OPENAI_API_KEY", "sk-1", "llm.api_key", lambda s: s.llm.enabled, True),
        (
            "OPENAI_BASE_URL",
            "http://127.0.0.1:9/v1",
            "llm.base_url",
            lambda s: s.llm.base_url,
            "http://127.0.0.1:9/v1",
        ),
        ("LLM_MODEL", "local-model", "llm.model", lambda s: s.llm.model, "local-model"),
        (
            "SENTRY_DSN",
            "https://k@o1.ingest.example/42",
            "sentry.dsn",
            lambda s: s.sentry.dsn.get_secret_value(),
            "https://k@o1.ingest.example/42",
        ),
        (
            "SENTRY_ENVIRONMENT",
            "staging",
            "sentry.environment",
            lambda s: s.sentry.environment,
            "staging",
        ),
    ],
)
def test_flat_environment_names(
    name: str, value: str, key: str, read: Callable[[Settings], Any], expected: Any
) -> None:
    settings = load_settings(env={name: value})

    assert read(settings) == expected
    assert _rows(settings)[key].source == f"env {name}"


def test_generic_environment_names() -> None:
    settings = load_settings(
        env={
            "LARKBOT_DISPATCH__MAX_CONCURRENCY": "8",
            "larkbot_admission__respond_to_mention_all": "true",
            "LARKBOT_POLICY__ALLOWED_USERS": "ou_a, ou_b",
            "LARKBOT_POLICY__WRITERS": '["ou_w"]',
            "LARKBOT_AGENT__PROFILES": '[{"name": "Ops", "instructions": "Be brief."}]',
            "LARKBOT_BASES": '{"Sales": {"appToken": "bascn1", "tableId": "tbl1"}}',
            "LARKBOT_CONFIG_UNRELATED": "ignored",
        }
    )

    assert settings.dispatch.max_concurrency == 8
    assert settings.admission.respond_to_mention_all is True
    assert settings.policy.allowed_users == ["ou_a", "ou_b"]
    assert settings.policy.writers == ["ou_w"]
    assert settings.agent.profiles[0].instructions == "Be brief."
    assert settings.bases["Sales"].app_token == "bascn1"


def test_generic_name_beats_flat_name_and_empty_means_unset(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[server]\nport = 8080\n")

    settings = load_settings(
        path, env={"PORT": "1111", "LARKBOT_SERVER__PORT": "2222", "APP_ID": "", "HOST": " "}
    )

    assert settings.server.port == 2222
    assert settings.server.host == "127.0.0.1"
    assert settings.app.id == ""


def test_unknown_generic_environment_name_suggests_the_closest() -> None:
    assert _error(env={"LARKBOT_DISPATCH__MAX_CONCURENCY": "3"}) == (
        "Unknown setting in environment variable LARKBOT_DISPATCH__MAX_CONCURENCY: there is no "
        "field max_concurency; did you mean LARKBOT_DISPATCH__MAX_CONCURRENCY?"
    )
    assert "did you mean LARKBOT_DISPATCH__MAX_CONCURRENCY?" in _error(
        env={"LARKBOT_DISPACH__MAX_CONCURRENCY": "3"}
    )


def test_bad_json_in_environment_names_the_variable() -> None:
    message = _error(env={"LARKBOT_AGENT__PROFILES": '[{"name": "x"'})

    assert message.startswith("Invalid setting agent.profiles (env LARKBOT_AGENT__PROFILES): ")
    assert message.endswith("Fix LARKBOT_AGENT__PROFILES.")


# --- secret files ---------------------------------------------------------------------------


def test_app_secret_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    secret = _write(tmp_path / "app_secret", "s3cr3t\n")

    settings = load_settings(env={"APP_SECRET_FILE": str(secret)})

    assert settings.app.secret.get_secret_value() == "s3cr3t"
    assert _rows(settings)["app.secret"] == SettingRow(
        "app.secret", "****", f"secret file {secret}"
    )


def test_app_secret_variable_beats_the_secret_file(tmp_path: Path) -> None:
    secret = _write(tmp_path / "app_secret", "from-file\n")

    settings = load_settings(env={"APP_SECRET_FILE": str(secret), "APP_SECRET": "from-env"})

    assert settings.app.secret.get_secret_value() == "from-env"


def test_secret_file_beats_the_config_file(tmp_path: Path) -> None:
    secret = _write(tmp_path / "app_secret", "from-secret-file")
    path = _toml(tmp_path, '[app]\nsecret = "from-config"\n')

    settings = load_settings(path, env={"APP_SECRET_FILE": str(secret)})

    assert settings.app.secret.get_secret_value() == "from-secret-file"


def test_missing_or_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    empty = _write(tmp_path / "empty", "\n")

    assert _error(env={"APP_SECRET_FILE": str(missing)}) == (
        f"Cannot read secret file {missing} (No such file or directory): fix APP_SECRET_FILE."
    )
    assert _error(env={"APP_SECRET_FILE": str(empty)}) == (
        f"Secret file {empty} is empty: put the secret in it or fix APP_SECRET_FILE."
    )


def test_systemd_credentials_directory(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    _write(credentials / "app_secret", "from-credentials\n")
    explicit = _write(tmp_path / "explicit", "from-secret-file\n")
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}

    settings = load_settings(env=env)
    assert settings.app.secret.get_secret_value() == "from-credentials"
    assert _rows(settings)["app.secret"].source == f"secret file {credentials / 'app_secret'}"
    assert load_settings(env={**env, "APP_SECRET": "x"}).app.secret.get_secret_value() == "x"
    with_file = load_settings(env={**env, "APP_SECRET_FILE": str(explicit)})
    assert with_file.app.secret.get_secret_value() == "from-secret-file"
    no_credential = load_settings(env={"CREDENTIALS_DIRECTORY": str(tmp_path / "none")})
    assert no_credential.app.secret.get_secret_value() == ""


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "base_url"),
    [
        ("feishu", "https://open.feishu.cn"),
        ("Lark", "https://open.larksuite.com"),
        ("https://open.example.test/", "https://open.example.test"),
        ("http://127.0.0.1:8443/lark/", "http://127.0.0.1:8443/lark"),
    ],
)
def test_domain_aliases_and_urls(domain: str, base_url: str) -> None:
    assert load_settings(env={"LARK_DOMAIN": domain}).lark.base_url == base_url


@pytest.mark.parametrize(
    "domain", ["larksuite.com", "ftp://open.feishu.cn", "https://", "https://x/?a=1"]
)
def test_bad_domain_is_an_error(domain: str) -> None:
    message = _error(env={"LARK_DOMAIN": domain})

    assert message.startswith("Invalid setting lark.domain (env LARK_DOMAIN): must be feishu, lark")
    assert message.endswith("Fix LARK_DOMAIN.")


def test_bad_port_names_key_origin_and_fix(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[server]\nport = 70000\n")

    assert _error(path, env={"PORT": "abc"}) == (
        "Invalid setting server.port (env PORT): must be an integer between 0 and 65535, "
        f"got 'abc'. Fix PORT or server.port in {path}."
    )
    assert _error(path) == (
        f"Invalid setting server.port (file {path}): must be an integer between 0 and 65535, "
        f"got 70000. Fix server.port in {path}."
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LOG_LEVEL": "loud"}, "log.level (env LOG_LEVEL): must be one of DEBUG, INFO, WARNING"),
        (
            {"LOG_FORMAT": "xml"},
            "log.format (env LOG_FORMAT): must be one of 'auto', 'json', 'rich'",
        ),
        ({"LARKBOT_AGENT__TEMPERATURE": "3"}, "must be a number between 0 and 2, got '3'"),
        (
            {"LARKBOT_CACHE__TTL_MINUTES": "0"},
            "must be a number greater than 0 and at most 1440, got '0'",
        ),
        (
            {"LARKBOT_LLM__TIMEOUT_SECONDS": "30000"},
            "llm.timeout_seconds (env LARKBOT_LLM__TIMEOUT_SECONDS): must be a number greater "
            "than 0 and at most 600, got '30000'",
        ),
        (
            {"LARKBOT_SHUTDOWN__GRACE_SECONDS": "25000"},
            "must be a number between 0 and 3600, got '25000'",
        ),
        ({"LARKBOT_ADMISSION__RESPOND_TO_MENTION_ALL": "perhaps"}, "must be true or false"),
        ({"MAX_CONVERSATION_HISTORY": "0"}, "must be an integer of at least 1, got '0'"),
        (
            # Shorter than a write may take: a click could run it again while it runs.
            {"LARKBOT_AGENT__CONFIRM_STUCK_AFTER_SECONDS": "1"},
            "agent.confirm_stuck_after_seconds (env LARKBOT_AGENT__CONFIRM_STUCK_AFTER_SECONDS): "
            "must be at least 240 seconds, longer than any write takes",
        ),
        (
            {"LARKBOT_AGENT__PROFILES": '[{"name": "a"}, {"name": "a"}]'},
            "agent.profiles (env LARKBOT_AGENT__PROFILES): must have unique names",
        ),
    ],
)
def test_validation_errors_explain_what_is_expected(env: dict[str, str], expected: str) -> None:
    assert expected in _error(env=env)


def test_the_stuck_write_bound_outlasts_three_lark_calls() -> None:
    """Each Lark call may take 60 s and a write makes up to three: 240 s at the least."""
    key = "LARKBOT_AGENT__CONFIRM_STUCK_AFTER_SECONDS"
    with pytest.raises(ConfigError) as caught:
        load_settings(env={key: "239"})
    assert caught.value.exit_code == 78
    assert load_settings(env={key: "240"}).agent.confirm_stuck_after_seconds == 240


@pytest.mark.parametrize(
    ("source", "secret"),
    [
        ("env", "not-a-dsn-but-a-secret-value"),
        ("toml", "hunter2-in-a-file"),
    ],
)
def test_bad_secret_value_is_never_shown(tmp_path: Path, source: str, secret: str) -> None:
    if source == "env":
        message = _error(env={"SENTRY_DSN": secret})
        assert message.startswith(
            "Invalid setting sentry.dsn (env SENTRY_DSN): must be a Sentry DSN"
        )
    else:
        path = _toml(tmp_path, f'[app]\nsecret = ["{secret}"]\n')
        message = _error(path)
        assert message.startswith(f"Invalid setting app.secret (file {path}): must be a string")

    assert secret not in message
    assert "(value not shown)" in message


def test_blank_llm_key_in_file_leaves_the_llm_off(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[llm]\napi_key = ""\n[sentry]\ndsn = ""\n')

    settings = load_settings(path, env={})

    assert settings.llm.enabled is False
    assert settings.sentry.dsn is None


# --- credentials, secrets, reports ----------------------------------------------------------


def test_require_credentials_messages(tmp_path: Path) -> None:
    path = _toml(tmp_path, "")

    with pytest.raises(ConfigError) as no_id:
        load_settings(env={}).require_credentials()
    with pytest.raises(ConfigError) as no_secret:
        load_settings(path, env={"APP_ID": "cli_x"}).require_credentials()

    assert no_id.value.message == (
        "APP_ID is not set: set APP_ID (or app.id in the configuration file) to your Lark app's ID."
    )
    assert no_secret.value.message == (
        f"APP_SECRET is not set: set APP_SECRET or APP_SECRET_FILE (or app.secret in {path}) "
        "to your Lark app's secret."
    )
    load_settings(env={"APP_ID": "cli_x", "APP_SECRET": REAL_LOOKING_SECRET}).require_credentials()


REAL_LOOKING_SECRET = "Zq8cVb3nL0pQ7rS2tU5wX9yA1dE4fG6h"


@pytest.mark.parametrize(
    ("app_id", "secret", "expected"),
    [
        ("cli_your_app_id", REAL_LOOKING_SECRET, "APP_ID is a placeholder (cli_your_app_id): set"),
        ("cli_xxx", REAL_LOOKING_SECRET, "APP_ID is a placeholder (cli_xxx): set"),
        ("cli_xxxxxxxxxxxxxxxx", REAL_LOOKING_SECRET, "APP_ID is a placeholder"),
        ("cli_a1b2c3d4e5f6a7b8", "your_app_secret", "APP_SECRET is a placeholder, not a secret"),
        ("cli_a1b2c3d4e5f6a7b8", "replace-with-your-app-secret", "APP_SECRET is a placeholder"),
        ("cli_a1b2c3d4e5f6a7b8", "127", "APP_SECRET is too short to be a Lark app secret"),
        ("cli_a1b2c3d4e5f6a7b8", "x", "APP_SECRET is too short to be a Lark app secret"),
    ],
)
def test_placeholders_and_short_secrets_are_refused(
    app_id: str, secret: str, expected: str
) -> None:
    settings = load_settings(env={"APP_ID": app_id, "APP_SECRET": secret})
    with pytest.raises(ConfigError) as refused:
        settings.require_credentials()
    message = refused.value.message
    assert message.startswith(expected)
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    if len(secret) < 8:
        assert secret not in message.replace("APP_SECRET", "")


def test_server_timeout_is_in_milliseconds_like_the_guide() -> None:
    assert load_settings(env={"LARKBOT_SERVER__TIMEOUT": "2500"}).server.timeout_seconds == 2.5
    assert _error(env={"LARKBOT_SERVER__TIMEOUT": "30"}) == (
        "Invalid setting server.timeout (env LARKBOT_SERVER__TIMEOUT): is in milliseconds and "
        "must be between 1000 and 600000 (for 30 s write 30000), got '30'. "
        "Fix LARKBOT_SERVER__TIMEOUT."
    )
    assert "(1 s to 10 min), got '86400000'" in _error(env={"LARKBOT_SERVER__TIMEOUT": "86400000"})


def test_secret_in_the_config_file_is_a_warning(tmp_path: Path) -> None:
    path = _toml(tmp_path, f'[app]\nid = "cli_x"\nsecret = "{REAL_LOOKING_SECRET}"\n')

    settings = load_settings(path, env={})

    (warning,) = settings.warnings
    assert warning == (
        f"app.secret is written in the configuration file {path}: move it to a file named by "
        "APP_SECRET_FILE (mode 0600) or to systemd's LoadCredential=."
    )
    assert REAL_LOOKING_SECRET not in warning
    assert load_settings(env={"APP_SECRET": REAL_LOOKING_SECRET}).warnings == ()


@pytest.mark.parametrize(("mode", "readers"), [(0o644, "everyone"), (0o640, "its group")])
def test_readable_secret_file_is_a_warning(tmp_path: Path, mode: int, readers: str) -> None:
    secret = _write(tmp_path / "app_secret", REAL_LOOKING_SECRET)
    secret.chmod(mode)
    if readers == "its group":
        # A group other than the daemon's own (its own is how a pod reads its Secret).
        if os.geteuid() != 0:
            pytest.skip("giving a file another group needs root")
        os.chown(secret, -1, os.getegid() + 1)
        own_group = _write(tmp_path / "pod_secret", REAL_LOOKING_SECRET)
        own_group.chmod(0o440)
        assert load_settings(env={"APP_SECRET_FILE": str(own_group)}).warnings == ()

    (warning,) = load_settings(env={"APP_SECRET_FILE": str(secret)}).warnings

    assert warning == (
        f"The secret file {secret} can be read by {readers} (mode {mode:04o}): "
        f"run chmod 600 {secret}."
    )
    secret.chmod(0o600)
    assert load_settings(env={"APP_SECRET_FILE": str(secret)}).warnings == ()


def test_log_levels_of_other_libraries_and_the_log_file(tmp_path: Path) -> None:
    settings = load_settings(
        env={
            "LOG_LEVELS": "aiosqlite=debug, httpx=WARN",
            "LOG_FILE": str(tmp_path / "larkbot.log"),
            "LOG_FILE_BACKUPS": "3",
        }
    )
    assert settings.log.levels == {"aiosqlite": "DEBUG", "httpx": "WARNING"}
    assert (settings.log.file, settings.log.file_backups) == (tmp_path / "larkbot.log", 3)
    rows = _rows(settings)
    assert rows["log.levels"] == SettingRow(
        "log.levels", "aiosqlite=DEBUG,httpx=WARNING", "env LOG_LEVELS"
    )
    path = _toml(tmp_path, '[log.levels]\naiosqlite = "INFO"\n')
    from_file = load_settings(path, env={})
    assert from_file.log.levels == {"aiosqlite": "INFO"}
    assert _rows(from_file)["log.levels"].source == f"file {path}"
    assert "must be name=value pairs" in _error(env={"LOG_LEVELS": "aiosqlite"})
    assert "got 'loud' for aiosqlite" in _error(env={"LOG_LEVELS": "aiosqlite=loud"})


def test_secrets_lists_every_configured_secret() -> None:
    settings = load_settings(
        env={
            "APP_SECRET": "app-secret",
            "OPENAI_API_KEY": "sk-key",
            "SENTRY_DSN": "https://pub@o1.ingest.example/7",
        }
    )

    assert sorted(settings.secrets()) == sorted(
        ["app-secret", "sk-key", "https://pub@o1.ingest.example/7"]
    )


def test_describe_settings_sources_and_masking(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        '[app]\nid = "cli_file"\nsecret = "file-secret"\n'
        '[[agent.profiles]]\nname = "Ops"\n'
        '[bases.sales]\napp_token = "b"\ntable_id = "t"\n',
    )

    settings = load_settings(
        path,
        env={"PORT": "4000", "OPENAI_API_KEY": "sk-live", "LARKBOT_DISPATCH__MAX_BACKLOG": "9"},
    )
    rows = _rows(settings)
    printed = repr(describe_settings(settings))

    assert rows["app.id"] == SettingRow("app.id", "cli_file", f"file {path}")
    assert rows["app.secret"] == SettingRow("app.secret", "****", f"file {path}")
    assert rows["server.port"] == SettingRow("server.port", "4000", "env PORT")
    assert rows["server.host"] == SettingRow("server.host", "127.0.0.1", "default")
    assert rows["llm.api_key"] == SettingRow("llm.api_key", "****", "env OPENAI_API_KEY")
    assert rows["sentry.dsn"] == SettingRow("sentry.dsn", "(unset)", "default")
    assert rows["dispatch.max_backlog"].source == "env LARKBOT_DISPATCH__MAX_BACKLOG"
    assert rows["agent.profiles[0].name"] == SettingRow(
        "agent.profiles[0].name", "Ops", f"file {path}"
    )
    assert rows["bases.sales.table_id"] == SettingRow("bases.sales.table_id", "t", f"file {path}")
    assert rows["policy.allowed_users"].value == "(unset)"
    assert "file-secret" not in printed
    assert "sk-live" not in printed


def test_describe_settings_covers_every_leaf_of_plain_settings() -> None:
    rows = describe_settings(Settings(server={"port": 1}))

    assert len(rows) == len({row.key for row in rows})
    assert {row.key.split(".")[0] for row in rows} == set(Settings.model_fields)
    by_key = {row.key: row for row in rows}
    assert by_key["server.port"].source == "argument"
    assert by_key["server.host"].source == "default"


def test_state_dir_resolution_order(tmp_path: Path) -> None:
    store = load_settings(env={}).store
    configured = load_settings(env={"LARKBOT_STORE__STATE_DIR": "/from/config"}).store

    config = tmp_path / "larkbot.toml"
    config.write_text('[store]\nstate_dir = "/from/file"\n', encoding="utf-8")
    explicit = load_settings(config, env={"LARKBOT_STATE_DIR": "/explicit"}).store
    assert explicit.resolved_state_dir({"STATE_DIRECTORY": "/s"}) == Path("/explicit")
    assert configured.resolved_state_dir({"STATE_DIRECTORY": "/s"}) == Path("/from/config")
    assert store.resolved_state_dir({"STATE_DIRECTORY": "/var/lib/larkbot:/var/lib/other"}) == Path(
        "/var/lib/larkbot"
    )
    assert store.resolved_state_dir({"XDG_STATE_HOME": "/xdg", "HOME": "/home/u"}) == Path(
        "/xdg/larkbot"
    )
    assert store.resolved_state_dir({"HOME": "/home/u"}) == Path("/home/u/.local/state/larkbot")


# --- key normalisation ----------------------------------------------------------------------


def _camelise(data: Any, *, keep_keys: bool = False) -> Any:
    if isinstance(data, dict):
        return {
            (key if keep_keys else to_camel(key)): _camelise(value, keep_keys=key == "bases")
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [_camelise(item) for item in data]
    return data


def test_every_key_in_camel_case_loads_back(tmp_path: Path) -> None:
    original = Settings(
        agent={"profiles": [{"name": "Ops", "language": "en", "tools": ["search"]}]},
        policy={"allowed_chats": ["oc_1"]},
        store={"state_dir": "/srv/state"},
        bases={"mySales": {"app_token": "b", "table_id": "t", "aliases": ["deals"]}},
    )
    dumped = original.model_dump(mode="json")
    dumped["app"]["secret"] = "s"
    camel = _camelise(dumped)
    path = _write(tmp_path / "all.json", json.dumps(camel))

    loaded = load_settings(path, env={})

    assert "maxConversationHistory" in camel["agent"]
    assert "mySales" in camel["bases"]
    assert "appToken" in camel["bases"]["mySales"]
    assert loaded.model_dump(exclude={"app"}) == original.model_dump(exclude={"app"})


_SCALARS: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("server", "port"): st.integers(0, 65535),
    ("server", "timeout"): st.integers(1000, 600_000),
    ("agent", "max_tokens"): st.integers(1, 100_000),
    ("agent", "default_language"): st.sampled_from(["ja", "en", "zh"]),
    ("agent", "max_conversation_history"): st.integers(1, 500),
    ("rate_limiting", "write_requests_per_minute"): st.integers(1, 1000),
    ("cache", "ttl_minutes"): st.floats(0.01, 1440, allow_nan=False),
    ("admission", "respond_to_mention_all"): st.booleans(),
    ("dispatch", "max_per_chat"): st.integers(1, 10_000),
    ("store", "ledger_max_entries"): st.integers(1, 10**9),
    ("llm", "max_tool_rounds"): st.integers(1, 50),
    ("sentry", "traces_sample_rate"): st.floats(0, 1, allow_nan=False),
}

_BASE_NAMES = st.text(alphabet=st.sampled_from("abcXYZ_-09顧客"), min_size=1, max_size=12)


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    values=st.fixed_dictionaries({}, optional=_SCALARS),
    base_names=st.lists(_BASE_NAMES, max_size=3, unique=True),
)
def test_camel_case_and_snake_case_files_load_the_same(
    values: dict[tuple[str, str], Any], base_names: list[str]
) -> None:
    snake: dict[str, Any] = {}
    camel: dict[str, Any] = {}
    for (section, field), value in values.items():
        snake.setdefault(section, {})[field] = value
        camel.setdefault(to_camel(section), {})[to_camel(field)] = value
    for name in base_names:
        snake.setdefault("bases", {})[name] = {"app_token": "b", "table_id": "t"}
        camel.setdefault("bases", {})[name] = {"appToken": "b", "tableId": "t"}

    with tempfile.TemporaryDirectory() as folder:
        snake_path = _write(Path(folder) / "snake.json", json.dumps(snake))
        camel_path = _write(Path(folder) / "camel.json", json.dumps(camel))
        from_snake = load_settings(snake_path, env={})
        from_camel = load_settings(camel_path, env={})

    assert from_snake.model_dump() == from_camel.model_dump()
    assert sorted(from_camel.bases) == sorted(base_names)
    for (section, field), value in values.items():
        assert getattr(getattr(from_camel, section), field) == value

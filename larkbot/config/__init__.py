"""Configuration: a TOML or JSON file, secret files and environment variables.

Where the file is: ``--config`` (the ``config_path`` argument), else ``LARKBOT_CONFIG``,
else ``./config/larkbot.toml``, else ``/etc/larkbot/larkbot.toml``, else none. A file
ending in ``.json`` is JSON, any other is TOML; keys may be snake_case or camelCase.

Precedence, highest first:

1. environment variables: the generic ``LARKBOT_<SECTION>__<FIELD>`` (for example
   ``LARKBOT_DISPATCH__MAX_CONCURRENCY=8``), then the flat names ``APP_ID``,
   ``APP_SECRET``, ``PORT``, ``HOST``, ``LOG_LEVEL``, ``LOG_FORMAT``, ``LOG_LEVELS``,
   ``LOG_FILE``, ``LOG_FILE_MAX_BYTES``, ``LOG_FILE_BACKUPS``, ``MAX_CONVERSATION_HISTORY``,
   ``CACHE_TTL_MINUTES``, ``LARK_DOMAIN``, ``LARKBOT_STATE_DIR``, ``OPENAI_API_KEY``,
   ``OPENAI_BASE_URL``, ``LLM_MODEL``, ``SENTRY_DSN``, ``SENTRY_ENVIRONMENT``,
   ``LARK_EVENT_MODE``, ``LARK_ENCRYPT_KEY``, ``LARK_VERIFICATION_TOKEN``, ``LARKBOT_STORE``,
   ``REDIS_URL``, ``REDIS_PASSWORD``, ``LARKBOT_MCP_TOKEN``; empty variables count as unset;
2. secret files: ``APP_SECRET_FILE`` (``OPENAI_API_KEY_FILE``, ``SENTRY_DSN_FILE``,
   ``LARK_ENCRYPT_KEY_FILE``, ``LARK_VERIFICATION_TOKEN_FILE``, ``REDIS_URL_FILE``,
   ``REDIS_PASSWORD_FILE``, ``LARKBOT_MCP_TOKEN_FILE``), else systemd's
   ``$CREDENTIALS_DIRECTORY/app_secret`` (``openai_api_key``, ``sentry_dsn``,
   ``lark_encrypt_key``, ``lark_verification_token``, ``redis_url``, ``redis_password``,
   ``mcp_token``);
3. the configuration file;
4. the defaults.

Every problem is a :class:`ConfigError` whose message is one sentence naming the key,
where its value came from and the fix, and never a secret's value; the CLI exits with
:data:`EX_CONFIG` on it. Risky choices that work (a secret in the configuration file, a
secret file others can read) are :attr:`Settings.warnings` instead. Loading reads files
synchronously, before the event loop starts.
"""

from larkbot.config import settings
from larkbot.config._loader import load_settings
from larkbot.config.settings import *  # noqa: F403  (the package's surface is the settings')

__all__ = ["load_settings"]
__all__ += settings.__all__

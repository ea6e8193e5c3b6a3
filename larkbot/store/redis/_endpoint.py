"""Where Redis is: a URL (``redis://``, ``rediss://``, ``unix://``) and a password kept secret.

The password may sit in the URL (``redis://:pw@host:6379/0``) or come separately (from a
file or the credentials directory); a separate one wins. It is stripped from the URL at
parse time, so nothing that prints an endpoint (logs, errors, ``repr``) can show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

from larkbot.store.redis._errors import RedisConfigError

__all__ = ["RedisEndpoint"]

_SCHEMES = ("redis", "rediss", "unix")
_EXAMPLE = "use redis://host:6379/0, rediss://host:6380/0 (TLS) or unix:///path/redis.sock"


@dataclass(frozen=True, slots=True)
class RedisEndpoint:
    """A parsed Redis URL without its password, and the password apart.

    :ivar url: the URL as given minus any password (query options such as
        ``ssl_ca_certs`` are kept for the client); safe to log.
    :ivar password: the password, or ``None``; ``repr`` shows ``**********``.
    """

    url: str
    password: SecretStr | None = field(default=None)
    username: str | None = None

    @classmethod
    def parse(cls, url: str, password: str | None = None) -> RedisEndpoint:
        """Parse ``url``; ``password`` (when given and not empty) overrides the URL's.

        Raises :class:`RedisConfigError` with a sentence that never quotes the password.
        """
        raw = url.strip()
        try:
            parts = urlsplit(raw)
            if parts.port == 0:  # reading .port also rejects ports that are not numbers
                raise ValueError("port 0")
        except ValueError:
            raise RedisConfigError(
                f"the Redis URL {_masked(raw)} is not a valid URL: {_EXAMPLE}"
            ) from None
        if parts.scheme not in _SCHEMES:
            raise RedisConfigError(
                f"the Redis URL {_masked(raw)} has scheme {parts.scheme or '(none)'!r}: {_EXAMPLE}"
            )
        if parts.scheme == "unix":
            if not parts.path:
                raise RedisConfigError(f"the Redis URL {_masked(raw)} names no socket: {_EXAMPLE}")
        else:
            if not parts.hostname:
                raise RedisConfigError(f"the Redis URL {_masked(raw)} names no host: {_EXAMPLE}")
            database = parts.path.lstrip("/")
            if database and not database.isdigit():
                raise RedisConfigError(
                    f"the Redis URL {_masked(raw)} selects database {database!r}: "
                    "the path must be a database number such as /0"
                )
        query = parse_qsl(parts.query, keep_blank_values=True)
        in_query = next((v for k, v in query if k == "password"), None)
        in_url = unquote(parts.password) if parts.password else in_query
        secret = password or in_url or None
        in_query_user = next((v for k, v in query if k == "username"), None)
        username = unquote(parts.username) if parts.username else in_query_user
        kept = urlencode([(k, v) for k, v in query if k not in ("password", "username")])
        if parts.scheme == "unix":
            # urlunsplit would drop the empty host and leave "unix:/path", which redis-py reads
            # differently; keep the "unix://" form.
            clean = f"unix://{parts.path}" + (f"?{kept}" if kept else "")
        else:
            clean = urlunsplit(_without_credentials(parts)._replace(query=kept, fragment=""))
        return cls(
            url=clean,
            password=SecretStr(secret) if secret else None,
            username=username or None,
        )

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted (``rediss://``)."""
        return self.url.startswith("rediss://")

    @property
    def display(self) -> str:
        """The URL to show people: no password, no query options."""
        return self.url.partition("?")[0]

    def scrub(self, text: str) -> str:
        """``text`` with every occurrence of the password replaced by ``***``."""
        if self.password is None:
            return text
        secret = self.password.get_secret_value()
        for form in {secret, quote(secret, safe="")}:
            text = text.replace(form, "***")
        return text

    def __str__(self) -> str:
        return self.display


def _without_credentials(parts: SplitResult) -> SplitResult:
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    return parts._replace(netloc=netloc)


def _masked(url: str) -> str:
    """``url`` for an error sentence: whatever sits before ``@`` in the netloc is hidden."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return repr("***" if "@" in url else url)
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    tail = tail.partition("?")[0]  # query options may carry a password too
    return repr(f"{scheme}://{netloc}{slash}{tail}")

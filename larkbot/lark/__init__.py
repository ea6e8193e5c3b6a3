"""The Lark OpenAPI client: tenant tokens, retries, rate limits, idempotent replies.

Every stage and every tool talks to Lark through :class:`LarkClient`; this package imports
none of them.
"""

from larkbot.lark import client
from larkbot.lark.client import *  # noqa: F403  (the package's surface is the client's)

# A list of its own, extended the way static checkers follow (sharing the client's list
# would let a change to one change both).
__all__: list[str] = []
__all__ += client.__all__

"""The one error base: every error a user or operator can cause says one sentence and
carries the exit status the CLI leaves with.

Exit statuses follow sysexits(3) where one fits: ``78`` (EX_CONFIG) for a configuration
the operator must fix (systemd's unit does not restart on it), ``1`` for a failure that may
pass by itself (Lark unreachable for good, a check that failed).
"""

from __future__ import annotations

__all__ = ["EX_CONFIG", "EX_FAILURE", "LarkbotError"]

EX_FAILURE = 1
EX_CONFIG = 78


class LarkbotError(Exception):
    """Base of larkbot's own errors; ``str()`` is one sentence for the person who can fix it.

    Subclasses set :attr:`exit_code`; the CLI maps any :class:`LarkbotError` to one line on
    standard error and that status, never a traceback.
    """

    exit_code: int = EX_FAILURE

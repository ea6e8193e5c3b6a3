"""Turning the errors a user can cause into one clear line and an exit status."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import NoReturn

from rich.console import Console

from larkbot.core.errors import EX_CONFIG, EX_FAILURE

__all__ = ["EX_CONFIG", "EX_FAILURE", "fail", "leaf_exceptions"]

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, status: int) -> NoReturn:
    """Print ``message`` as one line on standard error and exit with ``status``."""
    _stderr.print(f"[bold red]larkbot:[/] {message}", markup=True)
    sys.exit(status)


def leaf_exceptions(exc: BaseException) -> Iterator[BaseException]:
    """Yield the exceptions inside (possibly nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaf_exceptions(inner)
    else:
        yield exc

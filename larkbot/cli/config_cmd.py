"""``larkbot config show``: the effective configuration, secrets masked, with its sources."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from larkbot.config import Settings, describe_settings

__all__ = ["config_document", "print_config"]


def config_document(settings: Settings) -> dict[str, object]:
    """The effective settings as a JSON-ready document (secrets shown as ``****``)."""
    file = settings.config_file
    return {
        "config_file": str(file) if file is not None else None,
        "settings": [
            {"key": row.key, "value": row.value, "source": row.source}
            for row in describe_settings(settings)
        ],
        "warnings": list(settings.warnings),
    }


def print_config(settings: Settings, *, as_json: bool) -> None:
    """Print the effective settings on standard output: a table, tab-separated lines, or JSON.

    A terminal gets a table; a pipe gets one ``key<TAB>value<TAB>source`` line per setting,
    unwrapped and unpadded, for ``grep`` and ``cut``. Warnings go to standard error.
    """
    if as_json:
        sys.stdout.write(json.dumps(config_document(settings), ensure_ascii=False, indent=2) + "\n")
        return
    _print_warnings(settings)
    out = Console(highlight=False)
    rows = describe_settings(settings)
    if not out.is_terminal:
        sys.stdout.writelines(f"{row.key}\t{row.value}\t{row.source}\n" for row in rows)
        return
    file = settings.config_file
    out.print(
        f"Configuration file: {file if file is not None else 'none (defaults and environment)'}",
        markup=False,
    )
    table = Table()
    table.add_column("Key", no_wrap=True)
    table.add_column("Value", overflow="fold")
    table.add_column("Source", overflow="fold")
    for row in rows:
        source = Text(row.source, style="dim" if row.source == "default" else "")
        table.add_row(Text(row.key), Text(row.value), source)
    out.print(table)


def _print_warnings(settings: Settings) -> None:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for warning in settings.warnings:
        err.print(Text.assemble(("larkbot: warning: ", "bold yellow"), warning))

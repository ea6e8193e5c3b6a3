"""``larkbot config show``: the effective configuration, secrets masked, with its sources."""

from __future__ import annotations

import json
from pathlib import Path

import typer
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
    }


def print_config(settings: Settings, *, as_json: bool) -> None:
    """Print the effective settings as a table on standard output, or as JSON."""
    if as_json:
        typer.echo(json.dumps(config_document(settings), ensure_ascii=False, indent=2))
        return
    out = Console(highlight=False)
    file: Path | None = settings.config_file
    out.print(
        f"Configuration file: {file if file is not None else 'none (defaults and environment)'}"
    )
    table = Table()
    table.add_column("Key", no_wrap=True)
    table.add_column("Value", overflow="fold")
    table.add_column("Source", overflow="fold")
    for row in describe_settings(settings):
        source = Text(row.source, style="dim" if row.source == "default" else "")
        table.add_row(Text(row.key), Text(row.value), source)
    out.print(table)

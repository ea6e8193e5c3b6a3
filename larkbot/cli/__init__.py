"""The ``larkbot`` command line."""

from larkbot.cli.main import app, main

__all__ = ["app", "main"]

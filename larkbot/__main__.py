"""``python -m larkbot``: the same as the ``larkbot`` command."""

from larkbot.cli import main

main()

"""Reading typed lines and printing for people or pipes, for the interactive commands.

Standard input is read on the event loop when the kernel can say it is readable (a
terminal, a pipe, a socket), so that Ctrl-C ends a prompt at once: a read on a worker
thread cannot be interrupted, and the process would wait for Enter before it exits.
Regular files (``larkbot console < lines.txt``) and ``/dev/null`` cannot be polled; they
never block for long, so they are read on a worker thread.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
from collections.abc import Callable

import anyio
from rich.console import Console, RenderableType
from rich.text import Text

__all__ = ["StdinLines", "cancel_on_signals", "print_block"]

_CHUNK = 65536
# Piped output is not wrapped: renderables are laid out this wide, then trailing padding
# is cut (no pipe reader wants lines padded to a terminal's width).
_UNWRAPPED = 10_000
_RULE_CHARS = frozenset("─━-═ ")


class StdinLines:
    """Lines of standard input, without their line ends; ``None`` at end of input."""

    def __init__(self, fd: int | None = None) -> None:
        self._fd = sys.stdin.fileno() if fd is None else fd
        mode = os.fstat(self._fd).st_mode
        self._pollable = os.isatty(self._fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        self._buffer = b""
        self._eof = False

    @property
    def interactive(self) -> bool:
        """Whether a person is typing (standard input is a terminal)."""
        return os.isatty(self._fd)

    async def readline(self) -> str | None:
        """Return the next line, waiting for it without blocking the event loop."""
        while b"\n" not in self._buffer and not self._eof:
            if self._pollable:
                await anyio.wait_readable(self._fd)
                # Readable: this returns at once with what is there (a terminal gives a line).
                chunk = os.read(self._fd, _CHUNK)
            else:
                chunk = await anyio.to_thread.run_sync(os.read, self._fd, _CHUNK)
            if not chunk:
                self._eof = True
            self._buffer += chunk
        if not self._buffer:
            return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", errors="replace").removesuffix("\r")


async def cancel_on_signals(
    scope: anyio.CancelScope, on_signal: Callable[[], None] | None = None
) -> None:
    """Cancel ``scope`` on the first SIGINT or SIGTERM (Ctrl-C ends the command cleanly)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if on_signal is not None:
                on_signal()
            scope.cancel()
            return


def print_block(
    out: Console, renderable: RenderableType, *, first: Text | str = "", rest: str = ""
) -> None:
    """Print ``renderable`` with ``first`` before its first line and ``rest`` before the others.

    On a terminal it is wrapped to the width left after the prefix; into a pipe it is not
    wrapped at all, carries no colour and no trailing spaces.
    """
    width = max(out.width - len(rest), 20) if out.is_terminal else _UNWRAPPED
    options = out.options.update(width=width)
    lines = []
    for segments in out.render_lines(renderable, options, pad=False):
        line = Text.assemble(*((s.text, s.style) for s in segments if not s.control))
        line.rstrip()
        if not out.is_terminal and len(line) > 40 and set(line.plain) <= _RULE_CHARS:
            line = line[:40]  # a horizontal rule as wide as the layout
        lines.append(line)
    # Block renderables start and end with spacing that means nothing after a prefix.
    while lines and not lines[-1].plain.strip():
        lines.pop()
    while lines and not lines[0].plain.strip():
        lines.pop(0)
    for index, line in enumerate(lines or [Text()]):
        shown = Text.assemble(first if index == 0 else rest, line)
        shown.rstrip()
        if out.is_terminal:
            out.print(shown, soft_wrap=True, highlight=False)
        else:
            out.file.write(shown.plain + "\n")
    out.file.flush()

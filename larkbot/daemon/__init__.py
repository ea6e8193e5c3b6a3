"""The daemon: assembly of the event path from settings, and its lifecycle.

:class:`Daemon` runs the whole pipeline in one task group; :class:`Overrides` replaces any
part of it (agent, brain, tools, store, Lark client, event source) without patching.
"""

from larkbot.daemon._assembly import Components, Overrides, Wiring, assemble
from larkbot.daemon._lifecycle import Daemon, DaemonStatus

__all__ = ["Components", "Daemon", "DaemonStatus", "Overrides", "Wiring", "assemble"]

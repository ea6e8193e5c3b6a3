"""Event sources: where verified events come from before admission.

``longconn`` dials Lark's long connection (a WebSocket); each source hands admission one
:class:`~larkbot.core.frames.InboundFrame` at a time and sends back the ack it returns.
"""

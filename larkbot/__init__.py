"""larkbot: an AI assistant daemon for Lark/Feishu chats over the long connection."""

__version__ = "0.1.0"

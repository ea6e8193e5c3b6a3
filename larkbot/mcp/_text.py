"""The sentences ``larkbot mcp`` says to a caller, in Japanese, English and Chinese."""

from __future__ import annotations

from larkbot.core.language import Language

__all__ = ["say"]

# key -> (ja, en, zh)
_CATALOGUE: dict[str, tuple[str, str, str]] = {
    "unknown_tool": (
        "「{name}」というツールはこのサーバーにありません。使えるツール: {names}",
        "This server has no tool called “{name}”. Available tools: {names}.",
        "此服务器没有名为“{name}”的工具。可用的工具：{names}。",
    ),
    "needs_user_token": (
        "この呼び出しにはユーザーアクセストークンが必要です。Lark のユーザーアクセストークンを "
        "Bearer トークンとして接続してください。",
        "This call needs a user access token: connect with your Lark user access token as "
        "the bearer token.",
        "此调用需要用户访问令牌：请以 Lark 用户访问令牌作为 Bearer 令牌连接。",
    ),
    "posting_needs_writes": (
        "チャットへの投稿は書き込みにあたります。larkbot mcp を --allow-writes 付きで起動して"
        "ください。",
        "Posting in a chat is a change: start larkbot mcp with --allow-writes to allow it.",
        "在群聊中发帖属于更改操作：请使用 --allow-writes 启动 larkbot mcp。",
    ),
    "posted": (
        "チャット {chat_id} に回答を投稿しました。",
        "The answer was posted in chat {chat_id}.",
        "已在群聊 {chat_id} 中发布回答。",
    ),
}

_INDEX: dict[str, int] = {"ja": 0, "en": 1, "zh": 2}


def say(language: Language, key: str, **values: object) -> str:
    """Return sentence ``key`` in ``language``, filled with ``values``."""
    return _CATALOGUE[key][_INDEX.get(language, 1)].format(**values)

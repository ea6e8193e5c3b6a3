"""``help tools`` one-liners of the history, chat, document, wiki, Base schema and people tools.

Shaped like :data:`larkbot.agent.i18n.MESSAGES` (key -> language -> sentence), which
takes these in, so the two tables merge line for line.
"""

from __future__ import annotations

from larkbot.core.language import Language

__all__ = ["MESSAGES_MORE"]

MESSAGES_MORE: dict[str, dict[Language, str]] = {
    "tool_list_chat_messages": {
        "ja": "チャットやスレッドの最近のメッセージを読む（要約に）",
        "en": "read a chat's or thread's recent messages (to summarise it)",
        "zh": "读取群聊或话题的最近消息（用于总结）",
    },
    "tool_list_chats": {
        "ja": "ボットが参加しているチャットを一覧表示",
        "en": "list the chats the bot is in",
        "zh": "列出机器人所在的群聊",
    },
    "tool_create_chat": {
        "ja": "メンバーを指定してグループを作成",
        "en": "create a group chat with chosen members",
        "zh": "创建群聊并添加成员",
    },
    "tool_read_document": {
        "ja": "ドキュメントを読む（特定の話題の箇所だけも可）",
        "en": "read a document, or only what it says about a topic",
        "zh": "读取文档，或只看其中关于某个话题的内容",
    },
    "tool_import_document": {
        "ja": "Markdown から新しいドキュメントを作成",
        "en": "create a document from Markdown",
        "zh": "用 Markdown 创建新文档",
    },
    "tool_search_wiki": {
        "ja": "Wiki のページを検索",
        "en": "search wiki pages",
        "zh": "搜索知识库页面",
    },
    "tool_get_wiki_node": {
        "ja": "Wiki のリンクから中身（ドキュメントや Base）を調べる",
        "en": "find what a wiki link holds (a document, a Base...)",
        "zh": "查看知识库链接中的内容（文档、多维表格等）",
    },
    "tool_grant_document_permission": {
        "ja": "ドキュメントを人やチャットと共有（閲覧・編集）",
        "en": "share a document with a person or a chat (view or edit)",
        "zh": "将文档共享给人员或群聊（查看或编辑）",
    },
    "tool_list_base_tables": {
        "ja": "Base のテーブルを一覧表示",
        "en": "list the tables of a Base",
        "zh": "列出多维表格中的数据表",
    },
    "tool_list_base_fields": {
        "ja": "Base のテーブルのフィールドを一覧表示",
        "en": "list the fields of a Base table",
        "zh": "列出数据表的字段",
    },
    "tool_create_base_table": {
        "ja": "Base に新しいテーブルを作成",
        "en": "create a table in a Base",
        "zh": "在多维表格中新建数据表",
    },
    "tool_lookup_user_ids": {
        "ja": "メールアドレスや電話番号から open_id を調べる",
        "en": "find open_ids from emails or phone numbers",
        "zh": "通过邮箱或手机号查询 open_id",
    },
}

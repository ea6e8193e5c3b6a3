# ruff: noqa: E501  (a table of sentences reads best one sentence per line)
"""The sentences of the history, chat, document, wiki, Base schema and people tools.

Shaped like :mod:`larkbot.agent.tools._messages` (key -> (ja, en, zh), English singulars
under ``<key>_one``) so the two tables merge line for line; :func:`say` looks here first
and falls back to that table, so these tools can use its sentences too.
"""

from __future__ import annotations

from larkbot.agent.tools import _messages

__all__ = ["say"]

_CATALOGUE: dict[str, tuple[str, str, str]] = {
    # Chat history.
    "ask_chat": (
        "どのチャットですか？ チャット ID（oc_…）を指定してください。",
        "Which chat? Please give its chat ID (oc_…).",
        "请问是哪个群聊？请提供群 ID（oc_…）。",
    ),
    "sender_bot": ("ボット", "Bot", "机器人"),
    "in_chat": ("このチャット", "this chat", "本群聊"),
    "in_thread": ("このスレッド", "this thread", "本话题"),
    "no_messages": (
        "{where}にはまだメッセージがありません。",
        "There are no messages in {where} yet.",
        "{where}中还没有消息。",
    ),
    "messages_header": (
        "{where}の直近のメッセージ {count} 件（古い順）:",
        "The last {count} messages in {where} (oldest first):",
        "{where}最近的 {count} 条消息（按时间顺序）：",
    ),
    "messages_header_one": ("", "The last message in {where}:", ""),
    "messages_older": (
        "（それより前のメッセージは省略しました）",
        "(older messages are not shown)",
        "（更早的消息未显示）",
    ),
    # Chats.
    "chats_found": (
        "ボットが参加しているチャットは {total} 件です:",
        "The bot is in {total} chats:",
        "机器人所在的群聊共 {total} 个：",
    ),
    "chats_found_one": ("", "The bot is in 1 chat:", ""),
    "chats_matching": (
        "「{query}」を含むチャットが {total} 件あります:",
        "{total} chats match “{query}”:",
        "有 {total} 个群聊包含“{query}”：",
    ),
    "chats_matching_one": ("", "1 chat matches “{query}”:", ""),
    "no_chats": (
        "ボットはまだどのチャットにも参加していません。",
        "The bot is not in any chat yet.",
        "机器人还没有加入任何群聊。",
    ),
    "no_chats_matching": (
        "「{query}」を含むチャットは見つかりませんでした。",
        "No chat the bot is in matches “{query}”.",
        "没有找到包含“{query}”的群聊。",
    ),
    "member_unknown": (
        "次の人が見つかりませんでした: {names}。open_id（ou_…）かメールアドレスで指定するか、このチャットのメンバーの名前を使ってください。",
        "I could not find: {names}. Please give their open_id (ou_…) or email, or the name of a member of this chat.",
        "找不到以下人员：{names}。请提供其 open_id（ou_…）或邮箱，或使用本群成员的名字。",
    ),
    "members_invisible": (
        "ボットから見えない（アプリの利用範囲外の）人が含まれているため、グループを作成できませんでした。",
        "The group could not be created: some of the people are outside the app's availability, so the bot cannot see them.",
        "无法创建群聊：部分人员不在应用的可用范围内，机器人无法看到他们。",
    ),
    "chat_created": (
        "グループ「{name}」（{chat_id}）を作成しました。メンバー: {members}",
        "Created the group “{name}” ({chat_id}) with {members}.",
        "已创建群聊“{name}”（{chat_id}），成员：{members}。",
    ),
    # People.
    "ids_found": (
        "{total} 件中 {found} 件が見つかりました:",
        "Found {found} of {total}:",
        "共 {total} 个，找到 {found} 个：",
    ),
    "not_found_short": ("見つかりません", "not found", "未找到"),
    # Documents.
    "bad_doc_ref": (
        "「{value}」はドキュメントのリンクやトークンとして読めません。",
        "“{value}” is not a document link or token.",
        "“{value}”不是有效的文档链接或 token。",
    ),
    "bad_folder_ref": (
        "「{value}」はフォルダのリンクやトークンとして読めません。",
        "“{value}” is not a folder link or token.",
        "“{value}”不是有效的文件夹链接或 token。",
    ),
    "doc_not_found": (
        "そのドキュメントが見つからないか、削除されています。リンクを確認してください。",
        "That document was not found, or it was deleted; please check the link.",
        "找不到该文档，或已被删除；请检查链接。",
    ),
    "doc_forbidden": (
        "アプリにこのドキュメントを読む権限がありません。ドキュメントをアプリ（ボット）と共有してください。",
        "The app may not read this document; share the document with the app (the bot).",
        "应用无权读取该文档；请将文档共享给应用（机器人）。",
    ),
    "not_a_docx": (
        "これは新しいドキュメント（docx）ではなく {kind}（{token}）のため、本文を読めません。",
        "That is not a docx document but a {kind} ({token}), so its text cannot be read.",
        "这不是新版文档（docx），而是 {kind}（{token}），无法读取正文。",
    ),
    "doc_matches": (
        "「{title}」で「{query}」に触れている箇所が {count} か所あります:",
        "“{title}” mentions “{query}” in {count} places:",
        "《{title}》中有 {count} 处提到“{query}”：",
    ),
    "doc_matches_one": ("", "“{title}” mentions “{query}” in 1 place:", ""),
    "doc_no_match": (
        "「{title}」には「{query}」についての記述が見当たりません。",
        "“{title}” does not mention “{query}”.",
        "《{title}》中没有提到“{query}”。",
    ),
    "doc_begins": ("冒頭: {text}", "It begins: {text}", "开头：{text}"),
    "doc_part": (
        "全 {total} 文字のうち {start}〜{end} 文字目",
        "characters {start}–{end} of {total}",
        "共 {total} 个字符，第 {start}–{end} 个",
    ),
    "doc_more": (
        "。続きは offset={offset} で読めます",
        "; ask for offset={offset} to read on",
        "。用 offset={offset} 继续阅读",
    ),
    "doc_too_long": (
        "内容が長すぎます（{count} ブロック）。いくつかのドキュメントに分けてください。",
        "The content is too long ({count} blocks); please split it into several documents.",
        "内容太长（{count} 个块）；请拆分为多个文档。",
    ),
    "folder_not_found": (
        "指定されたフォルダが見つかりません。リンクを確認してください。",
        "That folder was not found; please check the link.",
        "找不到该文件夹；请检查链接。",
    ),
    "folder_forbidden": (
        "アプリはこのフォルダにドキュメントを作成できません。フォルダをアプリと共有（編集権限）してください。",
        "The app may not create documents in that folder; share the folder with the app with edit access.",
        "应用无权在该文件夹中创建文档；请将文件夹以可编辑权限共享给应用。",
    ),
    "doc_created": (
        "ドキュメント「{title}」を作成しました（{document_id}）。",
        "Created the document “{title}” ({document_id}).",
        "已创建文档《{title}》（{document_id}）。",
    ),
    "doc_not_shared": (
        "ただし、あなたへの権限付与に失敗したため、まだ開けない可能性があります。",
        "I could not give you access to it, though, so you may not be able to open it yet.",
        "但未能为您开通权限，您可能暂时无法打开。",
    ),
    "share_forbidden": (
        "アプリはこのドキュメントを共有できません（管理権限が必要です）。",
        "The app may not share this document; it needs full access to it.",
        "应用无权共享该文档（需要可管理权限）。",
    ),
    "perm_view": ("閲覧", "view", "查看"),
    "perm_edit": ("編集", "edit", "编辑"),
    "access_granted": (
        "{member} に {document} の{permission}権限を付与しました。",
        "Gave {member} {permission} access to {document}.",
        "已授予 {member} 对 {document} 的{permission}权限。",
    ),
    # Wiki.
    "bad_wiki_ref": (
        "「{value}」は Wiki のリンクやトークンとして読めません。",
        "“{value}” is not a wiki link or token.",
        "“{value}”不是有效的知识库链接或 token。",
    ),
    "wiki_not_found": (
        "その Wiki ページが見つかりません。リンクを確認してください。",
        "That wiki page was not found; please check the link.",
        "找不到该知识库页面；请检查链接。",
    ),
    "wiki_forbidden": (
        "アプリはこの Wiki ページを読めません。Wiki スペースにアプリ（ボット）を追加してください。",
        "The app may not read this wiki page; add the app (the bot) to the wiki space.",
        "应用无权读取该知识库页面；请将应用（机器人）添加到知识空间。",
    ),
    "wiki_found": (
        "「{query}」の Wiki ページが {total} 件見つかりました:",
        "Found {total} wiki pages for “{query}”:",
        "找到 {total} 个与“{query}”相关的知识库页面：",
    ),
    "wiki_found_one": ("", "Found 1 wiki page for “{query}”:", ""),
    "no_wiki": (
        "「{query}」に一致する Wiki ページはありませんでした。",
        "No wiki pages match “{query}”.",
        "没有与“{query}”匹配的知识库页面。",
    ),
    "wiki_node": (
        "Wiki ページ「{title}」の中身は{kind}です（{token}）。",
        "The wiki page “{title}” holds a {kind} ({token}).",
        "知识库页面“{title}”中是{kind}（{token}）。",
    ),
    "kind_docx": ("ドキュメント", "document", "文档"),
    "kind_doc": ("旧形式のドキュメント", "legacy document", "旧版文档"),
    "kind_sheet": ("スプレッドシート", "spreadsheet", "电子表格"),
    "kind_bitable": ("Base", "Base", "多维表格"),
    "kind_mindnote": ("マインドマップ", "mind map", "思维笔记"),
    "kind_file": ("ファイル", "file", "文件"),
    "kind_slides": ("スライド", "slide deck", "幻灯片"),
    # Base tables and fields.
    "bad_base_ref": (
        "「{value}」は Base のリンク、app_token、設定済みのテーブル名のいずれとしても読めません。",
        "“{value}” is not a Base link, an app_token or a configured table.",
        "“{value}”不是多维表格链接、app_token 或已配置的数据表。",
    ),
    "not_a_base": (
        "これは Base ではなく {kind}（{token}）です。",
        "That is not a Base but a {kind} ({token}).",
        "这不是多维表格，而是 {kind}（{token}）。",
    ),
    "base_not_found": (
        "その Base が見つかりません。リンクか app_token を確認し、Base をアプリと共有してください。",
        "That Base was not found; check the link or app_token, and share the Base with the app.",
        "找不到该多维表格；请检查链接或 app_token，并将其共享给应用。",
    ),
    "base_table_not_found": (
        "その Base にそのテーブルはありません（table_id を確認してください）。",
        "That Base has no such table; check the table_id.",
        "该多维表格中没有这张数据表；请检查 table_id。",
    ),
    "table_name_taken": (
        "この Base にはすでに「{name}」というテーブルがあります。",
        "This Base already has a table called “{name}”.",
        "该多维表格中已有名为“{name}”的数据表。",
    ),
    "no_base_tables": (
        "この Base にはテーブルがありません。",
        "This Base has no tables.",
        "该多维表格中没有数据表。",
    ),
    "base_tables": (
        "この Base のテーブルは {count} 件です:",
        "This Base has {count} tables:",
        "该多维表格共有 {count} 张数据表：",
    ),
    "base_tables_one": ("", "This Base has 1 table:", ""),
    "base_fields": (
        "{table} のフィールドは {count} 件です:",
        "{table} has {count} fields:",
        "{table} 共有 {count} 个字段：",
    ),
    "base_fields_one": ("", "{table} has 1 field:", ""),
    "primary_field": ("主フィールド", "primary", "主字段"),
    "ask_base_table": (
        "どのテーブルですか？ table_id（tbl…）かテーブル名を指定してください。",
        "Which table? Please give its table_id (tbl…) or name.",
        "请问是哪张数据表？请提供 table_id（tbl…）或表名。",
    ),
    "no_such_base_table": (
        "この Base に「{table}」というテーブルはありません。テーブル: {tables}",
        "This Base has no table called “{table}”. Tables: {tables}.",
        "该多维表格中没有名为“{table}”的数据表。数据表：{tables}。",
    ),
    "duplicate_field_names": (
        "同じ名前のフィールドが複数あります。名前を変えてください。",
        "Two fields have the same name; please name them differently.",
        "有重名的字段；请使用不同的名称。",
    ),
    "base_table_created": (
        "テーブル「{name}」（{table_id}）を作成しました。フィールド: {fields}",
        "Created the table “{name}” ({table_id}) with the fields {fields}.",
        "已创建数据表“{name}”（{table_id}），字段：{fields}。",
    ),
    "field_text": ("テキスト", "text", "文本"),
    "field_number": ("数値", "number", "数字"),
    "field_single_select": ("単一選択", "single select", "单选"),
    "field_multi_select": ("複数選択", "multiple select", "多选"),
    "field_date": ("日付", "date", "日期"),
    "field_checkbox": ("チェックボックス", "checkbox", "复选框"),
    "field_person": ("ユーザー", "person", "人员"),
    "field_phone": ("電話番号", "phone", "电话号码"),
    "field_url": ("リンク", "link", "超链接"),
    "field_attachment": ("添付ファイル", "attachment", "附件"),
    "field_link": ("関連レコード", "linked records", "单向关联"),
    "field_formula": ("数式", "formula", "公式"),
    "field_created_time": ("作成日時", "created time", "创建时间"),
    "field_modified_time": ("更新日時", "modified time", "最后更新时间"),
    "field_created_by": ("作成者", "created by", "创建人"),
    "field_modified_by": ("更新者", "modified by", "修改人"),
    "field_auto_number": ("自動採番", "auto number", "自动编号"),
}

_INDEX: dict[str, int] = {"ja": 0, "en": 1, "zh": 2}


def say(language: str, key: str, *, count: int | None = None, **values: object) -> str:
    """Return the sentence ``key`` in ``language`` (Japanese when unknown), filled with ``values``.

    ``count`` selects the English singular form where one exists and is also available
    to the template as ``{count}``. Keys not in this table come from the tools' main one.
    """
    if key not in _CATALOGUE:
        return _messages.say(language, key, count=count, **values)
    index = _INDEX.get(language, 0)
    template = _CATALOGUE[key][index]
    if count == 1 and index == 1 and f"{key}_one" in _CATALOGUE:
        template = _CATALOGUE[f"{key}_one"][1]
    if count is not None:
        values.setdefault("count", count)
    return template.format(**values)

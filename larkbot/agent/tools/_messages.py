"""Every sentence the tools and the tool runner say to a user, in Japanese, English and Chinese.

Kept in one table so a translation never drifts out of step with its siblings, and so a
missing language fails the import rather than a chat reply.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Language", "say"]

Language = Literal["ja", "en", "zh"]

# key -> (ja, en, zh). An English variant for a count of one lives under "<key>_one".
_CATALOGUE: dict[str, tuple[str, str, str]] = {
    # The runner: arguments, policy, limits.
    "unknown_tool": (
        "「{name}」というツールはありません。使えるツール: {names}",
        "There is no tool called “{name}”. Available tools: {names}.",
        "没有名为“{name}”的工具。可用的工具：{names}。",
    ),
    "bad_json": (
        "{tool} の引数が JSON として読めません。",
        "The arguments for {tool} are not valid JSON.",
        "{tool} 的参数不是有效的 JSON。",
    ),
    "invalid_args": (
        "{tool} の引数に問題があります: {problems}",
        "The arguments for {tool} are not valid: {problems}.",
        "{tool} 的参数无效：{problems}。",
    ),
    "arg_missing": ("{field} は必須です", "{field} is required", "{field} 为必填项"),
    "arg_extra": (
        "{field} は使えない引数です",
        "{field} is not an accepted argument",
        "{field} 不是可接受的参数",
    ),
    "denied": (
        "{tool} で変更を行う権限がありません。管理者に writers への追加を依頼してください。",
        "You are not allowed to make changes with {tool}; ask an administrator to add you "
        "to the writers.",
        "您没有使用 {tool} 进行更改的权限；请联系管理员将您加入 writers。",
    ),
    "write_limited": (
        "変更は 1 分間に {limit} 回までです。{seconds} 秒後にもう一度お試しください。",
        "You can make {limit} changes per minute; try again in {seconds} seconds.",
        "每分钟最多可进行 {limit} 次更改；请在 {seconds} 秒后重试。",
    ),
    # Lark's refusals, turned into something a chat user can act on.
    "no_scope": (
        "アプリに必要な Lark の権限（{scopes}）がありません。"
        "管理者が開発者コンソールで付与できます。",
        "The app lacks the Lark permission this needs ({scopes}); an administrator can grant "
        "it in the developer console.",
        "应用缺少所需的 Lark 权限（{scopes}）；管理员可以在开发者后台开通。",
    ),
    "record_not_found": (
        "指定されたレコードが見つかりません（削除されたか、ID が違います）。",
        "That record was not found (it was deleted, or the ID is wrong).",
        "找不到该记录（已被删除或 ID 有误）。",
    ),
    "table_not_found": (
        "テーブルが Lark に見つかりません。app_token と table_id（リンク、または設定の "
        "bases）を確認してください。",
        "The table does not exist in Lark; check its app_token and table_id (in the link, or "
        "under bases in the configuration).",
        "Lark 中找不到该数据表；请检查 app_token 和 table_id（链接中，或配置的 bases 中）。",
    ),
    "field_not_found": (
        "テーブルに存在しないフィールド名が含まれています。",
        "One of the field names does not exist in the table.",
        "包含数据表中不存在的字段名。",
    ),
    "value_conversion": (
        "フィールドの型に合わない値があります（{detail}）。",
        "A value does not fit its field's type ({detail}).",
        "有值与字段类型不符（{detail}）。",
    ),
    "base_forbidden": (
        "アプリにこの Base へのアクセス権がありません。Base をアプリと共有してください。",
        "The app cannot access this Base; share the Base with the app.",
        "应用无权访问该多维表格；请将其共享给应用。",
    ),
    "user_not_found": (
        "そのユーザーが見つからないか、アプリが参照できる連絡先の範囲外です。",
        "That user was not found, or is outside the contacts the app may see.",
        "找不到该用户，或其不在应用可见的通讯录范围内。",
    ),
    "chat_not_found": (
        "そのチャットが見つからないか、ボットが参加していません。",
        "That chat was not found, or the bot is not a member of it.",
        "找不到该群聊，或机器人不在群中。",
    ),
    "user_unreachable": (
        "ボットはそのユーザーにメッセージを送れません（アプリの利用範囲外です）。",
        "The bot cannot message that user (they are outside the app's availability).",
        "机器人无法给该用户发消息（该用户不在应用的可用范围内）。",
    ),
    "lark_busy": (
        "Lark が混み合っています。少し待ってからもう一度お試しください。",
        "Lark is busy right now; please try again in a moment.",
        "Lark 当前繁忙，请稍后再试。",
    ),
    "lark_refused": (
        "Lark がリクエストを受け付けませんでした（コード {code}: {msg}）。",
        "Lark refused the request (code {code}: {msg}).",
        "Lark 拒绝了请求（代码 {code}：{msg}）。",
    ),
    "lark_unreachable": (
        "Lark から応答がありませんでした。もう一度お試しください。",
        "Lark did not answer; please try again.",
        "Lark 没有响应，请重试。",
    ),
    "internal_error": (
        "{tool} の実行中に予期しないエラーが起きました。",
        "Something went wrong while running {tool}.",
        "运行 {tool} 时出现意外错误。",
    ),
    # Base tables.
    "unknown_table": (
        "「{table}」というテーブルは設定されていません。使えるテーブル: {tables}"
        "（Base のリンク、または app_token と table_id でも指定できます）",
        "No table called “{table}” is configured. Configured tables: {tables}. A Base link, "
        "or app_token and table_id, work too.",
        "未配置名为“{table}”的数据表。已配置的数据表：{tables}。"
        "也可以使用多维表格链接，或 app_token 和 table_id。",
    ),
    "no_tables": (
        "テーブルが一つも設定されていません（設定の bases）。Base のリンク、または "
        "app_token と table_id で指定してください。",
        "No tables are configured (bases in the configuration); give a Base link, or "
        "app_token and table_id.",
        "尚未配置任何数据表（配置中的 bases）；请提供多维表格链接，或 app_token 和 table_id。",
    ),
    "bad_base_link": (
        "「{link}」は Base のテーブルへのリンクではありません"
        "（https://…/base/<app_token>?table=<table_id> の形です）。",
        "“{link}” is not a link to a Base table (it looks like "
        "https://…/base/<app_token>?table=<table_id>).",
        "“{link}”不是多维表格数据表的链接（格式为 https://…/base/<app_token>?table=<table_id>）。",
    ),
    "base_not_allowed": (
        "この Base（{app_token}）への変更は許可されていません。管理者に tools.allowed_bases "
        "への追加を依頼してください。",
        "Changes to this Base ({app_token}) are not allowed; ask an administrator to add it "
        "to tools.allowed_bases.",
        "不允许更改此多维表格（{app_token}）；请联系管理员将其加入 tools.allowed_bases。",
    ),
    "unknown_field": (
        "「{table}」に「{field}」というフィールドはありません。フィールド: {fields}",
        "Table “{table}” has no field “{field}”. Fields: {fields}.",
        "数据表“{table}”中没有字段“{field}”。字段：{fields}。",
    ),
    "no_date_field": (
        "「{table}」には日付フィールドがないため、期間で絞り込めません。",
        "Table “{table}” has no date field, so it cannot be filtered by date.",
        "数据表“{table}”没有日期字段，无法按日期筛选。",
    ),
    "bad_value": (
        "フィールド「{field}」の値「{value}」は{kind}として読めません。",
        "The value “{value}” for field “{field}” is not a valid {kind}.",
        "字段“{field}”的值“{value}”不是有效的{kind}。",
    ),
    "kind_number": ("数値", "number", "数字"),
    "kind_date": ("日付", "date", "日期"),
    "kind_checkbox": ("はい/いいえ", "yes/no value", "是/否值"),
    "kind_person": ("ユーザーの open_id", "user open_id", "用户 open_id"),
    "kind_options": ("選択肢のリスト", "list of options", "选项列表"),
    "kind_link": ("URL", "URL", "URL"),
    "read_only_field": (
        "フィールド「{field}」は自動で計算されるため設定できません。",
        "Field “{field}” is computed by Lark and cannot be set.",
        "字段“{field}”由 Lark 自动计算，无法写入。",
    ),
    "records_found": (
        "{table} で {total} 件見つかりました:",
        "Found {total} records in {table}:",
        "在 {table} 中找到 {total} 条记录：",
    ),
    "records_found_one": ("", "Found 1 record in {table}:", ""),
    "scan_limited": (
        "（最初の {scanned} 件だけを検索しました。条件を絞ると確実です）",
        "(only the first {scanned} records were searched; narrow the filters to be sure)",
        "（仅搜索了前 {scanned} 条记录；缩小筛选条件会更准确）",
    ),
    "no_records": (
        "{table} に条件に合うレコードはありませんでした。",
        "No records in {table} match.",
        "{table} 中没有符合条件的记录。",
    ),
    "and_more": ("…ほか {count} 件", "…and {count} more", "……另外还有 {count} 条"),
    "record_created": (
        "{table} にレコードを作成しました: {summary}",
        "Created a record in {table}: {summary}",
        "已在 {table} 中创建记录：{summary}",
    ),
    "record_updated": (
        "{table} のレコードを更新しました: {summary}",
        "Updated the record in {table}: {summary}",
        "已更新 {table} 中的记录：{summary}",
    ),
    "record_deleted": (
        "{table} のレコード {record_id} を削除しました。",
        "Deleted record {record_id} from {table}.",
        "已从 {table} 删除记录 {record_id}。",
    ),
    # Messages, people, chats, documents, calendar.
    "message_sent_chat": (
        "チャット {target} にメッセージを送りました。",
        "Sent the message to chat {target}.",
        "已向群聊 {target} 发送消息。",
    ),
    "message_sent_user": (
        "{target} にメッセージを送りました。",
        "Sent the message to {target}.",
        "已向 {target} 发送消息。",
    ),
    "email_not_found": (
        "{email} のユーザーは見つかりませんでした。",
        "No user has the email {email}.",
        "找不到邮箱为 {email} 的用户。",
    ),
    "label_name": ("名前", "Name", "姓名"),
    "label_email": ("メール", "Email", "邮箱"),
    "label_department": ("部署", "Department", "部门"),
    "label_job_title": ("役職", "Job title", "职位"),
    "label_city": ("勤務地", "City", "城市"),
    "docs_found": (
        "「{query}」のドキュメントが {total} 件見つかりました:",
        "Found {total} documents for “{query}”:",
        "找到 {total} 个与“{query}”相关的文档：",
    ),
    "docs_found_one": ("", "Found 1 document for “{query}”:", ""),
    "no_docs": (
        "「{query}」に一致するドキュメントはありませんでした。",
        "No documents match “{query}”.",
        "没有与“{query}”匹配的文档。",
    ),
    "members": (
        "このチャットのメンバーは {total} 人です:",
        "This chat has {total} members:",
        "该群聊共有 {total} 名成员：",
    ),
    "members_one": ("", "This chat has 1 member:", ""),
    "members_more": ("…ほか {count} 人", "…and {count} more", "……另外还有 {count} 人"),
    "no_primary_calendar": (
        "ボットのカレンダーが見つかりませんでした。",
        "The bot has no primary calendar.",
        "找不到机器人的主日历。",
    ),
    "event_created": (
        "予定「{summary}」を作成しました: {when}",
        "Created the event “{summary}”: {when}",
        "已创建日程“{summary}”：{when}",
    ),
    "event_attendees": ("参加者: {names}", "Attendees: {names}", "参与者：{names}"),
}

_INDEX: dict[str, int] = {"ja": 0, "en": 1, "zh": 2}


def say(language: str, key: str, *, count: int | None = None, **values: object) -> str:
    """Return the sentence ``key`` in ``language`` (Japanese when unknown), filled with ``values``.

    ``count`` selects the English singular form where one exists and is also available
    to the template as ``{count}``.
    """
    index = _INDEX.get(language, 0)
    template = _CATALOGUE[key][index]
    if count == 1 and index == 1 and f"{key}_one" in _CATALOGUE:
        template = _CATALOGUE[f"{key}_one"][1]
    if count is not None:
        values.setdefault("count", count)
    return template.format(**values)

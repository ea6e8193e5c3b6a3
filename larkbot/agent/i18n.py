# ruff: noqa: E501  (a table of sentences reads best one sentence per line)
"""Every sentence the assistant says, in Japanese, English and Chinese.

One table keyed by message id, then language; templates use :meth:`str.format`
placeholders. Code never builds user-facing sentences itself: it picks an id here.
"""

from __future__ import annotations

from typing import Any

from larkbot.agent._i18n_more import MESSAGES_MORE
from larkbot.core.language import Language

__all__ = ["MESSAGES", "humanise_duration", "join_list", "translate"]

MESSAGES: dict[str, dict[Language, str]] = {
    # --- the assistant's own answers -------------------------------------------------
    "empty": {
        "ja": "何かお手伝いできることはありますか？ `help` で使い方を表示します。",
        "en": "How can I help? Send `help` to see what I can do.",
        "zh": "有什么可以帮您的吗？发送 `help` 查看使用方法。",
    },
    "non_text": {
        "ja": "申し訳ありません。今のところテキストのメッセージしか読めません。内容を文字で送っていただけますか？",
        "en": "Sorry, I can only read text messages for now. Could you send that as text?",
        "zh": "抱歉，目前我只能读取文字消息。请用文字发送。",
    },
    "rate_limited": {
        "ja": "リクエストが多すぎます（1分間に{limit}件まで）。{seconds}秒後にもう一度お試しください。",
        "en": "You are sending requests too quickly (up to {limit} a minute). "
        "Please try again in {seconds} s.",
        "zh": "请求过于频繁（每分钟最多 {limit} 次）。请在 {seconds} 秒后重试。",
    },
    "error": {
        "ja": "申し訳ありません。処理中に問題が発生しました。しばらくしてからもう一度お試しください。",
        "en": "Sorry, something went wrong while handling your request. "
        "Please try again in a moment.",
        "zh": "抱歉，处理您的请求时出现了问题。请稍后重试。",
    },
    # --- the LLM brain ------------------------------------------------------------------
    "llm_timeout": {
        "ja": "申し訳ありません。AI モデルの応答に時間がかかりすぎています。しばらくしてからもう一度お試しください。",
        "en": "Sorry, the AI model is taking too long to answer. Please try again in a moment.",
        "zh": "抱歉，AI 模型响应时间过长。请稍后重试。",
    },
    "llm_rate_limited": {
        "ja": "申し訳ありません。AI モデルが混み合っています。1分ほどしてからもう一度お試しください。",
        "en": "Sorry, the AI model is busy right now. Please try again in a minute.",
        "zh": "抱歉，AI 模型当前繁忙。请一分钟后重试。",
    },
    "llm_auth_error": {
        "ja": "申し訳ありません。AI モデルに接続できません（API キーが拒否されました）。管理者に LLM の設定の確認を依頼してください。",
        "en": "Sorry, I cannot use the AI model: its API key was refused. "
        "Please ask the administrator to check the LLM settings.",
        "zh": "抱歉，无法使用 AI 模型：API 密钥被拒绝。请联系管理员检查 LLM 设置。",
    },
    "llm_server_error": {
        "ja": "申し訳ありません。AI モデルのサービスで問題が発生しました。しばらくしてからもう一度お試しください。",
        "en": "Sorry, the AI model's service ran into a problem. Please try again in a moment.",
        "zh": "抱歉，AI 模型服务出现了问题。请稍后重试。",
    },
    "llm_unreachable": {
        "ja": "申し訳ありません。AI モデルのサービスに接続できませんでした。しばらくしてからもう一度お試しください。",
        "en": "Sorry, I could not reach the AI model's service. Please try again in a moment.",
        "zh": "抱歉，无法连接 AI 模型服务。请稍后重试。",
    },
    "llm_error": {
        "ja": "申し訳ありません。AI モデルがこのご依頼に回答できませんでした。言い換えるか、もう一度お試しください。",
        "en": "Sorry, the AI model could not answer this request. Please rephrase it or try again.",
        "zh": "抱歉，AI 模型无法回答此请求。请换一种说法或重试。",
    },
    "llm_too_many_steps": {
        "ja": "申し訳ありません。このご依頼は一度に処理できる手順の数を超えました。いくつかの小さな依頼に分けてお試しください。",
        "en": "Sorry, this request needs more steps than I can take at once. "
        "Please split it into smaller requests.",
        "zh": "抱歉，此请求所需的步骤超出了我一次能处理的数量。请拆分成几个较小的请求。",
    },
    # --- help ------------------------------------------------------------------------
    "help": {
        "ja": (
            "**使い方**\n"
            "話しかけるだけで、Lark の Base・メッセージ・ユーザー・ドキュメント・カレンダーを操作します。\n"
            "{examples}\n\n"
            "**コマンド**\n"
            "• `help tools` — 使えるツールの一覧\n"
            "• `help permissions` — ツールに必要な権限\n"
            "• `status` — 稼働状況\n"
            "• `settings` — このチャットの設定\n"
            "• `reset` — 会話の履歴を消去\n"
            "• `lang ja|en|zh|auto` — 回答の言語\n"
            "• `agent 名前` — プロファイルの切り替え\n"
            "• `ping` — 応答の確認"
        ),
        "en": (
            "**How to use me**\n"
            "Just ask: I work with Lark Base tables, messages, users, documents and calendars.\n"
            "{examples}\n\n"
            "**Commands**\n"
            "• `help tools` — the tools I can use\n"
            "• `help permissions` — the permissions each tool needs\n"
            "• `status` — how I am running\n"
            "• `settings` — this chat's settings\n"
            "• `reset` — clear the conversation history\n"
            "• `lang ja|en|zh|auto` — the language I answer in\n"
            "• `agent NAME` — switch profile\n"
            "• `ping` — check that I respond"
        ),
        "zh": (
            "**使用方法**\n"
            "直接告诉我即可：我可以操作 Lark 的多维表格、消息、用户、文档和日历。\n"
            "{examples}\n\n"
            "**命令**\n"
            "• `help tools` — 可用的工具\n"
            "• `help permissions` — 各工具需要的权限\n"
            "• `status` — 运行状态\n"
            "• `settings` — 本会话的设置\n"
            "• `reset` — 清除对话记录\n"
            "• `lang ja|en|zh|auto` — 回答语言\n"
            "• `agent 名称` — 切换配置\n"
            "• `ping` — 检查响应"
        ),
    },
    "examples": {
        "ja": (
            "例:\n"
            "• 顧客テーブルから今月の案件を検索して\n"
            "• 顧客に追加 名前=Acme, 状態=商談中\n"
            "• 「こんにちは」を @田中 に送って\n"
            "• @田中 さんの情報\n"
            "• 予算のドキュメントを探して\n"
            "• メンバー一覧\n"
            "• 明日15時に会議を予約"
        ),
        "en": (
            "For example:\n"
            "• search customers for Acme\n"
            "• add to customers name=Acme, status=open\n"
            "• send 'hello' to @Tom\n"
            "• who is @Tom\n"
            "• find documents about budget\n"
            "• who is in this chat\n"
            "• book a meeting tomorrow 3pm for 30 min about planning"
        ),
        "zh": (
            "例如：\n"
            "• 在客户表中搜索 Acme\n"
            "• 在客户表中添加 名称=Acme, 状态=洽谈中\n"
            "• 把“你好”发给 @小王\n"
            "• @小王 是谁\n"
            "• 搜索文档 预算\n"
            "• 群成员\n"
            "• 明天下午3点预约会议"
        ),
    },
    "help_tools_header": {
        "ja": "**使えるツール**",
        "en": "**Tools I can use**",
        "zh": "**可用的工具**",
    },
    "help_tools_line": {
        "ja": "• `{name}`（{kind}）— {description}",
        "en": "• `{name}` ({kind}) — {description}",
        "zh": "• `{name}`（{kind}）— {description}",
    },
    "help_tools_none": {
        "ja": "現在使えるツールはありません。",
        "en": "No tools are available right now.",
        "zh": "当前没有可用的工具。",
    },
    "help_tools_profile": {
        "ja": "現在のプロファイル（{profile}）で使えるもの: {tools}",
        "en": "Allowed for the current profile ({profile}): {tools}",
        "zh": "当前配置（{profile}）可用：{tools}",
    },
    "kind_read": {"ja": "読み取り", "en": "read", "zh": "读取"},
    "kind_write": {"ja": "書き込み", "en": "write", "zh": "写入"},
    "help_permissions_header": {
        "ja": "**各ツールに必要な Lark の権限（スコープ）**",
        "en": "**Lark permissions (scopes) each tool needs**",
        "zh": "**各工具需要的 Lark 权限（scope）**",
    },
    "help_permissions_line": {
        "ja": "• `{name}`（{kind}）: {scopes}",
        "en": "• `{name}` ({kind}): {scopes}",
        "zh": "• `{name}`（{kind}）：{scopes}",
    },
    "help_permissions_no_scope": {"ja": "なし", "en": "none", "zh": "无"},
    "help_permissions_writers_all": {
        "ja": "書き込みツールは、このボットを使える全員が実行できます。",
        "en": "Write tools can be used by everyone who may use this bot.",
        "zh": "所有可以使用本机器人的用户都可以使用写入工具。",
    },
    "help_permissions_writers_list": {
        "ja": "書き込みツールを実行できるユーザー: {writers}",
        "en": "Write tools can be used only by: {writers}",
        "zh": "只有以下用户可以使用写入工具：{writers}",
    },
    "help_permissions_writers_none": {
        "ja": "書き込みツールは誰も実行できない設定です。",
        "en": "Write tools are disabled for everyone.",
        "zh": "写入工具已对所有用户禁用。",
    },
    # --- status and settings ---------------------------------------------------------
    "status": {
        "ja": (
            "**ステータス**\n"
            "• バージョン: {version}\n"
            "• 稼働時間: {uptime}\n"
            "• Lark との接続: {connection}\n"
            "• 処理したイベント: {events}\n"
            "• キャッシュ中の会話: {conversations}\n"
            "• LLM: {llm}"
        ),
        "en": (
            "**Status**\n"
            "• Version: {version}\n"
            "• Uptime: {uptime}\n"
            "• Connection to Lark: {connection}\n"
            "• Events handled: {events}\n"
            "• Conversations cached: {conversations}\n"
            "• LLM: {llm}"
        ),
        "zh": (
            "**状态**\n"
            "• 版本：{version}\n"
            "• 运行时间：{uptime}\n"
            "• 与 Lark 的连接：{connection}\n"
            "• 已处理事件：{events}\n"
            "• 缓存的对话：{conversations}\n"
            "• LLM：{llm}"
        ),
    },
    "connected": {"ja": "接続中", "en": "connected", "zh": "已连接"},
    "disconnected": {"ja": "切断中", "en": "disconnected", "zh": "未连接"},
    "unknown": {"ja": "不明", "en": "unknown", "zh": "未知"},
    "llm_on": {
        "ja": "オン（モデル: {model}）",
        "en": "on (model: {model})",
        "zh": "开启（模型：{model}）",
    },
    "llm_off": {
        "ja": "オフ（コマンドと定型の依頼に対応）",
        "en": "off (commands and set phrases only)",
        "zh": "关闭（仅支持命令和固定句式）",
    },
    "settings": {
        "ja": (
            "**このチャットの設定**\n"
            "• 言語: {language}\n"
            "• プロファイル: {profile}\n"
            "• リクエスト上限: {requests}\n"
            "• 書き込み上限: {writes}\n"
            "• 保持する会話の長さ: {history} 件"
        ),
        "en": (
            "**Settings for this chat**\n"
            "• Language: {language}\n"
            "• Profile: {profile}\n"
            "• Request limit: {requests}\n"
            "• Change limit: {writes}\n"
            "• Conversation history kept: {history} turns"
        ),
        "zh": (
            "**本会话的设置**\n"
            "• 语言：{language}\n"
            "• 配置：{profile}\n"
            "• 请求上限：{requests}\n"
            "• 写入上限：{writes}\n"
            "• 保留的对话记录：{history} 条"
        ),
    },
    "language_auto": {
        "ja": "自動（メッセージに合わせる。既定: {default}）",
        "en": "automatic (follows your messages; default: {default})",
        "zh": "自动（跟随消息语言，默认：{default}）",
    },
    "per_minute": {"ja": "1分間に{count}件", "en": "{count} a minute", "zh": "每分钟 {count} 次"},
    "unlimited": {"ja": "なし", "en": "none", "zh": "无"},
    "language_name_ja": {"ja": "日本語", "en": "Japanese", "zh": "日语"},
    "language_name_en": {"ja": "英語", "en": "English", "zh": "英语"},
    "language_name_zh": {"ja": "中国語", "en": "Chinese", "zh": "中文"},
    # --- conversation commands -------------------------------------------------------
    "reset_done": {
        "ja": "会話の履歴を消去しました。",
        "en": "I have cleared this conversation's history.",
        "zh": "已清除本次对话的记录。",
    },
    "pong": {"ja": "pong（{latency}）", "en": "pong ({latency})", "zh": "pong（{latency}）"},
    "latency": {
        "ja": "メッセージ受信まで {ms} ms",
        "en": "your message reached me in {ms} ms",
        "zh": "消息送达用时 {ms} 毫秒",
    },
    "lang_set": {
        "ja": "これからは日本語でお答えします。",
        "en": "I will answer in English from now on.",
        "zh": "今后我将用中文回答。",
    },
    "lang_auto": {
        "ja": "言語の固定を解除しました。メッセージの言語に合わせてお答えします。",
        "en": "Language unpinned: I will answer in the language you write in.",
        "zh": "已取消固定语言：我将用您所写的语言回答。",
    },
    "lang_usage": {
        "ja": "使い方: `lang ja`、`lang en`、`lang zh`（`lang auto` で自動に戻します）",
        "en": "Usage: `lang ja`, `lang en` or `lang zh` (`lang auto` to follow your messages)",
        "zh": "用法：`lang ja`、`lang en` 或 `lang zh`（`lang auto` 恢复自动）",
    },
    "agent_switched": {
        "ja": "プロファイルを {profile} に切り替えました。",
        "en": "Switched to the {profile} profile.",
        "zh": "已切换到 {profile} 配置。",
    },
    "agent_unknown": {
        "ja": "「{name}」というプロファイルはありません。利用できるプロファイル: {profiles}",
        "en": 'There is no profile called "{name}". Available profiles: {profiles}',
        "zh": "没有名为“{name}”的配置。可用的配置：{profiles}",
    },
    "agent_list": {
        "ja": "現在のプロファイル: {profile}。利用できるプロファイル: {profiles}（`agent 名前` で切り替え）",
        "en": "Current profile: {profile}. Available profiles: {profiles} (`agent NAME` to switch)",
        "zh": "当前配置：{profile}。可用的配置：{profiles}（发送 `agent 名称` 切换）",
    },
    # --- the offline brain -----------------------------------------------------------
    "fallback": {
        "ja": "ご依頼の内容を判断できませんでした。次のような依頼に対応しています。\n{examples}\n\n"
        "`help` でコマンドの一覧を表示します。",
        "en": "I could not tell what you would like me to do. I can handle requests like these.\n"
        "{examples}\n\nSend `help` for the list of commands.",
        "zh": "我无法确定您想让我做什么。我可以处理这样的请求。\n{examples}\n\n发送 `help` 查看命令列表。",
    },
    "no_tools": {
        "ja": "申し訳ありません。現在 Lark のツールを利用できないため、このご依頼には対応できません。",
        "en": "Sorry, Lark tools are not available right now, so I cannot do that.",
        "zh": "抱歉，当前无法使用 Lark 工具，因此无法处理此请求。",
    },
    "tool_not_allowed": {
        "ja": "現在のプロファイル（{profile}）では `{tool}` を使えません。"
        "`agent {suggestion}` で切り替えられます。",
        "en": "The current profile ({profile}) cannot use `{tool}`. "
        "Send `agent {suggestion}` to switch.",
        "zh": "当前配置（{profile}）不能使用 `{tool}`。发送 `agent {suggestion}` 即可切换。",
    },
    "ask_table": {
        "ja": "どのテーブルですか？ 利用できるテーブル: {tables}",
        "en": "Which table? Available tables: {tables}",
        "zh": "请问是哪张表？可用的表：{tables}",
    },
    "no_tables": {
        "ja": "Base のテーブルが設定されていません。管理者に `[bases]` の設定を依頼してください。",
        "en": "No Base tables are configured. Please ask the administrator to set up `[bases]`.",
        "zh": "尚未配置多维表格。请联系管理员设置 `[bases]`。",
    },
    "ask_record_id": {
        "ja": "対象のレコード ID（例: recAbC123）を指定してください。",
        "en": "Please give the record ID (for example recAbC123).",
        "zh": "请提供记录 ID（例如 recAbC123）。",
    },
    "ask_fields": {
        "ja": "設定する項目を `項目=値` の形で指定してください（例: 名前=Acme, 状態=商談中）。",
        "en": "Please give the fields as `field=value` (for example name=Acme, status=open).",
        "zh": "请以 `字段=值` 的形式提供字段（例如 名称=Acme, 状态=洽谈中）。",
    },
    "ask_message_text": {
        "ja": '送る内容を「」や "" で囲んで指定してください（例: 「こんにちは」を @田中 に送って）。',
        "en": "Please put the message in quotes (for example: send 'hello' to @Tom).",
        "zh": "请用引号括起要发送的内容（例如：把“你好”发给 @小王）。",
    },
    "ask_message_target": {
        "ja": "送り先を指定してください: @メンション、チャット ID（oc_…）、またはユーザーの open_id（ou_…）。",
        "en": "Who should I send it to? Give an @mention, a chat ID (oc_…) or a user open_id (ou_…).",
        "zh": "请指定接收方：@提及、群 ID（oc_…）或用户 open_id（ou_…）。",
    },
    "ask_user": {
        "ja": "どなたの情報を調べますか？ @メンション、open_id（ou_…）、またはメールアドレスで指定してください。",
        "en": "Whose details should I look up? Give an @mention, an open_id (ou_…) or an email address.",
        "zh": "要查询谁的信息？请提供 @提及、open_id（ou_…）或邮箱地址。",
    },
    "mention_unresolved": {
        "ja": "{name} さんの ID が分かりませんでした。open_id（ou_…）かメールアドレスで指定してください。",
        "en": "I could not find the ID of {name}. Please give their open_id (ou_…) or email address.",
        "zh": "无法获取 {name} 的 ID。请提供其 open_id（ou_…）或邮箱地址。",
    },
    "ask_doc_query": {
        "ja": "何についてのドキュメントを探しますか？（例: 予算のドキュメントを探して）",
        "en": "What should the documents be about? (for example: find documents about budget)",
        "zh": "要搜索关于什么的文档？（例如：搜索文档 预算）",
    },
    "ask_time": {
        "ja": "会議の開始時刻を教えてください（例: 明日15時、金曜日 10:30）。",
        "en": "What time should the meeting start? (for example: tomorrow 3pm, Friday 10:30)",
        "zh": "会议几点开始？（例如：明天下午3点、周五 10:30）",
    },
    "bad_date": {
        "ja": "「{date}」という日付はありません。日付を確認してください。",
        "en": "There is no such date as {date}. Please check the date.",
        "zh": "不存在“{date}”这个日期。请检查日期。",
    },
    "time_passed": {
        "ja": "今日の {time} はすでに過ぎています。日付も指定してください（例: 明日 {time}）。",
        "en": "{time} today has already passed. Please include the day (for example: tomorrow {time}).",
        "zh": "今天的 {time} 已经过去了。请同时指定日期（例如：明天 {time}）。",
    },
    "date_passed": {
        "ja": "{when} はすでに過ぎています。これからの日時を指定してください。",
        "en": "{when} has already passed. Please give a time in the future.",
        "zh": "{when} 已经过去了。请指定将来的时间。",
    },
    "meeting": {"ja": "会議", "en": "Meeting", "zh": "会议"},
    "done": {"ja": "完了しました。", "en": "Done.", "zh": "已完成。"},
    # --- durations ---------------------------------------------------------------------
    "duration_days": {"ja": "{n}日", "en": "{n} d", "zh": "{n}天"},
    "duration_hours": {"ja": "{n}時間", "en": "{n} h", "zh": "{n}小时"},
    "duration_minutes": {"ja": "{n}分", "en": "{n} min", "zh": "{n}分钟"},
    "duration_seconds": {"ja": "{n}秒", "en": "{n} s", "zh": "{n}秒"},
    # One-line tool descriptions for ``help tools`` (the tools' own descriptions are for the LLM).
    "tool_search_base_records": {
        "ja": "Base のテーブルからレコードを検索",
        "en": "search records in a Base table",
        "zh": "在多维表格中搜索记录",
    },
    "tool_create_base_record": {
        "ja": "Base のテーブルにレコードを追加",
        "en": "add a record to a Base table",
        "zh": "向多维表格添加记录",
    },
    "tool_update_base_record": {
        "ja": "Base のレコードを更新",
        "en": "update a record in a Base table",
        "zh": "更新多维表格中的记录",
    },
    "tool_delete_base_record": {
        "ja": "Base のレコードを削除",
        "en": "delete a record from a Base table",
        "zh": "删除多维表格中的记录",
    },
    "tool_send_message": {
        "ja": "チャットやユーザーにメッセージを送信",
        "en": "send a message to a chat or a user",
        "zh": "向群聊或用户发送消息",
    },
    "tool_get_user_info": {
        "ja": "ユーザーの情報を調べる",
        "en": "look up a user's details",
        "zh": "查询用户信息",
    },
    "tool_search_documents": {
        "ja": "ドキュメントを検索",
        "en": "search documents",
        "zh": "搜索文档",
    },
    "tool_list_chat_members": {
        "ja": "チャットのメンバーを一覧表示",
        "en": "list the members of a chat",
        "zh": "列出群成员",
    },
    "tool_create_calendar_event": {
        "ja": "カレンダーに予定を作成",
        "en": "create a calendar event",
        "zh": "创建日历日程",
    },
}

MESSAGES.update(MESSAGES_MORE)

_UNITS = (
    ("duration_days", 86400),
    ("duration_hours", 3600),
    ("duration_minutes", 60),
    ("duration_seconds", 1),
)
_LIST_SEPARATOR: dict[Language, str] = {"ja": "、", "en": ", ", "zh": "、"}


def translate(key: str, language: Language, /, **values: Any) -> str:
    """Return message ``key`` in ``language`` with ``values`` filled in.

    A missing language falls back to English, so a partially translated message still
    says something; a missing key is a programming error and raises ``KeyError``.
    """
    variants = MESSAGES[key]
    template = variants.get(language) or variants["en"]
    return template.format(**values) if values else template


def join_list(items: list[str], language: Language) -> str:
    """Join ``items`` the way ``language`` writes a list."""
    return _LIST_SEPARATOR[language].join(items)


def humanise_duration(seconds: float, language: Language) -> str:
    """Render a duration in its two largest units ("2 d 3 h", "3時間5分", "45秒")."""
    remaining = max(0, int(seconds))
    parts: list[str] = []
    for key, size in _UNITS:
        count, remaining = divmod(remaining, size)
        # Start at the largest non-zero unit; stop after two units, skipping a zero second one.
        if count and len(parts) < 2:
            parts.append(translate(key, language, n=count))
        elif parts:
            break
    if not parts:
        parts.append(translate("duration_seconds", language, n=0))
    return (" " if language == "en" else "").join(parts)

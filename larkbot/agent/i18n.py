# ruff: noqa: E501  (a table of sentences reads best one sentence per line)
"""Every sentence larkbot says to a chat user, in Japanese, English and Chinese.

One table keyed by message id; each :class:`Message` holds the three languages (and the
English singular where a count can be one), templates use :meth:`str.format`
placeholders, and :func:`translate` is the one way to say something. Code never builds a
user-facing sentence itself: it picks an id here.
"""

# Why one typed Python table rather than gettext or Babel catalogues: the bot speaks
# exactly three languages, its sentences are short and parametrised, and the only plural
# it needs is the English singular. A ``Message`` cannot lack a language (it is a
# constructor argument), a test checks that every variant has the same placeholders,
# and translators see all three side by side; .po files would add a build step and a
# runtime lookup for none of that.

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from larkbot.core.language import LANGUAGES, Language

__all__ = ["MESSAGES", "Message", "humanise_duration", "join_list", "translate"]


@dataclass(frozen=True, slots=True)
class Message(Mapping[Language, str]):
    """One sentence in the three languages; reads as a mapping from language to template.

    ``en_one`` is the English form for a count of one ("Found 1 record"); Japanese and
    Chinese do not inflect for number.
    """

    ja: str
    en: str
    zh: str
    en_one: str | None = None

    def __getitem__(self, language: Language) -> str:
        """Return the template in ``language``."""
        if language not in LANGUAGES:
            raise KeyError(language)
        return str(getattr(self, language))

    def __iter__(self) -> Iterator[Language]:
        """Iterate over the languages."""
        return iter(LANGUAGES)

    def __len__(self) -> int:
        """Return the number of languages."""
        return len(LANGUAGES)

    def template(self, language: Language, count: int | None = None) -> str:
        """Return the template for ``language``, in the singular when ``count`` is one.

        A language outside ja/en/zh (a value that bypassed typing) gets English.
        """
        if language == "en" or language not in LANGUAGES:
            return self.en_one if count == 1 and self.en_one is not None else self.en
        return self[language]


MESSAGES: Final[Mapping[str, Message]] = {
    # --- the assistant's own answers -------------------------------------------------
    "empty": Message(
        ja="何かお手伝いできることはありますか？ `help` で使い方を表示します。",
        en="How can I help? Send `help` to see what I can do.",
        zh="有什么可以帮您的吗？发送 `help` 查看使用方法。",
    ),
    "non_text": Message(
        ja="申し訳ありません。今のところテキストのメッセージしか読めません。内容を文字で送っていただけますか？",
        en="Sorry, I can only read text messages for now. Could you send that as text?",
        zh="抱歉，目前我只能读取文字消息。请用文字发送。",
    ),
    "rate_limited": Message(
        ja="リクエストが多すぎます（1分間に{limit}件まで）。{seconds}秒後にもう一度お試しください。",
        en="You are sending requests too quickly (up to {limit} a minute). "
        "Please try again in {seconds} s.",
        zh="请求过于频繁（每分钟最多 {limit} 次）。请在 {seconds} 秒后重试。",
    ),
    "error": Message(
        ja="申し訳ありません。処理中に問題が発生しました。しばらくしてからもう一度お試しください。",
        en="Sorry, something went wrong while handling your request. Please try again in a moment.",
        zh="抱歉，处理您的请求时出现了问题。请稍后重试。",
    ),
    # --- the LLM brain ------------------------------------------------------------------
    "llm_timeout": Message(
        ja="申し訳ありません。AI モデルの応答に時間がかかりすぎています。しばらくしてからもう一度お試しください。",
        en="Sorry, the AI model is taking too long to answer. Please try again in a moment.",
        zh="抱歉，AI 模型响应时间过长。请稍后重试。",
    ),
    "llm_rate_limited": Message(
        ja="申し訳ありません。AI モデルが混み合っています。1分ほどしてからもう一度お試しください。",
        en="Sorry, the AI model is busy right now. Please try again in a minute.",
        zh="抱歉，AI 模型当前繁忙。请一分钟后重试。",
    ),
    "llm_auth_error": Message(
        ja="申し訳ありません。AI モデルに接続できません（API キーが拒否されました）。管理者に LLM の設定の確認を依頼してください。",
        en="Sorry, I cannot use the AI model: its API key was refused. "
        "Please ask the administrator to check the LLM settings.",
        zh="抱歉，无法使用 AI 模型：API 密钥被拒绝。请联系管理员检查 LLM 设置。",
    ),
    "llm_server_error": Message(
        ja="申し訳ありません。AI モデルのサービスで問題が発生しました。しばらくしてからもう一度お試しください。",
        en="Sorry, the AI model's service ran into a problem. Please try again in a moment.",
        zh="抱歉，AI 模型服务出现了问题。请稍后重试。",
    ),
    "llm_unreachable": Message(
        ja="申し訳ありません。AI モデルのサービスに接続できませんでした。しばらくしてからもう一度お試しください。",
        en="Sorry, I could not reach the AI model's service. Please try again in a moment.",
        zh="抱歉，无法连接 AI 模型服务。请稍后重试。",
    ),
    "llm_error": Message(
        ja="申し訳ありません。AI モデルがこのご依頼に回答できませんでした。言い換えるか、もう一度お試しください。",
        en="Sorry, the AI model could not answer this request. Please rephrase it or try again.",
        zh="抱歉，AI 模型无法回答此请求。请换一种说法或重试。",
    ),
    "llm_too_many_steps": Message(
        ja="申し訳ありません。このご依頼は一度に処理できる手順の数を超えました。いくつかの小さな依頼に分けてお試しください。",
        en="Sorry, this request needs more steps than I can take at once. "
        "Please split it into smaller requests.",
        zh="抱歉，此请求所需的步骤超出了我一次能处理的数量。请拆分成几个较小的请求。",
    ),
    # --- help ------------------------------------------------------------------------
    "help": Message(
        ja="**使い方**\n"
        "話しかけるだけで、Lark の Base・メッセージ・ユーザー・ドキュメント・Wiki・カレンダーを操作します。"
        "チャットの要約や、リンクを貼ったドキュメント・Wiki の内容の確認もできます。\n"
        "{examples}\n\n"
        "**コマンド**\n"
        "• `help tools` — 使えるツールの一覧\n"
        "• `help permissions` — ツールに必要な権限\n"
        "• `status` — 稼働状況\n"
        "• `settings` — このチャットの設定\n"
        "• `reset` — 会話の履歴を消去\n"
        "• `lang ja|en|zh|auto` — 回答の言語\n"
        "• `agent 名前` — プロファイルの切り替え\n"
        "• `ping` — 応答の確認",
        en="**How to use me**\n"
        "Just ask: I work with Lark Base tables, messages, users, documents, the wiki and "
        "calendars. I can also summarise a chat and tell you what a pasted document or wiki "
        "link says.\n"
        "{examples}\n\n"
        "**Commands**\n"
        "• `help tools` — the tools I can use\n"
        "• `help permissions` — the permissions each tool needs\n"
        "• `status` — how I am running\n"
        "• `settings` — this chat's settings\n"
        "• `reset` — clear the conversation history\n"
        "• `lang ja|en|zh|auto` — the language I answer in\n"
        "• `agent NAME` — switch profile\n"
        "• `ping` — check that I respond",
        zh="**使用方法**\n"
        "直接告诉我即可：我可以操作 Lark 的多维表格、消息、用户、文档、知识库和日历，"
        "还能总结群聊，以及查看贴出的文档或知识库链接的内容。\n"
        "{examples}\n\n"
        "**命令**\n"
        "• `help tools` — 可用的工具\n"
        "• `help permissions` — 各工具需要的权限\n"
        "• `status` — 运行状态\n"
        "• `settings` — 本会话的设置\n"
        "• `reset` — 清除对话记录\n"
        "• `lang ja|en|zh|auto` — 回答语言\n"
        "• `agent 名称` — 切换配置\n"
        "• `ping` — 检查响应",
    ),
    # Every example works against the sample workspace (``larkbot console``); a test runs
    # them all. Names are ones people type by hand: the member list resolves them.
    "examples": Message(
        ja="例:\n"
        "• 顧客テーブルから今月の案件を検索して\n"
        "• 顧客に追加 名前=Acme, 状態=商談中\n"
        "• 「こんにちは」を @田中 に送って\n"
        "• @田中 さんの情報\n"
        "• 営業のドキュメントを探して\n"
        "• メンバー一覧\n"
        "• 明日15時に会議を予約\n"
        "• このチャットを要約して\n"
        "• https://example.feishu.cn/docx/doxcnLaunchPlan00001 には予算について何と書いてありますか？\n"
        "• https://example.feishu.cn/wiki/wikcnOnboarding0001 って何？",
        en="For example:\n"
        "• search customers for Acme\n"
        "• add to customers name=Acme, amount=500000\n"
        "• send 'hello' to @Emma\n"
        "• who is @Emma\n"
        "• find documents about sales\n"
        "• who is in this chat\n"
        "• book a meeting tomorrow 3pm for 30 min about planning\n"
        "• summarise this chat\n"
        "• what does https://example.feishu.cn/docx/doxcnLaunchPlan00001 say about the budget?\n"
        "• what is https://example.feishu.cn/wiki/wikcnOnboarding0001?",
        zh="例如：\n"
        "• 在客户表中搜索 Acme\n"
        "• 在客户表中添加 名称=Acme, 金额=500000\n"
        "• 把“你好”发给 @陈静\n"
        "• @陈静 是谁\n"
        "• 搜索文档 路线图\n"
        "• 群成员\n"
        "• 明天下午3点预约会议\n"
        "• 总结一下这个群聊\n"
        "• https://example.feishu.cn/docx/doxcnLaunchPlan00001 里关于预算说了什么？\n"
        "• https://example.feishu.cn/wiki/wikcnOnboarding0001 是什么？",
    ),
    "help_tools_header": Message(
        ja="**使えるツール**", en="**Tools I can use**", zh="**可用的工具**"
    ),
    "help_tools_line": Message(
        ja="• `{name}`（{kind}）— {description}",
        en="• `{name}` ({kind}) — {description}",
        zh="• `{name}`（{kind}）— {description}",
    ),
    "help_tools_none": Message(
        ja="現在使えるツールはありません。",
        en="No tools are available right now.",
        zh="当前没有可用的工具。",
    ),
    "help_tools_profile": Message(
        ja="現在のプロファイル（{profile}）で使えるもの: {tools}",
        en="Allowed for the current profile ({profile}): {tools}",
        zh="当前配置（{profile}）可用：{tools}",
    ),
    "kind_read": Message(ja="読み取り", en="read", zh="读取"),
    "kind_write": Message(ja="書き込み", en="write", zh="写入"),
    "help_permissions_header": Message(
        ja="**各ツールに必要な Lark の権限（スコープ）**",
        en="**Lark permissions (scopes) each tool needs**",
        zh="**各工具需要的 Lark 权限（scope）**",
    ),
    "help_permissions_line": Message(
        ja="• `{name}`（{kind}）: {scopes}",
        en="• `{name}` ({kind}): {scopes}",
        zh="• `{name}`（{kind}）：{scopes}",
    ),
    "help_permissions_no_scope": Message(ja="なし", en="none", zh="无"),
    "help_permissions_writers_all": Message(
        ja="書き込みツールは、このボットを使える全員が実行できます。",
        en="Write tools can be used by everyone who may use this bot.",
        zh="所有可以使用本机器人的用户都可以使用写入工具。",
    ),
    "help_permissions_writers_list": Message(
        ja="書き込みツールを実行できるユーザー: {writers}",
        en="Write tools can be used only by: {writers}",
        zh="只有以下用户可以使用写入工具：{writers}",
    ),
    "help_permissions_writers_none": Message(
        ja="書き込みツールは誰も実行できない設定です。",
        en="Write tools are disabled for everyone.",
        zh="写入工具已对所有用户禁用。",
    ),
    # --- status and settings ---------------------------------------------------------
    "status": Message(
        ja="**ステータス**\n"
        "• バージョン: {version}\n"
        "• 稼働時間: {uptime}\n"
        "• Lark との接続: {connection}\n"
        "• 処理したイベント: {events}\n"
        "• キャッシュ中の会話: {conversations}\n"
        "• LLM: {llm}",
        en="**Status**\n"
        "• Version: {version}\n"
        "• Uptime: {uptime}\n"
        "• Connection to Lark: {connection}\n"
        "• Events handled: {events}\n"
        "• Conversations cached: {conversations}\n"
        "• LLM: {llm}",
        zh="**状态**\n"
        "• 版本：{version}\n"
        "• 运行时间：{uptime}\n"
        "• 与 Lark 的连接：{connection}\n"
        "• 已处理事件：{events}\n"
        "• 缓存的对话：{conversations}\n"
        "• LLM：{llm}",
    ),
    "connected": Message(ja="接続中", en="connected", zh="已连接"),
    "disconnected": Message(ja="切断中", en="disconnected", zh="未连接"),
    "unknown": Message(ja="不明", en="unknown", zh="未知"),
    "llm_on": Message(
        ja="オン（モデル: {model}）", en="on (model: {model})", zh="开启（模型：{model}）"
    ),
    "llm_off": Message(
        ja="オフ（コマンドと定型の依頼に対応）",
        en="off (commands and set phrases only)",
        zh="关闭（仅支持命令和固定句式）",
    ),
    "settings": Message(
        ja="**このチャットの設定**\n"
        "• 言語: {language}\n"
        "• プロファイル: {profile}\n"
        "• リクエスト上限: {requests}\n"
        "• 書き込み上限: {writes}\n"
        "• 保持する会話の長さ: {history} 件",
        en="**Settings for this chat**\n"
        "• Language: {language}\n"
        "• Profile: {profile}\n"
        "• Request limit: {requests}\n"
        "• Change limit: {writes}\n"
        "• Conversation history kept: {history} turns",
        zh="**本会话的设置**\n"
        "• 语言：{language}\n"
        "• 配置：{profile}\n"
        "• 请求上限：{requests}\n"
        "• 写入上限：{writes}\n"
        "• 保留的对话记录：{history} 条",
    ),
    "language_auto": Message(
        ja="自動（メッセージに合わせる。既定: {default}）",
        en="automatic (follows your messages; default: {default})",
        zh="自动（跟随消息语言，默认：{default}）",
    ),
    "per_minute": Message(ja="1分間に{count}件", en="{count} a minute", zh="每分钟 {count} 次"),
    "unlimited": Message(ja="なし", en="none", zh="无"),
    "language_name_ja": Message(ja="日本語", en="Japanese", zh="日语"),
    "language_name_en": Message(ja="英語", en="English", zh="英语"),
    "language_name_zh": Message(ja="中国語", en="Chinese", zh="中文"),
    # --- conversation commands -------------------------------------------------------
    "reset_done": Message(
        ja="会話の履歴を消去しました。",
        en="I have cleared this conversation's history.",
        zh="已清除本次对话的记录。",
    ),
    "pong": Message(ja="pong（{latency}）", en="pong ({latency})", zh="pong（{latency}）"),
    "latency": Message(
        ja="メッセージ受信まで {ms} ms",
        en="your message reached me in {ms} ms",
        zh="消息送达用时 {ms} 毫秒",
    ),
    "lang_set": Message(
        ja="これからは日本語でお答えします。",
        en="I will answer in English from now on.",
        zh="今后我将用中文回答。",
    ),
    "lang_auto": Message(
        ja="言語の固定を解除しました。メッセージの言語に合わせてお答えします。",
        en="Language unpinned: I will answer in the language you write in.",
        zh="已取消固定语言：我将用您所写的语言回答。",
    ),
    "lang_usage": Message(
        ja="使い方: `lang ja`、`lang en`、`lang zh`（`lang auto` で自動に戻します）",
        en="Usage: `lang ja`, `lang en` or `lang zh` (`lang auto` to follow your messages)",
        zh="用法：`lang ja`、`lang en` 或 `lang zh`（`lang auto` 恢复自动）",
    ),
    "agent_switched": Message(
        ja="プロファイルを {profile} に切り替えました。",
        en="Switched to the {profile} profile.",
        zh="已切换到 {profile} 配置。",
    ),
    "agent_unknown": Message(
        ja="「{name}」というプロファイルはありません。利用できるプロファイル: {profiles}",
        en='There is no profile called "{name}". Available profiles: {profiles}',
        zh="没有名为“{name}”的配置。可用的配置：{profiles}",
    ),
    "agent_list": Message(
        ja="現在のプロファイル: {profile}。利用できるプロファイル: {profiles}（`agent 名前` で切り替え）",
        en="Current profile: {profile}. Available profiles: {profiles} (`agent NAME` to switch)",
        zh="当前配置：{profile}。可用的配置：{profiles}（发送 `agent 名称` 切换）",
    ),
    # --- the offline brain -----------------------------------------------------------
    "fallback": Message(
        ja="ご依頼の内容を判断できませんでした。次のような依頼に対応しています。\n{examples}\n\n"
        "`help` でコマンドの一覧を表示します。",
        en="I could not tell what you would like me to do. I can handle requests like these.\n"
        "{examples}\n\nSend `help` for the list of commands.",
        zh="我无法确定您想让我做什么。我可以处理这样的请求。\n{examples}\n\n发送 `help` 查看命令列表。",
    ),
    "no_tools": Message(
        ja="申し訳ありません。現在 Lark のツールを利用できないため、このご依頼には対応できません。",
        en="Sorry, Lark tools are not available right now, so I cannot do that.",
        zh="抱歉，当前无法使用 Lark 工具，因此无法处理此请求。",
    ),
    "tool_not_allowed": Message(
        ja="現在のプロファイル（{profile}）では `{tool}` を使えません。"
        "`agent {suggestion}` で切り替えられます。",
        en="The current profile ({profile}) cannot use `{tool}`. "
        "Send `agent {suggestion}` to switch.",
        zh="当前配置（{profile}）不能使用 `{tool}`。发送 `agent {suggestion}` 即可切换。",
    ),
    "ask_table": Message(
        ja="どのテーブルですか？ 利用できるテーブル: {tables}",
        en="Which table? Available tables: {tables}",
        zh="请问是哪张表？可用的表：{tables}",
    ),
    "no_tables": Message(
        ja="Base のテーブルが設定されていません。管理者に `[bases]` の設定を依頼してください。",
        en="No Base tables are configured. Please ask the administrator to set up `[bases]`.",
        zh="尚未配置多维表格。请联系管理员设置 `[bases]`。",
    ),
    "ask_record_id": Message(
        ja="対象のレコード ID（例: recAbC123）を指定してください。",
        en="Please give the record ID (for example recAbC123).",
        zh="请提供记录 ID（例如 recAbC123）。",
    ),
    "ask_fields": Message(
        ja="設定する項目を `項目=値` の形で指定してください（例: 名前=Acme, 状態=商談中）。",
        en="Please give the fields as `field=value` (for example name=Acme, amount=500000).",
        zh="请以 `字段=值` 的形式提供字段（例如 名称=Acme, 金额=500000）。",
    ),
    "ask_message_text": Message(
        ja='送る内容を「」や "" で囲んで指定してください（例: 「こんにちは」を @田中 に送って）。',
        en="Please put the message in quotes (for example: send 'hello' to @Emma).",
        zh="请用引号括起要发送的内容（例如：把“你好”发给 @陈静）。",
    ),
    "ask_message_target": Message(
        ja="送り先を指定してください: @メンション、チャット ID（oc_…）、またはユーザーの open_id（ou_…）。",
        en="Who should I send it to? Give an @mention, a chat ID (oc_…) or a user open_id (ou_…).",
        zh="请指定接收方：@提及、群 ID（oc_…）或用户 open_id（ou_…）。",
    ),
    "ask_user": Message(
        ja="どなたの情報を調べますか？ @メンション、open_id（ou_…）、またはメールアドレスで指定してください。",
        en="Whose details should I look up? Give an @mention, an open_id (ou_…) or an email address.",
        zh="要查询谁的信息？请提供 @提及、open_id（ou_…）或邮箱地址。",
    ),
    "mention_unresolved": Message(
        ja="{name} さんの ID が分かりませんでした。open_id（ou_…）かメールアドレスで指定してください。",
        en="I could not find the ID of {name}. Please give their open_id (ou_…) or email address.",
        zh="无法获取 {name} 的 ID。请提供其 open_id（ou_…）或邮箱地址。",
    ),
    "mention_ambiguous": Message(
        ja="{name} に当てはまるメンバーが複数います（{candidates}）。フルネームか open_id（ou_…）で指定してください。",
        en="Several members of this chat match {name} ({candidates}). Please give the full name or their open_id (ou_…).",
        zh="本群有多名成员与 {name} 匹配（{candidates}）。请提供全名或其 open_id（ou_…）。",
    ),
    "ask_doc_query": Message(
        ja="何についてのドキュメントを探しますか？（例: 営業のドキュメントを探して）",
        en="What should the documents be about? (for example: find documents about sales)",
        zh="要搜索关于什么的文档？（例如：搜索文档 路线图）",
    ),
    "ask_time": Message(
        ja="会議の開始時刻を教えてください（例: 明日15時、金曜日 10:30）。",
        en="What time should the meeting start? (for example: tomorrow 3pm, Friday 10:30)",
        zh="会议几点开始？（例如：明天下午3点、周五 10:30）",
    ),
    "bad_date": Message(
        ja="「{date}」という日付はありません。日付を確認してください。",
        en="There is no such date as {date}. Please check the date.",
        zh="不存在“{date}”这个日期。请检查日期。",
    ),
    "time_passed": Message(
        ja="今日の {time} はすでに過ぎています。日付も指定してください（例: 明日 {time}）。",
        en="{time} today has already passed. Please include the day (for example: tomorrow {time}).",
        zh="今天的 {time} 已经过去了。请同时指定日期（例如：明天 {time}）。",
    ),
    "date_passed": Message(
        ja="{when} はすでに過ぎています。これからの日時を指定してください。",
        en="{when} has already passed. Please give a time in the future.",
        zh="{when} 已经过去了。请指定将来的时间。",
    ),
    "meeting": Message(ja="会議", en="Meeting", zh="会议"),
    "done": Message(ja="完了しました。", en="Done.", zh="已完成。"),
    # --- durations ---------------------------------------------------------------------
    "duration_days": Message(ja="{n}日", en="{n} d", zh="{n}天"),
    "duration_hours": Message(ja="{n}時間", en="{n} h", zh="{n}小时"),
    "duration_minutes": Message(ja="{n}分", en="{n} min", zh="{n}分钟"),
    "duration_seconds": Message(ja="{n}秒", en="{n} s", zh="{n}秒"),
    # One-line tool descriptions for ``help tools`` (the tools' own descriptions are for the LLM).
    "tool_search_base_records": Message(
        ja="Base のテーブルからレコードを検索",
        en="search records in a Base table",
        zh="在多维表格中搜索记录",
    ),
    "tool_create_base_record": Message(
        ja="Base のテーブルにレコードを追加",
        en="add a record to a Base table",
        zh="向多维表格添加记录",
    ),
    "tool_update_base_record": Message(
        ja="Base のレコードを更新", en="update a record in a Base table", zh="更新多维表格中的记录"
    ),
    "tool_delete_base_record": Message(
        ja="Base のレコードを削除",
        en="delete a record from a Base table",
        zh="删除多维表格中的记录",
    ),
    "tool_send_message": Message(
        ja="チャットやユーザーにメッセージを送信",
        en="send a message to a chat or a user",
        zh="向群聊或用户发送消息",
    ),
    "tool_get_user_info": Message(
        ja="ユーザーの情報を調べる", en="look up a user's details", zh="查询用户信息"
    ),
    "tool_search_documents": Message(ja="ドキュメントを検索", en="search documents", zh="搜索文档"),
    "tool_list_chat_members": Message(
        ja="チャットのメンバーを一覧表示", en="list the members of a chat", zh="列出群成员"
    ),
    "tool_create_calendar_event": Message(
        ja="カレンダーに予定を作成", en="create a calendar event", zh="创建日历日程"
    ),
    "tool_list_chat_messages": Message(
        ja="チャットやスレッドの最近のメッセージを読む（要約に）",
        en="read a chat's or thread's recent messages (to summarise it)",
        zh="读取群聊或话题的最近消息（用于总结）",
    ),
    "tool_list_chats": Message(
        ja="ボットが参加しているチャットを一覧表示",
        en="list the chats the bot is in",
        zh="列出机器人所在的群聊",
    ),
    "tool_create_chat": Message(
        ja="メンバーを指定してグループを作成",
        en="create a group chat with chosen members",
        zh="创建群聊并添加成员",
    ),
    "tool_read_document": Message(
        ja="ドキュメントを読む（特定の話題の箇所だけも可）",
        en="read a document, or only what it says about a topic",
        zh="读取文档，或只看其中关于某个话题的内容",
    ),
    "tool_import_document": Message(
        ja="Markdown から新しいドキュメントを作成",
        en="create a document from Markdown",
        zh="用 Markdown 创建新文档",
    ),
    "tool_search_wiki": Message(
        ja="Wiki のページを検索", en="search wiki pages", zh="搜索知识库页面"
    ),
    "tool_get_wiki_node": Message(
        ja="Wiki のリンクから中身（ドキュメントや Base）を調べる",
        en="find what a wiki link holds (a document, a Base...)",
        zh="查看知识库链接中的内容（文档、多维表格等）",
    ),
    "tool_grant_document_permission": Message(
        ja="ドキュメントを人やチャットと共有（閲覧・編集）",
        en="share a document with a person or a chat (view or edit)",
        zh="将文档共享给人员或群聊（查看或编辑）",
    ),
    "tool_list_base_tables": Message(
        ja="Base のテーブルを一覧表示", en="list the tables of a Base", zh="列出多维表格中的数据表"
    ),
    "tool_list_base_fields": Message(
        ja="Base のテーブルのフィールドを一覧表示",
        en="list the fields of a Base table",
        zh="列出数据表的字段",
    ),
    "tool_create_base_table": Message(
        ja="Base に新しいテーブルを作成", en="create a table in a Base", zh="在多维表格中新建数据表"
    ),
    "tool_lookup_user_ids": Message(
        ja="メールアドレスや電話番号から open_id を調べる",
        en="find open_ids from emails or phone numbers",
        zh="通过邮箱或手机号查询 open_id",
    ),
    # --- the tools and the tool runner ------------------------------------------------
    # The runner: arguments, policy, limits.
    "unknown_tool": Message(
        ja="「{name}」というツールはありません。使えるツール: {names}",
        en="There is no tool called “{name}”. Available tools: {names}.",
        zh="没有名为“{name}”的工具。可用的工具：{names}。",
    ),
    "bad_json": Message(
        ja="{tool} の引数が JSON として読めません。",
        en="The arguments for {tool} are not valid JSON.",
        zh="{tool} 的参数不是有效的 JSON。",
    ),
    "invalid_args": Message(
        ja="{tool} の引数に問題があります: {problems}",
        en="The arguments for {tool} are not valid: {problems}.",
        zh="{tool} 的参数无效：{problems}。",
    ),
    "arg_missing": Message(
        ja="{field} は必須です", en="{field} is required", zh="{field} 为必填项"
    ),
    "arg_extra": Message(
        ja="{field} は使えない引数です",
        en="{field} is not an accepted argument",
        zh="{field} 不是可接受的参数",
    ),
    "denied": Message(
        ja="{tool} で変更を行う権限がありません。管理者に writers への追加を依頼してください。",
        en="You are not allowed to make changes with {tool}; ask an administrator to add you "
        "to the writers.",
        zh="您没有使用 {tool} 进行更改的权限；请联系管理员将您加入 writers。",
    ),
    "write_limited": Message(
        ja="変更は 1 分間に {limit} 回までです。{seconds} 秒後にもう一度お試しください。",
        en="You can make {limit} changes per minute; try again in {seconds} seconds.",
        zh="每分钟最多可进行 {limit} 次更改；请在 {seconds} 秒后重试。",
    ),
    # Lark's refusals, turned into something a chat user can act on.
    "no_scope": Message(
        ja="アプリに必要な Lark の権限（{scopes}）がありません。"
        "管理者が開発者コンソールで付与できます。",
        en="The app lacks the Lark permission this needs ({scopes}); an administrator can grant "
        "it in the developer console.",
        zh="应用缺少所需的 Lark 权限（{scopes}）；管理员可以在开发者后台开通。",
    ),
    "record_not_found": Message(
        ja="指定されたレコードが見つかりません（削除されたか、ID が違います）。",
        en="That record was not found (it was deleted, or the ID is wrong).",
        zh="找不到该记录（已被删除或 ID 有误）。",
    ),
    "table_not_found": Message(
        ja="テーブルが Lark に見つかりません。app_token と table_id（リンク、または設定の "
        "bases）を確認してください。",
        en="The table does not exist in Lark; check its app_token and table_id (in the link, or "
        "under bases in the configuration).",
        zh="Lark 中找不到该数据表；请检查 app_token 和 table_id（链接中，或配置的 bases 中）。",
    ),
    "field_not_found": Message(
        ja="テーブルに存在しないフィールド名が含まれています。",
        en="One of the field names does not exist in the table.",
        zh="包含数据表中不存在的字段名。",
    ),
    "value_conversion": Message(
        ja="フィールドの型に合わない値があります（{detail}）。",
        en="A value does not fit its field's type ({detail}).",
        zh="有值与字段类型不符（{detail}）。",
    ),
    "base_forbidden": Message(
        ja="アプリにこの Base へのアクセス権がありません。Base をアプリと共有してください。",
        en="The app cannot access this Base; share the Base with the app.",
        zh="应用无权访问该多维表格；请将其共享给应用。",
    ),
    "user_not_found": Message(
        ja="そのユーザーが見つからないか、アプリが参照できる連絡先の範囲外です。",
        en="That user was not found, or is outside the contacts the app may see.",
        zh="找不到该用户，或其不在应用可见的通讯录范围内。",
    ),
    "chat_not_found": Message(
        ja="そのチャットが見つからないか、ボットが参加していません。",
        en="That chat was not found, or the bot is not a member of it.",
        zh="找不到该群聊，或机器人不在群中。",
    ),
    "user_unreachable": Message(
        ja="ボットはそのユーザーにメッセージを送れません（アプリの利用範囲外です）。",
        en="The bot cannot message that user (they are outside the app's availability).",
        zh="机器人无法给该用户发消息（该用户不在应用的可用范围内）。",
    ),
    "lark_busy": Message(
        ja="Lark が混み合っています。少し待ってからもう一度お試しください。",
        en="Lark is busy right now; please try again in a moment.",
        zh="Lark 当前繁忙，请稍后再试。",
    ),
    "lark_refused": Message(
        ja="Lark がリクエストを受け付けませんでした（コード {code}: {msg}）。",
        en="Lark refused the request (code {code}: {msg}).",
        zh="Lark 拒绝了请求（代码 {code}：{msg}）。",
    ),
    "lark_unreachable": Message(
        ja="Lark から応答がありませんでした。もう一度お試しください。",
        en="Lark did not answer; please try again.",
        zh="Lark 没有响应，请重试。",
    ),
    "internal_error": Message(
        ja="{tool} の実行中に予期しないエラーが起きました。",
        en="Something went wrong while running {tool}.",
        zh="运行 {tool} 时出现意外错误。",
    ),
    # Base tables.
    "unknown_table": Message(
        ja="「{table}」というテーブルは設定されていません。使えるテーブル: {tables}"
        "（Base のリンク、または app_token と table_id でも指定できます）",
        en="No table called “{table}” is configured. Configured tables: {tables}. A Base link, "
        "or app_token and table_id, work too.",
        zh="未配置名为“{table}”的数据表。已配置的数据表：{tables}。"
        "也可以使用多维表格链接，或 app_token 和 table_id。",
    ),
    "no_tables_configured": Message(
        ja="テーブルが一つも設定されていません（設定の bases）。Base のリンク、または "
        "app_token と table_id で指定してください。",
        en="No tables are configured (bases in the configuration); give a Base link, or "
        "app_token and table_id.",
        zh="尚未配置任何数据表（配置中的 bases）；请提供多维表格链接，或 app_token 和 table_id。",
    ),
    "bad_base_link": Message(
        ja="「{link}」は Base のテーブルへのリンクではありません"
        "（https://…/base/<app_token>?table=<table_id> の形です）。",
        en="“{link}” is not a link to a Base table (it looks like "
        "https://…/base/<app_token>?table=<table_id>).",
        zh="“{link}”不是多维表格数据表的链接（格式为 https://…/base/<app_token>?table=<table_id>）。",
    ),
    "base_not_allowed": Message(
        ja="この Base（{app_token}）への変更は許可されていません。管理者に tools.allowed_bases "
        "への追加を依頼してください。",
        en="Changes to this Base ({app_token}) are not allowed; ask an administrator to add it "
        "to tools.allowed_bases.",
        zh="不允许更改此多维表格（{app_token}）；请联系管理员将其加入 tools.allowed_bases。",
    ),
    "unknown_field": Message(
        ja="「{table}」に「{field}」というフィールドはありません。フィールド: {fields}",
        en="Table “{table}” has no field “{field}”. Fields: {fields}.",
        zh="数据表“{table}”中没有字段“{field}”。字段：{fields}。",
    ),
    "no_date_field": Message(
        ja="「{table}」には日付フィールドがないため、期間で絞り込めません。",
        en="Table “{table}” has no date field, so it cannot be filtered by date.",
        zh="数据表“{table}”没有日期字段，无法按日期筛选。",
    ),
    "bad_value": Message(
        ja="フィールド「{field}」の値「{value}」は{kind}として読めません。",
        en="The value “{value}” for field “{field}” is not a valid {kind}.",
        zh="字段“{field}”的值“{value}”不是有效的{kind}。",
    ),
    "kind_number": Message(ja="数値", en="number", zh="数字"),
    "kind_date": Message(ja="日付", en="date", zh="日期"),
    "kind_checkbox": Message(ja="はい/いいえ", en="yes/no value", zh="是/否值"),
    "kind_person": Message(ja="ユーザーの open_id", en="user open_id", zh="用户 open_id"),
    "kind_options": Message(ja="選択肢のリスト", en="list of options", zh="选项列表"),
    "kind_link": Message(ja="URL", en="URL", zh="URL"),
    "read_only_field": Message(
        ja="フィールド「{field}」は自動で計算されるため設定できません。",
        en="Field “{field}” is computed by Lark and cannot be set.",
        zh="字段“{field}”由 Lark 自动计算，无法写入。",
    ),
    "records_found": Message(
        ja="{table} で {total} 件見つかりました:",
        en="Found {total} records in {table}:",
        zh="在 {table} 中找到 {total} 条记录：",
        en_one="Found 1 record in {table}:",
    ),
    "scan_limited": Message(
        ja="（最初の {scanned} 件だけを検索しました。条件を絞ると確実です）",
        en="(only the first {scanned} records were searched; narrow the filters to be sure)",
        zh="（仅搜索了前 {scanned} 条记录；缩小筛选条件会更准确）",
    ),
    "no_records": Message(
        ja="{table} に条件に合うレコードはありませんでした。",
        en="No records in {table} match.",
        zh="{table} 中没有符合条件的记录。",
    ),
    "and_more": Message(ja="…ほか {count} 件", en="…and {count} more", zh="……另外还有 {count} 条"),
    "record_created": Message(
        ja="{table} にレコードを作成しました: {summary}",
        en="Created a record in {table}: {summary}",
        zh="已在 {table} 中创建记录：{summary}",
    ),
    "record_updated": Message(
        ja="{table} のレコードを更新しました: {summary}",
        en="Updated the record in {table}: {summary}",
        zh="已更新 {table} 中的记录：{summary}",
    ),
    "record_deleted": Message(
        ja="{table} のレコード {record_id} を削除しました。",
        en="Deleted record {record_id} from {table}.",
        zh="已从 {table} 删除记录 {record_id}。",
    ),
    # Messages, people, chats, documents, calendar.
    "message_sent_chat": Message(
        ja="チャット {target} にメッセージを送りました。",
        en="Sent the message to chat {target}.",
        zh="已向群聊 {target} 发送消息。",
    ),
    "message_sent_user": Message(
        ja="{target} にメッセージを送りました。",
        en="Sent the message to {target}.",
        zh="已向 {target} 发送消息。",
    ),
    "email_not_found": Message(
        ja="{email} のユーザーは見つかりませんでした。",
        en="No user has the email {email}.",
        zh="找不到邮箱为 {email} 的用户。",
    ),
    "label_name": Message(ja="名前", en="Name", zh="姓名"),
    "label_email": Message(ja="メール", en="Email", zh="邮箱"),
    "label_department": Message(ja="部署", en="Department", zh="部门"),
    "label_job_title": Message(ja="役職", en="Job title", zh="职位"),
    "label_city": Message(ja="勤務地", en="City", zh="城市"),
    "docs_found": Message(
        ja="「{query}」のドキュメントが {total} 件見つかりました:",
        en="Found {total} documents for “{query}”:",
        zh="找到 {total} 个与“{query}”相关的文档：",
        en_one="Found 1 document for “{query}”:",
    ),
    "no_docs": Message(
        ja="「{query}」に一致するドキュメントはありませんでした。",
        en="No documents match “{query}”.",
        zh="没有与“{query}”匹配的文档。",
    ),
    "members": Message(
        ja="このチャットのメンバーは {total} 人です:",
        en="This chat has {total} members:",
        zh="该群聊共有 {total} 名成员：",
        en_one="This chat has 1 member:",
    ),
    "members_more": Message(
        ja="…ほか {count} 人", en="…and {count} more", zh="……另外还有 {count} 人"
    ),
    "no_primary_calendar": Message(
        ja="ボットのカレンダーが見つかりませんでした。",
        en="The bot has no primary calendar.",
        zh="找不到机器人的主日历。",
    ),
    "event_created": Message(
        ja="予定「{summary}」を作成しました: {when}",
        en="Created the event “{summary}”: {when}",
        zh="已创建日程“{summary}”：{when}",
    ),
    "event_attendees": Message(ja="参加者: {names}", en="Attendees: {names}", zh="参与者：{names}"),
    # --- the history, chat, document, wiki, Base schema and people tools --------------
    # Chat history.
    "ask_chat": Message(
        ja="どのチャットですか？ チャット ID（oc_…）を指定してください。",
        en="Which chat? Please give its chat ID (oc_…).",
        zh="请问是哪个群聊？请提供群 ID（oc_…）。",
    ),
    "sender_bot": Message(ja="ボット", en="Bot", zh="机器人"),
    "in_chat": Message(ja="このチャット", en="this chat", zh="本群聊"),
    "in_thread": Message(ja="このスレッド", en="this thread", zh="本话题"),
    "no_messages": Message(
        ja="{where}にはまだメッセージがありません。",
        en="There are no messages in {where} yet.",
        zh="{where}中还没有消息。",
    ),
    "messages_header": Message(
        ja="{where}の直近のメッセージ {count} 件（古い順）:",
        en="The last {count} messages in {where} (oldest first):",
        zh="{where}最近的 {count} 条消息（按时间顺序）：",
        en_one="The last message in {where}:",
    ),
    "messages_older": Message(
        ja="（それより前のメッセージは省略しました）",
        en="(older messages are not shown)",
        zh="（更早的消息未显示）",
    ),
    # Chats.
    "chats_found": Message(
        ja="ボットが参加しているチャットは {total} 件です:",
        en="The bot is in {total} chats:",
        zh="机器人所在的群聊共 {total} 个：",
        en_one="The bot is in 1 chat:",
    ),
    "chats_matching": Message(
        ja="「{query}」を含むチャットが {total} 件あります:",
        en="{total} chats match “{query}”:",
        zh="有 {total} 个群聊包含“{query}”：",
        en_one="1 chat matches “{query}”:",
    ),
    "no_chats": Message(
        ja="ボットはまだどのチャットにも参加していません。",
        en="The bot is not in any chat yet.",
        zh="机器人还没有加入任何群聊。",
    ),
    "no_chats_matching": Message(
        ja="「{query}」を含むチャットは見つかりませんでした。",
        en="No chat the bot is in matches “{query}”.",
        zh="没有找到包含“{query}”的群聊。",
    ),
    "member_unknown": Message(
        ja="次の人が見つかりませんでした: {names}。open_id（ou_…）かメールアドレスで指定するか、このチャットのメンバーの名前を使ってください。",
        en="I could not find: {names}. Please give their open_id (ou_…) or email, or the name of a member of this chat.",
        zh="找不到以下人员：{names}。请提供其 open_id（ou_…）或邮箱，或使用本群成员的名字。",
    ),
    "members_invisible": Message(
        ja="ボットから見えない（アプリの利用範囲外の）人が含まれているため、グループを作成できませんでした。",
        en="The group could not be created: some of the people are outside the app's availability, so the bot cannot see them.",
        zh="无法创建群聊：部分人员不在应用的可用范围内，机器人无法看到他们。",
    ),
    "chat_created": Message(
        ja="グループ「{name}」（{chat_id}）を作成しました。メンバー: {members}",
        en="Created the group “{name}” ({chat_id}) with {members}.",
        zh="已创建群聊“{name}”（{chat_id}），成员：{members}。",
    ),
    # People.
    "ids_found": Message(
        ja="{total} 件中 {found} 件が見つかりました:",
        en="Found {found} of {total}:",
        zh="共 {total} 个，找到 {found} 个：",
    ),
    "not_found_short": Message(ja="見つかりません", en="not found", zh="未找到"),
    # Documents.
    "bad_doc_ref": Message(
        ja="「{value}」はドキュメントのリンクやトークンとして読めません。",
        en="“{value}” is not a document link or token.",
        zh="“{value}”不是有效的文档链接或 token。",
    ),
    "bad_folder_ref": Message(
        ja="「{value}」はフォルダのリンクやトークンとして読めません。",
        en="“{value}” is not a folder link or token.",
        zh="“{value}”不是有效的文件夹链接或 token。",
    ),
    "doc_not_found": Message(
        ja="そのドキュメントが見つからないか、削除されています。リンクを確認してください。",
        en="That document was not found, or it was deleted; please check the link.",
        zh="找不到该文档，或已被删除；请检查链接。",
    ),
    "doc_forbidden": Message(
        ja="アプリにこのドキュメントを読む権限がありません。ドキュメントをアプリ（ボット）と共有してください。",
        en="The app may not read this document; share the document with the app (the bot).",
        zh="应用无权读取该文档；请将文档共享给应用（机器人）。",
    ),
    "not_a_docx": Message(
        ja="これは新しいドキュメント（docx）ではなく {kind}（{token}）のため、本文を読めません。",
        en="That is not a docx document but a {kind} ({token}), so its text cannot be read.",
        zh="这不是新版文档（docx），而是 {kind}（{token}），无法读取正文。",
    ),
    "doc_matches": Message(
        ja="「{title}」で「{query}」に触れている箇所が {count} か所あります:",
        en="“{title}” mentions “{query}” in {count} places:",
        zh="《{title}》中有 {count} 处提到“{query}”：",
        en_one="“{title}” mentions “{query}” in 1 place:",
    ),
    "doc_no_match": Message(
        ja="「{title}」には「{query}」についての記述が見当たりません。",
        en="“{title}” does not mention “{query}”.",
        zh="《{title}》中没有提到“{query}”。",
    ),
    "doc_begins": Message(ja="冒頭: {text}", en="It begins: {text}", zh="开头：{text}"),
    "doc_part": Message(
        ja="全 {total} 文字のうち {start}〜{end} 文字目",
        en="characters {start}–{end} of {total}",
        zh="共 {total} 个字符，第 {start}–{end} 个",
    ),
    "doc_more": Message(
        ja="。続きは offset={offset} で読めます",
        en="; ask for offset={offset} to read on",
        zh="。用 offset={offset} 继续阅读",
    ),
    "doc_too_long": Message(
        ja="内容が長すぎます（{count} ブロック）。いくつかのドキュメントに分けてください。",
        en="The content is too long ({count} blocks); please split it into several documents.",
        zh="内容太长（{count} 个块）；请拆分为多个文档。",
    ),
    "folder_not_found": Message(
        ja="指定されたフォルダが見つかりません。リンクを確認してください。",
        en="That folder was not found; please check the link.",
        zh="找不到该文件夹；请检查链接。",
    ),
    "folder_forbidden": Message(
        ja="アプリはこのフォルダにドキュメントを作成できません。フォルダをアプリと共有（編集権限）してください。",
        en="The app may not create documents in that folder; share the folder with the app with edit access.",
        zh="应用无权在该文件夹中创建文档；请将文件夹以可编辑权限共享给应用。",
    ),
    "doc_created": Message(
        ja="ドキュメント「{title}」を作成しました（{document_id}）。",
        en="Created the document “{title}” ({document_id}).",
        zh="已创建文档《{title}》（{document_id}）。",
    ),
    "doc_not_shared": Message(
        ja="ただし、あなたへの権限付与に失敗したため、まだ開けない可能性があります。",
        en="I could not give you access to it, though, so you may not be able to open it yet.",
        zh="但未能为您开通权限，您可能暂时无法打开。",
    ),
    "share_forbidden": Message(
        ja="アプリはこのドキュメントを共有できません（管理権限が必要です）。",
        en="The app may not share this document; it needs full access to it.",
        zh="应用无权共享该文档（需要可管理权限）。",
    ),
    "perm_view": Message(ja="閲覧", en="view", zh="查看"),
    "perm_edit": Message(ja="編集", en="edit", zh="编辑"),
    "access_granted": Message(
        ja="{member} に {document} の{permission}権限を付与しました。",
        en="Gave {member} {permission} access to {document}.",
        zh="已授予 {member} 对 {document} 的{permission}权限。",
    ),
    "access_already_held": Message(
        ja="{member} は {document} の{permission}権限（またはそれ以上）をすでに持っています。",
        en="{member} already has {permission} access (or more) to {document}.",
        zh="{member} 已拥有对 {document} 的{permission}权限（或更高权限）。",
    ),
    # Wiki.
    "bad_wiki_ref": Message(
        ja="「{value}」は Wiki のリンクやトークンとして読めません。",
        en="“{value}” is not a wiki link or token.",
        zh="“{value}”不是有效的知识库链接或 token。",
    ),
    "wiki_not_found": Message(
        ja="その Wiki ページが見つかりません。リンクを確認してください。",
        en="That wiki page was not found; please check the link.",
        zh="找不到该知识库页面；请检查链接。",
    ),
    "wiki_forbidden": Message(
        ja="アプリはこの Wiki ページを読めません。Wiki スペースにアプリ（ボット）を追加してください。",
        en="The app may not read this wiki page; add the app (the bot) to the wiki space.",
        zh="应用无权读取该知识库页面；请将应用（机器人）添加到知识空间。",
    ),
    "wiki_found": Message(
        ja="「{query}」の Wiki ページが {total} 件見つかりました:",
        en="Found {total} wiki pages for “{query}”:",
        zh="找到 {total} 个与“{query}”相关的知识库页面：",
        en_one="Found 1 wiki page for “{query}”:",
    ),
    "no_wiki": Message(
        ja="「{query}」に一致する Wiki ページはありませんでした。",
        en="No wiki pages match “{query}”.",
        zh="没有与“{query}”匹配的知识库页面。",
    ),
    "wiki_node": Message(
        ja="Wiki ページ「{title}」の中身は{kind}です（{token}）。",
        en="The wiki page “{title}” holds a {kind} ({token}).",
        zh="知识库页面“{title}”中是{kind}（{token}）。",
    ),
    "object_docx": Message(ja="ドキュメント", en="document", zh="文档"),
    "object_doc": Message(ja="旧形式のドキュメント", en="legacy document", zh="旧版文档"),
    "object_sheet": Message(ja="スプレッドシート", en="spreadsheet", zh="电子表格"),
    "object_bitable": Message(ja="Base", en="Base", zh="多维表格"),
    "object_mindnote": Message(ja="マインドマップ", en="mind map", zh="思维笔记"),
    "object_file": Message(ja="ファイル", en="file", zh="文件"),
    "object_slides": Message(ja="スライド", en="slide deck", zh="幻灯片"),
    # Base tables and fields.
    "bad_base_ref": Message(
        ja="「{value}」は Base のリンク、app_token、設定済みのテーブル名のいずれとしても読めません。",
        en="“{value}” is not a Base link, an app_token or a configured table.",
        zh="“{value}”不是多维表格链接、app_token 或已配置的数据表。",
    ),
    "not_a_base": Message(
        ja="これは Base ではなく {kind}（{token}）です。",
        en="That is not a Base but a {kind} ({token}).",
        zh="这不是多维表格，而是 {kind}（{token}）。",
    ),
    "base_not_found": Message(
        ja="その Base が見つかりません。リンクか app_token を確認し、Base をアプリと共有してください。",
        en="That Base was not found; check the link or app_token, and share the Base with the app.",
        zh="找不到该多维表格；请检查链接或 app_token，并将其共享给应用。",
    ),
    "base_table_not_found": Message(
        ja="その Base にそのテーブルはありません（table_id を確認してください）。",
        en="That Base has no such table; check the table_id.",
        zh="该多维表格中没有这张数据表；请检查 table_id。",
    ),
    "table_name_taken": Message(
        ja="この Base にはすでに「{name}」というテーブルがあります。",
        en="This Base already has a table called “{name}”.",
        zh="该多维表格中已有名为“{name}”的数据表。",
    ),
    "no_base_tables": Message(
        ja="この Base にはテーブルがありません。",
        en="This Base has no tables.",
        zh="该多维表格中没有数据表。",
    ),
    "base_tables": Message(
        ja="この Base のテーブルは {count} 件です:",
        en="This Base has {count} tables:",
        zh="该多维表格共有 {count} 张数据表：",
        en_one="This Base has 1 table:",
    ),
    "base_fields": Message(
        ja="{table} のフィールドは {count} 件です:",
        en="{table} has {count} fields:",
        zh="{table} 共有 {count} 个字段：",
        en_one="{table} has 1 field:",
    ),
    "primary_field": Message(ja="主フィールド", en="primary", zh="主字段"),
    "ask_base_table": Message(
        ja="どのテーブルですか？ table_id（tbl…）かテーブル名を指定してください。",
        en="Which table? Please give its table_id (tbl…) or name.",
        zh="请问是哪张数据表？请提供 table_id（tbl…）或表名。",
    ),
    "no_such_base_table": Message(
        ja="この Base に「{table}」というテーブルはありません。テーブル: {tables}",
        en="This Base has no table called “{table}”. Tables: {tables}.",
        zh="该多维表格中没有名为“{table}”的数据表。数据表：{tables}。",
    ),
    "duplicate_field_names": Message(
        ja="同じ名前のフィールドが複数あります。名前を変えてください。",
        en="Two fields have the same name; please name them differently.",
        zh="有重名的字段；请使用不同的名称。",
    ),
    "base_table_created": Message(
        ja="テーブル「{name}」（{table_id}）を作成しました。フィールド: {fields}",
        en="Created the table “{name}” ({table_id}) with the fields {fields}.",
        zh="已创建数据表“{name}”（{table_id}），字段：{fields}。",
    ),
    "field_type_text": Message(ja="テキスト", en="text", zh="文本"),
    "field_type_number": Message(ja="数値", en="number", zh="数字"),
    "field_type_single_select": Message(ja="単一選択", en="single select", zh="单选"),
    "field_type_multi_select": Message(ja="複数選択", en="multiple select", zh="多选"),
    "field_type_date": Message(ja="日付", en="date", zh="日期"),
    "field_type_checkbox": Message(ja="チェックボックス", en="checkbox", zh="复选框"),
    "field_type_person": Message(ja="ユーザー", en="person", zh="人员"),
    "field_type_phone": Message(ja="電話番号", en="phone", zh="电话号码"),
    "field_type_url": Message(ja="リンク", en="link", zh="超链接"),
    "field_type_attachment": Message(ja="添付ファイル", en="attachment", zh="附件"),
    "field_type_link": Message(ja="関連レコード", en="linked records", zh="单向关联"),
    "field_type_formula": Message(ja="数式", en="formula", zh="公式"),
    "field_type_created_time": Message(ja="作成日時", en="created time", zh="创建时间"),
    "field_type_modified_time": Message(ja="更新日時", en="modified time", zh="最后更新时间"),
    "field_type_created_by": Message(ja="作成者", en="created by", zh="创建人"),
    "field_type_modified_by": Message(ja="更新者", en="modified by", zh="修改人"),
    "field_type_auto_number": Message(ja="自動採番", en="auto number", zh="自动编号"),
    # --- larkbot mcp -------------------------------------------------------------------
    "mcp_unknown_tool": Message(
        ja="「{name}」というツールはこのサーバーにありません。使えるツール: {names}",
        en="This server has no tool called “{name}”. Available tools: {names}.",
        zh="此服务器没有名为“{name}”的工具。可用的工具：{names}。",
    ),
    "needs_user_token": Message(
        ja="この呼び出しにはユーザーアクセストークンが必要です。Lark のユーザーアクセストークンを "
        "Bearer トークンとして接続してください。",
        en="This call needs a user access token: connect with your Lark user access token as "
        "the bearer token.",
        zh="此调用需要用户访问令牌：请以 Lark 用户访问令牌作为 Bearer 令牌连接。",
    ),
    "posting_needs_writes": Message(
        ja="チャットへの投稿は書き込みにあたります。larkbot mcp を --allow-writes 付きで起動して"
        "ください。",
        en="Posting in a chat is a change: start larkbot mcp with --allow-writes to allow it.",
        zh="在群聊中发帖属于更改操作：请使用 --allow-writes 启动 larkbot mcp。",
    ),
    "posted": Message(
        ja="チャット {chat_id} に回答を投稿しました。",
        en="The answer was posted in chat {chat_id}.",
        zh="已在群聊 {chat_id} 中发布回答。",
    ),
    "confirm_title": Message(ja="確認: {tool}", en="Confirm: {tool}", zh="确认：{tool}"),
    "confirm_prompt": Message(
        ja="この変更を実行してよいですか？ {requester} さんだけが承認できます（{minutes} 分以内）。",
        en="Shall I make this change? Only {requester} can approve it (within {minutes} min).",
        zh="要执行这个更改吗？只有 {requester} 可以批准（{minutes} 分钟内）。",
    ),
    "confirm_approve": Message(ja="承認", en="Approve", zh="批准"),
    "confirm_cancel": Message(ja="キャンセル", en="Cancel", zh="取消"),
    "confirm_waiting": Message(
        ja="{tool} の実行はカードでの承認待ちです。",
        en="{tool} is waiting for approval on the card.",
        zh="{tool} 正在等待卡片上的批准。",
    ),
    "confirm_not_yours": Message(
        ja="この変更を承認・キャンセルできるのは依頼した人だけです。",
        en="Only the person who asked for this change can approve or cancel it.",
        zh="只有提出此更改的人可以批准或取消。",
    ),
    "confirm_unknown": Message(
        ja="この確認は見つかりません（古すぎる可能性があります）。",
        en="This confirmation is unknown or too old.",
        zh="找不到此确认（可能已过期太久）。",
    ),
    "confirm_expired": Message(
        ja="期限切れです。何も変更していません。",
        en="Expired: nothing was changed.",
        zh="已过期：未做任何更改。",
    ),
    "confirm_cancelled": Message(
        ja="キャンセルしました。何も変更していません。",
        en="Cancelled: nothing was changed.",
        zh="已取消：未做任何更改。",
    ),
    "confirm_running": Message(
        ja="承認済みで、実行中です。",
        en="Approved; the change is being made.",
        zh="已批准，正在执行。",
    ),
    "confirm_running_retry": Message(
        ja="{after}経っても終わらない場合は、もう一度クリックしてください。",
        en="If it has not finished after {after}, click again.",
        zh="如果 {after}后仍未完成，请再次点击。",
    ),
    "confirm_check": Message(ja="状況を確認", en="Check again", zh="再次查看"),
    "confirm_write_error": Message(
        ja="予期しないエラーで中断しました。変更されたかどうかを確認してから、もう一度依頼してください。",
        en="An unexpected error stopped the change; check whether it was made before asking again.",
        zh="意外错误中断了此更改；请先确认是否已更改，再重新请求。",
    ),
    "confirm_outcome_unknown": Message(
        ja="実行中に中断されたため、変更されたかどうかは不明です。確認してから、必要ならもう一度依頼してください。",
        en="The change was interrupted while being made, so whether it was made is unknown; check, and ask again if needed.",
        zh="此更改在执行中被中断，无法确定是否已完成；请确认后按需重新请求。",
    ),
    "confirm_done": Message(ja="完了: {outcome}", en="Done: {outcome}", zh="完成：{outcome}"),
    "confirm_failed": Message(
        ja="失敗しました: {outcome}", en="Failed: {outcome}", zh="失败：{outcome}"
    ),
}

_UNITS = (
    ("duration_days", 86400),
    ("duration_hours", 3600),
    ("duration_minutes", 60),
    ("duration_seconds", 1),
)
_LIST_SEPARATOR: dict[Language, str] = {"ja": "、", "en": ", ", "zh": "、"}


def translate(key: str, language: Language, /, *, count: int | None = None, **values: Any) -> str:
    """Return message ``key`` in ``language`` with ``values`` filled in.

    ``count`` picks the English singular when it is one and is also available to the
    template as ``{count}``. Every message exists in every language, so there is no
    fallback between languages; a language outside ja/en/zh gets English, and an unknown
    ``key`` is a programming error (``KeyError``).
    """
    template = MESSAGES[key].template(language, count)
    if count is not None:
        values.setdefault("count", count)
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

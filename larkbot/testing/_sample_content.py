# ruff: noqa: E501  (sample sentences read best one per line)
"""Sample chat history, documents, wiki and a second table for the sample workspace.

The trading company of :mod:`larkbot.testing.sample_data` works in Tokyo, Shanghai and
London, so its launch plan is written in Japanese, English and Chinese; its budget
paragraphs are what "what does the plan say about the budget" finds in each language.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from larkbot.testing._content import ChatMessage, DocxDocument, WikiNode
from larkbot.testing.workspace import BaseField, BaseTable, Document, FieldType

__all__ = [
    "ACTIVITIES_TABLE_ID",
    "LAUNCH_PLAN_ID",
    "LAUNCH_PLAN_URL",
    "MINUTES_ID",
    "ONBOARDING_NODE",
    "ONBOARDING_URL",
    "SALES_THREAD_ID",
    "SAMPLE_FOLDER",
    "WIKI_SPACE_ID",
    "activities_table",
    "sample_documents",
    "sample_docx",
    "sample_messages",
    "sample_mobiles",
    "sample_wiki",
]

LAUNCH_PLAN_ID = "doxcnLaunchPlan00001"
LAUNCH_PLAN_URL = f"https://example.feishu.cn/docx/{LAUNCH_PLAN_ID}"
MINUTES_ID = "doxcnMinutes0000001"
ONBOARDING_NODE = "wikcnOnboarding0001"
ONBOARDING_URL = f"https://example.feishu.cn/wiki/{ONBOARDING_NODE}"
ONBOARDING_DOC = "doxcnOnboarding0001"
WIKI_HOME_NODE = "wikcnSalesHome00001"
CUSTOMER_BASE_NODE = "wikcnCustomerBase01"
WIKI_SPACE_ID = "7300000000000000001"
SALES_THREAD_ID = "omt_salesthread0001"
SAMPLE_FOLDER = "fldcnSalesShared0001"
ACTIVITIES_TABLE_ID = "tblActivities0001"

_LAUNCH_PLAN = [
    "Sakura Cloud ローンチ計画 2025",
    "概要: 中小企業向けの在庫管理サービス Sakura Cloud を 7 月 1 日に東京・上海・ロンドンで同時に公開する。",
    "予算: 総予算は 1,200 万円。内訳は広告 600 万円、イベント 350 万円、予備費 250 万円。予算の変更は田中が承認する。",
    "スケジュール: 6 月 10 日に Acme 向けデモ、6 月 20 日にプレスリリース、7 月 1 日に公開。",
    "Launch plan (English summary)",
    "Overview: Sakura Cloud, our inventory service for small businesses, launches on 1 July "
    "in Tokyo, Shanghai and London.",
    "Budget: the total budget is ¥12,000,000: ¥6,000,000 for advertising, ¥3,500,000 for "
    "events and ¥2,500,000 in reserve. Ken Tanaka approves any change to the budget.",
    "Risks: the contract for the Shanghai data centre is not signed yet.",
    "发布计划（中文摘要）",
    "概述：面向中小企业的库存管理服务 Sakura Cloud 将于 7 月 1 日在东京、上海和伦敦同时发布。",
    "预算：总预算为 1,200 万日元，其中广告 600 万日元、活动 350 万日元、预备金 250 万日元。预算变更需由田中批准。",
    "负责人：佐藤美咲（日本）、陈静（中国）、Emma Wilson（英国）。",
]

_MINUTES = [
    "議事録 週次営業会議",
    "出席: 田中、小林、佐藤、Emma、陈静",
    "山田商事: 見積書を今週中に送付する。値引きは 5% まで。",
    "Acme: John Smith さんの希望で、デモを 6 月 10 日に前倒しする。",
    "来週の訪問予定: さくら食品（佐藤）、北京星辰科技（陈静）。",
]

_ONBOARDING = [
    "Onboarding guide for new sales staff",
    "Week 1: read the sales manual (営業マニュアル 2025) and shadow a customer visit.",
    "Tools: Lark for chat and documents, the customer Base for every deal, and the calendar "
    "for visits.",
    "Who to ask: Misaki Sato for Japan, Jing Chen for China, Emma Wilson for the UK.",
]

_WIKI_HOME = [
    "営業 Wiki / Sales wiki",
    "新しいメンバーはまずオンボーディングガイドを読んでください。",
    "New members: start with the onboarding guide. 新成员请先阅读入职指南。",
]

_SALES_MANUAL = [
    "営業マニュアル 2025",
    "新規顧客への提案から受注までの手順と見積書の作り方をまとめる。",
    "見積書は Base の顧客一覧から作成し、値引きは上長の承認を得る。",
]

_ROADMAP = [
    "产品路线图 2025",
    "第三季度：客户门户改版。",
    "第四季度：移动应用上线。",
]


def sample_docx() -> dict[str, DocxDocument]:
    """The docx documents, by id: the launch plan, the minutes, the wiki pages' documents."""
    documents = [
        DocxDocument(
            LAUNCH_PLAN_ID,
            "Sakura Cloud ローンチ計画 / Launch plan / 发布计划",
            _LAUNCH_PLAN,
            "ou_sato",
        ),
        DocxDocument(MINUTES_ID, "議事録 週次営業会議", _MINUTES, "ou_console_user"),
        DocxDocument(
            ONBOARDING_DOC, "Onboarding guide for new sales staff", _ONBOARDING, "ou_emma"
        ),
        DocxDocument("doxcnWikiHome000001", "営業 Wiki / Sales wiki", _WIKI_HOME, "ou_sato"),
        DocxDocument("doxcnSalesManual0001", "営業マニュアル 2025", _SALES_MANUAL, "ou_sato"),
        DocxDocument("doxcnRoadmap0000001", "产品路线图 2025", _ROADMAP, "ou_chen"),
    ]
    return {document.document_id: document for document in documents}


def sample_documents(seconds: int) -> list[Document]:
    """Search entries for the launch plan and the wiki's Base page (the rest are older)."""
    day = 86_400
    return [
        Document(
            LAUNCH_PLAN_ID,
            "Sakura Cloud ローンチ計画 / Launch plan / 发布计划",
            "docx",
            "ou_sato",
            LAUNCH_PLAN_URL,
            "7 月 1 日のローンチに向けた予算とスケジュール。Budget and schedule of the launch.",
            seconds - day,
        ),
        Document(
            CUSTOMER_BASE_NODE,
            "顧客管理 Base",
            "bitable",
            "ou_console_user",
            f"https://example.feishu.cn/wiki/{CUSTOMER_BASE_NODE}",
            "顧客一覧と商談履歴。Customers and their activities.",
            seconds - 2 * day,
            wiki=True,
        ),
    ]


def sample_wiki(now: datetime, customers_app_token: str) -> dict[str, WikiNode]:
    """A small wiki space: a home page, the onboarding guide, the customer Base, a report."""
    created = int((now - timedelta(days=60)).timestamp())
    nodes = [
        WikiNode(
            WIKI_HOME_NODE,
            WIKI_SPACE_ID,
            "営業 Wiki / Sales wiki",
            "docx",
            "doxcnWikiHome000001",
            has_child=True,
            owner_open_id="ou_sato",
        ),
        WikiNode(
            ONBOARDING_NODE,
            WIKI_SPACE_ID,
            "Onboarding guide for new sales staff",
            "docx",
            ONBOARDING_DOC,
            parent_node_token=WIKI_HOME_NODE,
            owner_open_id="ou_emma",
        ),
        WikiNode(
            CUSTOMER_BASE_NODE,
            WIKI_SPACE_ID,
            "顧客管理 Base",
            "bitable",
            customers_app_token,
            parent_node_token=WIKI_HOME_NODE,
            owner_open_id="ou_console_user",
        ),
        WikiNode(
            "wikcnQ3Report00001",
            WIKI_SPACE_ID,
            "Q3 Sales Report",
            "sheet",
            "shtcnQ3Report000001",
            parent_node_token=WIKI_HOME_NODE,
            owner_open_id="ou_emma",
        ),
    ]
    for node in nodes:
        node.created_at = created
    return {node.node_token: node for node in nodes}


def _text(
    index: str,
    chat_id: str,
    sender: str,
    at: datetime,
    text: str,
    *,
    thread_id: str | None = None,
    root_id: str | None = None,
    sender_type: str = "user",
) -> ChatMessage:
    return ChatMessage(
        message_id=f"om_sample_{index}",
        chat_id=chat_id,
        sender_id=sender,
        create_time_ms=int(at.timestamp() * 1000),
        content={"text": text},
        sender_type=sender_type,
        thread_id=thread_id,
        root_id=root_id,
    )


def sample_messages(now: datetime, app_id: str = "cli_test") -> list[ChatMessage]:
    """The history of the console chat and the sales team's chat, before ``now``."""

    def ago(minutes: int) -> datetime:
        return now - timedelta(minutes=minutes)

    root = "om_sample_sales_03"
    return [
        _text(
            "console_01",
            "oc_console",
            "ou_sato",
            ago(95),
            f"おはようございます。Sakura Cloud のローンチ計画をまとめました: {LAUNCH_PLAN_URL}",
        ),
        _text(
            "console_02",
            "oc_console",
            "ou_console_user",
            ago(90),
            "ありがとう！予算の部分は来週の役員会で確認します。",
        ),
        ChatMessage(
            message_id="om_sample_console_03",
            chat_id="oc_console",
            sender_id="ou_sato",
            create_time_ms=int(ago(70).timestamp() * 1000),
            msg_type="post",
            content={
                "title": "Acme デモの件",
                "content": [
                    [
                        {
                            "tag": "text",
                            "text": "Acme の John Smith さんから、デモを 6 月 10 日に前倒しできないかと連絡がありました。",
                        }
                    ],
                    [
                        {"tag": "at", "user_id": "ou_console_user", "user_name": "田中 健"},
                        {"tag": "text", "text": " ご判断をお願いします。"},
                    ],
                ],
            },
        ),
        _text(
            "console_04",
            "oc_console",
            "ou_console_user",
            ago(60),
            f"10 日で進めましょう。オンボーディングの Wiki も更新をお願いします: {ONBOARDING_URL}",
        ),
        _text(
            "console_05",
            "oc_console",
            app_id,
            ago(59),
            "予定「Acme デモ」を作成しました: 6 月 10 日 14:00",
            sender_type="app",
        ),
        _text(
            "sales_01",
            "oc_sales",
            "ou_emma",
            ago(300),
            "Q3 numbers are in the report: https://example.feishu.cn/sheets/shtcnQ3Report000001",
        ),
        _text("sales_02", "oc_sales", "ou_chen", ago(240), "北京星辰的演示安排在下周三。"),
        _text(
            "sales_03",
            "oc_sales",
            "ou_user_1",
            ago(180),
            "山田商事の見積書、確認をお願いします。",
            thread_id=SALES_THREAD_ID,
        ),
        _text(
            "sales_04",
            "oc_sales",
            "ou_console_user",
            ago(170),
            "確認しました。値引きは 5% までで。",
            thread_id=SALES_THREAD_ID,
            root_id=root,
        ),
        _text(
            "sales_05",
            "oc_sales",
            "ou_sato",
            ago(160),
            "承知しました、今日中に送付します。",
            thread_id=SALES_THREAD_ID,
            root_id=root,
        ),
    ]


def sample_mobiles() -> dict[str, str]:
    """Mobile numbers of some of the people, by open_id."""
    return {
        "ou_console_user": "+81 90-1234-5678",
        "ou_emma": "+44 7700 900123",
        "ou_chen": "+86 138 0013 8000",
    }


def activities_table(now: datetime) -> BaseTable:
    """The customer Base's second table: visits, calls and mails with customers."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    table = BaseTable(
        table_id=ACTIVITIES_TABLE_ID,
        name="商談履歴",
        fields=[
            BaseField("Subject", FieldType.TEXT, "fldActSubj01", is_primary=True),
            BaseField("Customer", FieldType.TEXT, "fldActCust01"),
            BaseField("Type", FieldType.SINGLE_SELECT, "fldActType01", ["訪問", "電話", "メール"]),
            BaseField("Date", FieldType.DATE, "fldActDate01"),
            BaseField("Owner", FieldType.PERSON, "fldActOwner1"),
        ],
    )
    rows = [
        ("見積書の説明", "山田商事株式会社", "訪問", 0, "ou_console_user"),
        ("Demo date moved to 10 June", "Acme Corporation", "メール", 1, "ou_emma"),
        ("产品演示的准备", "北京星辰科技有限公司", "電話", 3, "ou_chen"),
    ]
    for index, (subject, customer, kind, days_ago, owner) in enumerate(rows, 1):
        table.records[f"recAct{index:07d}"] = {
            "Subject": subject,
            "Customer": customer,
            "Type": kind,
            "Date": int((day - timedelta(days=days_ago)).timestamp() * 1000),
            "Owner": [owner],
        }
    return table

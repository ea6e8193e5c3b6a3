"""Sample data for the local Lark: a small trading company in Tokyo, Shanghai and London.

``sample_workspace()`` builds the workspace ``larkbot console`` and the tests run against;
``SAMPLE_BASES`` is the ``bases`` configuration that names its two tables. Dates are
placed relative to the moment the workspace is built, so "this month" and "today" always
have something to find: several customers were contacted this month (two of them today)
and the others in earlier months.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from larkbot.config.settings import BaseTableSettings
from larkbot.testing._sample_content import (
    SAMPLE_FOLDER,
    activities_table,
    sample_documents,
    sample_docx,
    sample_messages,
    sample_mobiles,
    sample_wiki,
)
from larkbot.testing.workspace import (
    BaseApp,
    BaseField,
    BaseTable,
    CalendarEvent,
    Chat,
    Document,
    FieldType,
    User,
    Workspace,
)

__all__ = [
    "CUSTOMERS_APP_TOKEN",
    "CUSTOMERS_TABLE_ID",
    "SAMPLE_BASES",
    "TASKS_APP_TOKEN",
    "TASKS_TABLE_ID",
    "sample_workspace",
]

CUSTOMERS_APP_TOKEN = "bascnSampleCustomers0001"
CUSTOMERS_TABLE_ID = "tblCustomers0001"
TASKS_APP_TOKEN = "bascnSampleTasks00000001"
TASKS_TABLE_ID = "tblTasks00000001"

SAMPLE_BASES: dict[str, BaseTableSettings] = {
    "customers": BaseTableSettings(
        app_token=CUSTOMERS_APP_TOKEN,
        table_id=CUSTOMERS_TABLE_ID,
        aliases=["顧客", "顧客テーブル", "customers", "customer", "客户"],
        description="Customers: contact name, company, deal status, amount, owner and the "
        "date of the last contact.",
    ),
    "tasks": BaseTableSettings(
        app_token=TASKS_APP_TOKEN,
        table_id=TASKS_TABLE_ID,
        aliases=["タスク", "tasks", "任务"],
        description="Team tasks: title, assignee, status, priority and due date.",
    ),
}

_TOKYO = ZoneInfo("Asia/Tokyo")

# (open_id, name, English name, email, department, job title, city)
_USERS = [
    User(open_id, name, email, department, title, en_name=en_name, city=city)
    for open_id, name, en_name, email, department, title, city in [
        (
            "ou_console_user",
            "田中 健",
            "Ken Tanaka",
            "ken.tanaka@example.com",
            "営業部",
            "営業部長",
            "Tokyo",
        ),
        (
            "ou_user_1",
            "小林 さくら",
            "Sakura Kobayashi",
            "sakura.kobayashi@example.com",
            "営業部",
            "営業担当",
            "Tokyo",
        ),
        (
            "ou_sato",
            "佐藤 美咲",
            "Misaki Sato",
            "misaki.sato@example.com",
            "営業部",
            "アカウントマネージャー",
            "Osaka",
        ),
        (
            "ou_emma",
            "Emma Wilson",
            "Emma Wilson",
            "emma.wilson@example.com",
            "Sales",
            "Account Executive",
            "London",
        ),
        ("ou_chen", "陈静", "Jing Chen", "chen.jing@example.com", "销售部", "销售经理", "Shanghai"),
        ("ou_li", "李明", "Ming Li", "li.ming@example.com", "技术部", "高级工程师", "Shanghai"),
        (
            "ou_suzuki",
            "鈴木 大輔",
            "Daisuke Suzuki",
            "daisuke.suzuki@example.com",
            "開発部",
            "エンジニア",
            "Tokyo",
        ),
    ]
]

# (contact, company, status, amount, owner, last contact: "today", "month:N" or "past:N")
_CUSTOMERS: list[tuple[str, str, str, int, str, str]] = [
    ("山田 太郎", "山田商事株式会社", "商談中", 1_200_000, "ou_console_user", "today"),
    ("John Smith", "Acme Corporation", "受注", 3_500_000, "ou_emma", "today"),
    ("王伟", "北京星辰科技有限公司", "商談中", 2_800_000, "ou_chen", "month:1"),
    ("佐々木 花子", "さくら食品株式会社", "見込み", 450_000, "ou_sato", "month:3"),
    ("Emily Johnson", "Globex Ltd", "商談中", 980_000, "ou_emma", "month:5"),
    ("李娜", "上海明珠贸易有限公司", "受注", 5_200_000, "ou_chen", "month:8"),
    ("高橋 誠", "東京テクノロジー株式会社", "失注", 700_000, "ou_console_user", "past:20"),
    ("Michael Brown", "Initech", "見込み", 300_000, "ou_emma", "past:35"),
    ("张敏", "深圳创新电子有限公司", "商談中", 1_600_000, "ou_chen", "past:45"),
    ("伊藤 健太", "大阪ロジスティクス株式会社", "受注", 2_100_000, "ou_sato", "past:60"),
    ("Sarah Davis", "Northwind Traders", "失注", 650_000, "ou_emma", "past:90"),
    ("刘洋", "杭州云海网络科技有限公司", "見込み", 880_000, "ou_chen", "past:120"),
    ("中村 由美", "中村精密工業株式会社", "商談中", 1_350_000, "ou_user_1", "past:150"),
]

# (title, assignee, status, priority, due in days from today)
_TASKS: list[tuple[str, str, str, str, int]] = [
    ("山田商事に見積書を送る", "ou_console_user", "進行中", "高", 1),
    ("Prepare the Acme renewal contract", "ou_emma", "未着手", "高", 3),
    ("准备北京星辰的产品演示", "ou_chen", "進行中", "中", 5),
    ("さくら食品の訪問日程を調整", "ou_sato", "未着手", "中", 7),
    ("Update the Q3 sales report", "ou_emma", "完了", "低", -2),
    ("修复客户门户登录问题", "ou_li", "進行中", "高", 0),
    ("営業マニュアルの改訂", "ou_user_1", "未着手", "低", 14),
    ("社内勉強会の資料作成", "ou_suzuki", "完了", "中", -5),
]


# (token, title, type, owner, URL path, snippet, days since the last edit)
_DOCUMENTS = [
    (
        "doxcnSalesManual0001",
        "営業マニュアル 2025",
        "docx",
        "ou_sato",
        "docx",
        "新規顧客への提案から受注までの手順と見積書の作り方。",
        3,
    ),
    (
        "shtcnQ3Report000001",
        "Q3 Sales Report",
        "sheet",
        "ou_emma",
        "sheets",
        "Quarterly sales by region and account, with the pipeline forecast.",
        10,
    ),
    (
        "doxcnRoadmap0000001",
        "产品路线图 2025",
        "docx",
        "ou_chen",
        "docx",
        "客户门户和移动应用的季度计划。",
        20,
    ),
    (
        "doxcnMinutes0000001",
        "議事録 週次営業会議",
        "docx",
        "ou_console_user",
        "docx",
        "山田商事とAcmeの商談状況、来週の訪問予定。",
        1,
    ),
    (
        "wikcnOnboarding0001",
        "Onboarding guide for new sales staff",
        "docx",
        "ou_emma",
        "wiki",
        "Tools, the sales manual, the customer Base and who to ask.",
        40,
    ),
    (
        "bascnSampleCustomers0001",
        "顧客管理",
        "bitable",
        "ou_console_user",
        "base",
        "顧客一覧と商談ステータス。",
        2,
    ),
]


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _contact_day(spec: str, today: datetime) -> datetime:
    """Turn ``today``, ``month:N`` (N days into this month, never past today) or ``past:N``."""
    kind, _, amount = spec.partition(":")
    if kind == "today":
        return today
    if kind == "month":
        month_start = today.replace(day=1)
        return month_start + timedelta(days=min(int(amount), today.day - 1))
    # Counted back from the first of the month, so these never land in the current month.
    return today.replace(day=1) - timedelta(days=int(amount))


def _customers(today: datetime) -> BaseTable:
    table = BaseTable(
        table_id=CUSTOMERS_TABLE_ID,
        name="顧客一覧",
        fields=[
            BaseField("Name", FieldType.TEXT, "fldName0001", is_primary=True),
            BaseField("Company", FieldType.TEXT, "fldCompany01"),
            BaseField(
                "Status",
                FieldType.SINGLE_SELECT,
                "fldStatus001",
                ["見込み", "商談中", "受注", "失注"],
            ),
            BaseField("Amount", FieldType.NUMBER, "fldAmount001"),
            BaseField("Owner", FieldType.PERSON, "fldOwner0001"),
            BaseField("Last contact", FieldType.DATE, "fldLastCont1"),
            BaseField("Email", FieldType.TEXT, "fldEmail0001"),
        ],
    )
    for index, (contact, company, status, amount, owner, when) in enumerate(_CUSTOMERS, 1):
        local = contact.replace(" ", "").lower()
        table.records[f"recCust{index:06d}"] = {
            "Name": contact,
            "Company": company,
            "Status": status,
            "Amount": amount,
            "Owner": [owner],
            "Last contact": _millis(_contact_day(when, today)),
            "Email": f"{local}@example.com" if local.isascii() else "",
        }
    return table


def _tasks(today: datetime) -> BaseTable:
    table = BaseTable(
        table_id=TASKS_TABLE_ID,
        name="タスク",
        fields=[
            BaseField("Task", FieldType.TEXT, "fldTask00001", is_primary=True),
            BaseField("Assignee", FieldType.PERSON, "fldAssignee1"),
            BaseField(
                "Status", FieldType.SINGLE_SELECT, "fldTStatus01", ["未着手", "進行中", "完了"]
            ),
            BaseField("Priority", FieldType.SINGLE_SELECT, "fldPriority1", ["高", "中", "低"]),
            BaseField("Due", FieldType.DATE, "fldDue000001"),
            BaseField("Done", FieldType.CHECKBOX, "fldDone00001"),
        ],
    )
    for index, (title, assignee, status, priority, due_in) in enumerate(_TASKS, 1):
        table.records[f"recTask{index:06d}"] = {
            "Task": title,
            "Assignee": [assignee],
            "Status": status,
            "Priority": priority,
            "Due": _millis(today + timedelta(days=due_in)),
            "Done": status == "完了",
        }
    return table


def sample_workspace(now: datetime | None = None, *, timezone: tzinfo = _TOKYO) -> Workspace:
    """Build the sample workspace as of ``now`` (the current time by default)."""
    moment = (now or datetime.now(timezone)).astimezone(timezone)
    today = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    seconds = int(moment.timestamp())
    day = 86_400
    mobiles = sample_mobiles()
    users = {u.open_id: replace(u, mobile=mobiles.get(u.open_id, "")) for u in _USERS}
    everyone = list(users)
    return Workspace(
        apps={
            CUSTOMERS_APP_TOKEN: BaseApp(
                CUSTOMERS_APP_TOKEN,
                "顧客管理",
                {CUSTOMERS_TABLE_ID: _customers(today), **_activities(moment)},
            ),
            TASKS_APP_TOKEN: BaseApp(
                TASKS_APP_TOKEN, "タスク管理", {TASKS_TABLE_ID: _tasks(today)}
            ),
        },
        users=users,
        chats={
            "oc_console": Chat("oc_console", "larkbot console", ["ou_console_user", "ou_sato"]),
            "oc_sales": Chat(
                "oc_sales",
                "営業チーム / Sales / 销售团队",
                ["ou_console_user", "ou_user_1", "ou_sato", "ou_emma", "ou_chen"],
            ),
            "oc_dev": Chat("oc_dev", "開発チーム", ["ou_console_user", "ou_suzuki", "ou_li"]),
            "oc_all": Chat("oc_all", "全社 All hands 全员", everyone),
            "oc_board": Chat("oc_board", "役員会", ["ou_console_user"], bot_is_member=False),
        },
        documents=[
            Document(
                token,
                title,
                kind,
                owner,
                f"https://example.feishu.cn/{where}/{token}",
                snippet,
                seconds - age * day,
                wiki=where == "wiki",
            )
            for token, title, kind, owner, where, snippet, age in _DOCUMENTS
        ]
        + sample_documents(seconds),
        calendar_id="feishu.cn_larkbot_primary@group.calendar.feishu.cn",
        events={
            "evtSample000001": CalendarEvent(
                "evtSample000001",
                "feishu.cn_larkbot_primary@group.calendar.feishu.cn",
                "週次営業会議",
                "毎週の商談レビュー",
                int((today + timedelta(days=1, hours=10)).timestamp()),
                int((today + timedelta(days=1, hours=11)).timestamp()),
                ["ou_console_user", "ou_sato", "ou_user_1"],
            )
        },
        timezone=timezone,
        messages=sample_messages(moment),
        docx=sample_docx(),
        wiki_nodes=sample_wiki(moment, CUSTOMERS_APP_TOKEN),
        folders={SAMPLE_FOLDER},
    )


def _activities(moment: datetime) -> dict[str, BaseTable]:
    table = activities_table(moment)
    return {table.table_id: table}

"""The stand-in's workspace routes, over real HTTP through the real OpenAPI client."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from larkbot.lark.client import LarkAPIError
from larkbot.testing.sample_data import (
    CUSTOMERS_APP_TOKEN,
    CUSTOMERS_TABLE_ID,
    SAMPLE_BASES,
    sample_workspace,
)
from tests._factories import Sample, customers

pytestmark = pytest.mark.anyio

TABLE = f"bitable/v1/apps/{CUSTOMERS_APP_TOKEN}/tables/{CUSTOMERS_TABLE_ID}"
SEARCH_ROUTE = "bitable/v1/apps/{app_token}/tables/{table_id}/records/search"
RECORDS_ROUTE = "bitable/v1/apps/{app_token}/tables/{table_id}/records"
RECORD_ROUTE = "bitable/v1/apps/{app_token}/tables/{table_id}/records/{record_id}"


@dataclass
class Env(Sample):
    async def search(
        self, body: dict[str, Any], *, table: str = TABLE, **params: Any
    ) -> dict[str, Any]:
        return await self.client.request(
            "POST", f"{table}/records/search", route=SEARCH_ROUTE, params=params, json=body
        )

    async def names(self, conditions: list[dict[str, Any]], conjunction: str = "and") -> set[str]:
        data = await self.search(
            {"filter": {"conjunction": conjunction, "conditions": conditions}}, page_size=500
        )
        return {item["fields"]["Name"][0]["text"] for item in data["items"]}


@pytest.fixture
def env(sample: Sample) -> Env:
    return Env(sample.ws, sample.lark, sample.client)


def test_sample_workspace_has_what_the_console_promises() -> None:
    ws = sample_workspace()
    rows = list(customers(ws).values())
    assert len(rows) >= 12
    now = datetime.now(ws.timezone)
    in_month = [
        r
        for r in rows
        if (d := datetime.fromtimestamp(r["Last contact"] / 1000, tz=UTC).astimezone(ws.timezone))
        and (d.year, d.month) == (now.year, now.month)
    ]
    assert 3 <= len(in_month) < len(rows)
    companies = " ".join(r["Company"] for r in rows)
    assert "株式会社" in companies and "Corporation" in companies and "有限公司" in companies
    assert {"Name", "Company", "Status", "Amount", "Owner", "Last contact"} <= {
        f.name for f in ws.table("顧客一覧").fields
    }
    assert ws.table("タスク").records
    assert SAMPLE_BASES["customers"].aliases == [
        "顧客",
        "顧客テーブル",
        "customers",
        "customer",
        "客户",
    ]
    assert SAMPLE_BASES["tasks"].aliases == ["タスク", "tasks", "任务"]
    assert "ou_console_user" in ws.users and "oc_console" in ws.chats


async def test_fields_are_listed_with_types_and_pages(env: Env) -> None:
    route = "bitable/v1/apps/{app_token}/tables/{table_id}/fields"
    first = await env.client.request("GET", f"{TABLE}/fields", route=route, params={"page_size": 4})
    assert first["has_more"] is True and first["total"] == 7
    second = await env.client.request(
        "GET",
        f"{TABLE}/fields",
        route=route,
        params={"page_size": 4, "page_token": first["page_token"]},
    )
    assert second["has_more"] is False and "page_token" not in second
    fields = {f["field_name"]: f for f in first["items"] + second["items"]}
    assert fields["Name"]["is_primary"] is True and fields["Name"]["type"] == 1
    assert fields["Status"]["type"] == 3
    assert [o["name"] for o in fields["Status"]["property"]["options"]] == [
        "見込み",
        "商談中",
        "受注",
        "失注",
    ]
    assert fields["Last contact"]["type"] == 5 and fields["Owner"]["type"] == 11


async def test_search_pages_through_every_record_once(env: Env) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"page_size": 5}
    while True:
        data = await env.search({}, **params)
        assert data["total"] == len(customers(env.ws))
        seen.extend(item["record_id"] for item in data["items"])
        if not data["has_more"]:
            break
        params = {"page_size": 5, "page_token": data["page_token"]}
    assert seen == list(customers(env.ws))


async def test_search_answers_values_in_the_api_shapes(env: Env) -> None:
    data = await env.search({}, page_size=1)
    fields = data["items"][0]["fields"]
    assert fields["Name"] == [{"type": "text", "text": "山田 太郎"}]
    assert fields["Owner"] == [
        {
            "id": "ou_console_user",
            "name": "田中 健",
            "en_name": "Ken Tanaka",
            "email": "ken.tanaka@example.com",
        }
    ]
    assert isinstance(fields["Amount"], int) and isinstance(fields["Last contact"], int)
    assert fields["Status"] == "商談中"
    assert "Email" not in fields  # empty values are left out, as Lark does


async def test_text_and_select_operators(env: Env) -> None:
    assert await env.names([{"field_name": "Status", "operator": "is", "value": ["受注"]}]) == {
        "John Smith",
        "李娜",
        "伊藤 健太",
    }
    assert await env.names(
        [{"field_name": "Company", "operator": "contains", "value": ["acme"]}]
    ) == {"John Smith"}
    not_lost = await env.names([{"field_name": "Status", "operator": "isNot", "value": ["失注"]}])
    assert "Sarah Davis" not in not_lost and len(not_lost) == 11
    without = await env.names(
        [{"field_name": "Company", "operator": "doesNotContain", "value": ["株式会社"]}]
    )
    assert "山田 太郎" not in without and "John Smith" in without
    no_email = await env.names([{"field_name": "Email", "operator": "isEmpty", "value": []}])
    assert "王伟" in no_email and "John Smith" not in no_email
    assert await env.names(
        [
            {"field_name": "Status", "operator": "is", "value": ["受注"]},
            {"field_name": "Status", "operator": "is", "value": ["失注"]},
        ],
        conjunction="or",
    ) == {"John Smith", "李娜", "伊藤 健太", "高橋 誠", "Sarah Davis"}


async def test_number_and_person_operators(env: Env) -> None:
    big = await env.names([{"field_name": "Amount", "operator": "isGreater", "value": ["3000000"]}])
    assert big == {"John Smith", "李娜"}
    small = await env.names([{"field_name": "Amount", "operator": "isLess", "value": ["500000"]}])
    assert small == {"佐々木 花子", "Michael Brown"}
    mine = await env.names(
        [{"field_name": "Owner", "operator": "is", "value": ["ou_console_user"]}]
    )
    assert mine == {"山田 太郎", "高橋 誠"}


async def test_date_filters_follow_the_calendar(env: Env) -> None:
    tz = env.ws.timezone
    now = datetime.now(tz)

    def when(row: dict[str, Any]) -> datetime:
        return datetime.fromtimestamp(row["Last contact"] / 1000, tz=UTC).astimezone(tz)

    rows = customers(env.ws).values()
    this_month = {r["Name"] for r in rows if (when(r).year, when(r).month) == (now.year, now.month)}
    today = {r["Name"] for r in rows if when(r).date() == now.date()}
    condition = {"field_name": "Last contact", "operator": "is"}
    assert await env.names([{**condition, "value": ["CurrentMonth"]}]) == this_month
    assert await env.names([{**condition, "value": ["Today"]}]) == today
    assert {"山田 太郎", "John Smith"} <= today
    exact = next(r for r in rows if r["Name"] == "Sarah Davis")
    assert await env.names([{**condition, "value": ["ExactDate", str(exact["Last contact"])]}]) == {
        "Sarah Davis"
    }
    before = await env.names(
        [
            {
                "field_name": "Last contact",
                "operator": "isLess",
                "value": ["ExactDate", str(exact["Last contact"])],
            }
        ]
    )
    assert before == {"刘洋", "中村 由美"}


async def _lark_code(call: Awaitable[Any]) -> int:
    """The code of the Lark error ``call`` must fail with."""
    with pytest.raises(LarkAPIError) as caught:
        await call
    return caught.value.code


async def test_bitable_errors_use_lark_codes(env: Env) -> None:
    unknown_table = f"bitable/v1/apps/{CUSTOMERS_APP_TOKEN}/tables/tblNope"
    assert await _lark_code(env.search({}, table=unknown_table)) == 1254041
    unknown_app = f"bitable/v1/apps/bascnNope/tables/{CUSTOMERS_TABLE_ID}"
    assert await _lark_code(env.search({}, table=unknown_app)) == 1254040
    unknown_field = {"field_name": "Nope", "operator": "is", "value": ["x"]}
    assert await _lark_code(env.names([unknown_field])) == 1254045
    bad_operator = {"field_name": "Last contact", "operator": "contains", "value": ["x"]}
    assert await _lark_code(env.names([bad_operator])) == 1254018
    for method in ("PUT", "DELETE"):
        missing = env.client.request(
            method, f"{TABLE}/records/recNope", route=RECORD_ROUTE, json={"fields": {}}, write=True
        )
        assert await _lark_code(missing) == 1254043
    bad_number = env.client.request(
        "POST",
        f"{TABLE}/records",
        route=RECORDS_ROUTE,
        json={"fields": {"Amount": "lots"}},
        write=True,
    )
    assert await _lark_code(bad_number) == 1254061
    assert env.ws.writes == []


async def test_create_update_delete_are_recorded_and_client_token_is_idempotent(env: Env) -> None:
    body = {
        "fields": {
            "Name": "New Person",
            "Amount": 10,
            "Status": "新規",
            "Owner": [{"id": "ou_sato"}],
        }
    }
    params = {"client_token": "6f1c9a52-1111-4222-8333-444455556666"}
    first = await env.client.request(
        "POST", f"{TABLE}/records", route=RECORDS_ROUTE, params=params, json=body, write=True
    )
    again = await env.client.request(
        "POST", f"{TABLE}/records", route=RECORDS_ROUTE, params=params, json=body, write=True
    )
    record_id = first["record"]["record_id"]
    assert again["record"]["record_id"] == record_id
    assert first["record"]["fields"]["Owner"][0]["name"] == "佐藤 美咲"
    assert customers(env.ws)[record_id]["Owner"] == ["ou_sato"]
    assert "新規" in env.ws.table("顧客一覧").field("Status").options  # type: ignore[union-attr]
    updated = await env.client.request(
        "PUT",
        f"{TABLE}/records/{record_id}",
        route=RECORD_ROUTE,
        json={"fields": {"Amount": 20}},
        write=True,
    )
    assert updated["record"]["fields"]["Amount"] == 20
    deleted = await env.client.request(
        "DELETE", f"{TABLE}/records/{record_id}", route=RECORD_ROUTE, write=True
    )
    assert deleted == {"deleted": True, "record_id": record_id}
    assert record_id not in customers(env.ws)
    assert [(w.method, w.route) for w in env.ws.writes] == [
        ("POST", RECORDS_ROUTE),
        ("PUT", RECORD_ROUTE),
        ("DELETE", RECORD_ROUTE),
    ]
    assert env.ws.writes[0].params == params


async def test_directory_routes(env: Env) -> None:
    user = await env.client.request(
        "GET",
        "contact/v3/users/ou_chen",
        route="contact/v3/users/{user_id}",
        params={"user_id_type": "open_id"},
    )
    assert user["user"]["name"] == "陈静" and user["user"]["department_ids"]
    department = await env.client.request(
        "GET",
        f"contact/v3/departments/{user['user']['department_ids'][0]}",
        route="contact/v3/departments/{department_id}",
    )
    assert department["department"]["name"] == "销售部"
    ids = await env.client.request(
        "POST",
        "contact/v3/users/batch_get_id",
        route="contact/v3/users/batch_get_id",
        params={"user_id_type": "open_id"},
        json={"emails": ["EMMA.wilson@example.com", "nobody@example.com"]},
    )
    assert ids["user_list"][0]["user_id"] == "ou_emma"
    assert "user_id" not in ids["user_list"][1]
    with pytest.raises(LarkAPIError) as unknown:
        await env.client.request(
            "GET", "contact/v3/users/ou_nobody", route="contact/v3/users/{user_id}"
        )
    assert (unknown.value.code, unknown.value.status) == (41050, 400)


async def test_chat_members_page_and_refuse_unknown_chats(env: Env) -> None:
    route = "im/v1/chats/{chat_id}/members"
    first = await env.client.request(
        "GET", "im/v1/chats/oc_all/members", route=route, params={"page_size": 4}
    )
    assert first["member_total"] == len(env.ws.users) and first["has_more"] is True
    rest = await env.client.request(
        "GET",
        "im/v1/chats/oc_all/members",
        route=route,
        params={"page_size": 4, "page_token": first["page_token"]},
    )
    ids = [m["member_id"] for m in first["items"] + rest["items"]]
    assert ids == list(env.ws.users)
    for chat, code in (("oc_nope", 232006), ("oc_board", 232011)):
        with pytest.raises(LarkAPIError) as refused:
            await env.client.request("GET", f"im/v1/chats/{chat}/members", route=route)
        assert refused.value.code == code


async def test_document_search_marks_hits(env: Env) -> None:
    data = await env.client.request(
        "POST",
        "search/v2/doc_wiki/search",
        route="search/v2/doc_wiki/search",
        json={"query": "sales", "page_size": 10},
    )
    titles = [u["title_highlighted"] for u in data["res_units"]]
    assert "Q3 <h>Sales</h> Report" in titles
    assert data["total"] == len(titles) == 2
    unit = next(u for u in data["res_units"] if "Q3" in u["title_highlighted"])
    assert unit["result_meta"]["owner_name"] == "Emma Wilson"
    assert unit["result_meta"]["doc_types"] == "SHEET"


async def test_calendar_event_creation_is_idempotent_and_attendees_are_added(env: Env) -> None:
    primary = await env.client.request(
        "POST", "calendar/v4/calendars/primary", route="calendar/v4/calendars/primary"
    )
    calendar_id = primary["calendars"][0]["calendar"]["calendar_id"]
    route = "calendar/v4/calendars/{calendar_id}/events"
    body = {
        "summary": "Demo",
        "start_time": {"timestamp": "1800000000"},
        "end_time": {"timestamp": "1800003600"},
    }
    params = {"idempotency_key": "k1"}
    events = f"calendar/v4/calendars/{calendar_id}/events"
    # The very same request twice, as a retry would send it.
    first, again = [
        await env.client.request("POST", events, route=route, params=params, json=body, write=True)
        for _ in range(2)
    ]
    event_id = first["event"]["event_id"]
    assert again["event"]["event_id"] == event_id
    added = await env.client.request(
        "POST",
        f"calendar/v4/calendars/{calendar_id}/events/{event_id}/attendees",
        route=route + "/{event_id}/attendees",
        params={"user_id_type": "open_id"},
        json={"attendees": [{"type": "user", "user_id": "ou_li"}]},
        write=True,
    )
    assert added["attendees"][0]["display_name"] == "李明"
    assert env.ws.events[event_id].attendee_open_ids == ["ou_li"]
    with pytest.raises(LarkAPIError) as backwards:
        await env.client.request(
            "POST",
            f"calendar/v4/calendars/{calendar_id}/events",
            route=route,
            json={**body, "end_time": {"timestamp": "1700000000"}},
            write=True,
        )
    assert backwards.value.code == 190002


async def test_denied_route_answers_the_missing_scope(env: Env) -> None:
    env.ws.denied_routes.add(SEARCH_ROUTE)
    with pytest.raises(LarkAPIError) as denied:
        await env.search({})
    assert denied.value.code == 99991672
    assert "bitable:app:readonly" in denied.value.msg


async def test_routes_require_the_tenant_token(env: Env) -> None:
    # A request without a token is refused by the stand-in before the workspace sees it.
    async with httpx.AsyncClient(base_url=env.lark.url, trust_env=False) as http:
        response = await http.post(f"/open-apis/{TABLE}/records/search", json={})
    assert response.json()["code"] == 99991661

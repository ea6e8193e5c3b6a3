"""The MCP server's bearer checks against the local Lark: what a refused token leaves behind."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from larkbot.core.redact import redact
from larkbot.lark import LarkClient
from larkbot.mcp._auth import McpTokenVerifier
from larkbot.testing import LarkStandIn

pytestmark = pytest.mark.anyio


async def test_a_refused_bearer_is_not_registered_and_not_asked_again() -> None:
    # Regression: any string sent as a bearer was registered with the log redactor before
    # Lark had accepted it, so a caller could have a word of its choosing masked everywhere,
    # and each made-up token cost a call to Lark.
    async with LarkStandIn() as lark, LarkClient(lark.url, lark.app_id, lark.app_secret) as client:
        verifier = McpTokenVerifier(mode="auto", mcp_token=SecretStr("m" * 32), client=client)
        assert await verifier.verify_token("accepted-word-of-choice") is None
        asked = len(lark.api_calls)
        assert await verifier.verify_token("accepted-word-of-choice") is None
        assert len(lark.api_calls) == asked  # the refusal is remembered
        assert redact("the request was accepted-word-of-choice") == (
            "the request was accepted-word-of-choice"
        )
        good = lark.issue_user_token("ou_sato", name="Sato")
        access = await verifier.verify_token(good)
        assert access is not None and access.subject == "ou_sato"
        assert good not in redact(f"bearer {good} and {good}")

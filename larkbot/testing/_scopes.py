"""The app's granted scopes, as ``GET application/v6/scopes`` reports them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from larkbot.testing._openapi import ApiRequest, OpenApiRoute

__all__ = ["app_scopes_route"]

_GRANTED = 1
_NOT_GRANTED = 2


def app_scopes_route(granted: Iterable[str], requested: Iterable[str] = ()) -> OpenApiRoute:
    """Serve the tenant's grant status of the app's scopes (``requested``: not granted yet)."""
    scopes = [{"scope_name": name, "grant_status": _GRANTED} for name in granted]
    scopes += [{"scope_name": name, "grant_status": _NOT_GRANTED} for name in requested]

    async def handler(request: ApiRequest) -> dict[str, Any]:
        return {"scopes": [dict(scope) for scope in scopes]}

    return OpenApiRoute("GET", "application/v6/scopes", handler)

"""What the workspace's route handlers share: scoped route tables and the log of writes.

A workspace route is listed once, with the scope the platform requires for it; while
``ws.denied_routes`` names it (as ``"<METHOD> <template>"``, or the template alone for
every method) it answers 99991672 naming that scope, as an app lacking the scope gets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from larkbot.testing._objects import WorkspaceWrite
from larkbot.testing._openapi import ApiError, ApiRequest, OpenApiRoute

if TYPE_CHECKING:
    from larkbot.testing.workspace import Workspace

__all__ = ["ScopedRoute", "WorkspaceHandlers"]

_NO_SCOPE = 99991672

_HandlersT = TypeVar("_HandlersT", bound="WorkspaceHandlers")


@dataclass(frozen=True, slots=True)
class ScopedRoute(Generic[_HandlersT]):
    """One row of a route table: method, template, the scope it needs, and its handler."""

    method: str
    template: str
    scope: str
    handler: Callable[[_HandlersT, ApiRequest], Any]


class WorkspaceHandlers:
    """Route handlers over one workspace; subclasses hold the handlers of a route table."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def serve(self, table: Sequence[ScopedRoute[Self]]) -> list[OpenApiRoute]:
        """Return the routes of ``table``, answered by these handlers."""
        return [
            OpenApiRoute(route.method, route.template, self._endpoint(route)) for route in table
        ]

    def record_write(self, request: ApiRequest) -> None:
        """Keep a change made through the OpenAPI in ``ws.writes``."""
        self.ws.writes.append(
            WorkspaceWrite(
                method=request.method,
                route=request.route,
                path=request.path,
                params=dict(request.query),
                body=request.body,
            )
        )

    def _endpoint(self, route: ScopedRoute[Self]) -> Callable[[ApiRequest], Any]:
        async def endpoint(request: ApiRequest) -> Any:
            denied = self.ws.denied_routes
            if route.template in denied or f"{route.method} {route.template}" in denied:
                raise ApiError(
                    _NO_SCOPE,
                    f"Access denied. One of the following scopes is required: [{route.scope}].",
                )
            return route.handler(self, request)

        return endpoint

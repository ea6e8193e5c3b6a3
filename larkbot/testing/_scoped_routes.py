"""What the workspace's route handlers share: scoped route tables and the log of writes.

A workspace route is listed once, with the scope the platform requires for it; while
``ws.denied_routes`` names it (as ``"<METHOD> <template>"``, or the template alone for
every method) it answers 99991672 naming that scope, as an app lacking the scope gets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from larkbot.testing._objects import WorkspaceWrite
from larkbot.testing._openapi import ApiError, ApiRequest, OpenApiRoute

if TYPE_CHECKING:
    from larkbot.testing.workspace import BaseApp, Workspace

__all__ = ["RouteTable", "ScopedRoute", "WorkspaceHandlers"]

_NO_SCOPE = 99991672
_BASE_NOT_FOUND = 1254040

_Handler = TypeVar("_Handler", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ScopedRoute:
    """One route: method, template, the scope it needs, and its handler (a method)."""

    method: str
    template: str
    scope: str
    handler: Callable[[Any, ApiRequest], Any]


class RouteTable:
    """The routes a handler class declares, in the order its methods are defined.

    ``@table.route("GET", template, scope)`` above a handler method lists it.
    """

    def __init__(self) -> None:
        self.routes: list[ScopedRoute] = []

    def route(self, method: str, template: str, scope: str) -> Callable[[_Handler], _Handler]:
        """List the decorated handler as the route ``method template``, needing ``scope``."""

        def register(handler: _Handler) -> _Handler:
            self.routes.append(ScopedRoute(method, template, scope, handler))
            return handler

        return register


class WorkspaceHandlers:
    """Route handlers over one workspace; subclasses hold the handlers of a route table."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def serve(self, table: RouteTable) -> list[OpenApiRoute]:
        """Return the routes of ``table``, answered by these handlers."""
        return [
            OpenApiRoute(route.method, route.template, self._endpoint(route))
            for route in table.routes
        ]

    def base_app(self, request: ApiRequest) -> BaseApp:
        """The Base the path's ``app_token`` names; 1254040 if there is none."""
        app = self.ws.apps.get(request.path_params["app_token"])
        if app is None:
            raise ApiError(_BASE_NOT_FOUND, "BaseTokenNotFound", status=200)
        return app

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

    def _endpoint(self, route: ScopedRoute) -> Callable[[ApiRequest], Any]:
        async def endpoint(request: ApiRequest) -> Any:
            denied = self.ws.denied_routes
            if route.template in denied or f"{route.method} {route.template}" in denied:
                raise ApiError(
                    _NO_SCOPE,
                    f"Access denied. One of the following scopes is required: [{route.scope}].",
                )
            return route.handler(self, request)

        return endpoint

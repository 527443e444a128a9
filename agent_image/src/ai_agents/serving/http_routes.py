"""What the HTTP middlewares (metrics, tracing) share about a request: the handler type and its route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    # The route template, not the raw path, keeps label cardinality (and span names) bounded.
    return resource.canonical if resource is not None else "unmatched"

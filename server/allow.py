"""405 Method Not Allowed with an `Allow` header listing every method the path supports (RFC 9110 §15.5.6).

Starlette answers 405 from the first route whose path matches, so `DELETE /v1/streams` (GET and POST are separate
routes) used to say `Allow: POST`. This handler lists every method for which some route matches the path. A path
that a route names literally (`/v1/streams/test`) is that route's resource: routes that match it only through a
path parameter (`/v1/streams/{stream_id}`) are not counted for it.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Match

METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """The 405 answer: `{"detail": ...}` naming the method and the methods the path allows."""
    path = request.scope["path"]
    literal = any(_served(request, m, literal_only=True) for m in METHODS)
    methods = [m for m in METHODS if _served(request, m, literal_only=literal)]
    headers = dict(getattr(exc, "headers", None) or {})
    if methods:
        headers["Allow"] = ", ".join(methods)
    detail = f"method {request.method} not allowed on {path[:200]}; allowed: {headers.get('Allow', 'none')}"
    return JSONResponse({"detail": detail}, status_code=405, headers=headers)


def _leaves(routes: Iterable[Any]) -> Iterator[Any]:
    """The routes inside (FastAPI nests included routers; their routes carry the full path)."""
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:
            yield from _leaves(inner)
        else:
            yield route


def _served(request: Request, method: str, literal_only: bool = False) -> bool:
    """True if some route of the app fully matches the request's path with `method` (routers nest, so ask the
    routes themselves rather than reading their paths); `literal_only`: a route whose path has no parameter."""
    scope = {**request.scope, "method": method}
    if literal_only:
        literal = (r for r in _leaves(request.app.router.routes) if "{" not in getattr(r, "path", "{"))
        return any(route.matches(scope)[0] == Match.FULL for route in literal)
    return any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes)


def install_allow_header(app: FastAPI) -> None:
    """Answer every 405 of `app` with the complete `Allow` header."""
    app.add_exception_handler(405, method_not_allowed)

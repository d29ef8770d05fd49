"""405 Method Not Allowed with an `Allow` header listing every method the path supports (RFC 9110 §15.5.6).

Starlette answers 405 from the first route whose path matches, so `DELETE /v1/streams` (GET and POST are separate
routes) used to say `Allow: POST`. This handler lists every method for which some route matches the path.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Match

METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """The 405 answer: `{"detail": ...}` naming the method and the methods the path allows."""
    path = request.scope["path"]
    methods = [m for m in METHODS if _served(request, m)]
    headers = dict(getattr(exc, "headers", None) or {})
    if methods:
        headers["Allow"] = ", ".join(methods)
    detail = f"method {request.method} not allowed on {path[:200]}; allowed: {headers.get('Allow', 'none')}"
    return JSONResponse({"detail": detail}, status_code=405, headers=headers)


def _served(request: Request, method: str) -> bool:
    """True if some route of the app fully matches the request's path with `method` (routers nest, so ask the
    routes themselves rather than reading their paths)."""
    scope = {**request.scope, "method": method}
    return any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes)


def install_allow_header(app: FastAPI) -> None:
    """Answer every 405 of `app` with the complete `Allow` header."""
    app.add_exception_handler(405, method_not_allowed)

"""API docs without a CDN: `/docs` (Swagger UI) and `/redoc` (ReDoc) load their scripts from the service itself.

FastAPI's own pages fetch Swagger UI / ReDoc from cdn.jsdelivr.net, so they stay blank on air-gapped or edge hosts.
Here the same pages (`fastapi.openapi.docs`) point at `/docs-static/...`, which serves the copies bundled in the
`fastapi-offline` package (Swagger UI bundle + CSS, ReDoc standalone, favicon); ReDoc runs without Google Fonts.
`create_app` turns FastAPI's pages off (`docs_url=None, redoc_url=None`) and includes this router.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)

ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-static"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"


def _urls(request: Request) -> tuple[str, str]:
    """(openapi.json URL, assets URL prefix), behind any `root_path` the service is mounted under."""
    root = request.scope.get("root_path", "")
    return f"{root}{request.app.openapi_url}", f"{root}{ASSETS_URL}"


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI, with its script and style sheet served by this service."""
    openapi_url, assets = _urls(request)
    return get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon.png",
        swagger_ui_parameters=request.app.swagger_ui_parameters,
    )


@router.get(OAUTH2_REDIRECT_URL, response_class=HTMLResponse)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 redirect page (as FastAPI's own docs serve it)."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc, with its script served by this service and no web fonts."""
    openapi_url, assets = _urls(request)
    return get_redoc_html(
        openapi_url=openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{assets}/redoc.standalone.js",
        redoc_favicon_url=f"{assets}/favicon.png",
        with_google_fonts=False,
    )


@router.api_route(ASSETS_URL + "/{name}", methods=["GET", "HEAD"], response_class=FileResponse)
async def asset(name: str) -> FileResponse:
    """One bundled docs asset (a fixed list of names); 404 for anything else."""
    if name not in ASSETS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no docs asset {name!r}")
    return FileResponse(ASSETS_DIR / name, media_type=ASSETS[name], headers={"Cache-Control": "public, max-age=86400"})

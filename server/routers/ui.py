"""Browser demo: the webcam page at `/` and its assets under `/static/` (`server/static/`, served by Starlette's
`StaticFiles`) and `GET /v1/classes`.

The page streams the webcam over `WS /v1/streams/ws` (docs/websocket-protocol.md) and draws the returned masks
with the colours served here, which are the same palettes the server's own overlays use
(`mask2former_ttt.outputs.palette`), so the page, the overlay encoding and the offline MP4s agree.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from mask2former_ttt.outputs.palette import class_colors, instance_palette
from server.deps import Authorized, ModelDep
from server.schemas import Classes

log = logging.getLogger(__name__)
router = APIRouter(tags=["ui"])

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
REAL_WEIGHTS_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "real-weights.md"
INSTANCE_COLORS = 256  # instance colours do not depend on how many are drawn: colour i is the same for any n
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


class StaticAssets(StaticFiles):
    """`server/static/` with Starlette's `StaticFiles` (GET / HEAD, ETag / Last-Modified and 304, no path escapes),
    each file sent with `Cache-Control: no-cache` (the browser revalidates, so a new release is picked up at once)
    and the content types of `MEDIA_TYPES`."""

    def file_response(self, full_path: Any, stat_result: os.stat_result, scope: Any, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        media_type = MEDIA_TYPES.get(Path(full_path).suffix)
        if media_type is not None:
            response.headers["Content-Type"] = media_type
        return response


STATIC = StaticAssets(directory=STATIC_DIR)
router.mount("/static", STATIC, name="static")


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False, response_class=FileResponse)
async def index(request: Request) -> Response:
    """The webcam demo page (`index.html` of the static files)."""
    return await STATIC.get_response("index.html", request.scope)


@router.api_route("/guides/real-weights.md", methods=["GET", "HEAD"], include_in_schema=False, response_class=FileResponse)
async def real_weights_guide() -> FileResponse:
    """docs/real-weights.md (how to serve a real checkpoint), linked from the page's demo-model notice; 404 where
    the docs are not installed (the Docker image ships the packages only)."""
    if not REAL_WEIGHTS_GUIDE.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="docs/real-weights.md is not installed here")
    return FileResponse(REAL_WEIGHTS_GUIDE, media_type="text/plain; charset=utf-8")


@router.get("/v1/classes", dependencies=[Authorized], response_model=Classes)
async def classes(model: ModelDep) -> Classes:
    """The model's classes with the colours the service draws them in.

    `class_colors[c]` is class `c`'s RGB colour: the checkpoint's own (a dataset's `meta.json`), else Cityscapes
    colours for street classes. Semantic segments and panoptic stuff are drawn in it; things (instances, panoptic
    things) in their id's shade of it (`mask2former_ttt.outputs.palette.thing_shades`), so a legend of class
    colours holds for every pixel. `instance_colors` is the older per-instance palette, kept for clients that
    used it; the service's own drawings no longer do.
    """
    names = list(model.cfg.class_names)
    return Classes(
        model=model.cfg.name,
        class_names=names,
        thing_class_ids=list(model.cfg.thing_class_ids),
        class_colors=class_colors(names, model.cfg.class_colors).tolist(),
        instance_colors=instance_palette(INSTANCE_COLORS).tolist(),
    )

"""`POST /v1/predict`: one JPEG / PNG image (raw body or multipart `file`) -> the result a WebSocket frame gets, with
the initial weights (`main_only`) or the caller's live stream's adapted weights (`stream_id`)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from server.deps import Authorized, PrincipalDep, RtspDep, SettingsDep, WorkerDep
from server.image_body import receive_image
from server.jobs.upload import UploadError
from server.logging_setup import kv
from server.origin import SameOrigin
from server.predict import PredictError, predict
from server.predict_models import PREDICT_REQUEST_BODY, PredictOptions, PredictResult, UnusableInput
from server.schemas import error_responses
from server.wire.inbound import image_format
from server.wire.outbound import result_message
from server.worker.imaging import ImageDecodeError, decode_image

log = logging.getLogger(__name__)
router = APIRouter(tags=["predict"], dependencies=[Authorized, SameOrigin], responses=error_responses(401, 503))


@router.post(
    "/v1/predict",
    response_model=PredictResult,
    responses={
        **error_responses(400, 403, 404, 409, 413, 415, 429, 500),
        422: {"model": UnusableInput, "description": "unusable image or invalid option (the detail says what)"},
    },
    openapi_extra=PREDICT_REQUEST_BODY,
)
async def predict_image(
    request: Request,
    options: Annotated[PredictOptions, Query()],
    settings: SettingsDep,
    worker: WorkerDep,
    rtsp: RtspDep,
    principal: PrincipalDep,
) -> PredictResult:
    """Segment one image. The same limits as a WebSocket frame: at most `M2F_STREAMS_MAX_FRAME_BYTES` (413), JPEG or
    PNG (415), at most `M2F_STREAMS_MAX_FRAME_PIXELS` pixels and decodable (422). `stream_id`: one of the caller's
    live streams (404 otherwise) predicts with its current weights, in order with its frames and without changing
    them; unset: the initial weights, as a one-image stream (503 when the service is full, 429 at the key's
    live-stream limit)."""
    received = time.perf_counter()
    try:
        data = await receive_image(request, int(settings.streams.max_frame_bytes))
    except UploadError as exc:
        raise HTTPException(exc.status, detail=exc.message) from None
    if image_format(data) is None:
        raise HTTPException(415, detail="the image is neither JPEG nor PNG (bad magic bytes)")
    t0 = time.perf_counter()
    try:
        rgb = await asyncio.to_thread(decode_image, data, settings.streams.max_frame_pixels)
    except ImageDecodeError as exc:
        raise HTTPException(422, detail=f"bad_image: {exc}") from None
    keep = settings.instance_filter(options.score_threshold, options.min_area)
    try:
        result = await predict(
            worker, rtsp, principal, rgb, options.task, stream_id=options.stream_id, encodings=options.encodings,
            keep=keep, preset=settings.ttt.preset, received=received, decode_s=time.perf_counter() - t0,
        )
    except PredictError as exc:
        log.info("prediction refused", extra=kv(status=exc.status, reason=exc.message))
        raise HTTPException(exc.status, detail=exc.message) from None
    model = worker.model.cfg
    message = await asyncio.to_thread(result_message, result, result.encodings, model.class_names, model.class_colors)
    return PredictResult(**message)

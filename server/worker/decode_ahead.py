"""Decoding of client images off the worker lanes: a frame is decoded on a small thread pool as soon as it is
queued, so the lane that later runs it finds the RGB array ready and spends its time on the model.

On a GPU host the lane is the thread that feeds the device: a JPEG decode there (several ms for a 720p frame)
is time the GPU waits. A frame dropped from its queue before it was decoded is never decoded (its decode is
cancelled); one dropped while decoding finishes and is discarded, so each received frame is decoded at most once.
With `threads=0` lanes decode lazily themselves (the layout before this module).
"""

from __future__ import annotations

import time
from concurrent.futures import CancelledError, ThreadPoolExecutor

import numpy as np

from server.worker.imaging import decode_image
from server.worker.stream_session import FrameItem

Decoded = tuple[np.ndarray, float]  # (H, W, 3) uint8 RGB, seconds the decode took


class DecodeAhead:
    """`start(item)` before a frame is queued, `result(item)` on the lane that runs it."""

    def __init__(self, threads: int, max_pixels: int) -> None:
        if threads < 0:
            raise ValueError(f"decode threads must be >= 0, got {threads}")
        self.max_pixels = max_pixels
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="frame-decode") if threads else None

    def start(self, item: FrameItem) -> None:
        """Start decoding a frame's image bytes (before it is queued, so a lane never sees it undecided); again
        after a refusal that cancelled it. Arrays from RTSP / files need nothing."""
        if self._pool is None or not isinstance(item.data, bytes):
            return
        if item.decoding is None or item.decoding.cancelled():
            item.decoding = self._pool.submit(self._decode, item.data)

    def result(self, item: FrameItem) -> Decoded:
        """The frame as (H, W, 3) uint8 RGB and the seconds its decode took; ImageDecodeError for bad images.
        Frames queued without a started decode are decoded on the calling thread."""
        if not isinstance(item.data, bytes):
            return item.data, 0.0
        if item.decoding is not None and not item.decoding.cancelled():
            try:
                return item.decoding.result()
            except CancelledError:  # the pool shut down under it
                pass
        return self._decode(item.data)

    def _decode(self, data: bytes) -> Decoded:
        t0 = time.perf_counter()
        rgb = decode_image(data, self.max_pixels)
        return rgb, time.perf_counter() - t0

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

"""Decoding of client images off the worker lanes: a frame is decoded on a small thread pool as soon as it is
queued, so the lane that later runs it finds the RGB array ready and spends its time on the model.

On a GPU host the lane is the thread that feeds the device: a JPEG decode there (several ms for a 720p frame)
is time the GPU waits. A frame dropped from its queue before it was decoded is never decoded (its decode is
cancelled); one dropped while decoding finishes and is discarded, so each received frame is decoded at most once.
With `threads=0` lanes decode lazily themselves (the layout before this module).
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from server.worker.imaging import decode_image

Decoded = tuple[np.ndarray, float]  # (H, W, 3) uint8 RGB, seconds the decode took


class DecodeAhead:
    """`start(data)` returns a Future of `(rgb, decode seconds)` (None when decoding is left to the lanes)."""

    def __init__(self, threads: int, max_pixels: int) -> None:
        if threads < 0:
            raise ValueError(f"decode threads must be >= 0, got {threads}")
        self.max_pixels = max_pixels
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="frame-decode") if threads else None

    @property
    def enabled(self) -> bool:
        return self._pool is not None

    def start(self, data: bytes) -> Future | None:
        if self._pool is None:
            return None
        return self._pool.submit(self._decode, data)

    def _decode(self, data: bytes) -> Decoded:
        t0 = time.perf_counter()
        rgb = decode_image(data, self.max_pixels)
        return rgb, time.perf_counter() - t0

    def decode_now(self, data: bytes) -> Decoded:
        """Decode on the calling thread (a frame queued without a decode started)."""
        return self._decode(data)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

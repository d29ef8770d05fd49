"""An exponential moving average of a stream's adapted weights (the guard's `predict_ema`, a mean teacher):
predictions may run with it while the TTT steps train the weights themselves."""

from __future__ import annotations

import torch

from mask2former_ttt.ttt.flat_params import FlatParams


class WeightAverage:
    """`data`: the average as one flat (N,) buffer in the stream's `FlatParams` order, or None; `views`: its
    per-tensor views, built once per buffer rather than per prediction (≈ 1 ms for the tiny model's 120 tensors)."""

    def __init__(self) -> None:
        self.data: torch.Tensor | None = None
        self.views: dict[str, torch.Tensor] | None = None

    def set(self, data: torch.Tensor | None, flat: FlatParams | None) -> None:
        """The average becomes `data` (None: none yet; it restarts from the weights at the next `track`)."""
        self.data = data
        self.views = flat.views(data) if data is not None and flat is not None else None

    @torch.no_grad()
    def track(self, flat: FlatParams | None, rate: float) -> None:
        """After a frame's update or relaxation: average <- rate · average + (1 − rate) · weights (in place; the
        first call starts at the weights themselves). A no-op for rate 0."""
        if rate <= 0 or flat is None:
            return
        if self.data is None:
            self.set(flat.data.clone(), flat)
        else:
            self.data.lerp_(flat.data, 1.0 - rate)

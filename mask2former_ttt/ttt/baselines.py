"""Comparison methods that need more than a configuration of `StreamAdapter`."""

from __future__ import annotations

import random
from collections import deque
from typing import Any, Iterable

import torch
from torch import nn

from model.masking import normalize, with_flag
from model.ymodel import YModel
from mask2former_ttt.ttt.adapter import StreamAdapter
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.stats import StepResult, StepStats, Theta0View


class LNAdapt(StreamAdapter):
    """LN Adapt: f's LayerNorms normalise with statistics mixed from the token and the current window's frames.

    Each LayerNorm input (..., C) is normalised with mean/var = (1 - alpha) * per-token + alpha * window-wide
    statistics, computed over the window's frames passed as one batch. No gradient step.
    """

    method = "ln_adapt"
    alpha = 0.5

    @property
    def adapts(self) -> bool:
        return False

    @torch.no_grad()
    def predict(self, x: torch.Tensor, view: Theta0View | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        frames = [f for f in self.window if f.shape == x.shape][:-1] + [x]
        batch = with_flag(normalize(torch.stack(frames), self.model.cfg))
        hooks = [m.register_forward_hook(self._hook) for m in self.model.encoder.modules() if isinstance(m, nn.LayerNorm)]
        try:
            self.model.eval()
            out = self.forward(batch, "predict")
        finally:
            for h in hooks:
                h.remove()
        return out.class_logits[-1].float(), out.mask_logits[-1].float()

    def _hook(self, module: nn.LayerNorm, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        (x,) = inputs
        mu_t = x.mean(-1, keepdim=True)
        var_t = x.var(-1, unbiased=False, keepdim=True)
        mu = (1 - self.alpha) * mu_t + self.alpha * mu_t.mean()
        var = (1 - self.alpha) * var_t + self.alpha * var_t.mean()
        y = (x - mu) / torch.sqrt(var + module.eps)
        return y * module.weight + module.bias if module.elementwise_affine else y


class OfflineAllFrames(StreamAdapter):
    """Offline TTT-MAE: train on all frames of the video, shuffled, with the online budget; then only predict."""

    method = "offline_all_frames"
    needs_whole_video = True

    def prepare(self, frames: Iterable[torch.Tensor]) -> None:
        """frames: the whole video as (3, H, W) uint8 tensors. Runs len(frames) × steps_per_frame steps."""
        cfg = self.model.cfg
        clips = [to_working_resolution(f.to(self.device), cfg.image_size, cfg.max_size) for f in frames]
        order = list(range(len(clips)))
        random.Random(self.seed).shuffle(order)
        self.window = deque((clips[i] for i in order), maxlen=None)
        stats = StepStats(frame_index=-1)
        self.ensure_params()
        for _ in range(len(clips)):
            if self.cfg.reset_optimizer_each_frame or self.optimizer is None:
                self.optimizer = self.new_optimizer()
            for _ in range(self.cfg.steps_per_frame):
                batch, valid = self.sample_batch(stats)
                self.train_step(batch, stats, valid)
        self.window = deque(maxlen=1)
        self.prepared = True

    def adapt(self, stats: StepStats, view: Theta0View | None = None) -> None:  # weights are fixed after `prepare`
        return None


class AdapterWrapper:
    """Delegates the `Adapter` interface to `inner`; subclasses post-process `step`."""

    method = "wrapper"

    def __init__(self, inner: StreamAdapter) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def model(self) -> YModel:
        return self.inner.model

    @property
    def needs_whole_video(self) -> bool:
        return self.inner.needs_whole_video

    @property
    def rollbacks(self) -> int:
        return self.inner.rollbacks

    @property
    def timing_sync(self) -> bool:
        return self.inner.timing_sync

    @timing_sync.setter
    def timing_sync(self, value: bool) -> None:
        self.inner.timing_sync = value

    def step(self, frame: torch.Tensor) -> StepResult:
        return self.inner.step(frame)

    def finish_pending(self) -> None:
        self.inner.finish_pending()

    def prepare(self, frames: Iterable[torch.Tensor]) -> None:
        self.inner.prepare(frames)

    def estimated_memory_bytes(self, frame_hw: tuple[int, int] | None = None) -> int:
        return self.inner.estimated_memory_bytes(frame_hw)

    def reset(self) -> None:
        self.inner.reset()

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def memory_bytes(self) -> int:
        return self.inner.memory_bytes()


class ClassBalanceReset(AdapterWrapper):
    """Reset the inner adapter to θ0 when its predicted-class count drifts from θ0's by ≥ `max_drift` classes."""

    method = "class_balance_reset"

    def __init__(self, inner: StreamAdapter, max_drift: int = 2) -> None:
        super().__init__(inner)
        self.max_drift = max_drift

    @staticmethod
    def class_count(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> int:
        """Number of classes present in the semantic argmax of one prediction."""
        sem = torch.einsum("qk,qhw->khw", class_logits.softmax(-1)[:, :-1], mask_logits.sigmoid())
        return int(sem.argmax(0).unique().numel())

    def step(self, frame: torch.Tensor) -> StepResult:
        result = self.inner.step(frame)
        x = self.inner.window[-1]
        with torch.no_grad():
            self.inner.model.eval()
            ref = self.inner.model.predict(with_flag(normalize(x[None], self.inner.model.cfg)))
        drift = abs(
            self.class_count(result.class_logits, result.mask_logits)
            - self.class_count(ref.class_logits[0].float(), ref.mask_logits[0].float())
        )
        if drift >= self.max_drift:
            window = list(self.inner.window)
            index, rollbacks = self.inner.frame_index, self.inner.rollbacks
            self.inner.reset()
            self.inner.window.extend(window)
            self.inner.frame_index, self.inner.rollbacks = index, rollbacks
            result.stats.reset = True
        return result


class TemporalSmoothing(AdapterWrapper):
    """Average each query's class and mask probabilities over the last `span` predictions (query-aligned)."""

    method = "temporal_smoothing"

    def __init__(self, inner: StreamAdapter, span: int = 3) -> None:
        super().__init__(inner)
        self.history: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=span)

    def reset(self) -> None:
        self.inner.reset()
        self.history.clear()

    def step(self, frame: torch.Tensor) -> StepResult:
        result = self.inner.step(frame)
        if self.history and self.history[-1][1].shape != result.mask_logits.shape:
            self.history.clear()
        self.history.append((result.class_logits.softmax(-1), result.mask_logits.sigmoid()))
        cls = torch.stack([c for c, _ in self.history]).mean(0)
        masks = torch.stack([m for _, m in self.history]).mean(0).clamp(1e-6, 1 - 1e-6)
        result.class_logits = cls.clamp_min(1e-8).log()
        result.mask_logits = torch.logit(masks)
        return result

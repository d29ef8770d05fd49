"""The per-stream adapter: one object per video stream that owns its window (explicit memory), its adapted
tensors and optimizer state (implicit memory), and a `step(frame) -> StepResult` call.

The network is shared: the adapter keeps only name -> tensor copies of what it adapts and applies them with
`torch.func.functional_call` over the one shared `YModel`, so h and every frozen tensor exist once per process.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections import deque
from typing import Any, Callable, Iterable

import torch
from torch.func import functional_call

from model.device import autocast, needs_grad_scaler, synchronize, to_device
from model.masking import normalize, with_flag
from model.stochastic_depth import stochastic_depth
from model.ymodel import YModel
from mask2former_ttt.ttt import sample_augment
from mask2former_ttt.ttt.config import TTTConfig
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.objectives import mae_loss
from mask2former_ttt.ttt.confidence_shift import confidence_gate_in_use, confidence_shift_score, uncertainty_from_logits
from mask2former_ttt.ttt.feature_shift import feature_gate_in_use, feature_shift_score
from mask2former_ttt.ttt.feature_align import alignment_in_use, with_alignment
from mask2former_ttt.ttt.shift_score import check_reference, gate_scale, shift_score
from mask2former_ttt.ttt.flat_params import FlatParams, flat_theta0, flatten
from mask2former_ttt.ttt.low_rank import LowRankDeltas
from mask2former_ttt.ttt.param_groups import group_specs, mae_names, make_optimizer
from mask2former_ttt.ttt.stats import StepResult, StepStats
from mask2former_ttt.ttt.tensor_swap import TensorSwap

log = logging.getLogger(__name__)

Objective = Callable[..., torch.Tensor]
WARMUP_FRAMES = 5


@torch.no_grad()
def clip_grad_norm(params: list[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    """The gradients' total L2 norm; scales them to `max_norm` when it is exceeded. Unlike torch's
    clip_grad_norm_, gradients under the limit are not rewritten (a multiply by 1.0: a full pass over every
    adapted tensor, ~1 ms per step for the tiny model on the CPU)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    norm = float(total)  # one device sync
    if max_norm is not None and math.isfinite(norm) and norm > max_norm:
        torch._foreach_mul_(grads, max_norm / (norm + 1e-6))
    return total


class StreamAdapter:
    """Online TTT-MAE for one stream (and, by configuration, its memory ablations).

    Per frame: push into the window -> `steps_per_frame` steps of `objective` on B samples drawn from the window
    (each cropped and independently masked) -> predict h∘f_t on the full frame in eval mode.
    """

    method = "online"
    needs_whole_video = False

    def __init__(
        self,
        model: YModel,
        cfg: TTTConfig,
        seed: int = 0,
        names: list[str] | None = None,
        objective: Objective = mae_loss,
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.seed = seed
        self.device = next(model.parameters()).device
        model.requires_grad_(False).eval()  # shared and always in eval mode: drop-path is per thread (train_step)
        shared = dict(model.named_parameters())
        self.names = names if names is not None else mae_names(model, cfg)  # the shared tensors a stream replaces
        self.lowrank = LowRankDeltas(shared, self.names, cfg.lowrank_rank) if cfg.adapt_scope == "lowrank" else None
        # what the stream trains, at its start: references to the shared weights (free), or the low-rank factors
        self.theta0 = self.lowrank.init if self.lowrank else {n: shared[n] for n in self.names}
        self._swap = TensorSwap(model, self.names)  # applies this stream's tensors (functional_call's job)
        # feature_align is a term of TTT-MAE's objective: Tent, self-training and custom objectives stay as given
        reference = alignment_in_use(model.cfg, cfg) if objective is mae_loss else None
        self.objective = objective if reference is None else with_alignment(objective, reference, cfg.feature_align)
        self.augment = sample_augment.resolve(cfg.sample_augment, model.cfg)  # `auto` -> the model's recipe
        self.use_amp = cfg.amp and self.device.type == "cuda"
        # stage timings on CUDA need a sync after each stage, which costs overlap: only when someone profiles
        self.timing_sync = False
        self._compiled: Callable[..., Any] | None = None
        check_reference(model.cfg.input_stats_reference, cfg)
        self.feature_gate = feature_gate_in_use(model.cfg, cfg)
        self.confidence_gate = confidence_gate_in_use(model.cfg, cfg)
        self.reset()

    # ---- state -------------------------------------------------------------------------------------------
    @property
    def adapts(self) -> bool:
        return bool(self.names) and self.cfg.steps_per_frame > 0

    def reset(self) -> None:
        """Back to θ0 bit-exactly, with an empty window, fresh optimizer and RNG."""
        self.flat: FlatParams | None = None  # the adapted tensors, stored flat (created by the first step)
        self.optimizer: torch.optim.Optimizer | None = None
        self.last_good: torch.Tensor | None = None  # flat (N,) copy of the last weights that passed the checks
        self._set_ema(None)  # flat (N,) moving average of the weights (`cfg.predict_ema`)
        self.window: deque[torch.Tensor] = deque(maxlen=self.cfg.window)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.frame_index = 0
        self.rollbacks = 0
        self.closed_frames = 0  # consecutive adapt calls with the shift gate closed (return detection)
        self.stepped = False  # whether any update has moved the weights off θ0 since the reset
        self._theta0_uncertainty: tuple[torch.Tensor, float] | None = None  # (frame, θ0's uncertainty on it)
        # (frame, class logits, mask logits): θ0's prediction the confidence gate made before the frame's own
        self._theta0_prediction: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._confidence_cache: tuple[float, int] | None = None  # (last confidence score, frame_index it was taken)
        self.loss_mean: float | None = None
        self.pending_step = False  # pipelined: the last frame's step is still to be taken
        self.deferred_stats: StepStats | None = None
        self.scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(self.device, self.use_amp) else None

    def _ensure_params(self) -> None:
        if self.flat is None and self.adapts:
            self.flat = FlatParams(self.theta0, group_specs(self.theta0, self.cfg))

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """name -> this stream's adapted tensor (views of `flat`; empty before the first step)."""
        return self.flat.tensors if self.flat is not None else {}

    def _theta0_flat(self) -> torch.Tensor:
        assert self.flat is not None
        return flat_theta0(self.model, self.theta0, self.flat.order)

    def _new_optimizer(self) -> torch.optim.Optimizer:
        assert self.flat is not None
        return make_optimizer(self.flat.param_groups(), self.cfg)

    def _restore(self, source: torch.Tensor) -> None:
        """source: flat (N,) weights in `flat.order` (θ0 or the last good ones)."""
        assert self.flat is not None
        self.flat.copy_from(source)
        self.optimizer = None
        self._set_ema(None)  # the average restarts from the restored weights

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this stream exactly: adapted tensors, optimizer, window, RNG, counters."""
        return {
            "method": self.method,
            "config": self.cfg.model_dump(),
            "params": self.flat.state() if self.flat is not None else {},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()) if self.optimizer is not None else None,
            "last_good": self.flat.unflatten(self.last_good) if self.flat and self.last_good is not None else None,
            "ema": self.flat.unflatten(self.ema) if self.flat and self.ema is not None else None,
            "window": [t.clone() for t in self.window],
            "generator": self.generator.get_state(),
            "frame_index": self.frame_index,
            "rollbacks": self.rollbacks,
            "loss_mean": self.loss_mean,
            "pending_step": self.pending_step,
            "closed_frames": self.closed_frames,
            "stepped": self.stepped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a stream saved by `state_dict` (same model and method)."""
        if state["method"] != self.method:
            raise ValueError(f"state is for method {state['method']!r}, this adapter is {self.method!r}")
        self.reset()
        if state["params"]:
            if set(state["params"]) != set(self.theta0):
                raise ValueError("state adapts other tensors than this adapter (another model or adapt_scope)")
            self._ensure_params()
            assert self.flat is not None
            self.flat.copy_from({n: t.to(self.device) for n, t in state["params"].items()})
        if state["optimizer"] is not None:
            self.optimizer = self._new_optimizer()
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        if state["last_good"] and self.flat is not None:
            self.last_good = flatten(state["last_good"][n].to(self.device) for n in self.flat.order)
        if state.get("ema") and self.flat is not None:
            self._set_ema(flatten(state["ema"][n].to(self.device) for n in self.flat.order))
        self.window.extend(t.to(self.device) for t in state["window"])
        self.generator.set_state(state["generator"])
        self.frame_index = state["frame_index"]
        self.rollbacks = state["rollbacks"]
        self.loss_mean = state["loss_mean"]
        self.pending_step = bool(state.get("pending_step", False))
        self.closed_frames = int(state.get("closed_frames", 0))
        self.stepped = bool(state.get("stepped", bool(state["params"])))  # older states: adapted if it has weights

    def state_tensors(self) -> list[torch.Tensor]:
        """Every tensor this stream owns (the shared model excluded)."""
        tensors = list(self.window)
        if self.flat is not None:
            tensors.append(self.flat.data)
            if self.flat.grad is not None:
                tensors.append(self.flat.grad)
            else:
                tensors += [p.grad for p in self.params.values() if p.grad is not None]
        if self.last_good is not None:
            tensors.append(self.last_good)
        if self.ema is not None:
            tensors.append(self.ema)
        if self.optimizer is not None:
            for s in self.optimizer.state.values():
                tensors += [v for v in s.values() if torch.is_tensor(v)]
        return tensors

    def memory_bytes(self) -> int:
        """Bytes held by this stream's own tensors right now."""
        return sum(t.numel() * t.element_size() for t in self.state_tensors())

    def estimated_memory_bytes(self, frame_hw: tuple[int, int] | None = None) -> int:
        """Steady-state per-stream bytes before any frame arrives (for admission control)."""
        size = sum(t.numel() * t.element_size() for t in self.theta0.values()) if self.adapts else 0
        copies = 1
        if self.adapts and not self.cfg.reset_optimizer_each_frame:
            copies += 1 if self.cfg.optimizer == "sgd" else 2
        if self.adapts and self.cfg.rollback_to == "last_good":
            copies += 1
        if self.adapts and self.cfg.predict_ema > 0:
            copies += 1
        h, w = frame_hw or (self.model.cfg.image_size, self.model.cfg.image_size)
        return size * copies + self.cfg.window * 3 * h * w

    def prepare(self, frames: Iterable[torch.Tensor]) -> None:
        """Online methods need no whole-video pass (see `Adapter.needs_whole_video`)."""
        return None

    # ---- forward helpers ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, mode: str, tensors: dict[str, torch.Tensor] | None = None) -> Any:
        """The shared model with this stream's tensors (`tensors`, default: the adapted ones) in place of θ0 (before
        the first step it has none: the shared weights are θ0). Compiled with `cfg.compile` (through
        `functional_call`, which dynamo traces)."""
        applied = self._applied() if tensors is None else tensors
        with autocast(self.device, self.use_amp):
            if self.cfg.compile:
                if self._compiled is None:
                    self._compiled = torch.compile(self._functional_forward, dynamic=False)
                return self._compiled(applied, x, mode)
            if not applied:
                return self.model(x, mode=mode)
            return self._swap(applied, x, mode=mode)

    def _applied(self, params: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The stream's tensors (`params`, default: the adapted ones) under the shared model's names (low-rank
        factors multiplied out)."""
        params = self.params if params is None else params
        return self.lowrank.applied(params) if self.lowrank and params else params

    @property
    def serves_theta0_while_shut(self) -> bool:
        """Whether the stream's latest gate decision was shut and it serves θ0 then (`cfg.theta0_when_shut`)."""
        return self.cfg.theta0_when_shut and self.closed_frames > 0

    @property
    def predicts_with_theta0(self) -> bool:
        """Whether this stream's next prediction is θ0's: it never stepped (or was set back to θ0), or it serves θ0
        while its gate is shut."""
        return not self.stepped or self.serves_theta0_while_shut

    def prediction_tensors(self) -> dict[str, torch.Tensor]:
        """What predictions run with, under the shared model's names: the moving average of the adapted tensors
        with `cfg.predict_ema`, else the adapted tensors (empty before the first step, and while the stream serves
        θ0 with its gate shut: θ0)."""
        if self.serves_theta0_while_shut:
            return {}
        if self._ema_views is not None:
            return self._applied(self._ema_views)
        return self._applied()

    def _set_ema(self, ema: torch.Tensor | None) -> None:
        """The moving average (flat (N,), or None) and its per-tensor views, built once per buffer rather than per
        prediction (≈ 1 ms for the tiny model's 120 tensors); `lerp_` updates the buffer in place."""
        self.ema = ema
        self._ema_views = self.flat.views(ema) if ema is not None and self.flat is not None else None

    def _functional_forward(self, params: dict[str, torch.Tensor], x: torch.Tensor, mode: str) -> Any:
        # the Y-model ties no tensors (tests/ttt/test_hot_path.py), so functional_call's per-call search for tied
        # names (a walk of every module, ~2 ms per call on the tiny model) is skipped
        return functional_call(self.model, params, (x,), {"mode": mode}, strict=False, tie_weights=False)

    def _sample_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """B samples from the window, each cut by `cfg.crop` / `cfg.sample_augment` (ttt/sample_augment.py):
        (B, 3, ch, cw) normalized float, and a (B, 1, ch, cw) valid mask (0 on padding) or None without padding."""
        n, b = len(self.window), self.cfg.batch_size
        if self.cfg.sampling == "with_replacement":
            idx = torch.randint(n, (b,), generator=self.generator).tolist()
        else:
            reps = -(-b // n)
            idx = torch.cat([torch.randperm(n, generator=self.generator) for _ in range(reps)])[:b].tolist()
        frames = [self.window[i] for i in idx]
        if self.augment == "coco":
            side, least = sample_augment.coco_side(frames), sample_augment.min_content_side(self.cfg.mask_patch)
            samples = [sample_augment.coco_sample(f, side, least, self.generator)[:2] for f in frames]
            valid = torch.stack([v for _, v in samples])
            return normalize(torch.stack([x for x, _ in samples]), self.model.cfg) * valid, valid
        crop = sample_augment.KITTI_CROP if self.augment == "kitti" else self.cfg.crop
        h, w = frames[0].shape[1:]
        if crop is not None and (crop[0] < h or crop[1] < w):
            ch, cw = min(crop[0], h), min(crop[1], w)
            tops = torch.randint(h - ch + 1, (b,), generator=self.generator).tolist()
            lefts = torch.randint(w - cw + 1, (b,), generator=self.generator).tolist()
            frames = [f[:, t : t + ch, l : l + cw] for f, t, l in zip(frames, tops, lefts)]
        return normalize(torch.stack(frames), self.model.cfg), None

    # ---- the step ----------------------------------------------------------------------------------------
    def step(self, frame: torch.Tensor) -> StepResult:
        """frame: (3, H, W) uint8 RGB at any size -> prediction on this frame after adapting to it.

        With `cfg.pipelined` the prediction uses the weights adapted through the previous frame and this frame's
        step is deferred to `finish_pending()` (called by the next `step` at the latest); the statistics of the
        step taken before a prediction are reported with that prediction.
        """
        x, stats, due = self.begin_frame(frame)
        if due:
            self.adapt(stats)
        t0 = time.perf_counter()
        class_logits, mask_logits = self.predict(x)
        self._sync()
        return self.end_frame(x, stats, class_logits, mask_logits, time.perf_counter() - t0)

    def begin_frame(self, frame: torch.Tensor) -> tuple[torch.Tensor, StepStats, bool]:
        """`step` up to its TTT step: frame (3, H, W) uint8 -> x (3, h, w) at the working resolution, in the window;
        the frame's stats; whether its step is due now (a pipelined stream's is left pending instead)."""
        x = to_working_resolution(to_device(frame, self.device), self.model.cfg.image_size, self.model.cfg.max_size)
        stats = StepStats(frame_index=self.frame_index)
        if self.cfg.pipelined:
            self.finish_pending()
            self._take_deferred_stats(stats)
            self.window.append(x)
            self.pending_step = self._step_due()
            return x, stats, False
        self.window.append(x)
        return x, stats, self._step_due()

    def end_frame(
        self, x: torch.Tensor, stats: StepStats, class_logits: torch.Tensor, mask_logits: torch.Tensor, predict_s: float
    ) -> StepResult:
        """`step` after its prediction ((Q, K+1), (Q, h/4, w/4) of `x`): the frame's StepResult."""
        stats.predict_s = predict_s
        stats.rollbacks = self.rollbacks
        self.frame_index += 1
        return StepResult(class_logits, mask_logits, stats, (x.shape[1], x.shape[2]))

    def _sync(self) -> None:
        if self.timing_sync:
            synchronize(self.device)

    def _step_due(self) -> bool:
        return self.adapts and self.frame_index % self.cfg.every_n_frames == 0

    def finish_pending(self) -> None:
        """Take the step a pipelined `step` deferred (a no-op when none is pending). The service calls this right
        after sending the frame's result; its statistics are reported with the next frame."""
        stats = self.take_pending()
        if stats is not None:
            self.adapt(stats)

    def take_pending(self) -> StepStats | None:
        """The stats record of the step a pipelined `step` deferred, now owed (its adapt is the caller's), or None
        when none is pending."""
        if not self.pending_step:
            return None
        self.pending_step = False
        self.deferred_stats = StepStats(frame_index=self.frame_index - 1)
        return self.deferred_stats

    def _take_deferred_stats(self, stats: StepStats) -> None:
        done, self.deferred_stats = self.deferred_stats, None
        if done is None:
            return
        for name in ("loss", "sample_s", "ttt_forward_s", "ttt_backward_s", "optimizer_s", "steps_taken",
                     "rolled_back", "shift_score", "feature_score", "confidence_score", "step_scale"):
            setattr(stats, name, getattr(done, name))

    @torch.no_grad()
    def _predict_theta0(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (3, h, w) uint8 -> θ0's class logits (Q, K+1), mask logits (Q, h/4, w/4) (the shared weights)."""
        out = self.forward(with_flag(normalize(x[None], self.model.cfg)), "predict", {})
        return out.class_logits[0].float(), out.mask_logits[0].float()

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (3, h, w) uint8 -> class logits (Q, K+1), mask logits (Q, h/4, w/4), with this stream's weights."""
        known = self.take_theta0_prediction(x)
        if known is not None:
            return known
        out = self.forward(with_flag(normalize(x[None], self.model.cfg)), "predict", self.prediction_tensors())
        class_logits, mask_logits = out.class_logits[0].float(), out.mask_logits[0].float()
        self.remember_prediction(x, class_logits, mask_logits)
        return class_logits, mask_logits

    def remember_prediction(self, x: torch.Tensor, class_logits: torch.Tensor, mask_logits: torch.Tensor) -> None:
        """After predicting frame `x` ((3, h, w); logits (Q, K+1), (Q, h/4, w/4)): a prediction made with θ0 (see
        `predicts_with_theta0`) is kept, and the confidence gate reuses it for `x` instead of a second forward."""
        if self.confidence_gate is not None and self.predicts_with_theta0:
            self._theta0_uncertainty = (x, float(uncertainty_from_logits(class_logits[None], mask_logits[None])[0]))

    def take_theta0_prediction(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The prediction of `x` the confidence gate already made with θ0 this frame ((Q, K+1), (Q, h/4, w/4)),
        when the stream predicts with θ0 now (still at θ0, or serving θ0 with its gate shut), else None; taken
        once."""
        known, self._theta0_prediction = self._theta0_prediction, None
        if known is None or known[0] is not x or not self.predicts_with_theta0:
            return None
        return known[1], known[2]

    def adapt(self, stats: StepStats) -> None:
        """`steps_per_frame` TTT steps on samples of the window."""
        if not self.begin_adapt(stats):
            return
        losses = []
        for _ in range(self.cfg.steps_per_frame):
            batch, valid = self.sample_batch(stats)
            losses.append(self.train_step(batch, stats, valid))
        self.end_adapt(losses, stats)

    def begin_adapt(self, stats: StepStats) -> bool:
        """Before a frame's steps: the optimizer, and the shift gate's step scale. False when the gate is closed: the
        step is skipped and the weights relax toward θ0 instead (nothing more to do for this frame)."""
        self._ensure_params()
        if self.cfg.reset_weights_each_frame:
            self._restore(self._theta0_flat())
        if self.cfg.reset_optimizer_each_frame or self.optimizer is None:
            self.optimizer = self._new_optimizer()
        stats.step_scale = self._shift_gate(stats)
        self.closed_frames = self.closed_frames + 1 if stats.step_scale == 0.0 else 0
        if stats.step_scale == 0.0:  # looks like the training data: no step, drift back toward θ0
            returned = self.cfg.return_frames is not None and self.closed_frames >= self.cfg.return_frames
            if returned and self.closed_frames == self.cfg.return_frames:
                self.optimizer = None  # back on the training domain: no momentum from the shift carried on
            self._pull_toward_theta0(self.cfg.return_anchor if returned else self.cfg.anchor)
            snap = self.cfg.return_snap_frames
            if returned and snap is not None and self.closed_frames == self.cfg.return_frames + snap and self.stepped:
                self._snap_to_theta0()
            self._track_ema()
            if self.cfg.reset_optimizer_each_frame:
                self.optimizer = None
            return False
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = group.setdefault("base_lr", group["lr"]) * stats.step_scale
        return True

    def sample_batch(self, stats: StepStats) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step's samples (see `_sample_batch`), timed into `stats.sample_s`."""
        t0 = time.perf_counter()
        out = self._sample_batch()
        stats.sample_s += time.perf_counter() - t0
        return out

    def end_adapt(self, losses: list[float | None], stats: StepStats) -> None:
        """After a frame's steps (their losses): the frame's reported loss; a per-frame optimizer is dropped."""
        finite = [v for v in losses if v is not None and math.isfinite(v)]
        stats.loss = finite[-1] if finite else (losses[-1] if losses else None)
        self._track_ema()
        if self.cfg.reset_optimizer_each_frame:
            self.optimizer = None  # re-created next frame: no optimizer state kept between frames

    @torch.no_grad()
    def _track_ema(self) -> None:
        """After a frame's update or relaxation: the moving average of the weights takes a step toward them (it
        starts at the weights themselves, e.g. after a rollback)."""
        if self.cfg.predict_ema <= 0 or self.flat is None:
            return
        if self.ema is None:
            self._set_ema(self.flat.data.clone())
        else:
            self.ema.lerp_(self.flat.data, 1.0 - self.cfg.predict_ema)

    def train_step(self, batch: torch.Tensor, stats: StepStats, valid: torch.Tensor | None = None) -> float | None:
        """One optimizer step of the objective on `batch` (B, 3, h, w), in micro-batches. Returns the loss.
        valid: (B, 1, h, w), 0 on padded pixels (passed on to the objective as `valid=`), or None.

        The shared model stays in eval mode: drop-path is switched on for this thread only and draws from this
        stream's generator (`model.stochastic_depth`), so concurrent streams on other threads are unaffected and
        every stream is reproducible on its own."""
        assert self.optimizer is not None
        if not self.cfg.drop_path:
            return self._train_step(batch, stats, valid)
        with stochastic_depth(self.generator):
            return self._train_step(batch, stats, valid)

    def _train_step(self, batch: torch.Tensor, stats: StepStats, valid: torch.Tensor | None) -> float | None:
        assert self.flat is not None
        try:
            return self._accumulate_and_update(batch, stats, valid)
        finally:
            self.flat.free_grad()  # no gradient buffers kept between frames, whatever the outcome

    def _accumulate_and_update(self, batch: torch.Tensor, stats: StepStats, valid: torch.Tensor | None) -> float | None:
        assert self.optimizer is not None and self.flat is not None
        total = 0.0
        chunks = batch.split(self.cfg.micro_batch)
        valids = valid.split(self.cfg.micro_batch) if valid is not None else [None] * len(chunks)
        for i, (chunk, chunk_valid) in enumerate(zip(chunks, valids)):
            t0 = time.perf_counter()
            extra = {"valid": chunk_valid} if chunk_valid is not None else {}  # custom objectives need not take it
            loss = self.objective(self.forward, chunk, self.cfg, self.generator, **extra)
            loss = loss * (chunk.shape[0] / batch.shape[0])
            self._sync()
            t1 = time.perf_counter()
            stats.ttt_forward_s += t1 - t0
            if i == 0 and self.gated(loss.item() * len(chunks)):
                return loss.item() * len(chunks)
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            self._sync()
            stats.ttt_backward_s += time.perf_counter() - t1
            total += loss.item()
        self.flat.gather_grad()  # autograd's per-tensor gradients -> one flat buffer
        return self.apply_gradient(total, stats)

    def apply_gradient(self, total: float, stats: StepStats) -> float:
        """The update from the gradient in `flat.grad` of a step whose loss was `total`: rollback on divergence,
        clipping, the optimizer step, the pull toward θ0. Returns `total`."""
        assert self.optimizer is not None and self.flat is not None
        t0 = time.perf_counter()
        if self._diverged(total):
            self.rollback(stats, f"loss {total:.4g}", relearn_level=math.isfinite(total))
            return total
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        norm = clip_grad_norm(self.flat.group_slices, self.cfg.grad_clip)
        if not torch.isfinite(norm) and not self.scaler:
            self.rollback(stats, f"gradient norm {norm.item()}")
            return total
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self._after_update()
        self._sync()
        stats.optimizer_s += time.perf_counter() - t0
        stats.steps_taken += 1
        self.loss_mean = total if self.loss_mean is None else 0.9 * self.loss_mean + 0.1 * total
        return total

    def gated(self, loss: float) -> bool:
        """Whether a step with this loss is skipped (`loss_gate` / `loss_ceiling` against the clean reference)."""
        ref = self.model.cfg.recon_loss_reference
        if ref is None or not math.isfinite(loss):
            return False
        too_easy = self.cfg.loss_gate is not None and loss < self.cfg.loss_gate * ref
        too_hard = self.cfg.loss_ceiling is not None and loss > self.cfg.loss_ceiling * ref
        return too_easy or too_hard

    def _diverged(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        warm = self.loss_mean is not None and self.frame_index >= WARMUP_FRAMES
        return warm and loss > self.cfg.explode_factor * self.loss_mean

    def _shift_gate(self, stats: StepStats) -> float:
        """This frame's step-size multiplier: the largest of the pixel gate's, the feature gate's and the confidence
        gate's (1.0 when the pixel gate is off). The second and third only ever open further, and each is skipped
        once the gates before it have opened fully."""
        reference = self.model.cfg.input_stats_reference
        if self.cfg.shift_gate is None or reference is None:
            return 1.0
        frame = self.window[-1]
        stats.shift_score = shift_score(frame, reference, self.cfg.shift_score)
        scale = gate_scale(stats.shift_score, *self.cfg.shift_gate)
        if self.feature_gate is not None and scale < 1.0:
            stats.feature_score = feature_shift_score(self.model, frame, self.model.cfg.feature_stats_reference)
            scale = max(scale, gate_scale(stats.feature_score, *self.feature_gate))
        if self.confidence_gate is not None and scale < 1.0:
            stats.confidence_score = self._confidence_score(frame)
            scale = max(scale, gate_scale(stats.confidence_score, *self.confidence_gate))
        return scale

    def _confidence_score(self, frame: torch.Tensor) -> float:
        """The confidence gate's score of `frame` ((3, h, w), the window's newest): from the frame's own prediction
        when it was made with θ0; while the stream is at θ0, from a forward of θ0 made here (and handed to
        `predict` when the frame's prediction is still to come); else one forward of θ0 on every
        `confidence_every`-th frame, the last score reused in between."""
        known = self._theta0_uncertainty
        u = known[1] if known is not None and known[0] is frame else None  # kept only for predictions made with θ0
        cached = self._confidence_cache
        recent = cached is not None and self.frame_index - cached[1] < self.cfg.confidence_every
        if u is None and self.stepped and recent:
            return cached[0]
        if u is None:
            # θ0's forward on a frame not predicted with θ0: when the frame's prediction is still to come (a step
            # before the prediction, as in `full`) and the frame is served by θ0 (at θ0 with the gate shut, or with
            # `theta0_when_shut`), `predict` returns this forward instead of running a second one. A pipelined
            # stream has predicted the frame already: nothing is kept
            class_logits, mask_logits = self._predict_theta0(frame)
            if not self.cfg.pipelined:
                self._theta0_prediction = (frame, class_logits, mask_logits)
            u = float(uncertainty_from_logits(class_logits[None], mask_logits[None])[0])
        score = confidence_shift_score(self.model, frame, self.model.cfg.confidence_reference, u)
        self._confidence_cache = (score, self.frame_index)
        return score

    @torch.no_grad()
    def _snap_to_theta0(self) -> None:
        """A stream long back on the training domain: the weights (and their average) become θ0 exactly, as after a
        reset but keeping the window, counters and RNG; predictions are θ0's again (the confidence gate reuses
        them, ttt/confidence_shift.py)."""
        self._restore(self._theta0_flat())
        self.stepped = False
        log.info("stream back on the training domain for %d frames: weights reset to θ0", self.closed_frames)

    @torch.no_grad()
    def _pull_toward_theta0(self, rate: float | None = None) -> None:
        rate = self.cfg.anchor if rate is None else rate
        if rate > 0 and self.flat is not None:
            self.flat.data.lerp_(self._theta0_flat(), rate)

    @torch.no_grad()
    def _after_update(self) -> None:
        assert self.flat is not None
        self.stepped = True
        self._theta0_uncertainty = None
        self._pull_toward_theta0()
        if self.cfg.rollback_to == "last_good":
            if self.last_good is None:
                self.last_good = self.flat.data.clone()
            else:
                self.last_good.copy_(self.flat.data)

    def rollback(self, stats: StepStats, why: str, relearn_level: bool = False) -> None:
        """Undo a diverging step: back to the last good weights (or θ0), optimizer state dropped. With
        `relearn_level` (a finite loss far above its running level) the level is re-learnt from the next step."""
        use_last = self.cfg.rollback_to == "last_good" and self.last_good is not None
        self._restore(self.last_good if use_last else self._theta0_flat())
        self.optimizer = self._new_optimizer()
        if relearn_level:
            # a level learnt on an easy domain (ℓ_s on low-contrast frames is ~0.1× the clean level) would otherwise
            # call every step after the return to clean a divergence; a non-finite loss keeps the level it had
            self.loss_mean = None
        self.rollbacks += 1
        stats.rolled_back = True
        log.warning("stream rollback frame=%d reason=%s rollbacks=%d", self.frame_index, why, self.rollbacks)

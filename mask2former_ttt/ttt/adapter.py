"""The per-stream adapter: one object per video stream that owns its window (explicit memory), its adapted
tensors and optimizer state (implicit memory), and a `step(frame) -> StepResult` call.

The network is shared: the adapter keeps only name -> tensor copies of what it adapts and swaps them into the one
shared `YModel` (ttt/stream_forward.py), so h and every frozen tensor exist once per process. The safe-adaptation
decisions are the stream's `Guard`'s (ttt/guard.py), asked in `begin_adapt` / `_on_shut_frame`, `predict` /
`prediction_tensors` and `_after_update`. With `TTTConfig.schedule` "async" the steps run on a `StepExecutor`
(ttt/async_schedule.py): predictions read the weights the steps publish (ttt/published.py), and the training
state (window, weights, optimizer, guard, generator) is the executor's until a control quiesces the stream.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Any, Callable, Iterable, Mapping

import torch

from model.device import needs_grad_scaler, synchronize, to_device
from model.masking import normalize, with_flag
from model.stochastic_depth import stochastic_depth
from model.ymodel import YModel
from mask2former_ttt.ttt import sample_augment, stream_state
from mask2former_ttt.ttt.async_schedule import AsyncSchedule
from mask2former_ttt.ttt.config import TTTConfig
from mask2former_ttt.ttt.divergence import Divergence
from mask2former_ttt.ttt.feature_align import alignment_in_use
from mask2former_ttt.ttt.flat_params import FlatParams, clip_grad_norm, flat_theta0
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.guard import Guard
from mask2former_ttt.ttt.objectives import MAEObjective, mae_loss
from mask2former_ttt.ttt.param_groups import group_specs, mae_names, make_optimizer
from mask2former_ttt.ttt.published import PublishedWeights
from mask2former_ttt.ttt.stats import FrameWork, StepResult, StepStats, Theta0View
from mask2former_ttt.ttt.step_executor import StepExecutor
from mask2former_ttt.ttt.stream_forward import StreamForward
from mask2former_ttt.ttt.weight_average import WeightAverage

log = logging.getLogger(__name__)

Objective = Callable[..., torch.Tensor]


class StreamAdapter:
    """Online TTT-MAE for one stream (and, by configuration, its memory ablations).

    Per frame: push into the window -> `steps_per_frame` steps of `objective` on B samples drawn from the window
    (each independently masked), scaled by the guard -> predict h∘f on the full frame in eval mode.
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
        self.names = names if names is not None else mae_names(model)  # the shared tensors a stream replaces
        self.theta0 = {n: shared[n] for n in self.names}  # references to the shared weights (free)
        # feature alignment is a term of TTT-MAE's objective: Tent, self-training and custom objectives stay as given
        self.objective = MAEObjective(alignment_in_use(model.cfg, cfg)) if objective is mae_loss else objective
        self.augment = sample_augment.resolve(cfg.sample_augment, model.cfg)  # `auto` -> the model's recipe
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self._forward = StreamForward(model, self.names, cfg.compile, self.use_amp)
        self._async: AsyncSchedule | None = None  # the asynchronous schedule, bound by `use_step_executor`
        # stage timings on CUDA need a sync after each stage, which costs overlap: only when someone profiles
        self.timing_sync = False
        self._reset()

    # ---- state -------------------------------------------------------------------------------------------
    @property
    def adapts(self) -> bool:
        return bool(self.names) and self.cfg.steps_per_frame > 0

    @property
    def wants_step_executor(self) -> bool:
        """Whether this stream's steps run on a `StepExecutor` (`schedule` "async" and it adapts)."""
        return self.cfg.schedule == "async" and self.adapts

    def use_step_executor(self, executor: StepExecutor, owned: bool = False) -> None:
        """Take the steps on `executor` from now on (`owned`: it is this stream's own, stopped by `close`). Before
        the first frame, or on a stream whose state is then loaded (`load_state_dict`)."""
        if self._async is not None:
            self._async.quiesce()
            self._async.close()
        self._async = AsyncSchedule(self, executor, owned)

    def close(self) -> None:
        """Stop this stream's work on its step executor (a bounded wait for an in-flight step)."""
        if self._async is not None:
            self._async.close()

    def _quiesce(self) -> None:
        """The asynchronous schedule's in-flight step finished, its queued one dropped: the state is this
        thread's."""
        if self._async is not None:
            self._async.quiesce()

    def reset(self) -> None:
        """Back to θ0 bit-exactly, with an empty window, fresh optimizer, guard and RNG (after the stream's
        executor work is quiesced)."""
        self._quiesce()
        self._reset()
        if self._async is not None:
            self._async.republish()

    def _reset(self) -> None:
        self.flat: FlatParams | None = None  # the adapted tensors, stored flat (created by the first step)
        self.optimizer: torch.optim.Optimizer | None = None
        self.weight_average = WeightAverage()  # of the weights, for predictions (`guard.predict_ema`)
        self.guard = Guard(self.cfg.guard, self.model.cfg)
        self.window: deque[torch.Tensor] = deque(maxlen=self.cfg.window)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.frame_index = 0
        self.rollbacks = 0
        self.stepped = False  # whether any update has moved the weights off θ0 since the reset
        self.divergence = Divergence()  # the running loss level a diverging step is judged by
        self.pending: Theta0View | None = None  # pipelined: θ0's view of the frame whose step is still to be taken
        self.deferred_stats: StepStats | None = None
        self.scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(self.device, self.use_amp) else None

    def ensure_params(self) -> None:
        if self.flat is None and self.adapts:
            self.flat = FlatParams(self.theta0, group_specs(self.theta0, self.cfg))

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """name -> this stream's adapted tensor (views of `flat`; empty before the first step)."""
        return self.flat.tensors if self.flat is not None else {}

    def _theta0_flat(self) -> torch.Tensor:
        assert self.flat is not None
        return flat_theta0(self.model, self.theta0, self.flat.order)

    def new_optimizer(self) -> torch.optim.Optimizer:
        assert self.flat is not None
        return make_optimizer(self.flat.param_groups(), self.cfg)

    @torch.no_grad()
    def _restore_theta0(self) -> None:
        """The weights back to θ0, optimizer state and moving average dropped."""
        assert self.flat is not None
        self.flat.copy_from(self._theta0_flat())
        self.optimizer = None
        self.weight_average.set(None, None)  # the average restarts from the restored weights

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this stream exactly (ttt/stream_state.py), after its executor work is
        quiesced."""
        self._quiesce()
        return stream_state.save(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a stream saved by `state_dict` (same model and method), after its executor work is quiesced;
        with the asynchronous schedule the restored weights are published for the next prediction."""
        self._quiesce()
        stream_state.load(self, state)
        if self._async is not None:
            self._async.republish()

    def memory_bytes(self) -> int:
        """Bytes held by this stream's own tensors right now (the shared model excluded); with the asynchronous
        schedule, when its weights were last published (the published set included)."""
        if self._async is not None:
            return self._async.published.memory_bytes
        return sum(t.numel() * t.element_size() for t in stream_state.owned_tensors(self))

    def estimated_memory_bytes(self, frame_hw: tuple[int, int] | None = None) -> int:
        """Steady-state per-stream bytes before any frame arrives (for admission control)."""
        return stream_state.estimated_bytes(self, frame_hw)

    def prepare(self, frames: Iterable[torch.Tensor]) -> None:
        """Online methods need no whole-video pass (see `Adapter.needs_whole_video`)."""
        return None

    # ---- predictions ---------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, mode: str, tensors: Mapping[str, torch.Tensor] | None = None) -> Any:
        """The shared model on x with this stream's tensors (`tensors`, default: the adapted ones, or with the
        asynchronous schedule the published ones; empty: θ0)."""
        if tensors is None:
            tensors = self._async.published.tensors if self._async is not None else self.params
        return self._forward(tensors, x, mode)

    def train_forward(self, x: torch.Tensor, mode: str, tensors: Mapping[str, torch.Tensor] | None = None) -> Any:
        """`forward` for the step (its objective, the guard's θ0 forward): on the step executor's model replica
        with the asynchronous schedule."""
        run = self._async.forward if self._async is not None else self._forward
        return run(self.params if tensors is None else tensors, x, mode)

    @property
    def predicts_with_theta0(self) -> bool:
        """Whether the guard has this stream's next prediction made by θ0."""
        if self._async is not None:
            return self._async.published.theta0
        return self.guard.predictor(self.stepped, self.average is not None) == "theta0"

    def prediction_tensors(self) -> Mapping[str, torch.Tensor]:
        """What the next prediction runs with, as the guard decides: θ0 (empty: the shared weights), the moving
        average of the adapted tensors, or the adapted tensors (empty before the first step); with the
        asynchronous schedule, the published set's."""
        if self._async is not None:
            return self._async.published.tensors
        views = self.weight_average.views
        predictor = self.guard.predictor(self.stepped, views is not None)
        if predictor == "theta0":
            return {}
        return views if predictor == "average" and views is not None else self.params

    @property
    def average(self) -> torch.Tensor | None:
        """The moving average of the weights, flat (N,), or None (`guard.predict_ema` 0, or none yet)."""
        return self.weight_average.data

    # ---- the step ----------------------------------------------------------------------------------------
    def step(self, frame: torch.Tensor) -> StepResult:
        """frame: (3, H, W) uint8 RGB at any size -> prediction on this frame after adapting to it.

        With `cfg.schedule` "pipelined" the prediction uses the weights adapted through the previous frame and this
        frame's step is deferred to `finish_pending()` (called by the next `step` at the latest); the statistics of the
        step taken before a prediction are reported with that prediction.
        """
        work = self.begin_frame(frame)
        if work.due:
            self.adapt(work.stats, work.view)
        t0 = time.perf_counter()
        if work.weights is None:
            class_logits, mask_logits = self.predict(work.x, work.view)
        else:  # the asynchronous schedule: the set read for this frame
            class_logits, mask_logits = self.predict(work.x, work.view, work.weights)
        self._sync()
        return self.end_frame(work, class_logits, mask_logits, time.perf_counter() - t0)

    def begin_frame(self, frame: torch.Tensor) -> FrameWork:
        """`step` up to its TTT step: frame (3, H, W) uint8 -> the frame at the working resolution, in the window;
        its step is due now unless a pipelined stream leaves it pending."""
        x = to_working_resolution(to_device(frame, self.device), self.model.cfg.image_size, self.model.cfg.max_size)
        stats = StepStats(frame_index=self.frame_index)
        work = FrameWork(x, stats, due=False)
        if self._async is None and self.wants_step_executor:  # no worker gave it one: a private executor
            self.use_step_executor(StepExecutor(self.model), owned=True)
        if self._async is not None:  # the step is the executor's, after the prediction (`end_frame`)
            work.weights = self._async.report(stats)
            return work
        if self.cfg.schedule == "pipelined":
            self.finish_pending()
            if self.deferred_stats is not None:  # the step finish_pending took is reported with this frame
                stats.take_step_of(self.deferred_stats)
                self.deferred_stats = None
            self.window.append(x)
            self.pending = work.view if self._step_due() else None
            return work
        self.window.append(x)
        work.due = self._step_due()
        return work

    def end_frame(
        self, work: FrameWork, class_logits: torch.Tensor, mask_logits: torch.Tensor, predict_s: float
    ) -> StepResult:
        """`step` after its prediction ((Q, K+1), (Q, h/4, w/4) of `work.x`): the frame's StepResult."""
        work.stats.predict_s = predict_s
        if self._async is not None:
            self._async.submit(work.x, work.view, self.frame_index, self._step_due(), work.stats)
        else:
            work.stats.rollbacks = self.rollbacks
        self.frame_index += 1
        return StepResult(class_logits, mask_logits, work.stats, (work.x.shape[1], work.x.shape[2]))

    def _sync(self) -> None:
        if self.timing_sync:
            synchronize(self.device)

    def _step_due(self) -> bool:
        return self.adapts and self.frame_index % self.cfg.every_n_frames == 0

    def finish_pending(self) -> None:
        """Take the step a pipelined `step` deferred (a no-op when none is pending). The service calls this right
        after sending the frame's result; its statistics are reported with the next frame. With the asynchronous
        schedule: wait until the stream's queued step has been taken (the service never waits)."""
        if self._async is not None:
            self._async.steps.flush()
            return
        owed = self.take_pending()
        if owed is not None:
            self.adapt(*owed)

    def take_pending(self) -> tuple[StepStats, Theta0View] | None:
        """The stats record and θ0's view of the frame whose step a pipelined `step` deferred, now owed (its adapt
        is the caller's), or None when none is pending."""
        if self.pending is None:
            return None
        view, self.pending = self.pending, None
        self.deferred_stats = StepStats(frame_index=self.frame_index - 1)
        return self.deferred_stats, view

    @torch.no_grad()
    def _predict_theta0(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (3, h, w) uint8 -> θ0's class logits (Q, K+1), mask logits (Q, h/4, w/4) (the shared weights)."""
        out = self.train_forward(with_flag(normalize(x[None], self.model.cfg)), "predict", {})
        return out.class_logits[0].float(), out.mask_logits[0].float()

    @torch.no_grad()
    def predict(
        self, x: torch.Tensor, view: Theta0View | None = None, weights: PublishedWeights | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (3, h, w) uint8 -> class logits (Q, K+1), mask logits (Q, h/4, w/4), with the weights the guard
        chooses. `view`: θ0's view of x; when θ0 predicts and the confidence gate already ran θ0 on x, that forward
        is the prediction. With the asynchronous schedule: the published set `weights` (default: the one published
        now), read once."""
        view = view if view is not None else Theta0View()
        known = self.take_theta0_prediction(view)
        if known is not None:
            return known
        if self._async is not None:
            weights = weights if weights is not None else self._async.published
            tensors, theta0 = weights.tensors, weights.theta0
        else:
            tensors, theta0 = self.prediction_tensors(), self.predicts_with_theta0
        out = self.forward(with_flag(normalize(x[None], self.model.cfg)), "predict", tensors)
        class_logits, mask_logits = out.class_logits[0].float(), out.mask_logits[0].float()
        self.guard.remember(view, class_logits, mask_logits, theta0)
        return class_logits, mask_logits

    def take_theta0_prediction(self, view: Theta0View) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The prediction the confidence gate already made with θ0 for the frame of `view` ((Q, K+1), (Q, h/4,
        w/4)) when θ0 predicts it, else None; taken once."""
        known, view.logits = view.logits, None
        if known is None or not self.predicts_with_theta0:
            return None
        view.predicted = True
        return known

    def adapt(self, stats: StepStats, view: Theta0View | None = None) -> None:
        """`steps_per_frame` TTT steps on samples of the window (`view`: θ0's view of the window's newest frame)."""
        if not self.begin_adapt(stats, view if view is not None else Theta0View()):
            return
        losses = []
        for _ in range(self.cfg.steps_per_frame):
            batch, valid = self.sample_batch(stats)
            losses.append(self.train_step(batch, stats, valid))
        self.end_adapt(losses, stats)

    def begin_adapt(self, stats: StepStats, view: Theta0View) -> bool:
        """Before a frame's steps: the optimizer, and the guard's step scale. False when the guard shuts the step:
        the weights relax toward θ0 instead (nothing more to do for this frame)."""
        self.ensure_params()
        if self.cfg.reset_weights_each_frame:
            self._restore_theta0()
        if self.cfg.reset_optimizer_each_frame or self.optimizer is None:
            self.optimizer = self.new_optimizer()
        scale = self.guard.step_scale(self.window[-1], view, stats, self._predict_theta0)
        if scale == 0.0:
            self._on_shut_frame()
            return False
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = group.setdefault("base_lr", group["lr"]) * scale
        return True

    @torch.no_grad()
    def _on_shut_frame(self) -> None:
        shut = self.guard.on_shut(self.stepped)
        if shut.drop_optimizer:
            self.optimizer = None  # back on the training domain: no momentum from the shift carried on
        self._pull_toward_theta0(shut.relax)
        if shut.snap:
            self._restore_theta0()  # as after a reset, keeping the window, counters and RNG
            self.stepped = False
            log.info("stream back on the training domain for %d frames: weights reset to θ0", self.guard.shut_frames)
        self.weight_average.track(self.flat, self.guard.average_rate)
        if self.cfg.reset_optimizer_each_frame:
            self.optimizer = None

    def sample_batch(self, stats: StepStats) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step's samples (ttt/sample_augment.py `draw_samples`), timed into `stats.sample_s`."""
        t0 = time.perf_counter()
        out = sample_augment.draw_samples(self.window, self.cfg, self.augment, self.model.cfg, self.generator)
        stats.sample_s += time.perf_counter() - t0
        return out

    def end_adapt(self, losses: list[float | None], stats: StepStats) -> None:
        """After a frame's steps (their losses): the frame's reported loss; a per-frame optimizer is dropped."""
        finite = [v for v in losses if v is not None and math.isfinite(v)]
        stats.loss = finite[-1] if finite else (losses[-1] if losses else None)
        self.weight_average.track(self.flat, self.guard.average_rate)
        if self.cfg.reset_optimizer_each_frame:
            self.optimizer = None  # re-created next frame: no optimizer state kept between frames

    def train_step(self, batch: torch.Tensor, stats: StepStats, valid: torch.Tensor | None = None) -> float | None:
        """One optimizer step of the objective on `batch` (B, 3, h, w), in micro-batches. Returns the loss.
        valid: (B, 1, h, w), 0 on padded pixels (passed on to the objective as `valid=`), or None.

        The shared model stays in eval mode: drop-path is switched on for this thread only and draws from this
        stream's generator (`model.stochastic_depth`), so concurrent streams on other threads are unaffected and
        every stream is reproducible on its own."""
        assert self.optimizer is not None and self.flat is not None
        try:
            with stochastic_depth(self.generator):
                return self._accumulate_and_update(batch, stats, valid)
        finally:
            self.flat.free_grad()  # no gradient buffers kept between frames, whatever the outcome

    def _accumulate_and_update(self, batch: torch.Tensor, stats: StepStats, valid: torch.Tensor | None) -> float | None:
        assert self.optimizer is not None and self.flat is not None
        total = 0.0
        chunks = batch.split(self.cfg.micro_batch)
        valids = valid.split(self.cfg.micro_batch) if valid is not None else [None] * len(chunks)
        for chunk, chunk_valid in zip(chunks, valids):
            t0 = time.perf_counter()
            extra = {"valid": chunk_valid} if chunk_valid is not None else {}  # custom objectives need not take it
            loss = self.objective(self.train_forward, chunk, self.cfg, self.generator, **extra)
            loss = loss * (chunk.shape[0] / batch.shape[0])
            self._sync()
            t1 = time.perf_counter()
            stats.ttt_forward_s += t1 - t0
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            self._sync()
            stats.ttt_backward_s += time.perf_counter() - t1
            total += loss.item()
        self.flat.gather_grad()  # autograd's per-tensor gradients -> one flat buffer
        return self.apply_gradient(total, stats)

    def apply_gradient(self, total: float, stats: StepStats) -> float:
        """The update from the gradient in `flat.grad` of a step whose loss was `total`: rollback on divergence,
        clipping, the optimizer step, the guard's pull toward θ0. Returns `total`."""
        assert self.optimizer is not None and self.flat is not None
        t0 = time.perf_counter()
        if self.divergence.diverged(total, self._step_frame_index(stats)):
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
        self.divergence.observe(total)
        return total

    @torch.no_grad()
    def _pull_toward_theta0(self, rate: float) -> None:
        if rate > 0 and self.flat is not None:
            self.flat.data.lerp_(self._theta0_flat(), rate)

    @torch.no_grad()
    def _after_update(self) -> None:
        self.stepped = True
        self._pull_toward_theta0(self.guard.anchor)

    def rollback(self, stats: StepStats, why: str, relearn_level: bool = False) -> None:
        """Undo a diverging step: back to θ0, optimizer state dropped. With `relearn_level` (a finite loss far above
        its running level) the level is re-learnt from the next step."""
        self._restore_theta0()
        self.optimizer = self.new_optimizer()
        if relearn_level:
            # a level learnt on an easy domain (ℓ_s on low-contrast frames is ~0.1× the clean level) would otherwise
            # call every step after the return to clean a divergence; a non-finite loss keeps the level it had
            self.divergence.level = None
        self.rollbacks += 1
        stats.rolled_back = True
        log.warning("stream rollback frame=%d reason=%s rollbacks=%d", self._step_frame_index(stats), why,
                    self.rollbacks)

    def _step_frame_index(self, stats: StepStats) -> int:
        """The frame count a step is judged at: the stream's (a pipelined step runs once its frame has ended);
        with the asynchronous schedule the step's own frame's, the stream's counter being another thread's."""
        return stats.frame_index if self._async is not None else self.frame_index

"""Every comparison method of the paper, by name, behind the `StreamAdapter` interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from model.ymodel import YModel
from mask2former_ttt.ttt.adapter import StreamAdapter
from mask2former_ttt.ttt.baselines import ClassBalanceReset, LNAdapt, OfflineAllFrames, TemporalSmoothing
from mask2former_ttt.ttt.config import TTTConfig, ttt_preset, with_overrides
from mask2former_ttt.ttt.objectives import entropy_loss, self_train_loss
from mask2former_ttt.ttt.param_groups import encoder_norm_names
from mask2former_ttt.ttt.protocol import Adapter

Builder = Callable[[YModel, TTTConfig, int], Adapter]


@dataclass(frozen=True)
class MethodSpec:
    """How to build one method's adapter, and what it can do (known before any adapter is built)."""

    build: Builder
    needs_whole_video: bool = False

    def __call__(self, model: YModel, cfg: TTTConfig, seed: int) -> Adapter:
        return self.build(model, cfg, seed)


def _configured(method: str, **changes: Any) -> Builder:
    def build(model: YModel, cfg: TTTConfig, seed: int) -> StreamAdapter:
        adapter = StreamAdapter(model, cfg.model_copy(update=changes), seed)
        adapter.method = method
        return adapter

    return build


def _tent(model: YModel, cfg: TTTConfig, seed: int) -> StreamAdapter:
    adapter = StreamAdapter(model, cfg, seed, names=encoder_norm_names(model), objective=entropy_loss)
    adapter.method = "tent"
    return adapter


def _self_train(model: YModel, cfg: TTTConfig, seed: int) -> StreamAdapter:
    enc = [n for n, _ in model.encoder.named_parameters(prefix="encoder")]
    adapter = StreamAdapter(model, cfg.model_copy(update={"mask_ratio": 0.8}), seed, names=enc, objective=self_train_loss)
    adapter.method = "self_train"
    return adapter


def _wrapped(wrapper: type, method: str = "online") -> Builder:
    def build(model: YModel, cfg: TTTConfig, seed: int) -> Adapter:
        return wrapper(METHODS[method](model, cfg, seed))

    return build


METHODS: dict[str, MethodSpec] = {
    "main_only": MethodSpec(_configured("main_only", steps_per_frame=0, window=1)),
    "no_memory": MethodSpec(
        _configured("no_memory", window=1, reset_weights_each_frame=True, reset_optimizer_each_frame=True)
    ),
    "implicit_only": MethodSpec(_configured("implicit_only", window=1)),
    "explicit_only": MethodSpec(
        _configured("explicit_only", reset_weights_each_frame=True, reset_optimizer_each_frame=True)
    ),
    "online": MethodSpec(_configured("online")),
    "offline_all_frames": MethodSpec(OfflineAllFrames, needs_whole_video=True),
    "ln_adapt": MethodSpec(LNAdapt),
    "tent": MethodSpec(_tent),
    "self_train": MethodSpec(_self_train),
    "class_balance_reset": MethodSpec(_wrapped(ClassBalanceReset)),
    "temporal_smoothing": MethodSpec(_wrapped(TemporalSmoothing)),
}
# The methods a live stream, a camera, an upload job or a single-image prediction can run: every method that needs
# no whole video first. The one list the service accepts, `GET /v1/info` shows and its refusals name.
LIVE_METHODS: tuple[str, ...] = tuple(sorted(m for m, spec in METHODS.items() if not spec.needs_whole_video))


def check_method(method: str, *, live: bool = False) -> MethodSpec:
    """The method's spec; ValueError naming the problem for an unknown method, or, with `live`, for a method
    that cannot serve a live stream (it needs the whole video first)."""
    if method not in METHODS:
        choices = list(LIVE_METHODS) if live else sorted(METHODS)
        raise ValueError(f"unknown method {method!r}; choose one of {choices}")
    spec = METHODS[method]
    if live and spec.needs_whole_video:
        raise ValueError(
            f"method {method!r} cannot run in the service: it needs the whole video before its first prediction; "
            "use the offline CLI (`m2f-ttt segment VIDEO --method ...` or `m2f-ttt evaluate`)"
        )
    return spec


def build_adapter(
    model: YModel, method: str = "online", preset: str | TTTConfig = "default", seed: int = 0, **overrides: Any
) -> Adapter:
    """One stream's adapter: `method` from METHODS, hyperparameters from `preset` with `overrides` (a guard field
    may be named directly: `config.with_overrides`)."""
    check_method(method)
    cfg = ttt_preset(preset) if isinstance(preset, str) else preset
    return METHODS[method](model, with_overrides(cfg, overrides), seed)

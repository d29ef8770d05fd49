"""Every comparison method of the paper, by name, behind the `StreamAdapter` interface."""

from __future__ import annotations

from typing import Any, Callable

from model.ymodel import YModel
from mask2former_ttt.ttt.adapter import StreamAdapter
from mask2former_ttt.ttt.baselines import ClassBalanceReset, LNAdapt, OfflineAllFrames, TemporalSmoothing
from mask2former_ttt.ttt.config import TTTConfig, ttt_preset
from mask2former_ttt.ttt.objectives import entropy_loss, self_train_loss
from mask2former_ttt.ttt.param_groups import encoder_norm_names

Builder = Callable[[YModel, TTTConfig, int], Any]


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
    def build(model: YModel, cfg: TTTConfig, seed: int) -> Any:
        return wrapper(METHODS[method](model, cfg, seed))

    return build


METHODS: dict[str, Builder] = {
    "main_only": _configured("main_only", steps_per_frame=0, window=1),
    "no_memory": _configured("no_memory", window=1, reset_weights_each_frame=True, reset_optimizer_each_frame=True),
    "implicit_only": _configured("implicit_only", window=1),
    "explicit_only": _configured("explicit_only", reset_weights_each_frame=True, reset_optimizer_each_frame=True),
    "online": _configured("online"),
    "offline_all_frames": lambda model, cfg, seed: OfflineAllFrames(model, cfg, seed),
    "ln_adapt": lambda model, cfg, seed: LNAdapt(model, cfg, seed),
    "tent": _tent,
    "self_train": _self_train,
    "class_balance_reset": _wrapped(ClassBalanceReset),
    "temporal_smoothing": _wrapped(TemporalSmoothing),
}


def build_adapter(
    model: YModel, method: str = "online", preset: str | TTTConfig = "default", seed: int = 0, **overrides: Any
) -> Any:
    """One stream's adapter: `method` from METHODS, hyperparameters from `preset` with `overrides`."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    cfg = ttt_preset(preset) if isinstance(preset, str) else preset
    if overrides:
        cfg = TTTConfig.model_validate({**cfg.model_dump(), **overrides})
    return METHODS[method](model, cfg, seed)

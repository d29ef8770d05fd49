"""Whether a checkpoint is ready for TTT: is g (the reconstruction decoder TTT steps go through) trained, and does
the safe-adaptation guard have its references? `segment`, `serve` and `/v1/info` say both, and a model whose g is
known to be untrained (a converted Mask2Former) runs `main_only` unless TTT is asked for explicitly."""

from __future__ import annotations

from model.config import ModelConfig

PREPARE_COMMAND = "m2f-ttt prepare MODEL FOOTAGE... -o OUT"
UNTRAINED_DEFAULT_METHOD = "main_only"
# methods whose steps go through g (TTT-MAE); the others (main_only, tent, ln_adapt, self_train, ...) do not need it
MAE_METHODS = ("online", "no_memory", "implicit_only", "explicit_only", "offline_all_frames")


def recon_state(cfg: ModelConfig) -> str:
    """`trained`, `untrained` or `not recorded` (checkpoints written before `recon_trained` existed)."""
    return {True: "trained", False: "untrained", None: "not recorded"}[cfg.recon_trained]


def readiness(cfg: ModelConfig) -> str:
    """e.g. `g trained, guard calibrated`."""
    return f"g {recon_state(cfg)}, guard {'calibrated' if cfg.guard_calibrated else 'not calibrated'}"


def default_method(cfg: ModelConfig, configured: str | None, default: str = "online") -> tuple[str, str | None]:
    """(the method to run, a warning line or None). `configured` is the method the user set explicitly (None: not
    set). With an untrained g and nothing set, TTT would only move f along a random decoder's gradients: run
    `main_only` and say how to prepare the model."""
    if configured is not None:
        if cfg.recon_untrained and configured in MAE_METHODS:
            return configured, (f"{cfg.name}: g is untrained, yet method {configured!r} was asked for: its TTT steps "
                                f"follow a random decoder; prepare the model first: {PREPARE_COMMAND}")
        return configured, None
    if cfg.recon_untrained:
        return UNTRAINED_DEFAULT_METHOD, (
            f"{cfg.name}: g (the reconstruction decoder) is untrained, so TTT is off ({UNTRAINED_DEFAULT_METHOD}) "
            f"unless a method is set explicitly; make the model TTT-ready with `{PREPARE_COMMAND}`")
    return default, None

"""The project's own checkpoint format: a directory with `model.safetensors` + `config.json`."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model.device import prepare_model
from model.config import ModelConfig
from model.ymodel import YModel, build_model

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def save_checkpoint(model: YModel, directory: str | Path, extra: dict | None = None) -> Path:
    """Write weights (safetensors) and config (JSON) of `model` to `directory`; returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": "mask2former-ttt", **{k: str(v) for k, v in (extra or {}).items()}})
    save_config(model.cfg, out)
    return out


def save_config(cfg: ModelConfig, directory: str | Path) -> None:
    """Write `cfg` as the checkpoint directory's config.json (the weights are left as they are)."""
    (Path(directory) / CONFIG).write_text(cfg.model_dump_json(indent=2))


def load_config(directory: str | Path) -> ModelConfig:
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"no {CONFIG} in {directory}: not a mask2former-ttt checkpoint directory")
    return ModelConfig.model_validate(json.loads(path.read_text()))


def load_checkpoint(directory: str | Path, device: torch.device | str = "cpu") -> YModel:
    """Build the model described by `config.json` and load `model.safetensors` strictly."""
    directory = Path(directory)
    cfg = load_config(directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"no {WEIGHTS} in {directory}")
    model = build_model(cfg)
    model.load_state_dict(load_file(str(weights)), strict=True)
    return prepare_model(model, torch.device(device)).eval()


def bundled_model_dir() -> Path:
    """Directory of the default model shipped with the package (trained by `m2f-ttt train` on synthetic data)."""
    return Path(__file__).resolve().parent / "bundled" / "tiny-synth"

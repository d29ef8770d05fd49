"""A MODEL argument of `m2f-ttt prepare`: a project checkpoint directory, a Hugging Face Mask2Former directory (or
`hf:<repo-id>[@<revision>]`, model.hub), or a
detectron2 / released TTT-MAE `.pkl` / `.pth` file, loaded as a Y-model with the converters `m2f-ttt convert`
uses (`model.hf_import`, `model.convert_detectron2`)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model.checkpoint import CONFIG, WEIGHTS, load_checkpoint
from model.ymodel import YModel


class ModelSourceError(ValueError):
    """A MODEL argument that cannot be loaded; the message is one line."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (multi-line converter reports joined with '; ')."""
    text = str(exc).strip() or exc.__class__.__name__
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def model_source_kind(path: Path) -> str:
    """`checkpoint` (config.json + model.safetensors of this project), `hf` (a Hugging Face Mask2Former directory)
    or `detectron2` (a file); `ModelSourceError` for anything else."""
    if path.is_file():
        if path.suffix.lower() in (".pkl", ".pth", ".pt"):
            return "detectron2"
        raise ModelSourceError(f"{path}: not a model (expected a checkpoint directory, a Hugging Face Mask2Former "
                               "directory or a detectron2 .pkl/.pth file)")
    if not path.is_dir():
        raise ModelSourceError(f"{path}: no such model file or directory")
    config = path / CONFIG
    if not config.is_file():
        raise ModelSourceError(f"{path}: not a model directory (no {CONFIG}; expected a checkpoint from `m2f-ttt "
                               "convert` / `m2f-ttt train`, or a Hugging Face Mask2Former directory)")
    try:
        raw = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelSourceError(f"{config}: not valid JSON ({one_line(exc)})") from None
    if not isinstance(raw, dict):
        raise ModelSourceError(f"{config}: not a model configuration")
    if raw.get("model_type") == "mask2former":
        return "hf"
    if "model_type" in raw:
        raise ModelSourceError(f"{path}: a Hugging Face {raw['model_type']!r} model; only Mask2Former is supported")
    if not (path / WEIGHTS).is_file():
        raise ModelSourceError(f"{path}: no {WEIGHTS} beside {CONFIG}: not a mask2former-ttt checkpoint directory")
    return "checkpoint"


def load_model_source(
    path: str | Path, overrides: Mapping[str, Any] | None = None, preset_name: str | None = None,
    trust_pickle: bool = False,
) -> tuple[YModel, str]:
    """(the Y-model in eval mode on the CPU, its kind). `overrides` (nested ModelConfig fields) apply to converted
    sources; raises `ModelSourceError` with a one-line reason."""
    from model.hub import HubModelError, download_snapshot, hf_name_overrides, is_hf_spec

    if is_hf_spec(path):  # hf:<repo-id>[@<revision>]: the Hugging Face snapshot, converted as a directory is
        try:
            path, repo_id, _ = download_snapshot(str(path))
        except HubModelError as exc:
            raise ModelSourceError(str(exc)) from None
        overrides = hf_name_overrides(repo_id, overrides)
    path = Path(path)
    kind = model_source_kind(path)
    try:
        if kind == "checkpoint":
            model = load_checkpoint(path)
            if overrides:
                raise ModelSourceError("--overrides apply to Hugging Face directories and detectron2 files, not to "
                                       f"the converted checkpoint {path}")
        elif kind == "hf":
            from model.hf_import import load_hf_mask2former

            model = load_hf_mask2former(path, overrides)
        else:
            from model.convert_detectron2 import detectron2_to_ymodel, load_detectron2_state

            state = load_detectron2_state(path, trust_pickle=trust_pickle)
            model, _ = detectron2_to_ymodel(state, preset_name or "swin-s", overrides, name=path.stem)
    except ModelSourceError:
        raise
    except (ValueError, TypeError, OSError, RuntimeError, KeyError, pickle.UnpicklingError) as exc:
        raise ModelSourceError(f"cannot load {path}: {one_line(exc)}") from None
    return model.eval(), kind

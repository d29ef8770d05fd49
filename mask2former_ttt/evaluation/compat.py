"""Does a checkpoint predict the classes a dataset is labelled with? Checked before any scoring starts.

Scoring an 11-class model against 7-class labels runs without error and prints a meaningless mIoU; this module
turns that into an error that names both label sets and the fix.
"""

from __future__ import annotations

from pathlib import Path

from model.checkpoint import load_config
from mask2former_ttt.data.readers import read_label_set


class ClassMismatch(ValueError):
    """The checkpoint's classes are not the dataset's (different count, names or order)."""


def _listing(names: tuple[str, ...] | list[str]) -> str:
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"{len(names)} classes ({shown})"


def check_model_matches_data(model_dir: Path, data_root: Path, split: str, model_is_default: bool = False) -> None:
    """Raise `ClassMismatch` unless the checkpoint's class names equal the dataset's, in the same order."""
    model_classes = list(load_config(model_dir).class_names)
    data_classes = list(read_label_set(data_root, split=split).class_names)
    if model_classes == data_classes:
        return
    which = "the bundled model (no --model-dir given)" if model_is_default else f"the checkpoint {model_dir}"
    order = " (same names, different order)" if sorted(model_classes) == sorted(data_classes) else ""
    raise ClassMismatch(
        f"{which} predicts {_listing(model_classes)} but the data under {data_root} is labelled with "
        f"{_listing(data_classes)}{order}. Train a model on this data first (m2f-ttt train --data-root {data_root}) "
        "and pass it with --model-dir."
    )

"""Synthetic street-world data (stills + shifted videos) and readers for COCO / Cityscapes / KITTI-STEP.

Main entry points:

* :func:`generate_dataset` -- write the synthetic benchmark (train stills, val / test videos);
* :class:`StillDataset`, :func:`collate` -- training stills with Mask2Former targets;
* :func:`list_videos` / :class:`VideoSequence` -- test videos frame by frame, in order;
* :class:`World`, :class:`SyntheticVideo`, :func:`make_video_spec` -- render in memory;
* :data:`SYNTHETIC` -- the synthetic label set (11 classes, things = person, car).

Names are imported lazily, so the generator (and its worker processes) never import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "classes": ("CITYSCAPES", "IGNORE_INDEX", "KITTI_STEP", "SYNTHETIC", "LabelSet"),
    "generate": ("generate_dataset",),
    "readers": ("Augment", "StillDataset", "VideoSequence", "collate", "detect_format", "list_videos",
                "read_label_set"),
    "shifts": ("FAMILIES", "SEGMENTS", "SHIFT_FAMILIES", "ShiftParams", "ShiftProgram", "make_program"),
    "video": ("SyntheticVideo", "VideoSpec", "make_video_spec"),
    "world": ("CameraPose", "Frame", "World"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

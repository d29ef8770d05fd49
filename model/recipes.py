"""The authors' per-dataset recipe (renwang435/video-ttt-release), keyed by a checkpoint's label set.

The release has two recipes, and its three checkpoints each use one:

- `kitti` (KITTI-STEP semantic, 19 Cityscapes-style street classes; configs/kitti_step/...): frames resized to
  short side 1024 with the long side capped at 2048 (INPUT.MIN_SIZE_TEST 1024, MAX_SIZE_TEST 2048); each TTT sample
  a random 512×1024 crop (INPUT.CROP absolute (512, 1024)).
- `coco` (COCO-Videos instance, 80 classes, and panoptic, 133 classes; configs/coco_videos/...): inference at
  detectron2's default ResizeShortestEdge(800, max_size=1333) (the configs set no MIN/MAX_SIZE_TEST); each TTT
  sample flipped, scale-jittered 0.1-2.0 and cropped/padded to 1024×1024 (INPUT.IMAGE_SIZE 1024, MIN_SCALE 0.1,
  MAX_SCALE 2.0).

Checkpoints carry no dataset name, so the label set decides: 19 classes -> `kitti` (Cityscapes and KITTI-STEP share
the 19-class street label set), 80 or 133 -> `coco`, anything else (the project's synthetic models, ADE20K, ...)
-> no recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Recipe = Literal["kitti", "coco"]


@dataclass(frozen=True)
class DatasetRecipe:
    """Inference size of one recipe: short side `image_size`, long side capped at `max_size`."""

    name: Recipe
    image_size: int
    max_size: int


RECIPES: dict[str, DatasetRecipe] = {
    "kitti": DatasetRecipe("kitti", 1024, 2048),
    "coco": DatasetRecipe("coco", 800, 1333),
}
STREET_CLASSES = 19
COCO_CLASSES = (80, 133)


def recipe_for(num_classes: int) -> DatasetRecipe | None:
    """The release recipe of a checkpoint with `num_classes` classes, or None when its label set is not one of the
    release's."""
    if num_classes == STREET_CLASSES:
        return RECIPES["kitti"]
    if num_classes in COCO_CLASSES:
        return RECIPES["coco"]
    return None


def recipe_sizes(num_classes: int) -> dict[str, int]:
    """ModelConfig fields {image_size, max_size} of the recipe for `num_classes` classes ({} without a recipe)."""
    recipe = recipe_for(num_classes)
    return {"image_size": recipe.image_size, "max_size": recipe.max_size} if recipe else {}

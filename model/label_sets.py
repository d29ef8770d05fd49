"""Label sets of public Mask2Former releases (COCO panoptic 133, COCO 80, Cityscapes 19, ADE20K 150), in the
contiguous order of the released checkpoints' `id2label`.

A converted Hugging Face model's `id2label` gives its class names; when they are one of these sets (or only
placeholders such as `LABEL_7` for a model with one of these class counts), the set supplies the names, the thing
ids a panoptic model needs (`match_label_set`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownLabelSet:
    name: str
    class_names: tuple[str, ...]
    thing_ids: tuple[int, ...]


COCO_THINGS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
COCO_PANOPTIC_STUFF = (
    "banner", "blanket", "bridge", "cardboard", "counter", "curtain", "door-stuff", "floor-wood", "flower", "fruit",
    "gravel", "house", "light", "mirror-stuff", "net", "pillow", "platform", "playingfield", "railroad", "river",
    "road", "roof", "sand", "sea", "shelf", "snow", "stairs", "tent", "towel", "wall-brick", "wall-stone",
    "wall-tile", "wall-wood", "water-other", "window-blind", "window-other", "tree-merged", "fence-merged",
    "ceiling-merged", "sky-other-merged", "cabinet-merged", "table-merged", "floor-other-merged", "pavement-merged",
    "mountain-merged", "grass-merged", "dirt-merged", "paper-merged", "food-other-merged", "building-other-merged",
    "rock-merged", "wall-other-merged", "rug-merged",
)  # fmt: skip
CITYSCAPES_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
ADE20K_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip

COCO_PANOPTIC = KnownLabelSet("coco-panoptic", COCO_THINGS + COCO_PANOPTIC_STUFF, tuple(range(len(COCO_THINGS))))
COCO = KnownLabelSet("coco", COCO_THINGS, tuple(range(len(COCO_THINGS))))
CITYSCAPES = KnownLabelSet("cityscapes", CITYSCAPES_NAMES, tuple(range(11, 19)))
ADE20K = KnownLabelSet("ade20k", ADE20K_NAMES, ())  # the semantic release: no thing ids
KNOWN_LABEL_SETS = (COCO_PANOPTIC, COCO, CITYSCAPES, ADE20K)
MATCH_FRACTION = 0.9  # names equal (case, "_", "-" and spaces aside) at the same index; tolerates renamed classes

_PLACEHOLDER = re.compile(r"(label|class)[ _-]?\d+")


def _key(name: str) -> str:
    return " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())


def is_placeholder(names: Sequence[str]) -> bool:
    """True when every name is a placeholder (`LABEL_3`, `class_3`): the checkpoint did not name its classes."""
    return bool(names) and all(_PLACEHOLDER.fullmatch(_key(n).replace(" ", "_")) for n in names)


def match_label_set(names: Sequence[str]) -> KnownLabelSet | None:
    """The known label set `names` is (at least 90 % of the names equal index by index), or the one set with that
    many classes when `names` are only placeholders; None otherwise."""
    same_size = [s for s in KNOWN_LABEL_SETS if len(s.class_names) == len(names)]
    if is_placeholder(names):
        return same_size[0] if len(same_size) == 1 else None
    for known in same_size:
        equal = sum(_key(a) == _key(b) for a, b in zip(names, known.class_names))
        if equal >= MATCH_FRACTION * len(names):
            return known
    return None

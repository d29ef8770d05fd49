"""Label sets: the synthetic street world's classes and the real datasets' (Cityscapes / KITTI-STEP).

A `LabelSet` is the contract between data and model: contiguous class ids ``0..C-1``, which of
them are *things* (countable, with instance ids), display colours, and the ignore value (255).
"""

from __future__ import annotations

from dataclasses import dataclass, field

IGNORE_INDEX = 255


@dataclass(frozen=True)
class LabelSet:
    """Class names (index = contiguous class id), thing ids and display colours (RGB uint8)."""

    name: str
    class_names: tuple[str, ...]
    thing_ids: tuple[int, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def stuff_ids(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.num_classes) if i not in self.thing_ids)

    def is_thing(self, class_id: int) -> bool:
        return class_id in self.thing_ids

    def to_json(self) -> dict:
        """JSON-able dict (the ``meta.json`` body, minus generator details)."""
        return {
            "name": self.name,
            "classes": list(self.class_names),
            "thing_ids": list(self.thing_ids),
            "stuff_ids": list(self.stuff_ids),
            "colors": [list(c) for c in self.colors],
            "ignore_index": self.ignore_index,
        }

    @classmethod
    def from_json(cls, d: dict) -> "LabelSet":
        names = tuple(d["classes"])
        colors = d.get("colors") or [_fallback_color(i) for i in range(len(names))]
        return cls(
            name=d.get("name", "dataset"),
            class_names=names,
            thing_ids=tuple(int(i) for i in d.get("thing_ids", [])),
            colors=tuple(tuple(int(v) for v in c) for c in colors),  # type: ignore[misc]
            ignore_index=int(d.get("ignore_index", IGNORE_INDEX)),
        )


def _fallback_color(i: int) -> tuple[int, int, int]:
    return ((37 * i + 80) % 256, (91 * i + 40) % 256, (151 * i + 120) % 256)


# --- synthetic street world --------------------------------------------------------------------
ROAD, SIDEWALK, BUILDING, FENCE, POLE, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = range(11)

SYNTHETIC = LabelSet(
    name="synthetic-street",
    class_names=(
        "road", "sidewalk", "building", "fence", "pole", "traffic_sign",
        "vegetation", "terrain", "sky", "person", "car",
    ),
    thing_ids=(PERSON, CAR),
    colors=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (190, 153, 153), (153, 153, 153), (220, 220, 0),
        (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (0, 0, 142),
    ),
)

# --- Cityscapes 19 train ids (also KITTI-STEP's semantic classes) -------------------------------
CITYSCAPES_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
CITYSCAPES = LabelSet("cityscapes", CITYSCAPES_NAMES, tuple(range(11, 19)), CITYSCAPES_COLORS)
# KITTI-STEP annotates tracks only for person (11) and car (13); other classes are stuff.
KITTI_STEP = LabelSet("kitti-step", CITYSCAPES_NAMES, (11, 13), CITYSCAPES_COLORS)

# Cityscapes labelId (0..33, -1) -> trainId (0..18, 255); used to read *_gtFine_instanceIds.png.
CITYSCAPES_LABEL_TO_TRAIN: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}

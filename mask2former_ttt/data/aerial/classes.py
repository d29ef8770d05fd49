"""Domain B's label set: 7 classes seen from above (things: roof, vehicle).

Ids are contiguous ``0..6``; ``roof`` (4) and ``vehicle`` (6) carry instance ids, the rest are stuff.
"""

from __future__ import annotations

from ..classes import LabelSet

GROUND, GRASS, WATER, ROAD, ROOF, TREE, VEHICLE = range(7)

AERIAL = LabelSet(
    name="synthetic-aerial",
    class_names=("ground", "grass", "water", "road", "roof", "tree", "vehicle"),
    thing_ids=(ROOF, VEHICLE),
    colors=(
        (150, 120, 80), (120, 200, 90), (40, 110, 200), (90, 90, 100), (200, 70, 50), (20, 110, 40), (250, 220, 0),
    ),
)

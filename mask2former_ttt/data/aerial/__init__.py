"""Domain B: a synthetic *aerial* (top-down drone) world, independent of the street world (domain A).

Own layout, classes, textures, camera motion and corruption code; only the on-disk format code is shared
(``writers``, ``formats``, ``LabelSet``, ``seeding``), so the readers and ``m2f-ttt train`` / ``evaluate`` read it
unchanged.

* :data:`AERIAL` -- 7 classes (ground, grass, water, road, roof, tree, vehicle; things: roof, vehicle);
* :func:`paint_map` -- one procedural world map (:mod:`.terrain`);
* :func:`drone_path`, :func:`random_still_pose`, :func:`render` -- the drone camera (:mod:`.camera`);
* :func:`corrupt`, :data:`AERIAL_FAMILIES` -- the corruption families (:mod:`.corruptions`);
* :class:`AerialProgram` -- per-frame severity / family schedules incl. ``return`` (:mod:`.program`);
* :class:`AerialVideo`, :func:`make_aerial_video_spec` -- videos in memory (:mod:`.video`);
* :func:`generate_aerial_dataset` -- write the dataset (:mod:`.generate`; CLI: ``m2f-ttt generate --domain aerial``).

No module here imports torch.
"""

from __future__ import annotations

from .camera import AerialFrame, DronePose, drone_path, random_still_pose, render
from .classes import AERIAL
from .corruptions import AERIAL_FAMILIES, SHIFT_FAMILIES, CorruptionParams, corrupt
from .generate import generate_aerial_dataset
from .program import RETURN, AerialProgram
from .terrain import AerialMap, paint_map
from .video import AerialVideo, AerialVideoSpec, make_aerial_video_spec

__all__ = [
    "AERIAL", "AERIAL_FAMILIES", "RETURN", "SHIFT_FAMILIES", "AerialFrame", "AerialMap", "AerialProgram",
    "AerialVideo", "AerialVideoSpec", "CorruptionParams", "DronePose", "corrupt", "drone_path",
    "generate_aerial_dataset", "make_aerial_video_spec", "paint_map", "random_still_pose", "render",
]

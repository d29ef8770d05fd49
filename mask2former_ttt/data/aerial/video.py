"""Domain-B videos in memory: a painted map, a drone flight and a corruption program, rendered lazily.

The flight depends only on the world seed, so all families of one world show exactly the same content
(paired comparison against ``clean``); :meth:`AerialVideo.frame` is ``program.apply(clean_frame(t), t)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from ..seeding import derive_seed, rng_for
from .camera import AerialFrame, DronePose, drone_path, render
from .corruptions import CorruptionParams
from .program import AerialProgram
from .terrain import AerialMap, default_map_shape, geometry_scale, paint_map


@dataclass(frozen=True)
class AerialVideoSpec:
    """Everything that determines one domain-B video; ``size = (H, W)`` frames, ``map_shape = (H_w, W_w)``."""

    name: str
    split: str
    world_seed: int
    program: AerialProgram
    size: tuple[int, int] = (128, 160)
    map_shape: tuple[int, int] = (768, 768)

    @property
    def n_frames(self) -> int:
        return self.program.n_frames

    @property
    def path_seed(self) -> int:
        return self.world_seed

    def to_json(self) -> dict:
        """Manifest entry (``videos.json``)."""
        return {
            "domain": "aerial",
            "split": self.split,
            "world_seed": self.world_seed,
            "path_seed": self.path_seed,
            "frames": self.n_frames,
            "size": list(self.size),
            "map_shape": list(self.map_shape),
            **self.program.to_json(),
        }

    @classmethod
    def from_json(cls, name: str, d: dict, params: CorruptionParams | None = None) -> "AerialVideoSpec":
        """Rebuild the spec from its ``videos.json`` entry (regenerates the identical video in memory)."""
        return cls(
            name=name, split=d["split"], world_seed=int(d["world_seed"]),
            program=AerialProgram.from_json(d, int(d["frames"]), params),
            size=tuple(d["size"]), map_shape=tuple(d["map_shape"]),  # type: ignore[arg-type]
        )


def make_aerial_video_spec(
    name: str, split: str, family: str, world_seed: int, n_frames: int, size: tuple[int, int] = (128, 160),
    map_shape: tuple[int, int] | None = None, shift_seed: int | None = None, **program_kw: object,
) -> AerialVideoSpec:
    """Spec of a ``family`` video (a shift family, ``clean`` or ``return``) in world ``world_seed``."""
    size = (int(size[0]), int(size[1]))
    shift_seed = derive_seed(world_seed, "aerial-shift", family) if shift_seed is None else int(shift_seed)
    program = AerialProgram(family, int(n_frames), shift_seed, **program_kw)  # type: ignore[arg-type]
    shape = tuple(map_shape) if map_shape is not None else default_map_shape(size)
    return AerialVideoSpec(name, split, int(world_seed), program, size, shape)  # type: ignore[arg-type]


def flight(spec: AerialVideoSpec) -> list[DronePose]:
    """The drone poses of ``spec`` (a function of the world seed, frame count, size and map shape only)."""
    return drone_path(rng_for(spec.path_seed, "aerial-path"), spec.n_frames, spec.map_shape, spec.size)


class AerialVideo:
    """Frames of an :class:`AerialVideoSpec`; pass ``world`` to share one painted map between videos."""

    def __init__(self, spec: AerialVideoSpec, world: AerialMap | None = None) -> None:
        self.spec = spec
        g = geometry_scale(spec.size)
        mismatch = world is not None and (world.seed, world.shape, world.g) != (spec.world_seed, tuple(spec.map_shape), g)
        if mismatch:
            raise ValueError("world does not match the spec (seed / map shape / geometry scale)")
        self.world = world if world is not None else paint_map(spec.world_seed, spec.map_shape, g)
        self.poses = flight(spec)

    def __len__(self) -> int:
        return self.spec.n_frames

    def clean_frame(self, t: int) -> AerialFrame:
        """Frame ``t`` before any corruption."""
        return render(self.world, self.poses[t], self.spec.size)

    def frame(self, t: int) -> AerialFrame:
        """Frame ``t`` with the program's corruption (labels unchanged)."""
        f = self.clean_frame(t)
        return replace(f, image=self.spec.program.apply(f.image, t))

    def __iter__(self) -> Iterator[AerialFrame]:
        for t in range(len(self)):
            yield self.frame(t)

"""Synthetic videos in memory: a world, a smooth camera path and a shift program, rendered lazily.

Use this to stream synthetic test videos without touching the disk (e.g. in a server demo), or via
:func:`.generate.generate_dataset` to write them in the KITTI-STEP layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .camera import PathSpec, required_width, video_path
from .seeding import rng_for
from .shifts import ShiftParams, ShiftProgram, make_program
from .world import CameraPose, Frame, World


@dataclass(frozen=True)
class VideoSpec:
    """Everything that determines a synthetic video; ``size = (H, W)`` of the frames."""

    name: str
    split: str
    world_seed: int
    path_seed: int
    program: ShiftProgram
    size: tuple[int, int] = (128, 160)
    world_height: int = 256
    path: PathSpec = field(default_factory=PathSpec)

    @property
    def n_frames(self) -> int:
        return self.program.n_frames

    def to_json(self) -> dict:
        """Manifest entry (``videos.json``)."""
        return {
            "split": self.split,
            "world_seed": self.world_seed,
            "path_seed": self.path_seed,
            "frames": self.n_frames,
            "size": list(self.size),
            "world_height": self.world_height,
            **self.program.to_json(),
        }

    @classmethod
    def from_json(cls, name: str, d: dict, params: ShiftParams | None = None) -> "VideoSpec":
        """Rebuild a spec from its ``videos.json`` entry (regenerates the identical video in memory).

        ``params``: the generator's shift strengths (``meta.json["generator"]["shift_params"]``) if not default.
        """
        return cls(
            name=name, split=d["split"], world_seed=int(d["world_seed"]), path_seed=int(d["path_seed"]),
            program=ShiftProgram.from_json(d, params=params), size=tuple(d["size"]),  # type: ignore[arg-type]
            world_height=int(d["world_height"]),
        )


def make_video_spec(
    name: str, split: str, family: str, world_seed: int, n_frames: int, size: tuple[int, int] = (128, 160),
    shift_seed: int | None = None, world_height: int = 256, **program_kw: object,
) -> VideoSpec:
    """Spec for a video of ``family`` (a shift family, ``clean`` or ``segments``) in world ``world_seed``.

    The camera path depends only on the world seed, so videos of different families in the same world
    show exactly the same content (paired comparison across shifts).
    """
    shift_seed = rng_for(world_seed, "shift", family).integers(2**62) if shift_seed is None else shift_seed
    program = make_program(family, n_frames, int(shift_seed), **program_kw)
    return VideoSpec(name, split, world_seed, world_seed, program, tuple(size), world_height)  # type: ignore[arg-type]


class SyntheticVideo:
    """Frames of a :class:`VideoSpec`; ``world`` may be passed to share one painted world between videos."""

    def __init__(self, spec: VideoSpec, world: World | None = None) -> None:
        self.spec = spec
        self.poses: list[CameraPose] = video_path(
            spec.n_frames, spec.size, spec.world_height, rng_for(spec.path_seed, "path"), spec.path
        )
        width = self.world_width(spec)
        if world is not None and (world.seed != spec.world_seed or world.width != width):
            raise ValueError("world does not match the spec (seed / width)")
        self.world = world if world is not None else World.generate(spec.world_seed, width, spec.world_height)

    @staticmethod
    def world_width(spec: VideoSpec) -> int:
        """World columns needed by the spec's camera path."""
        poses = video_path(spec.n_frames, spec.size, spec.world_height, rng_for(spec.path_seed, "path"), spec.path)
        return required_width(poses, spec.size)

    def __len__(self) -> int:
        return self.spec.n_frames

    def frame(self, t: int) -> Frame:
        """Frame ``t`` with the shift applied (``image`` shifted; labels and depth unchanged)."""
        prog = self.spec.program
        f = self.world.render(self.poses[t], self.spec.size, prog.appearance_at(t))
        f.image = prog.apply(f, t)
        return f

    def __iter__(self) -> Iterator[Frame]:
        for t in range(len(self)):
            yield self.frame(t)

"""The comparison table's rows: a name, a method, a preset and overrides (and the shuffled-frames control)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Row(BaseModel):
    """One row of the benchmark table."""

    name: str
    method: str
    preset: str = "default"
    overrides: dict = Field(default_factory=dict)
    shuffle_frames: bool = False
    seeds: int | None = None  # None: the run's seed count
    alias_of: str | None = None  # identical configuration to another row: its scores are reused, not recomputed
    max_videos_per_family: int | None = None  # a smaller run: the first N worlds of each family
    panoptic_metrics: bool = True  # PQ and AP besides mIoU


# rows run first: on a CPU budget a run cut short still has the key comparisons with every seed
HEADLINE_ROWS = ("main_task_only", "online_k16", "online_k16_no_guard", "online_shuffled")
# no masks and no random sampling: the mask seed cannot change these rows, one seed is the whole story
SEED_INVARIANT = {"seeds": 1}


def standard_rows(k_values: tuple[int, ...] = (1, 4, 16, 64)) -> list[Row]:
    """The rows of the paper's comparison, on the project's default preset unless named otherwise.

    Every row runs on every test video with every mask seed (PQ and AP included); rows the seed cannot change
    run once, and rows with identical configurations are aliases (scores reused, not recomputed).
    """
    rows = [
        Row(name="main_task_only", method="main_only", **SEED_INVARIANT),
        Row(name="no_memory", method="no_memory"),
        Row(name="implicit_only", method="implicit_only"),
        Row(name="explicit_only", method="explicit_only"),
    ]
    rows += [
        Row(
            name=f"online_k{k}",
            method="online",
            overrides={"window": k},
            alias_of="implicit_only" if k == 1 else None,  # window 1 on the default preset is Implicit Only
        )
        for k in k_values
    ]
    rows += [
        Row(name="offline_all_frames", method="offline_all_frames"),
        Row(name="ln_adapt", method="ln_adapt", **SEED_INVARIANT),
        Row(name="tent", method="tent", overrides={"lr": 1e-4}),
        Row(name="self_train", method="self_train", overrides={"lr": 1e-3}),
        Row(name="online_shuffled", method="online", shuffle_frames=True),
        Row(name="online_k16_no_guard", method="online", overrides={"anchor": 0.0}),
        Row(name="release_preset", method="online", preset="release"),
        Row(name="default_preset", method="online", preset="default", alias_of="online_k16"),
    ]
    return rows


def rows_by_name(names: list[str] | None) -> list[Row]:
    """The standard rows, or the named subset (a row aliasing another brings that row along)."""
    rows = standard_rows()
    if not names:
        return rows
    known = {r.name: r for r in rows}
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"unknown rows {missing}; known: {sorted(known)}")
    wanted = set(names) | {known[n].alias_of for n in names if known[n].alias_of}
    return [r for r in rows if r.name in wanted]

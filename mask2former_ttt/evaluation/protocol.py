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


def standard_rows(k_values: tuple[int, ...] = (1, 4, 16, 64)) -> list[Row]:
    """The rows of the paper's comparison, on the project's default preset unless named otherwise."""
    rows = [
        Row(name="main_task_only", method="main_only"),
        Row(name="no_memory", method="no_memory"),
        Row(name="implicit_only", method="implicit_only"),
        Row(name="explicit_only", method="explicit_only"),
    ]
    rows += [Row(name=f"online_k{k}", method="online", overrides={"window": k}) for k in k_values]
    rows += [
        Row(name="offline_all_frames", method="offline_all_frames"),
        Row(name="ln_adapt", method="ln_adapt"),
        Row(name="tent", method="tent", overrides={"lr": 1e-4}),
        Row(name="self_train", method="self_train", overrides={"lr": 1e-3}),
        Row(name="online_shuffled", method="online", shuffle_frames=True),
        Row(name="release_preset", method="online", preset="release", seeds=1),
        Row(name="default_preset", method="online", preset="default"),
    ]
    return rows


def rows_by_name(names: list[str] | None) -> list[Row]:
    rows = standard_rows()
    if not names:
        return rows
    known = {r.name: r for r in rows}
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"unknown rows {missing}; known: {sorted(known)}")
    return [known[n] for n in names]

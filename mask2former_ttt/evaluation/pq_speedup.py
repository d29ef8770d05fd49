"""A faster, exactly equivalent area count for torchmetrics' PanopticQuality on CPU.

torchmetrics counts segment areas with `torch.unique(x, dim=0)` over every pixel's (category, instance) colour;
on CPU that row-wise unique costs ~30 ms for a 128×160 frame and runs three times per update, which made PQ
more expensive than the model itself in the benchmark. Packing each row into one int64 (mixed radix, which keeps
the lexicographic order) and taking a 1-D unique returns the same keys, in the same order, with the same counts.

`fast_color_areas()` is a context manager that swaps the helper in only while it is active; the metric's
matching, IoU and PQ arithmetic stay torchmetrics' own. tests/evaluation checks equality with the original.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torchmetrics.functional.detection import _panoptic_quality_common as pq_common

_ORIGINAL = pq_common._get_color_areas


def packed_color_areas(inputs: torch.Tensor) -> dict[tuple, torch.Tensor]:
    """inputs: (N, *colour_shape) integer colours, one per pixel -> {colour as nested tuple: pixel count}.

    Same result as torchmetrics' `_get_color_areas`; falls back to it when the packed key could overflow int64.
    """
    rows = inputs.reshape(inputs.shape[0], -1).long()
    if rows.shape[0] == 0:
        return _ORIGINAL(inputs)
    lows = rows.min(dim=0).values
    shifted = rows - lows
    spans = (shifted.max(dim=0).values + 1).tolist()
    capacity = 1
    for s in spans:
        capacity *= s
    if capacity >= 2**62:
        return _ORIGINAL(inputs)
    key = torch.zeros(rows.shape[0], dtype=torch.long, device=rows.device)
    for col, span in enumerate(spans):
        key = key * span + shifted[:, col]
    unique_keys, counts = torch.unique(key, sorted=True, return_counts=True)
    columns = []
    for span in reversed(spans):
        columns.append(unique_keys % span)
        unique_keys = unique_keys // span
    colours = (torch.stack(columns[::-1], dim=1) + lows).to(inputs.dtype).reshape(-1, *inputs.shape[1:])
    return dict(zip(pq_common._to_tuple(colours), counts))


@contextlib.contextmanager
def fast_color_areas() -> Iterator[None]:
    """Within the block, PanopticQuality counts areas with `packed_color_areas` (restored afterwards)."""
    pq_common._get_color_areas = packed_color_areas
    try:
        yield
    finally:
        pq_common._get_color_areas = _ORIGINAL

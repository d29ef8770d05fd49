"""The unit the guard's confidence score and the calibrated feature statistics are in, the training images' own
tail: 0 = the median training image, 1 = the 99.5 % most atypical."""

from __future__ import annotations

import torch

TAIL = 0.005  # the scores' unit: the training images' 99.5 % quantile


def tail_reference(values: torch.Tensor) -> tuple[float, float]:
    """values: (N,) a statistic over the training images -> its median and its 1 − `TAIL` quantile."""
    q = torch.quantile(values, torch.tensor([0.5, 1.0 - TAIL], dtype=values.dtype))
    return float(q[0]), float(q[1])


def in_tail_units(value: float, median: float, q_high: float) -> float:
    """`value` of a statistic in units of the training images' tail: (value − median) / (q_high − median)."""
    return (value - median) / max(q_high - median, 1e-9)

"""The worker layout filled in from the machine when the settings leave it unset: lanes per core up to four on
the CPU, one lane on CUDA, torch threads split between the lanes."""

from __future__ import annotations

import pytest
import torch

from server.worker import layout
from server.worker.layout import worker_layout

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(("cpus", "expected"), [(1, (1, None)), (3, (3, 1)), (4, (4, 1)), (5, (4, 1)), (64, (4, 16))])
def test_the_cpu_gets_a_lane_per_core_up_to_four_and_splits_the_cores_between_them(cpus, expected) -> None:
    assert worker_layout(CPU, None, None, cpus=cpus) == expected


def test_unset_cores_are_counted_on_the_machine_and_taken_as_one_when_unknown(monkeypatch) -> None:
    monkeypatch.setattr(layout.os, "cpu_count", lambda: 6)
    assert worker_layout(CPU, None, None) == (4, 1)
    assert worker_layout(CPU, 2, None) == (2, 3)
    monkeypatch.setattr(layout.os, "cpu_count", lambda: None)
    assert worker_layout(CPU, None, None) == (1, None)


def test_cuda_runs_one_lane_and_leaves_torch_threads_alone() -> None:
    assert worker_layout(CUDA, None, None, cpus=16) == (1, None)
    assert worker_layout(CUDA, 2, None, cpus=16) == (2, None)


"""How many worker lanes and torch threads the service runs by default (measured on the 2-core CPU machine:
docs/benchmark/bench_quick_cpu.json, README "Speed")."""

from __future__ import annotations

import os

import torch

MAX_AUTO_LANES = 4


def worker_layout(
    device: torch.device, lanes: int | None, threads: int | None, cpus: int | None = None
) -> tuple[int, int | None]:
    """(lanes, torch threads per lane) from the settings, filling what is unset.

    CPU: one lane per core (at most `MAX_AUTO_LANES`) with 1 torch thread each - on 2 cores, 4 streams got more
    frames through two single-threaded lanes than through one lane with 2 threads, and a single stream ran
    faster on 1 thread than on 2. CUDA: one lane (the device serializes kernels; more lanes only add replicas).
    Threads left unset with a single lane on the CPU keep torch's default.
    """
    cpus = cpus or os.cpu_count() or 1
    if lanes is None:
        lanes = 1 if device.type != "cpu" else max(1, min(cpus, MAX_AUTO_LANES))
    if threads is None and device.type == "cpu" and lanes > 1:
        threads = max(1, cpus // lanes)
    return lanes, threads


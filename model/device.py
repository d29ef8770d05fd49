"""Device selection: `auto` picks CUDA when present, else CPU; AMP/channels-last only where supported."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """Map `auto` | `cpu` | `cuda[:i]` to a torch.device, failing clearly if CUDA was asked for but is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def amp_supported(device: torch.device) -> bool:
    """fp16 autocast is used on CUDA only; CPU runs in fp32."""
    return device.type == "cuda"


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """fp16 autocast on CUDA when enabled, a no-op elsewhere."""
    if enabled and amp_supported(device):
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            yield
    else:
        yield

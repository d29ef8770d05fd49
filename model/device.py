"""Device selection and the GPU paths: `auto` picks CUDA when present, else CPU; bf16 (else fp16) autocast,
channels-last weights, pinned-memory copies and timing syncs only on CUDA."""

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
    """Mixed precision is used on CUDA only; CPU runs in fp32."""
    return device.type == "cuda"


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype on `device`: bf16 where the GPU supports it (no loss scaling needed), else fp16; None on
    the CPU."""
    if not amp_supported(device):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def needs_grad_scaler(device: torch.device, enabled: bool = True) -> bool:
    """Loss scaling is needed for fp16 autocast only (bf16 has fp32's range)."""
    return enabled and amp_dtype(device) == torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Autocast to `amp_dtype(device)` when enabled, a no-op on the CPU."""
    dtype = amp_dtype(device) if enabled else None
    if dtype is not None:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield
    else:
        yield


def to_device(frame: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU tensor to `device`; to CUDA through pinned memory without blocking the host."""
    if device.type != "cuda" or frame.device.type != "cpu":
        return frame.to(device)
    return frame.pin_memory().to(device, non_blocking=True)


def prepare_model(model: torch.nn.Module, device: torch.device, channels_last: bool = True) -> torch.nn.Module:
    """Move `model` to `device`; on CUDA its 4-D weights (patch embedding, g's convolutions) go channels-last."""
    model = model.to(device)
    if channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def synchronize(device: torch.device) -> None:
    """Wait for `device`'s queued kernels (a no-op on the CPU): only for timing what was asked to be timed."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

"""The GPU paths (bf16/fp16 autocast, pinned copies, channels-last, timing syncs, compile) and how they degrade on
the CPU. CUDA-only behaviour is skipped with a reason where no GPU is present."""

from __future__ import annotations

import pytest
import torch

import mask2former_ttt.ttt.adapter as adapter_module
from model.device import amp_dtype, autocast, needs_grad_scaler, prepare_model, to_device
from mask2former_ttt.ttt import build_adapter

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cpu_runs_in_fp32_without_a_scaler_or_pinned_copies():
    assert amp_dtype(CPU) is None and not needs_grad_scaler(CPU)
    with autocast(CPU):
        y = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert y.dtype == torch.float32
    frame = torch.zeros(3, 4, 4, dtype=torch.uint8)
    assert to_device(frame, CPU) is frame
    conv = torch.nn.Conv2d(4, 8, 3)
    assert prepare_model(conv, CPU).weight.is_contiguous()  # channels-last is for CUDA only


def test_stage_syncs_happen_only_when_timing_is_asked(tiny_model, frames, monkeypatch):
    calls: list[torch.device] = []
    monkeypatch.setattr(adapter_module, "synchronize", calls.append)
    a = build_adapter(tiny_model, "online", "full", batch_size=2, micro_batch=2, guard=None)
    a.step(frames[0])
    assert calls == []
    a.timing_sync = True
    a.step(frames[1])
    assert len(calls) >= 4  # forward, backward, optimizer, predict


@needs_cuda
def test_cuda_uses_bf16_where_supported_and_scales_fp16_only():
    cuda = torch.device("cuda")
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert amp_dtype(cuda) == want
    assert needs_grad_scaler(cuda) == (want == torch.float16)
    with autocast(cuda):
        y = torch.nn.Linear(4, 4).to(cuda)(torch.ones(2, 4, device=cuda))
    assert y.dtype == want
    frame = torch.zeros(3, 4, 4, dtype=torch.uint8)
    assert to_device(frame, cuda).device.type == "cuda"
    conv = prepare_model(torch.nn.Conv2d(4, 8, 3), cuda)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


@needs_cuda
def test_a_compiled_stream_matches_the_eager_one(tiny_model, frames):
    model = tiny_model.to("cuda")
    try:
        eager = build_adapter(model, "main_only")
        compiled = build_adapter(model, "main_only", compile=True)
        a, b = eager.step(frames[0]), compiled.step(frames[0])
        torch.testing.assert_close(a.mask_logits, b.mask_logits, atol=1e-2, rtol=1e-2)
    finally:
        tiny_model.to("cpu")

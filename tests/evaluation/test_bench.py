"""`m2f-ttt bench`: structure of its figures (no timing assertions: speed targets are read off its output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mask2former_ttt.evaluation.bench import STAGES, BenchRow, bench_frames, measure_memory, time_rows
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.frames import working_size


def test_rows_are_timed_interleaved_with_ratios_to_main_only(tiny_model) -> None:
    frames = bench_frames(4, size=(64, 96))
    assert len(frames) == 4 and frames[0].shape == (3, 64, 96) and frames[0].dtype == torch.uint8
    rows = (BenchRow("main_only", "main_only"), BenchRow("online", "online", "default",
                                                          {"guard": None, "batch_size": 2, "micro_batch": 2}))
    out = time_rows(tiny_model, frames, rows, warmup=1)
    assert out["main_only"].ratio == 1.0 and out["main_only"].frames == 3
    assert out["online"].ratio == pytest.approx(out["online"].s_per_frame / out["main_only"].s_per_frame, rel=1e-2)
    assert out["main_only"].steps_per_frame == 0 and out["online"].steps_per_frame == 1
    assert set(out["online"].stages_ms) == set(STAGES)
    assert out["online"].stages_ms["ttt_backward"] > 0 and out["main_only"].stages_ms["ttt_backward"] == 0
    assert out["online"].stages_ms["sample"] > 0 and out["main_only"].stages_ms["sample"] == 0


def test_memory_row_compares_the_estimate_with_the_streams_own_tensors(tiny_model) -> None:
    frames = bench_frames(2, size=(64, 96))
    row = measure_memory(tiny_model, "default", frames, streams=2, steps=2)
    assert row.streams == 2
    assert row.frame == working_size(64, 96, tiny_model.cfg.image_size)  # the estimate is for the frames it saw
    estimate = build_adapter(tiny_model, "online", "default").estimated_memory_bytes(row.frame)
    assert row.estimate_mb == round(estimate / 2**20, 2)
    assert row.state_mb == pytest.approx(row.estimate_mb, rel=0.01)  # windows filled: the steady state


def test_bench_command_writes_the_documented_json(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from server.cli import build_app

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(build_app(), ["bench", "--quick", "--no-server", "--frames", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert set(doc["rows"]) == {"main_only", "fast", "default", "full", "release", "online_k16"}
    assert all({"s_per_frame", "ratio"} <= set(r) for r in doc["rows"].values())
    assert {"tiny/default", "tiny/release"} <= set(doc["memory"])
    assert all({"estimate_mb", "measured_mb"} <= set(m) for m in doc["memory"].values())
    batching = doc["cross_stream"]  # 4 streams one by one vs one batched call, per round
    assert batching["streams"] == 4 and batching["rounds"] == 2
    assert batching["speedup"] == pytest.approx(batching["serial_s_per_round"] / batching["batched_s_per_round"], rel=0.01)
    assert "bench finished" in result.output and f"JSON: {out}" in result.output.replace("\n", "")


def test_every_nth_frame_rows_pay_for_their_steps_in_the_mean(tiny_model) -> None:
    frames = bench_frames(5, size=(64, 96))
    rows = (BenchRow("main_only", "main_only"),
            BenchRow("every_3", "online", "full", {"guard": None, "batch_size": 1, "micro_batch": 1,
                                                  "every_n_frames": 3}))
    out = time_rows(tiny_model, frames, rows, warmup=1)["every_3"]
    assert out.steps_per_frame == 0.25 and out.frames == 4  # timed frames 1-4: a step on frame 3 only
    # the mean stage split counts the one step frame (a median over the four frames would be 0)
    assert out.stages_ms["ttt_backward"] > 0


def test_bench_times_a_random_model_preset_at_a_given_size(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from server.cli import build_app

    out = tmp_path / "bench.json"
    args = ["bench", "--quick", "--no-server", "--frames", "2", "--model-preset", "tiny", "--image-size", "64",
            "--size", "64x96", "--json", str(out)]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["memory"]["tiny/default"]["frame"] == [64, 96]
    bad = CliRunner().invoke(build_app(), ["bench", "--quick", "--no-server", "--size", "64by96"])
    assert bad.exit_code != 0 and "HEIGHTxWIDTH" in bad.output

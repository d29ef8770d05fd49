"""Camera-rate replays: the virtual clock (drops, held results, pipelined and asynchronous steps, skipped steps),
the cost model, cache keys, the replay of a real adapter at a slow camera against the unlimited-time evaluation,
and `m2f-ttt evaluate --camera-fps`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from model.checkpoint import bundled_model_dir, load_checkpoint
from model.config import preset
from model.ymodel import YModel
from mask2former_ttt.data.video import SyntheticVideo, make_video_spec
from mask2former_ttt.cli import app
from mask2former_ttt.evaluation.benchmark import run_key
from mask2former_ttt.evaluation.camera_eval import (
    CameraSpec, ReplayCounts, async_row, camera_rows, evaluate_at_camera_rate, replay, row_schedule,
)
from mask2former_ttt.evaluation.camera_rate import CameraClock, FrameCosts, StepExecutor
from mask2former_ttt.evaluation.cost_model import CostModel, bench_row_of, load_cost_model
from mask2former_ttt.evaluation.metrics import SemanticMeter
from mask2former_ttt.evaluation.protocol import Row, rows_by_name
from mask2former_ttt.evaluation.video_eval import LabelledFrame, evaluate_video
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.frame_step import step_frame
from mask2former_ttt.ttt.stats import FrameWork, StepResult, StepStats, Theta0View

# P = 0.25 s, S = 0.5 s, a camera at 4 fps: frame i arrives at i / 4 s (all exact in binary floating point)
COSTS = FrameCosts(predict_s=0.25, step_s=0.5)


class FakeAdapter:
    """The adapter calls a replay makes, without a network. The weights are a version number (each step adds
    one); a prediction reports the version it ran with. The frame id is the image's pixel value."""

    def __init__(self, schedule: str) -> None:
        self.schedule = schedule  # "sync": the step is due before the prediction; "pipelined": left pending
        self.version = 0
        self.window: list[int] = []
        self.steps: list[tuple[int, list[int]]] = []  # (frame id of each step taken, the window it sampled)
        self.pending: tuple[StepStats, Theta0View] | None = None
        self.model = SimpleNamespace(cfg=preset("tiny"))

    def begin_frame(self, image: torch.Tensor) -> FrameWork:
        frame = int(image[0, 0, 0])
        self.window.append(frame)
        work = FrameWork(image, StepStats(frame_index=frame), due=self.schedule == "sync")
        if self.schedule == "pipelined":
            self.pending = (work.stats, work.view)
        return work

    def adapt(self, stats: StepStats, view: Theta0View | None = None) -> None:
        self.steps.append((stats.frame_index, list(self.window)))
        self.version += 1
        stats.steps_taken = 1

    def take_pending(self) -> tuple[StepStats, Theta0View] | None:
        owed, self.pending = self.pending, None
        return owed

    def prediction_tensors(self) -> dict[str, torch.Tensor]:
        return {"version": torch.tensor([float(self.version)])}

    def forward(self, x: torch.Tensor, mode: str, tensors: dict[str, torch.Tensor]) -> SimpleNamespace:
        v = tensors["version"]
        return SimpleNamespace(class_logits=v.view(1, 1, 1), mask_logits=v.view(1, 1, 1, 1))

    def predict(self, x: torch.Tensor, view: Theta0View | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.forward(x, "predict", self.prediction_tensors())
        return out.class_logits[0], out.mask_logits[0]

    def end_frame(self, work: FrameWork, class_logits: torch.Tensor, mask_logits: torch.Tensor,
                  predict_s: float) -> StepResult:
        return StepResult(class_logits, mask_logits, work.stats, (2, 2))


def label_of(adapter: FakeAdapter, result: StepResult, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (1, 1) map holding 100 × frame id + weights version of the prediction."""
    return torch.full((1, 1), 100 * int(image[0, 0, 0]) + int(result.class_logits[0, 0]))


def images(n: int) -> list[torch.Tensor]:
    return [torch.full((3, 2, 2), i, dtype=torch.uint8) for i in range(n)]


def run(adapter: FakeAdapter, schedule: str, n: int, fps: float = 4.0) -> tuple[list, ReplayCounts]:
    counts = ReplayCounts()
    shown = list(replay(adapter, images(n), [(1, 1)] * n, schedule, fps, COSTS, counts, label_of))  # type: ignore
    return [None if s.label_map is None else int(s.label_map[0, 0]) for s in shown], counts


def test_frames_arriving_while_busy_are_dropped_held_and_never_seen() -> None:
    """sync, a step on every served frame: frame 0 is delivered at 0.75 s (S + P), so frames 1 and 2 (0.25 s,
    0.5 s) are dropped before any delivery (unscored); frame 3 (0.75 s) is served (its step saw frames 0 and 3
    only) and delivered at 1.5 s, so frames 4 and 5 are dropped and shown frame 0's result."""
    adapter = FakeAdapter("sync")
    shown, counts = run(adapter, "sync", 6)
    assert shown == [1, None, None, 302, 1, 1]  # 100 × frame + version: frame 0 after 1 step, frame 3 after 2
    assert adapter.window == [0, 3]
    assert adapter.steps == [(0, [0]), (3, [0, 3])]
    assert (counts.served, counts.steps_taken, counts.steps_skipped) == (2, 2, 0)


def test_pipelined_delivers_before_its_step_where_sync_delivers_after() -> None:
    """The same costs pipelined: frame 0 is delivered at P = 0.25 s (sync: 0.75 s), so dropped frames 1 and 2 show
    it; frame 0's step runs after the delivery and frame 3 is predicted with it. The last frame's step is not taken."""
    sync, pipelined = CameraClock(4.0, COSTS), CameraClock(4.0, COSTS)
    assert sync.serve(0, steps_before=1) == 0.75 and pipelined.serve(0, steps_after=1) == 0.25
    assert sync.busy_until == pipelined.busy_until == 0.75
    adapter = FakeAdapter("pipelined")
    shown, counts = run(adapter, "pipelined", 4)
    assert shown == [0, 0, 0, 301]
    assert adapter.steps == [(0, [0])]  # frame 3 is the last: the stream ends with its delivery
    assert counts.served == 2


def test_async_never_drops_for_a_step_skips_waiting_steps_and_publishes_weights_at_the_finish() -> None:
    """async, S = 1 s: every frame is served (the predictor is busy P = 0.25 s per frame). Frame 0's step starts at
    its delivery (0.25 s, before frame 1 arrives, so its window is [0]) and finishes at 1.25 s; the steps owed
    meanwhile (frames 1, 2, 3) replace one another, so frame 3's starts at 1.25 s on the window [0..4] and frames 1
    and 2 are skipped; then 4 and 5 are replaced by 6, still waiting when the stream ends. Predictions starting
    before 1.25 s run version 0, later ones version 1 until frame 3's step finishes at 2.25 s, though the adapter
    holds version 2 from 1.25 s on."""
    adapter = FakeAdapter("pipelined")
    costs = FrameCosts(predict_s=0.25, step_s=1.0)
    counts = ReplayCounts()
    out = list(replay(adapter, images(8), [(1, 1)] * 8, "async", 4.0, costs, counts, label_of))  # type: ignore
    assert all(s.served for s in out)
    assert [int(s.label_map[0, 0]) % 100 for s in out] == [0, 0, 0, 0, 0, 1, 1, 1]  # type: ignore[index]
    assert adapter.steps == [(0, [0]), (3, [0, 1, 2, 3, 4])]
    assert adapter.version == 2
    assert (counts.served, counts.steps_started, counts.steps_skipped) == (8, 2, 4)


def test_async_publishes_each_step_at_its_finish_and_steps_see_only_delivered_frames() -> None:
    """async, S = 0.625 s: frame 0's step runs 0.25-0.875 s. Frame 2's step (frame 1's was replaced) starts at
    0.875 s, during frame 3's prediction (0.75-1.0 s): its window lacks frame 3, and frame 3 still predicts with
    version 0 although the adapter already holds version 2. Frame 4's step starts at 1.5 s, when frame 5 has been
    delivered. Predictions read version 1 from 0.875 s, version 2 from 1.5 s (frame 2's step's finish)."""
    adapter = FakeAdapter("pipelined")
    counts = ReplayCounts()
    costs = FrameCosts(predict_s=0.25, step_s=0.625)
    out = list(replay(adapter, images(7), [(1, 1)] * 7, "async", 4.0, costs, counts, label_of))  # type: ignore
    assert [int(s.label_map[0, 0]) % 100 for s in out] == [0, 0, 0, 0, 1, 1, 2]  # type: ignore[index]
    assert adapter.steps == [(0, [0]), (2, [0, 1, 2]), (4, [0, 1, 2, 3, 4, 5])]
    assert (counts.steps_started, counts.steps_skipped) == (3, 2)


def test_step_executor_keeps_only_the_newest_waiting_step() -> None:
    started: list[tuple[str, float]] = []

    def start(step: str, at: float) -> int:
        started.append((step, at))
        return 1

    ex: StepExecutor[str] = StepExecutor(step_s=1.0)
    ex.offer("a", 0.0, start)
    ex.advance(0.0, start)
    for name, at in (("b", 0.2), ("c", 0.4), ("d", 0.9)):
        ex.offer(name, at, start)
    ex.advance(1.0, start, before=True)
    assert started == [("a", 0.0)] and ex.free_at == 1.0
    ex.advance(1.0, start)
    assert started == [("a", 0.0), ("d", 1.0)] and ex.skipped == 2


@pytest.fixture(scope="module")
def model() -> YModel:
    """The bundled model: trained, so a TTT step changes its label maps."""
    return load_checkpoint(bundled_model_dir())


@pytest.fixture(scope="module")
def labelled() -> list[LabelledFrame]:
    """8 frames (3, 96, 128) uint8 of a synthetic `noise` video with their labels."""
    video = SyntheticVideo(make_video_spec("camera", "test", "noise", world_seed=0, n_frames=8, size=(96, 128)))
    return [
        LabelledFrame(torch.from_numpy(f.image).permute(2, 0, 1).contiguous(),
                      torch.from_numpy(f.semantic.astype(np.int64)), torch.from_numpy(f.instance.astype(np.int64)))
        for f in video
    ]


def fake_cost_model(main_s: float = 0.02, step_s: float = 0.05) -> CostModel:
    rows = {"main_only": (main_s, 0.0), "fast": (main_s + step_s / 3, 1 / 3), "default": (main_s + step_s, 1.0),
            "full": (main_s + step_s, 1.0)}
    return CostModel("fake.json", rows, "fakedigest")


@pytest.mark.parametrize("name", ["default_preset", "fast_preset", "full_preset", "main_task_only"])
def test_a_camera_far_slower_than_p_plus_s_drops_nothing_and_scores_as_unlimited_time(
    model: YModel, labelled: list[LabelledFrame], name: str
) -> None:
    """At 1 fps against P + S = 0.07 s every frame is served and the replay is the unlimited-time evaluation of the
    same row: identical per-frame mIoU and confusion. The asynchronous default equals the pipelined default then."""
    row = rows_by_name([name])[0]
    ref = evaluate_video(model, labelled, row, 0, "v", panoptic=False, instance=False)
    camera = CameraSpec(1.0, fake_cost_model())
    rows = [row] + ([async_row()] if name == "default_preset" else [])
    for r in rows:
        got = evaluate_at_camera_rate(model, labelled, r, 0, "v", camera)
        assert got.camera is not None
        assert got.camera["delivered_fraction"] == 1.0 and got.camera["steps_skipped"] == 0
        assert got.per_frame_miou == ref.per_frame_miou and got.confusion == ref.confusion
        assert got.miou == ref.miou


def test_a_fast_camera_drops_frames_and_scores_them_with_held_results(
    model: YModel, labelled: list[LabelledFrame]
) -> None:
    """30 fps, P = 0.04 s, S = 0.05 s. main_task_only (no steps) serves frames 0, 2, 4, 6 (at 0, 1/15, 2/15, 1/5 s;
    delivered 0.04 s later); frame 1 arrives before frame 0's result (unscored); frames 3, 5, 7 arrive just before
    the result of the frame before them, so they are scored with the label maps of frames 0, 2, 4. The
    asynchronous default serves the same frames while it takes steps; the pipelined default, busy P + S after a
    step, fewer."""
    camera = CameraSpec(30.0, fake_cost_model(main_s=0.04, step_s=0.05))
    main = evaluate_at_camera_rate(model, labelled, rows_by_name(["main_task_only"])[0], 0, "v", camera)
    pipelined = evaluate_at_camera_rate(model, labelled, rows_by_name(["default_preset"])[0], 0, "v", camera)
    asynchronous = evaluate_at_camera_rate(model, labelled, async_row(), 0, "v", camera)
    assert main.camera["delivered"] == asynchronous.camera["delivered"] == 4  # type: ignore[index]
    assert asynchronous.camera["steps_taken"] > 0  # type: ignore[index]
    assert pipelined.camera["steps_taken"] > 0 and pipelined.camera["delivered"] < 4  # type: ignore[index]
    for score in (main, pipelined, asynchronous):
        assert math.isnan(score.per_frame_miou[1]) and score.camera["unscored"] == 1  # type: ignore[index]
    k = model.cfg.num_classes
    for held in (0, 2, 4):
        shown = step_frame(build_adapter(model, "main_only"), labelled[held].image, "semantic", (96, 128))
        label_map = shown.result.label_map  # type: ignore[union-attr]
        assert main.per_frame_miou[held + 3] == SemanticMeter(k).update(label_map, labelled[held + 3].semantic)


def test_cost_model_reads_p_and_s_from_the_bench_json(tmp_path: Path) -> None:
    doc = {"rows": {"main_only": {"s_per_frame": 0.02, "steps_per_frame": 0.0},
                    "default": {"s_per_frame": 0.08, "steps_per_frame": 0.5}},
           "machine": {"threads": 1}, "measured_at": {"commit": "abc"}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    model = load_cost_model(path)
    assert model.costs("default").predict_s == 0.02 and model.costs("default").step_s == pytest.approx(0.12)
    assert model.costs("main_only") == FrameCosts(0.02, 0.0)
    assert "(80.00 − 20.00 ms) / 0.5 steps per frame = 120.00 ms" in model.describe("default")
    doc["rows"]["default"]["s_per_frame"] = 0.09
    path.write_text(json.dumps(doc))
    assert load_cost_model(path).digest != model.digest
    with pytest.raises(ValueError, match="no bench row 'fast'"):
        model.costs("fast")


def test_camera_rows_map_to_bench_rows_and_schedules() -> None:
    rows = {r.name: r for r in camera_rows()}
    assert list(rows) == ["main_task_only", "fast_preset", "default_preset", "default_async"]
    assert {n: bench_row_of(r) for n, r in rows.items()} == {
        "main_task_only": "main_only", "fast_preset": "fast", "default_preset": "default", "default_async": "default"}
    assert {n: row_schedule(r) for n, r in rows.items()} == {
        "main_task_only": "sync", "fast_preset": "pipelined", "default_preset": "pipelined", "default_async": "async"}
    with pytest.raises(ValueError, match="no measured cost"):
        bench_row_of(Row(name="x", method="online", preset="default", overrides={"window": 4}))


def test_camera_scores_are_cached_apart_from_unlimited_ones_and_by_fps_and_cost_model(tmp_path: Path) -> None:
    row = rows_by_name(["default_preset"])[0]
    keys = {
        run_key(tmp_path, row, None),
        run_key(tmp_path, row, None, CameraSpec(10.0, fake_cost_model())),
        run_key(tmp_path, row, None, CameraSpec(20.0, fake_cost_model())),
        run_key(tmp_path, row, None, CameraSpec(10.0, CostModel("other.json", {}, "otherdigest"))),
        run_key(tmp_path, async_row(), None, CameraSpec(10.0, fake_cost_model())),
    }
    assert len(keys) == 5


def test_evaluate_camera_fps_prints_the_table_with_its_cost_model(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runner = CliRunner()
    gen = runner.invoke(app, ["generate", "--root", str(data), "--train-stills", "0", "--frames", "4",
                              "--test-worlds", "1", "--val-worlds", "1", "--workers", "1"])
    assert gen.exit_code == 0, gen.output
    result = runner.invoke(app, ["evaluate", "--data-root", str(data), "--family", "noise", "--seeds", "1",
                                 "--workers", "1", "--threads", "1", "--out-dir", str(tmp_path / "out"),
                                 "--camera-fps", "30"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.output, result.exception)
    bench = load_cost_model()
    assert f"Camera at 30 fps. Cost model: {bench.path} (digest {bench.digest}" in result.output
    assert "- default_async: default: P = main_only.s_per_frame" in result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("| ")]
    assert [ln.split(" | ")[0][2:] for ln in lines[2:6]] == ["main_task_only", "fast_preset", "default_preset",
                                                              "default_async"]
    assert [ln.split(" | ")[1] for ln in lines[2:6]] == ["sync", "pipelined", "pipelined", "async"]
    summary = json.loads((tmp_path / "out" / "camera_30fps" / "results.json").read_text())
    assert summary["camera"]["rows"]["default_async"]["frames"] == 4
    jobs = sorted(p.name for p in (tmp_path / "out" / "jobs").iterdir())
    assert len(jobs) == 4

"""`m2f-ttt segment FILE` interrupted by Ctrl-C (a KeyboardInterrupt raised inside the frame loop): exit status 130
(the file was left incomplete), and the output files are finished with the frames done so far — the overlay MP4
decodes, results.jsonl / panoptic.json / run.json describe exactly those frames."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

import mask2former_ttt.segment as segment_module
from mask2former_ttt.cli import app
from tests.server.svc_helpers import build_tiny_checkpoint, make_clip

pytestmark = pytest.mark.e2e
DONE = 2  # the 3rd frame is interrupted


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("interrupt") / "ckpt")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=6, width=96)


@pytest.fixture
def ctrl_c_on_third_frame(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace segment's `step_frame` with the real one that raises KeyboardInterrupt on its 3rd call."""
    real = segment_module.step_frame
    calls: list[int] = []

    def step_frame(*args, **kwargs):
        calls.append(1)
        if len(calls) == DONE + 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(segment_module, "step_frame", step_frame)
    return calls


@pytest.mark.parametrize("task", ["panoptic", "semantic"])
def test_ctrl_c_on_a_file_exits_130_and_finishes_the_outputs(
    tmp_path: Path, ckpt: Path, clip: Path, ctrl_c_on_third_frame: list[int], task: str
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["segment", str(clip), "-o", str(out), "--model", str(ckpt), "--device", "cpu", "--task", task,
              "--no-progress"],
    )
    assert result.exit_code == 130, (result.exit_code, result.exception, result.output)
    assert len(ctrl_c_on_third_frame) == DONE + 1  # stopped at the interrupt: no frame after it was read
    assert f"interrupted after {DONE} frames" in result.output, result.output

    with av.open(str(out / "overlay.mp4")) as container:  # playable: the container was finalised
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == DONE

    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["frame_index"] for r in records] == list(range(DONE))
    assert all((out / r["png"]).is_file() for r in records)
    assert sorted(p.name for p in (out / task).glob("*.png")) == sorted(Path(r["png"]).name for r in records)
    if task == "panoptic":
        doc = json.loads((out / "panoptic.json").read_text())
        assert len(doc["images"]) == len(doc["annotations"]) == DONE

    run = json.loads((out / "run.json").read_text())
    assert run["interrupted"] is True and run["frames"] == DONE and run["kind"] == "file"

"""`m2f-ttt prepare` end to end: a tiny Hugging Face Mask2Former + a real clip -> a checkpoint whose g is trained
and guard calibrated, which the service then adapts with; a converted model (g untrained) is served `main_only`
unless a method is set, and says how to prepare it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from model.checkpoint import load_checkpoint, load_config
from server.wire.inbound import pack_frame
from server.worker.device_worker import default_adapter_factory
from tests.prepare.helpers import bikes, cli, tiny_hf_dir
from tests.server.svc_helpers import jpeg, make_client


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_hf_dir(tmp_path_factory.mktemp("hf") / "m2f-tiny-coco-panoptic")


def _clip_frames(n: int, brightness: float) -> list[np.ndarray]:
    """n frames of the bikes clip scaled in brightness (dusk: a shift the guard's pixel statistics see)."""
    from mask2former_ttt.video_io import iter_frames

    return [(f.rgb * brightness).astype(np.uint8) for f in iter_frames(bikes(), max_width=320, max_frames=n)]


def _stream(client, frames: list[np.ndarray], **start) -> list[dict]:
    with client.websocket_connect("/v1/streams/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "task": "semantic", "policy": "block", **start}))
        assert ws.receive_json()["type"] == "started"
        for i, f in enumerate(frames):
            ws.send_bytes(pack_frame(jpeg(f), frame_id=i))
        results = [ws.receive_json() for _ in frames]
        ws.send_text(json.dumps({"type": "stop"}))
    return results


def test_prepare_makes_a_hugging_face_model_ttt_ready(hf_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ready"
    result = cli("prepare", hf_dir, bikes(), "-o", out, "--steps", "20", "--max-frames", "16", "--no-progress",
                 "--checkpoint-every", "10", "--threads", "1")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "g trained, guard calibrated" in result.stdout
    report = json.loads((out / "prepare.json").read_text())
    assert report["steps"] == 20 and report["frames"] == {"total": 16, "train": 15, "held_out": 1}
    assert report["recon_loss_after"] < report["recon_loss_before"], report
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "prepare.json"]  # no training state
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready"]  # no work directory left beside it
    cfg = load_config(out)
    assert cfg.recon_trained is True and cfg.guard_calibrated and cfg.task == "panoptic"
    assert load_checkpoint(out).cfg.recon_loss_reference == pytest.approx(report["recon_loss_after"])

    with make_client(tmp_path / "svc", out, factory=default_adapter_factory) as client:
        info = client.get("/v1/info").json()
        assert info["model"]["recon_trained"] is True and info["model"]["guard_calibrated"] is True
        assert info["defaults"]["method"] == "online"
        same = _stream(client, _clip_frames(3, brightness=1.0))  # the server's default method and preset
        dusk = _stream(client, _clip_frames(4, brightness=0.35))
    # footage like the calibration's is served by θ0 (the guard shut); shifted footage adapts through the trained g
    assert all(r["ttt"]["step_scale"] == 0 for r in same[1:]), [r["ttt"] for r in same]
    assert max(r["ttt"]["steps_taken"] for r in dusk) >= 1, [r["ttt"] for r in dusk]


def test_a_converted_model_is_served_main_only_unless_a_method_is_set(
    hf_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    converted = tmp_path / "converted"
    result = cli("convert", hf_dir, converted)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert f"m2f-ttt prepare {converted}" in result.stdout  # the conversion says what to do next
    assert load_config(converted).recon_trained is False
    with caplog.at_level(logging.INFO, logger="server.app"):
        with make_client(tmp_path / "a", converted, factory=default_adapter_factory) as client:
            info = client.get("/v1/info").json()
    assert info["model"]["recon_trained"] is False and info["model"]["guard_calibrated"] is False
    assert info["defaults"]["method"] == "main_only"
    ready = next(r for r in caplog.records if r.getMessage() == "service ready").kv
    assert (ready["g"], ready["guard"], ready["method"]) == ("untrained", "not calibrated", "main_only")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "server.app"]
    assert len(warnings) == 1 and "m2f-ttt prepare MODEL FOOTAGE" in warnings[0], warnings
    with make_client(tmp_path / "b", converted, factory=default_adapter_factory, ttt_method="online") as client:
        assert client.get("/v1/info").json()["defaults"]["method"] == "online"  # the operator's choice stands
    static = Path(__file__).resolve().parents[2] / "server" / "static"  # the page's info line reads the same flags
    assert 'id="model-state"' in (static / "index.html").read_text()
    page = (static / "app.js").read_text()
    assert "info.model.recon_trained" in page and "info.model.guard_calibrated" in page and "m2f-ttt prepare" in page


def test_segment_runs_main_only_on_a_converted_model(hf_dir: Path, tmp_path: Path) -> None:
    converted = tmp_path / "converted"
    assert cli("convert", hf_dir, converted).exit_code == 0
    result = cli("segment", bikes(), "-o", tmp_path / "seg", "--model", converted, "--max-frames", "2",
                 "--task", "semantic", "--no-progress", "--max-width", "160", "--threads", "1")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert json.loads((tmp_path / "seg" / "run.json").read_text())["method"] == "main_only"
    explicit = cli("segment", bikes(), "-o", tmp_path / "seg2", "--model", converted, "--max-frames", "2",
                   "--task", "semantic", "--no-progress", "--max-width", "160", "--threads", "1", "--method", "online")
    assert explicit.exit_code == 0 and json.loads((tmp_path / "seg2" / "run.json").read_text())["method"] == "online"


def test_convert_warns_when_a_panoptic_model_has_no_thing_ids(tmp_path: Path) -> None:
    hf = tiny_hf_dir(tmp_path / "m2f-tiny-coco-panoptic", thing_ids=None)
    result = cli("convert", hf, tmp_path / "out")
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if "thing_class_ids" in line]
    assert len(lines) == 1 and "no instances" in lines[0] and "--overrides" in lines[0], result.stderr


def test_calibrate_stores_the_guard_references_from_footage(hf_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    converted = tmp_path / "converted"
    assert cli("convert", hf_dir, converted).exit_code == 0
    weights = load_file(str(converted / "model.safetensors"))
    assert not load_config(converted).guard_calibrated
    result = cli("calibrate", "--model-dir", converted, bikes(), "--max-frames", "4")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    cfg = load_config(converted)
    assert cfg.guard_calibrated and cfg.recon_trained is False  # references only: g is still untrained
    after = load_file(str(converted / "model.safetensors"))
    assert all((after[k] == v).all() for k, v in weights.items())  # weights untouched


def test_prepare_takes_a_detectron2_release_file_as_convert_does(tmp_path: Path) -> None:
    import pickle

    from model.config import tiny_config
    from tests.evaluation.test_cli_commands import _d2_state
    from tests.random_model import random_model

    pkl = tmp_path / "ttt_tiny_semantic_baseline.pkl"  # a TTT-MAE release-style file: f, h and recon_head
    with pkl.open("wb") as fh:
        pickle.dump({"model": _d2_state(random_model(tiny_config(), seed=3))}, fh)
    out = tmp_path / "ready"
    small = '{"image_size": 64, "max_size": null}'  # 19 classes would otherwise get the KITTI recipe's 1024
    result = cli("prepare", pkl, bikes(), "-o", out, "--model-preset", "tiny", "--overrides", small, "--steps", "2",
                 "--max-frames", "6", "--no-progress", "--threads", "1")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    cfg = load_config(out)
    assert cfg.recon_trained is True and cfg.guard_calibrated and (cfg.task, cfg.image_size) == ("semantic", 64)
    refused = cli("prepare", pkl, bikes(), "-o", tmp_path / "x", "--model-preset", "huge")
    assert refused.exit_code == 2 and "unknown model preset" in refused.stderr and not (tmp_path / "x").exists()

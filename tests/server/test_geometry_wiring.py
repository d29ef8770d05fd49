"""Boxes and polygons reach every output: WebSocket results (`polygons` encoding), upload jobs' results.jsonl (form
field `encodings`) and `m2f-ttt segment`'s results.jsonl (`encodings=`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from scipy.ndimage import binary_fill_holes

from mask2former_ttt.outputs import png_decode, rle_decode
from mask2former_ttt.segment import SegmentError, segment_video
from server.wire.inbound import pack_frame
from tests.server.svc_helpers import jpeg, make_client, make_clip, rgb_frame
from tests.server.test_api_jobs import upload, wait_job


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=3, width=96)


def coco_bbox(mask: np.ndarray) -> list[float]:
    return mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))).tolist()


def check_polygons(polygons: list[list[list[float]]], masks: np.ndarray) -> None:
    """Each mask's polygons rasterise (pycocotools) to the mask with its holes filled."""
    assert len(polygons) == len(masks)
    h, w = masks.shape[1:]
    for polys, mask in zip(polygons, masks, strict=True):
        drawn = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w))).astype(bool)
        filled = binary_fill_holes(mask)
        assert (drawn & filled).sum() / (drawn | filled).sum() > 0.9


@pytest.mark.parametrize("task", ["instance", "panoptic"])
def test_ws_results_carry_boxes_and_requested_polygons(tmp_path: Path, tiny_checkpoint: Path, task: str) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client, client.websocket_connect("/v1/streams/ws") as ws:
        ws.send_text(json.dumps({"type": "start", "task": task, "policy": "block", "score_threshold": 0,
                                 "min_area": 0, "encodings": ["rle", "polygons"]}))
        assert ws.receive_json()["encodings"] == ["rle", "polygons"]
        ws.send_bytes(pack_frame(jpeg(rgb_frame(40, size=(64, 80))), frame_id=0))
        result = ws.receive_json()
    masks = rle_decode(result["masks"]["rle"])
    assert len(result["segments_info"]) == len(masks) > 0, result["segments_info"]
    assert [s["bbox"] for s in result["segments_info"]] == [coco_bbox(m) for m in masks]
    check_polygons(result["masks"]["polygons"], masks)


def test_a_jobs_results_jsonl_carries_the_encodings_it_asked_for(tmp_path: Path, tiny_checkpoint: Path,
                                                                   clip: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client:
        job = upload(client, clip.read_bytes(), task="instance", score_threshold="0", min_area="0",
                     encodings="polygons").json()
        assert job["encodings"] == ["polygons"]
        assert wait_job(client, job["id"])["state"] == "succeeded"
        lines = client.get(f"/v1/jobs/{job['id']}/results/results.jsonl").text.splitlines()
        plain = upload(client, clip.read_bytes(), task="instance").json()
        assert wait_job(client, plain["id"])["state"] == "succeeded"
        plain_lines = client.get(f"/v1/jobs/{plain['id']}/results/results.jsonl").text.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3 and sum(len(r["segments_info"]) for r in records) > 0
    for record in records:
        masks = rle_decode(record["rle"]).reshape(-1, record["height"], record["width"])
        assert [s["bbox"] for s in record["segments_info"]] == [coco_bbox(m) for m in masks]
        check_polygons(record["polygons"], masks)
    assert all("polygons" not in json.loads(line) for line in plain_lines)


def test_a_job_with_an_unknown_encoding_is_refused(tmp_path: Path, tiny_checkpoint: Path, clip: Path) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client:
        r = upload(client, clip.read_bytes(), encodings="polygons, gif")
        assert r.status_code == 422
        assert r.json()["detail"] == (
            "form field 'encodings': unknown results.jsonl encodings ['gif']; choose from ['rle', 'polygons']"
        )
        assert client.get("/v1/jobs").json()["jobs"] == []


def test_segment_writes_the_polygons_it_is_asked_for(tmp_path: Path, tiny_checkpoint: Path, clip: Path) -> None:
    out = tmp_path / "out"
    segment_video(clip, out, task="semantic", model_dir=tiny_checkpoint, device="cpu", progress=False,
                  encodings=["polygons"])
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        labels = png_decode((out / record["png"]).read_bytes())
        assert record["segments_info"]  # a label map always has a class
        check_polygons(record["polygons"], np.stack([labels == s["id"] for s in record["segments_info"]]))
    with pytest.raises(SegmentError, match=r"unknown results.jsonl encodings \['png'\]"):
        segment_video(clip, tmp_path / "other", model_dir=tiny_checkpoint, encodings=["png"], progress=False)

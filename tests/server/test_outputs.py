"""mask2former_ttt.outputs: RLE, PNG maps, panoptic RGB ids, overlays, MP4 writer, COCO-panoptic JSON."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from mask2former_ttt.outputs import (
    Mp4Writer,
    VideoResultWriter,
    class_palette,
    encode_masks,
    id_to_rgb,
    instance_id_map,
    label_map_png,
    overlay,
    panoptic_png,
    png_decode,
    rgb_to_id,
    rle_decode,
    rle_encode,
    segments_info,
)
from mask2former_ttt.outputs.masks import segment_bboxes
from model.postprocess import InstanceResult, PanopticResult, SemanticResult


def label_map(h: int = 20, w: int = 30) -> torch.Tensor:
    lm = torch.zeros(h, w, dtype=torch.int64)
    lm[:, 10:] = 3
    lm[5:10, 20:25] = 7
    return lm


def panoptic() -> PanopticResult:
    ids = torch.zeros(20, 30, dtype=torch.int32)
    ids[:, :15] = 1
    ids[2:6, 20:28] = 2
    infos = [
        {"id": 1, "category_id": 0, "isthing": False, "score": 0.9, "area": 300},
        {"id": 2, "category_id": 12, "isthing": True, "score": 0.8, "area": 32},
    ]
    return PanopticResult(ids, infos)


def instances() -> InstanceResult:
    masks = torch.zeros(2, 20, 30, dtype=torch.bool)
    masks[0, :10, :10] = True
    masks[1, 5:15, 5:15] = True
    return InstanceResult(torch.tensor([12, 13]), torch.tensor([0.9, 0.7]), masks)


def test_rle_round_trip() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((3, 17, 23)) > 0.5
    rles = rle_encode(masks)
    assert all(isinstance(r["counts"], str) and r["size"] == [17, 23] for r in rles)
    assert np.array_equal(rle_decode(json.loads(json.dumps(rles))), masks)
    assert rle_encode(np.zeros((0, 4, 4), bool)) == []


def test_label_map_png_is_8_or_16_bit() -> None:
    lm = label_map()
    assert np.array_equal(png_decode(label_map_png(lm)), lm.numpy())
    assert png_decode(label_map_png(lm)).dtype == np.uint8
    big = np.full((4, 4), 300, dtype=np.int64)
    out = png_decode(label_map_png(big))
    assert out.dtype == np.uint16 and int(out[0, 0]) == 300


def test_panoptic_rgb_encoding_matches_coco() -> None:
    ids = np.array([[0, 1, 256], [65536 + 2, 70000, 5]])
    rgb = id_to_rgb(ids)
    assert rgb[0, 2].tolist() == [0, 1, 0] and rgb[1, 0].tolist() == [2, 0, 1]
    assert np.array_equal(rgb_to_id(rgb), ids)
    assert np.array_equal(rgb_to_id(png_decode(panoptic_png(ids))), ids)


def test_panoptic_id_codec_is_one_range_checked_definition() -> None:
    from mask2former_ttt.data import formats

    assert id_to_rgb is formats.id_to_rgb and rgb_to_id is formats.rgb_to_id  # results and datasets share one codec
    top = 2**24 - 1
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 12_345_678, top]], dtype=np.int64)
    assert np.array_equal(rgb_to_id(id_to_rgb(ids)), ids)
    assert id_to_rgb(ids)[1, 3].tolist() == [255, 255, 255]
    assert np.array_equal(rgb_to_id(id_to_rgb(torch.from_numpy(ids))), ids)  # tensors too
    for bad, shown in ((2**24, r"\[0, 16777216\]"), (-1, r"\[-1, 1\]")):
        with pytest.raises(ValueError, match=r"\[0, 2\^24\).*got ids in " + shown):
            id_to_rgb(np.array([[0, 1], [bad, 1]]))
    assert id_to_rgb(np.zeros((0, 3), dtype=np.int64)).shape == (0, 3, 3)


def test_segment_bboxes() -> None:
    boxes = segment_bboxes(panoptic().id_map, 4)
    assert boxes[1].tolist() == [0, 0, 15, 20]
    assert boxes[2].tolist() == [20, 2, 8, 4]
    assert boxes[3].tolist() == [0, 0, 0, 0]


def test_segments_info_and_encodings_per_task() -> None:
    names = [f"c{i}" for i in range(19)]
    sem = SemanticResult(label_map())
    segs = segments_info("semantic", sem, names)
    assert [(s["id"], s["name"], s["area"]) for s in segs] == [(0, "c0", 200), (3, "c3", 375), (7, "c7", 25)]
    enc = encode_masks("semantic", sem, ["png", "rle"], segs)
    assert np.array_equal(rle_decode(enc["rle"])[1], (label_map() == 3).numpy())

    inst = instances()
    segs = segments_info("instance", inst, names)
    assert [s["id"] for s in segs] == [1, 2] and segs[0]["area"] == 100
    enc = encode_masks(
        "instance", inst, ["png", "rle", "overlay"], segs, image=np.zeros((40, 60, 3), np.uint8), num_classes=19
    )
    id_png = png_decode(enc["png"])
    assert id_png[7, 7] == 1 and id_png[12, 12] == 2 and id_png[19, 29] == 0  # best instance wins overlaps
    assert enc["overlay"][:3] == b"\xff\xd8\xff"

    pan = panoptic()
    segs = segments_info("panoptic", pan, names)
    assert segs[1]["name"] == "c12" and segs[1]["isthing"]
    enc = encode_masks("panoptic", pan, ["png", "rle"], segs)
    assert np.array_equal(rgb_to_id(png_decode(enc["png"])), pan.id_map.numpy())
    assert rle_decode(enc["rle"]).sum(axis=(1, 2)).tolist() == [300, 32]
    with pytest.raises(ValueError, match="unknown encodings"):
        encode_masks("panoptic", pan, ["gif"], segs)


def test_overlay_blends_only_painted_pixels_and_resizes_the_frame() -> None:
    image = np.full((40, 60, 3), 200, dtype=np.uint8)
    out = overlay(image, "panoptic", panoptic(), num_classes=19, alpha=0.5, legend="never")
    assert out.shape == (20, 30, 3)
    assert out[15, 25].tolist() == [200, 200, 200]  # void stays untouched
    stuff = class_palette(19)[0].astype(int)
    assert np.allclose(out[10, 5], (200 + stuff) / 2, atol=1)
    sem = overlay(image[:20, :30], "semantic", SemanticResult(label_map()), 19)
    assert not np.array_equal(sem, image[:20, :30])
    assert instance_id_map(torch.zeros(0, 5, 5, dtype=torch.bool)).shape == (5, 5)


def test_mp4_writer_makes_h264_yuv420p(tmp_path: Path) -> None:
    path = tmp_path / "x.mp4"
    with Mp4Writer(path, fps=10) as w:
        for i in range(7):
            w.write(np.full((31, 41, 3), i * 30, dtype=np.uint8))  # odd size: cropped to even
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        frames = list(c.decode(s))
    assert len(frames) == 7 and (frames[0].width, frames[0].height) == (40, 30)


def test_video_result_writer_panoptic(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(19)]
    w = VideoResultWriter(tmp_path, "panoptic", names, [12], fps=5)
    for i in range(3):
        w.write(i, np.zeros((20, 30, 3), np.uint8), panoptic(), pts_s=i / 5, extra={"loss": 0.5})
    files = w.close()
    assert files == ["results.jsonl", "overlay.mp4", "panoptic.json", "panoptic/"]
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [x["frame_index"] for x in lines] == [0, 1, 2] and lines[0]["png"] == "panoptic/000000.png"
    doc = json.loads((tmp_path / "panoptic.json").read_text())
    assert len(doc["annotations"]) == 3 and doc["categories"][12]["isthing"] == 1
    assert doc["annotations"][0]["segments_info"][1]["bbox"] == [20, 2, 8, 4]
    assert np.array_equal(
        rgb_to_id(png_decode((tmp_path / "panoptic/000002.png").read_bytes())), panoptic().id_map.numpy()
    )

"""Overlay colours and labels: per-dataset class colours (Cityscapes for street classes, the checkpoint's own when
it has them), things in a shade of their class colour (the legend holds), "class #id score" labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mask2former_ttt.data.classes import CITYSCAPES_COLORS, CITYSCAPES_NAMES, SYNTHETIC, LabelSet
from mask2former_ttt.outputs.overlay import overlay
from mask2former_ttt.outputs.palette import class_colors, class_palette, thing_shades
from mask2former_ttt.training.trainer import dataset_colors
from model.postprocess import InstanceResult, PanopticResult

CITY = dict(zip(CITYSCAPES_NAMES, CITYSCAPES_COLORS))


def test_street_classes_get_cityscapes_colours_and_a_datasets_own_colours_win() -> None:
    colors = class_colors(SYNTHETIC.class_names)  # the bundled model's classes
    for name in ("road", "sky", "vegetation", "person", "car"):
        assert tuple(colors[SYNTHETIC.class_names.index(name)]) == CITY[name], name
    assert tuple(colors[SYNTHETIC.class_names.index("traffic_sign")]) == CITY["traffic sign"]
    other = class_colors(["road", "widget", "gadget"])
    assert tuple(other[0]) == CITY["road"] and np.array_equal(other[1:], class_palette(3)[1:])
    own = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert class_colors(["road", "widget", "gadget"], own).tolist() == own
    with pytest.raises(ValueError, match="2 class colours for 3 classes"):
        class_colors(["a", "b", "c"], own[:2])


def test_training_keeps_meta_json_colours_only_when_they_tell_classes_apart() -> None:
    meta = LabelSet("mine", ("soil", "crop"), (1,), ((120, 90, 60), (60, 160, 60)))
    assert dataset_colors(meta, ["soil", "crop"]) == [[120, 90, 60], [60, 160, 60]]
    assert dataset_colors(meta, ["soil", "weed"]) is None  # a checkpoint with other classes
    grey = LabelSet("coco", ("a", "b"), (), ((128, 128, 128), (128, 128, 128)))
    assert dataset_colors(grey, ["a", "b"]) is None


def _panoptic() -> PanopticResult:
    ids = torch.zeros(96, 128, dtype=torch.int32)
    ids[:, :40] = 1  # road (stuff)
    ids[40:80, 50:70] = 2  # person
    ids[40:80, 80:100] = 3  # another person
    infos = [
        {"id": 1, "category_id": 0, "isthing": False, "score": 0.9, "area": 96 * 40},
        {"id": 2, "category_id": 9, "isthing": True, "score": 0.8, "area": 800},
        {"id": 3, "category_id": 9, "isthing": True, "score": 0.6, "area": 800},
    ]
    return PanopticResult(ids, infos)


def test_panoptic_things_are_drawn_in_shades_of_their_class_colour() -> None:
    image = np.zeros((96, 128, 3), np.uint8)
    out = overlay(image, "panoptic", _panoptic(), alpha=1.0, class_names=SYNTHETIC.class_names)
    person = np.array(CITY["person"])
    shades = thing_shades(np.array([person, person], np.uint8), np.array([2, 3]))
    assert out[70, 60].tolist() == shades[0].tolist() and out[70, 90].tolist() == shades[1].tolist()
    assert shades[0].tolist() != shades[1].tolist()  # two persons stay apart
    assert all(np.abs(s.astype(int) - person).max() <= 0.25 * 255 + 1 for s in shades)  # ... in the legend's colour
    assert out[50, 10].tolist() == list(CITY["road"])


def test_things_are_labelled_with_class_id_and_score() -> None:
    masks = torch.zeros(1, 96, 128, dtype=torch.bool)
    masks[0, 40:90, 30:110] = True
    result = InstanceResult(torch.tensor([10]), torch.tensor([0.87]), masks, ids=torch.tensor([7]))
    image = np.zeros((96, 128, 3), np.uint8)
    out = overlay(image, "instance", result, alpha=0.5, class_names=SYNTHETIC.class_names, legend="never")
    shade = thing_shades(np.array([CITY["car"]], np.uint8), np.array([7]))[0]
    above = out[25:40, 30:110]  # the label box sits just above the instance, in the instance's colour
    assert (above == shade).all(axis=2).mean() > 0.1
    assert len(np.unique(above.reshape(-1, 3), axis=0)) > 1  # ... with text on it
    assert not out[:20].any()  # nothing drawn elsewhere above


def test_a_checkpoints_own_colours_reach_the_page_palette_and_the_ws_overlay(tmp_path) -> None:
    import base64
    import io
    import json

    from PIL import Image

    from model.checkpoint import save_checkpoint
    from model.config import preset
    from model.ymodel import build_model
    from server.wire.inbound import pack_frame
    from tests.server.svc_helpers import jpeg, make_client

    red = [[255, 0, 0]] * 19  # every class red: whatever the model predicts, the overlay is red over the frame
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(preset("tiny", class_colors=red)), tmp_path / "ckpt")
    with make_client(tmp_path, ckpt) as client, client.websocket_connect("/v1/streams/ws") as ws:
        assert client.get("/v1/classes").json()["class_colors"] == red
        ws.send_text(json.dumps({"type": "start", "task": "semantic", "policy": "block", "encodings": ["overlay"]}))
        assert ws.receive_json()["type"] == "started"
        ws.send_bytes(pack_frame(jpeg(np.full((48, 64, 3), 128, np.uint8)), frame_id=0))
        result = ws.receive_json()
    drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(result["masks"]["overlay"]))).convert("RGB"))
    assert np.abs(np.median(drawn.reshape(-1, 3), axis=0) - [191, 64, 64]).max() <= 12  # 50 % red over grey


def test_tall_frames_get_a_legend_of_their_largest_classes() -> None:
    from mask2former_ttt.outputs.overlay import class_areas
    from model.postprocess import SemanticResult

    labels = torch.zeros(240, 320, dtype=torch.int64)
    labels[120:] = 8  # road above, sky below (a test image, not a street)
    labels[:, :40] = 10  # car
    areas = class_areas("semantic", SemanticResult(labels), labels.numpy(), 11)
    assert areas[[0, 8, 10]].tolist() == [120 * 280, 120 * 280, 240 * 40] and areas.sum() == 240 * 320
    image = np.zeros((240, 320, 3), np.uint8)
    with_legend = overlay(image, "semantic", SemanticResult(labels), alpha=1.0, class_names=SYNTHETIC.class_names)
    small = overlay(image[:200], "semantic", SemanticResult(labels[:200]), alpha=1.0, class_names=SYNTHETIC.class_names)
    corner = with_legend[4:50, 272:316]
    assert (corner == (16, 20, 24)).all(axis=2).mean() > 0.3  # the legend box ...
    assert (corner == CITY["road"]).all(axis=2).any() and (corner == CITY["sky"]).all(axis=2).any()  # ... swatches
    assert not (small[4:50, 272:316] == (16, 20, 24)).all(axis=2).any()  # a 200-row frame: no legend

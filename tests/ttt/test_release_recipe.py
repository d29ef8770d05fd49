"""The authors' recipe (renwang435/video-ttt-release) for the `release` preset and converted checkpoints: MAE's
kept-patch count int(L·(1-r)), a long-side cap on the working size, the KITTI / COCO sample augmentation of a TTT
step, and the converters' per-dataset inference sizes."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from model.checkpoint import load_config
from model.config import ModelConfig, tiny_config
from model.convert_detectron2 import detectron2_rules, detectron2_to_ymodel, relative_index_checks
from model.masking import normalize, random_patch_mask
from model.ymodel import build_model
from mask2former_ttt.ttt import build_adapter, ttt_preset
from mask2former_ttt.ttt import sample_augment
from mask2former_ttt.ttt.adapter import StreamAdapter
from mask2former_ttt.ttt.config import TTTConfig
from mask2former_ttt.ttt.frames import to_working_resolution, working_size
from mask2former_ttt.ttt.objectives import mae_loss
from mask2former_ttt.ttt.stats import StepStats

SMALL = {"batch_size": 2, "micro_batch": 2, "guard": None}


def _names(n: int) -> list[str]:
    return [f"c{i}" for i in range(n)]


# ---- masking: MAE's len_keep = int(L * (1 - mask_ratio)) ---------------------------------------------------------
@pytest.mark.parametrize(
    ("gh", "gw", "ratio", "kept"),
    [
        (4, 6, 0.85, 3),  # L = 24: int(3.6) = 3 kept, 21 masked (round(0.85 * 24) would mask 20)
        (4, 4, 0.9, 1),  # L = 16: int(1.5999...) = 1 kept (round would mask 14, keep 2)
        (2, 3, 0.85, 0),  # L = 6: int(0.9) = 0 kept, every cell masked (round would keep 1)
        (10, 10, 0.85, 15),  # L = 100: int(15.000000000000002) = 15
        (5, 6, 0.85, 4),  # L = 30: int(4.5) = 4
        (3, 4, 0.5, 6),
        (8, 8, 0.0, 64),
    ],
)
def test_kept_cells_are_int_of_L_times_one_minus_r(gh, gw, ratio, kept) -> None:
    n = gh * gw
    assert kept == int(n * (1 - ratio))  # the release's expression, float for float
    visible = random_patch_mask(3, gh * 16, gw * 16, 16, ratio, torch.Generator().manual_seed(0))
    cells = visible[:, 0, ::16, ::16]
    assert cells.shape == (3, gh, gw)
    assert [int(c.sum()) for c in cells] == [kept] * 3


# ---- working size: short side with a long-side cap ----------------------------------------------------------------
def test_working_size_caps_the_long_side_like_resize_shortest_edge() -> None:
    # a KITTI frame at the KITTI-STEP recipe: 1024 / 3391 would exceed 2048, so the long side is 2048 and the short
    # side 375 * 2048 / 1242 = 618.4, rounded to a multiple of 32
    assert working_size(375, 1242, 1024, 2048) == (608, 2048)
    assert working_size(375, 1242, 1024) == (1024, 3392)  # no cap
    assert working_size(1242, 375, 1024, 2048) == (2048, 608)  # portrait: the same, transposed
    assert working_size(480, 640, 800, 1333) == (800, 1056)  # COCO: 1067 <= 1333, the cap does not bind
    assert working_size(400, 1200, 800, 1333) == (448, 1344)  # 2400 > 1333: scale 1333 / 1200


def test_to_working_resolution_and_the_adapter_use_the_cap(tiny_model, frames) -> None:
    frame = torch.zeros(3, 40, 200, dtype=torch.uint8)
    assert to_working_resolution(frame, 64, 128).shape == (3, 32, 128)
    assert to_working_resolution(frame, 64).shape == (3, 64, 320)
    capped = copy.deepcopy(tiny_model)
    capped.cfg.max_size = 128  # frames are 96x128: short side 128 would make the long side 171 > 128
    result = StreamAdapter(capped, ttt_preset("full", **SMALL)).step(frames[0])
    assert result.working_size == (96, 128)
    assert StreamAdapter(tiny_model, ttt_preset("full", **SMALL, steps_per_frame=0)).step(frames[0]).working_size == (
        128, 160)  # fmt: skip


def test_an_old_config_without_max_size_loads_uncapped(tmp_path) -> None:
    data = tiny_config().model_dump()
    del data["max_size"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert load_config(tmp_path).max_size is None
    assert load_config("model/bundled/tiny-synth").max_size is None


# ---- kitti: random 512x1024 crops --------------------------------------------------------------------------------
def _coordinate_frame(h: int, w: int) -> torch.Tensor:
    """(3, h, w) uint8 whose pixels encode their position: row % 251, col % 251, (row // 251) * 16 + col // 251."""
    rows = torch.arange(h)[:, None].expand(h, w)
    cols = torch.arange(w)[None, :].expand(h, w)
    return torch.stack([rows % 251, cols % 251, (rows // 251) * 16 + cols // 251]).to(torch.uint8)


def _position(sample: torch.Tensor, cfg: ModelConfig) -> tuple[int, int]:
    """The frame position of a normalized sample's top-left pixel (decoded from `_coordinate_frame`)."""
    mean, std = torch.tensor(cfg.pixel_mean), torch.tensor(cfg.pixel_std)
    r, c, hi = ((sample[:, 0, 0] * std + mean) * 255).round().long().tolist()
    return (hi // 16) * 251 + r, (hi % 16) * 251 + c


@pytest.mark.parametrize(
    ("hw", "crop"), [((608, 2048), (512, 1024)), ((480, 1280), (480, 1024)), ((96, 128), (96, 128))]
)
def test_kitti_samples_are_512x1024_windows_or_the_whole_dimension(tiny_model, hw, crop) -> None:
    a = StreamAdapter(tiny_model, TTTConfig(sample_augment="kitti", batch_size=4, micro_batch=4))
    frame = _coordinate_frame(*hw)
    a.window.append(frame)
    batch, valid = a.sample_batch(StepStats(frame_index=0))
    assert batch.shape == (4, 3, *crop) and valid is None
    full = normalize(frame[None], tiny_model.cfg)[0]
    offsets = set()
    for sample in batch:  # a window of the frame at an offset that fits
        t, l = _position(sample, tiny_model.cfg)
        assert 0 <= t <= hw[0] - crop[0] and 0 <= l <= hw[1] - crop[1]
        assert torch.equal(sample, full[:, t : t + crop[0], l : l + crop[1]])
        offsets.add((t, l))
    if crop != hw:
        assert len(offsets) > 1, "offsets are random"


# ---- coco: flip, scale jitter 0.1-2.0, fixed square crop with padding ---------------------------------------------
def _resized(frame: torch.Tensor, nh: int, nw: int) -> torch.Tensor:
    image = frame.float()[None] / 255.0
    if (nh, nw) != tuple(frame.shape[1:]):
        image = F.interpolate(image, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return image[0]


def test_coco_sample_is_a_flipped_jittered_padded_square(frames) -> None:
    frame = frames[0]  # (3, 96, 128): the square is the long side, 128
    side = sample_augment.coco_side([frame])
    assert side == 128
    g = torch.Generator().manual_seed(0)
    flips, scales = 0, []
    for _ in range(40):
        out, valid, (nh, nw, top, left) = sample_augment.coco_sample(frame, side, 32, g)
        assert out.shape == (3, side, side) and valid.shape == (1, side, side)
        scale = max(nh / side, nw / side)  # the resized frame fits the (side*s)^2 square: its long side is side*s
        assert 0.1 - 1e-2 <= scale <= 2.0 + 1e-2 or min(nh, nw) == 32
        scales.append(scale)
        ch, cw = min(nh - top, side), min(nw - left, side)
        assert int(valid.sum()) == ch * cw and valid[0, :ch, :cw].all()
        assert torch.all(out[:, ch:, :] == 0) and torch.all(out[:, :, cw:] == 0)
        plain, flipped = (_resized(f, nh, nw)[:, top : top + ch, left : left + cw] for f in (frame, frame.flip(-1)))
        is_plain, is_flipped = torch.equal(out[:, :ch, :cw], plain), torch.equal(out[:, :ch, :cw], flipped)
        assert is_plain or is_flipped
        flips += int(is_flipped and not is_plain)
        if nh > side or nw > side:  # one uniform draw for both offsets (FixedSizeCrop)
            spans = [((o - 0.5) / m, (o + 0.5) / m) for o, m in ((top, nh - side), (left, nw - side)) if m > 0]
            assert max(lo for lo, _ in spans) <= min(hi for _, hi in spans) + 1e-9  # both offsets round(m * u)
    assert 8 <= flips <= 32, "flipped about half the time"
    assert min(scales) < 0.6 and max(scales) > 1.4, "scales spread over 0.1-2.0"


def test_coco_at_the_release_size_is_a_1024_square(monkeypatch) -> None:
    frame = torch.randint(0, 256, (3, 800, 1056), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    assert sample_augment.coco_side([frame]) == 1024
    monkeypatch.setattr(sample_augment, "COCO_SCALE", (0.5, 0.5))  # fits a 512 square: 388 x 512, padded
    out, valid, (nh, nw, top, left) = sample_augment.coco_sample(frame, 1024, 32, torch.Generator().manual_seed(2))
    assert out.shape == (3, 1024, 1024) and (nh, nw, top, left) == (388, 512, 0, 0)
    assert int(valid.sum()) == 388 * 512
    monkeypatch.setattr(sample_augment, "COCO_SCALE", (2.0, 2.0))  # 1552 x 2048: a full window, no padding
    out, valid, (nh, nw, _, _) = sample_augment.coco_sample(frame, 1024, 32, torch.Generator().manual_seed(2))
    assert (nh, nw) == (1552, 2048) and bool(valid.all())


def test_coco_keeps_tiny_scales_at_one_patch_and_steps_on_the_tiny_model(tiny_model, frames, monkeypatch) -> None:
    monkeypatch.setattr(sample_augment, "COCO_SCALE", (0.1, 0.1))  # 96x128 at 0.1 of a 128 square: 10 x 13 px
    a = StreamAdapter(tiny_model, ttt_preset("full", sample_augment="coco", **SMALL))
    a.window.append(to_working_resolution(frames[0], 128))  # (3, 128, 160)
    batch, valid = a.sample_batch(StepStats(frame_index=0))
    assert batch.shape == (2, 3, 160, 160) and valid.shape == (2, 1, 160, 160)
    for v in valid:  # the resized frame is 32 x 40 (clamped up from 13 x 16), placed at the top left
        assert int(v.sum()) == 32 * 40 and v[0, :32, :40].all()
    assert torch.all(batch[valid.expand_as(batch) == 0] == 0)
    r = a.step(frames[1])
    assert r.stats.steps_taken == 1 and r.stats.loss is not None and np.isfinite(r.stats.loss)
    seen = []

    def spy(forward, x, cfg, generator, valid=None):  # noqa: ANN001, ANN202
        seen.append(valid)
        return mae_loss(forward, x, cfg, generator, valid=valid)

    b = StreamAdapter(tiny_model, ttt_preset("full", sample_augment="coco", **(SMALL | {"micro_batch": 1})), objective=spy)
    b.step(frames[0])
    assert len(seen) == 2 and all(v is not None and v.shape == (1, 1, 160, 160) and v.sum() == 32 * 40 for v in seen)


@pytest.mark.parametrize("loss_on", ["all", "masked"])
def test_padding_is_fed_as_masked_and_left_out_of_the_loss(loss_on) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 64, 64, generator=g)
    valid = torch.zeros(2, 1, 64, 64)
    valid[:, :, :40, :48] = 1.0
    x = x * valid
    seen = {}

    def forward(inp: torch.Tensor, mode: str) -> torch.Tensor:
        seen["input"] = inp
        return torch.where(valid.bool().expand_as(x), x, torch.full_like(x, 1e3))  # right on the image only

    cfg = TTTConfig(loss_on=loss_on)
    assert float(mae_loss(forward, x, cfg, torch.Generator().manual_seed(0), valid=valid)) == 0.0
    assert torch.all(seen["input"][:, 3:][valid == 0] == 0), "padding is flagged as not visible"
    assert float(mae_loss(forward, x, cfg, torch.Generator().manual_seed(0))) > 0, "without `valid` it would count"


# ---- determinism and the `auto` choice ---------------------------------------------------------------------------
@pytest.mark.parametrize("augment", ["coco", "kitti"])
def test_samples_are_reproducible_under_the_seed(tiny_model, frames, augment) -> None:
    def draw(seed: int) -> list[torch.Tensor]:
        a = StreamAdapter(tiny_model, ttt_preset("full", sample_augment=augment, **SMALL), seed=seed)
        big = torch.cat([frames[0]] * 6, dim=1).repeat(1, 1, 9)  # (3, 576, 1152): larger than the KITTI crop
        a.window.extend([big, big.flip(-1)])
        return [a.sample_batch(StepStats(frame_index=0))[0] for _ in range(2)]

    first, again, other = draw(0), draw(0), draw(1)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(first, other))


def test_coco_steps_are_reproducible(tiny_model, frames) -> None:
    runs = []
    for _ in range(2):
        a = StreamAdapter(tiny_model, ttt_preset("full", sample_augment="coco", **SMALL), seed=5)
        runs.append([a.step(f) for f in frames[:2]])
    for r1, r2 in zip(*runs):
        assert r1.stats.loss == r2.stats.loss
        assert torch.equal(r1.mask_logits, r2.mask_logits)


def test_auto_follows_the_label_set_and_the_release_preset_uses_it(tiny_model) -> None:
    for n, want in [(19, "kitti"), (80, "coco"), (133, "coco"), (11, "none"), (150, "none")]:
        assert sample_augment.resolve("auto", tiny_config(class_names=_names(n))) == want
    assert sample_augment.resolve("none", tiny_config()) == "none"
    assert ttt_preset("release").sample_augment == "auto"
    assert all(ttt_preset(p).sample_augment == "none" for p in ("full", "default", "fast"))
    assert TTTConfig().sample_augment == "none"
    synth = build_model(tiny_config(class_names=_names(11)))
    assert build_adapter(synth, "online", "release").augment == "none"
    coco = copy.copy(tiny_model)
    coco.cfg = tiny_config(class_names=_names(80))
    assert build_adapter(coco, "online", "release").augment == "coco"


# ---- converters: the release's inference size per label set --------------------------------------------------------
def _d2_state(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """A MaskFormerTTT-style detectron2 state dict of a freshly built model (the converter's rules inverted)."""
    model = build_model(cfg)
    y = dict(model.state_dict())
    parts: dict[str, dict[int | None, torch.Tensor]] = {}
    for rule in detectron2_rules(cfg, with_recon=True):
        parts.setdefault(rule.source, {})[rule.part] = y[rule.target]
    state = {src: (p[None] if None in p else torch.cat([p[0], p[1], p[2]])) for src, p in parts.items()}
    buffers = dict(model.named_buffers())
    n = cfg.swin.window_size**2
    state |= {src: buffers[dst].reshape(n, n) for src, dst in relative_index_checks(cfg).items()}
    return state


@pytest.mark.parametrize(
    ("classes", "sizes"), [(19, (1024, 2048)), (80, (800, 1333)), (133, (800, 1333)), (9, (128, None))]
)
def test_detectron2_conversion_sets_the_release_sizes(classes, sizes) -> None:
    state = _d2_state(tiny_config(class_names=_names(classes)))
    model, _ = detectron2_to_ymodel(state, "tiny", name="ttt_baseline")
    assert (model.cfg.image_size, model.cfg.max_size) == sizes
    if classes == 19:
        model, _ = detectron2_to_ymodel(state, "tiny", overrides={"image_size": 256, "max_size": None})
        assert (model.cfg.image_size, model.cfg.max_size) == (256, None)  # --overrides still wins


def test_hf_import_sets_the_release_sizes_and_reads_the_processor_cap(tmp_path) -> None:
    from model.hf_config import mask2former_config
    from model.hf_import import model_config_from_hf

    def hf_cfg(n: int):
        cfg = mask2former_config(tiny_config(class_names=_names(n)))
        cfg.id2label = dict(enumerate(_names(n)))
        return cfg

    pre = {"size": {"shortest_edge": 96, "longest_edge": 160}}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(pre))
    assert (lambda c: (c.image_size, c.max_size))(model_config_from_hf(hf_cfg(9), tmp_path)) == (96, 160)
    for n, sizes in [(19, (1024, 2048)), (80, (800, 1333)), (133, (800, 1333))]:
        cfg = model_config_from_hf(hf_cfg(n), tmp_path)
        assert (cfg.image_size, cfg.max_size) == sizes
    cfg = model_config_from_hf(hf_cfg(19), tmp_path, {"image_size": 512, "max_size": 1024})
    assert (cfg.image_size, cfg.max_size) == (512, 1024)

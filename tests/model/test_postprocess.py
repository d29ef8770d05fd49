"""Tests for model/postprocess.py on hand-built logits with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from model.postprocess import (
    InstanceResult,
    PanopticResult,
    SemanticResult,
    instance_inference,
    panoptic_inference,
    postprocess,
    semantic_inference,
)

L = 20.0  # a "large" logit: softmax / sigmoid saturate to ~1 / ~0
K = 3  # real classes 0, 1, 2; column 3 is "no object"
NO_OBJECT = K


def cls_row(c: int, logit: float = L, k: int = K) -> torch.Tensor:
    """(K+1,) class logits making class ``c`` (``k`` = no object) dominate."""
    row = torch.full((k + 1,), -L)
    row[c] = logit
    return row


def rect_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int, inside: float = L, outside: float = -L):
    """(h, w) mask logits: ``inside`` on rows [y0, y1) x cols [x0, x1), ``outside`` elsewhere."""
    m = torch.full((h, w), outside)
    m[y0:y1, x0:x1] = inside
    return m


def rect_bool(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    m = torch.zeros((h, w), dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def softmax_prob(logits: list[float], index: int) -> float:
    exps = [math.exp(v) for v in logits]
    return exps[index] / sum(exps)


# --------------------------------------------------------------------------------------------------
# semantic
# --------------------------------------------------------------------------------------------------


def three_region_logits(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Query 0 -> class 0 on the top half, 1 -> class 1 bottom-left, 2 -> class 2 bottom-right,
    3 -> "no object" everywhere (must not matter)."""
    cls = torch.stack([cls_row(0), cls_row(1), cls_row(2), cls_row(NO_OBJECT)])
    masks = torch.stack(
        [
            rect_mask(h, w, 0, h // 2, 0, w),
            rect_mask(h, w, h // 2, h, 0, w // 2),
            rect_mask(h, w, h // 2, h, w // 2, w),
            rect_mask(h, w, 0, h, 0, w),
        ]
    )
    return cls, masks


def three_region_expected(h: int, w: int) -> torch.Tensor:
    exp = torch.zeros((h, w), dtype=torch.int64)
    exp[h // 2 :, : w // 2] = 1
    exp[h // 2 :, w // 2 :] = 2
    return exp


def test_semantic_exact_label_map():
    cls, masks = three_region_logits(8, 8)
    res = semantic_inference(cls, masks, (8, 8))
    assert isinstance(res, SemanticResult)
    assert res.label_map.dtype == torch.int64
    assert torch.equal(res.label_map, three_region_expected(8, 8))


def test_semantic_upsamples_to_out_size():
    cls, masks = three_region_logits(4, 6)
    res = semantic_inference(cls, masks, (16, 24))  # x4: boundaries land exactly on 8 and 12
    assert res.label_map.shape == (16, 24)
    assert torch.equal(res.label_map, three_region_expected(16, 24))


def test_semantic_marginalises_over_queries():
    # Two class-1 queries with moderate confidence together beat one class-0 query at a pixel.
    h = w = 4
    cls = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.0, 2.5, 0.0, 0.0], [0.0, 2.5, 0.0, 0.0]])
    masks = torch.full((3, h, w), L)
    res = semantic_inference(cls, masks, (h, w))
    p0 = softmax_prob([3.0, 0, 0, 0], 0)
    p1 = softmax_prob([0, 2.5, 0, 0], 1)
    assert 2 * p1 > p0 > p1  # single query 1 loses, the sum wins
    assert torch.equal(res.label_map, torch.ones((h, w), dtype=torch.int64))


def test_semantic_matches_formula_on_random_logits():
    g = torch.Generator().manual_seed(0)
    cls = torch.randn(5, K + 1, generator=g) * 3
    masks = torch.randn(5, 6, 7, generator=g) * 3
    res = semantic_inference(cls, masks, (13, 11))
    up = F.interpolate(masks[None], size=(13, 11), mode="bilinear", align_corners=False)[0].sigmoid()
    probs = cls.softmax(-1)[:, :-1]
    seg = torch.zeros(K, 13, 11)
    for q in range(5):
        for c in range(K):
            seg[c] += probs[q, c] * up[q]
    assert torch.equal(res.label_map, seg.argmax(0))


# --------------------------------------------------------------------------------------------------
# instance
# --------------------------------------------------------------------------------------------------


def instance_logits(h: int = 8, w: int = 8) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Query 0: classes 0 and 1 both likely; query 1: class 2; query 2: mostly "no object"."""
    c0 = [3.0, 2.5, -5.0, 0.0]
    c1 = [-5.0, -5.0, 4.0, 0.0]
    c2 = [0.0, 0.0, 0.0, 6.0]
    cls = torch.tensor([c0, c1, c2])
    m0 = rect_mask(h, w, 0, 4, 0, 4, inside=2.0, outside=-2.0)  # mean prob inside = sigmoid(2)
    m1 = rect_mask(h, w, 4, 8, 2, 8, inside=1.0, outside=-3.0)  # mean prob inside = sigmoid(1)
    m2 = rect_mask(h, w, 0, 8, 0, 8, inside=L)
    sig = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    expected = {
        (1, 2): softmax_prob(c1, 2) * sig(1.0),
        (0, 0): softmax_prob(c0, 0) * sig(2.0),
        (0, 1): softmax_prob(c0, 1) * sig(2.0),
        (2, 0): softmax_prob(c2, 0) * sig(L),
    }
    return cls, torch.stack([m0, m1, m2]), expected


def test_instance_topk_ordering_and_scores():
    cls, masks, expected = instance_logits()
    res = instance_inference(cls, masks, (8, 8), top_k=3)
    assert isinstance(res, InstanceResult)
    # class scores: (1,2)=0.98 > (0,0)=0.58 > (0,1)=0.35 ; final scores keep that order here
    assert res.classes.tolist() == [2, 0, 1]
    want = torch.tensor([expected[(1, 2)], expected[(0, 0)], expected[(0, 1)]])
    assert torch.allclose(res.scores, want, atol=1e-5)
    assert torch.all(res.scores[:-1] >= res.scores[1:])
    assert res.masks.shape == (3, 8, 8) and res.masks.dtype == torch.bool
    assert torch.equal(res.masks[0], rect_bool(8, 8, 4, 8, 2, 8))
    assert torch.equal(res.masks[1], rect_bool(8, 8, 0, 4, 0, 4))
    assert torch.equal(res.masks[2], res.masks[1])  # same query, two classes


def test_instance_sorted_by_final_score_not_class_score():
    # Query 0 has the higher class score but a weak mask; query 1 wins after mask scoring.
    cls = torch.tensor([[5.0, -L, -L, -L], [-L, 4.0, -L, -L]])
    masks = torch.stack([rect_mask(4, 4, 0, 2, 0, 4, inside=0.1), rect_mask(4, 4, 2, 4, 0, 4, inside=L)])
    res = instance_inference(cls, masks, (4, 4), top_k=2)
    assert res.classes.tolist() == [1, 0]
    assert res.scores[0] > 0.99 and res.scores[1] == pytest.approx(1.0 / (1.0 + math.exp(-0.1)), abs=1e-4)


def test_instance_topk_clamped_and_thing_filter():
    cls, masks, expected = instance_logits()
    res = instance_inference(cls, masks, (8, 8), top_k=1000)
    assert res.classes.numel() == 3 * K  # all (query, class) pairs
    only = instance_inference(cls, masks, (8, 8), top_k=3, thing_class_ids=[2])
    assert only.classes.tolist() == [2]
    assert only.scores.tolist() == pytest.approx([expected[(1, 2)]], abs=1e-5)
    none = instance_inference(cls, masks, (8, 8), top_k=3, thing_class_ids=[])
    assert none.classes.shape == (0,) and none.scores.shape == (0,) and none.masks.shape == (0, 8, 8)
    assert none.classes.dtype == torch.int64 and none.masks.dtype == torch.bool


def test_instance_upsampling():
    cls = torch.stack([cls_row(1)])
    masks = rect_mask(4, 4, 1, 3, 0, 2)[None]
    res = instance_inference(cls, masks, (12, 16), top_k=1)
    assert res.masks.shape == (1, 12, 16)
    expected = rect_bool(12, 16, 3, 9, 0, 8)
    # Bilinear upsampling of the *logits* rounds off convex corners: at the two inner corner pixels
    # only 2/3 * 5/8 < 1/2 of the interpolation weight is inside, so the logit is negative there.
    expected[3, 7] = expected[8, 7] = False
    assert torch.equal(res.masks[0], expected)


def reference_instance(cls, masks, out_size, top_k):
    """Slow, literal per-pair reference of the official instance inference (sorted by score)."""
    probs = cls.softmax(-1)[:, :-1]
    up = F.interpolate(masks[None], size=out_size, mode="bilinear", align_corners=False)[0]
    pairs = [(probs[q, c].item(), q, c) for q in range(probs.shape[0]) for c in range(probs.shape[1])]
    pairs.sort(reverse=True)
    out = []
    for p, q, c in pairs[:top_k]:
        b = up[q] > 0
        ms = (up[q].sigmoid() * b).sum().item() / (b.sum().item() + 1e-6)
        out.append((p * ms, c, b))
    out.sort(key=lambda t: -t[0])
    return out


def test_instance_matches_reference_on_random_logits():
    g = torch.Generator().manual_seed(1)
    cls = torch.randn(6, 5, generator=g) * 2
    masks = torch.randn(6, 5, 5, generator=g) * 2
    res = instance_inference(cls, masks, (10, 10), top_k=7)
    ref = reference_instance(cls, masks, (10, 10), 7)
    assert res.scores.tolist() == pytest.approx([r[0] for r in ref], abs=1e-5)
    assert res.classes.tolist() == [r[1] for r in ref]
    for got, r in zip(res.masks, ref):
        assert torch.equal(got, r[2])


# --------------------------------------------------------------------------------------------------
# panoptic
# --------------------------------------------------------------------------------------------------

THINGS = [0]  # class 0 is a thing; classes 1, 2 are stuff


def check_areas(res: PanopticResult) -> None:
    ids = [s["id"] for s in res.segments_info]
    assert ids == list(range(1, len(ids) + 1))
    present = set(torch.unique(res.id_map).tolist()) - {0}
    assert present == set(ids)
    for s in res.segments_info:
        assert s["area"] == int((res.id_map == s["id"]).sum())
        assert set(s) == {"id", "category_id", "isthing", "score", "area"}


def test_panoptic_things_split_stuff_merges_low_score_dropped():
    h = w = 8
    cls = torch.stack(
        [
            cls_row(0),  # thing A
            cls_row(0),  # thing B, same class
            cls_row(1),  # stuff part 1
            cls_row(1),  # stuff part 2, same class -> merged
            torch.tensor([1.0, 0.0, 0.0, 0.0]),  # class 0 but score ~0.48 < 0.8 -> dropped
            cls_row(NO_OBJECT),  # no object -> dropped
        ]
    )
    masks = torch.stack(
        [
            rect_mask(h, w, 0, 4, 0, 2),
            rect_mask(h, w, 0, 4, 2, 4),
            rect_mask(h, w, 4, 8, 0, 4),
            rect_mask(h, w, 0, 8, 4, 6),
            rect_mask(h, w, 0, 8, 6, 8),  # nobody else covers cols 6-7 -> void
            rect_mask(h, w, 0, 8, 0, 8),
        ]
    )
    res = panoptic_inference(cls, masks, (h, w), thing_class_ids=THINGS)
    assert isinstance(res, PanopticResult)
    assert res.id_map.dtype == torch.int32
    expected = torch.zeros((h, w), dtype=torch.int32)
    expected[0:4, 0:2] = 1
    expected[0:4, 2:4] = 2
    expected[4:8, 0:4] = 3
    expected[0:8, 4:6] = 3
    assert torch.equal(res.id_map, expected)
    info = res.segments_info
    assert [(s["id"], s["category_id"], s["isthing"]) for s in info] == [(1, 0, True), (2, 0, True), (3, 1, False)]
    assert [s["area"] for s in info] == [8, 8, 32]
    assert all(s["score"] > 0.99 for s in info)
    check_areas(res)


def test_panoptic_overlap_threshold_drops_occluded_segment():
    h = w = 10
    cls = torch.stack([cls_row(0, logit=L), cls_row(0, logit=2.5)])  # A: ~1.0, B: ~0.85 (still > 0.8)
    masks = torch.stack(
        [
            rect_mask(h, w, 0, 10, 0, 6),  # A: 60 px
            rect_mask(h, w, 0, 10, 4, 7),  # B: 30 px, 20 hidden under A, 10 visible -> 1/3 < 0.8
        ]
    )
    res = panoptic_inference(cls, masks, (h, w), thing_class_ids=THINGS)
    expected = torch.zeros((h, w), dtype=torch.int32)
    expected[:, 0:6] = 1  # B's visible part stays void
    assert torch.equal(res.id_map, expected)
    assert [(s["id"], s["area"]) for s in res.segments_info] == [(1, 60)]
    check_areas(res)

    low = panoptic_inference(cls, masks, (h, w), thing_class_ids=THINGS, overlap_threshold=0.3)
    expected[:, 6:7] = 2
    assert torch.equal(low.id_map, expected)
    assert [(s["id"], s["area"]) for s in low.segments_info] == [(1, 60), (2, 10)]
    check_areas(low)


def test_panoptic_object_mask_threshold_is_strict_and_empty_result():
    cls = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    masks = rect_mask(4, 4, 0, 4, 0, 4)[None]
    res = panoptic_inference(cls, masks, (6, 5), thing_class_ids=THINGS)
    assert torch.equal(res.id_map, torch.zeros((6, 5), dtype=torch.int32))
    assert res.segments_info == []
    score = cls.softmax(-1).max().item()
    res = panoptic_inference(cls, masks, (4, 4), thing_class_ids=THINGS, object_mask_threshold=score - 1e-4)
    assert res.id_map.eq(1).all() and res.segments_info[0]["score"] == pytest.approx(score, abs=1e-6)


def test_panoptic_upsampling():
    cls = torch.stack([cls_row(0), cls_row(2)])
    masks = torch.stack([rect_mask(4, 6, 0, 2, 0, 3), rect_mask(4, 6, 2, 4, 0, 6)])
    res = panoptic_inference(cls, masks, (16, 24), thing_class_ids=THINGS)
    expected = torch.zeros((16, 24), dtype=torch.int32)
    expected[0:8, 0:12] = 1
    expected[8:16, :] = 2
    expected[7, 11] = 0  # inner corner rounded off by bilinear upsampling (5/8 * 5/8 < 1/2 inside); no one claims it
    assert torch.equal(res.id_map, expected)
    assert [(s["category_id"], s["isthing"], s["area"]) for s in res.segments_info] == [(0, True, 95), (2, False, 192)]
    check_areas(res)


def reference_panoptic(cls, masks, out_size, things, omt, ovt):
    """Slow, literal per-query reference of the official panoptic inference."""
    scores, labels = cls.softmax(-1).max(-1)
    keep = labels.ne(cls.shape[1] - 1) & (scores > omt)
    s, c = scores[keep], labels[keep]
    m = F.interpolate(masks[keep][None], size=out_size, mode="bilinear", align_corners=False)[0].sigmoid()
    seg = torch.zeros(out_size, dtype=torch.int32)
    infos, stuff, cur = [], {}, 0
    if m.shape[0] == 0:
        return seg, infos
    ids = (s[:, None, None] * m).argmax(0)
    for k in range(m.shape[0]):
        cl = int(c[k])
        mask_area = int((ids == k).sum())
        orig = int((m[k] >= 0.5).sum())
        mask = (ids == k) & (m[k] >= 0.5)
        if mask_area > 0 and orig > 0 and int(mask.sum()) > 0:
            if mask_area / orig < ovt:
                continue
            if cl not in things:
                if cl in stuff:
                    seg[mask] = stuff[cl]
                    continue
                stuff[cl] = cur + 1
            cur += 1
            seg[mask] = cur
            infos.append({"id": cur, "category_id": cl, "isthing": cl in things})
    return seg, infos


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_panoptic_matches_reference_on_random_logits(seed):
    g = torch.Generator().manual_seed(seed)
    q, k = 12, 4
    cls = torch.randn(q, k + 1, generator=g) * 3
    masks = torch.randn(q, 6, 6, generator=g) * 4
    things = [0, 1]
    res = panoptic_inference(
        cls, masks, (15, 17), thing_class_ids=things, object_mask_threshold=0.4, overlap_threshold=0.5
    )
    ref_map, ref_info = reference_panoptic(cls, masks, (15, 17), things, 0.4, 0.5)
    assert torch.equal(res.id_map, ref_map)
    assert [{key: s[key] for key in ("id", "category_id", "isthing")} for s in res.segments_info] == ref_info
    check_areas(res)


# --------------------------------------------------------------------------------------------------
# dispatch, dtypes, devices, errors
# --------------------------------------------------------------------------------------------------


def test_postprocess_dispatch():
    cls, masks = three_region_logits(8, 8)
    sem = postprocess(cls, masks, "semantic", (8, 8))
    assert isinstance(sem, SemanticResult) and torch.equal(sem.label_map, three_region_expected(8, 8))
    inst = postprocess(cls, masks, "instance", (8, 8), top_k=3)
    assert isinstance(inst, InstanceResult) and inst.classes.numel() == 3
    assert sorted(inst.classes.tolist()) == [0, 1, 2]
    inst_things = postprocess(cls, masks, "instance", (8, 8), thing_class_ids=[0], top_k=3)
    assert inst_things.classes.tolist() == [0]
    pan = postprocess(cls, masks, "panoptic", (8, 8), thing_class_ids=[0])
    assert isinstance(pan, PanopticResult)
    assert torch.equal(pan.id_map.long(), three_region_expected(8, 8) + 1)
    with pytest.raises(ValueError, match="unknown post-processing kind"):
        postprocess(cls, masks, "depth", (8, 8))  # type: ignore[arg-type]


def test_shape_errors():
    cls, masks = three_region_logits(4, 4)
    with pytest.raises(ValueError, match="one image"):
        semantic_inference(cls[None], masks[None], (4, 4))
    with pytest.raises(ValueError, match="number of queries"):
        panoptic_inference(cls[:2], masks, (4, 4), thing_class_ids=[])
    with pytest.raises(ValueError, match="out_size"):
        instance_inference(cls, masks, (4,))  # type: ignore[arg-type]


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available() else []
)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("in_dtype", "score_dtype"),
    [
        (torch.float32, torch.float32),
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_device_and_dtype_conventions(device, in_dtype, score_dtype):
    if device == "mps" and in_dtype == torch.float64:
        pytest.skip("mps has no float64")
    cls, masks = three_region_logits(4, 4)
    cls, masks = cls.to(device=device, dtype=in_dtype), masks.to(device=device, dtype=in_dtype)
    out = (8, 8)
    sem = semantic_inference(cls, masks, out)
    assert sem.label_map.device.type == device and sem.label_map.dtype == torch.int64
    assert sem.label_map.shape == out
    assert torch.equal(sem.label_map.cpu(), three_region_expected(8, 8))
    inst = instance_inference(cls, masks, out, top_k=4)
    assert {t.device.type for t in (inst.classes, inst.scores, inst.masks)} == {device}
    assert inst.classes.dtype == torch.int64 and inst.masks.dtype == torch.bool and inst.scores.dtype == score_dtype
    assert inst.masks.shape == (4, *out)
    pan = panoptic_inference(cls, masks, out, thing_class_ids=[0])
    assert pan.id_map.device.type == device and pan.id_map.dtype == torch.int32 and pan.id_map.shape == out
    assert torch.equal(pan.id_map.cpu().long(), three_region_expected(8, 8) + 1)
    for s in pan.segments_info:
        assert type(s["id"]) is int and type(s["category_id"]) is int and type(s["area"]) is int
        assert type(s["isthing"]) is bool and type(s["score"]) is float

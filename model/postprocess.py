"""Post-processing of Mask2Former logits into semantic, instance and panoptic results.

The semantics follow Mask2Former's official inference (facebookresearch/Mask2Former,
``MaskFormer.semantic_inference / instance_inference / panoptic_inference``):

* Mask logits ``(Q, h, w)`` are first upsampled bilinearly (``align_corners=False``) to the requested
  output size ``(H, W)``; all thresholds and argmaxes are taken at that size.
* Class logits ``(Q, K+1)`` carry ``K`` real classes followed by one "no object" class.

Everything runs in torch on the logits' device: no numpy round-trips, no fixed-size detour, no
per-pixel Python loops (the only Python loop is over the few kept queries in panoptic inference, on
already-reduced per-query statistics).

Dtype conventions of the results (independent of the input dtype): class ids are ``int64``, binary
masks are ``bool``, panoptic id maps are ``int32``; scores are floating point in the *working dtype*,
which is the input's float dtype, promoted to at least ``float32`` (``float16``/``bfloat16`` inputs
are computed and returned in ``float32``, ``float64`` stays ``float64``). All results live on
``class_logits.device``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from model.config import Task

logger = logging.getLogger(__name__)

PostprocessKind = Task

# Defaults of the service and `m2f-ttt segment` (not of the functions below, which keep everything like the official
# code). Chosen on the bundled tiny-synth model over clean and fog synthetic frames: real objects score 0.35-0.94,
# the rest of the top-k pairs < 0.03 (most with empty masks); 16 px drops the empty masks and 1-7 px specks.
DEFAULT_SCORE_THRESHOLD = 0.3
DEFAULT_MIN_AREA = 16

__all__ = [
    "DEFAULT_MIN_AREA",
    "DEFAULT_SCORE_THRESHOLD",
    "InstanceFilter",
    "InstanceResult",
    "PanopticResult",
    "PostprocessKind",
    "SemanticResult",
    "instance_inference",
    "panoptic_inference",
    "postprocess",
    "semantic_inference",
]


@dataclass
class SemanticResult:
    """label_map: (H, W) int64 class ids in ``[0, K)``."""

    label_map: torch.Tensor


@dataclass
class InstanceResult:
    """N instances, sorted by decreasing score.

    classes: (N,) int64 class ids; scores: (N,) float (class score * mean mask probability inside the
    binary mask); masks: (N, H, W) bool; ids: (N,) int64 ids that persist over a stream when a tracker assigned
    them (`mask2former_ttt.tracking`), else None (then an instance's id is its index).
    """

    classes: torch.Tensor
    scores: torch.Tensor
    masks: torch.Tensor
    ids: torch.Tensor | None = None


@dataclass(frozen=True)
class InstanceFilter:
    """Which instances (and panoptic segments) a caller keeps: score ``>= score_threshold`` and at least
    ``min_area`` mask pixels at the output size. The defaults keep everything (the official behaviour)."""

    score_threshold: float = 0.0
    min_area: int = 0

    def __post_init__(self) -> None:
        _check_filter(self.score_threshold, self.min_area)


@dataclass
class PanopticResult:
    """id_map: (H, W) int32, 0 = void, segment ids ``1..S`` (consecutive, in query order).

    segments_info: one COCO-panoptic style dict per segment id (in id order):
    ``{"id": int, "category_id": int, "isthing": bool, "score": float, "area": int}``, where ``area`` is
    the number of pixels of ``id_map`` equal to ``id`` and ``score`` is the query's class score (for a
    stuff segment merged from several queries: the highest of their scores).
    """

    id_map: torch.Tensor
    segments_info: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _check_inputs(class_logits: torch.Tensor, mask_logits: torch.Tensor, out_size: Sequence[int]) -> tuple[int, int]:
    """Validate per-image logits ``(Q, K+1)``, ``(Q, h, w)`` and return ``out_size`` as ``(H, W)``."""
    if class_logits.dim() != 2:
        raise ValueError(
            f"class_logits must be (Q, K+1) for one image, got shape {tuple(class_logits.shape)} "
            "(index the batch dimension first)"
        )
    if mask_logits.dim() != 3:
        raise ValueError(
            f"mask_logits must be (Q, h, w) for one image, got shape {tuple(mask_logits.shape)} "
            "(index the batch dimension first)"
        )
    if class_logits.shape[0] != mask_logits.shape[0]:
        raise ValueError(
            f"class_logits and mask_logits disagree on the number of queries: "
            f"{class_logits.shape[0]} vs {mask_logits.shape[0]}"
        )
    if class_logits.shape[1] < 2:
        raise ValueError(f"class_logits needs at least one class plus 'no object', got {class_logits.shape[1]} columns")
    if len(out_size) != 2:
        raise ValueError(f"out_size must be (H, W), got {out_size!r}")
    height, width = int(out_size[0]), int(out_size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"out_size must be positive, got {out_size!r}")
    return height, width


def _check_filter(score_threshold: float, min_area: int) -> None:
    """ValueError naming the bad instance filter value (score in [0, 1], area >= 0)."""
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
    if int(min_area) < 0:
        raise ValueError(f"min_area must be >= 0 pixels, got {min_area}")


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    """The float dtype computations run in: the input's float dtype promoted to at least float32."""
    if not t.is_floating_point():
        return torch.float32
    return torch.promote_types(t.dtype, torch.float32)


def _upsample(mask_logits: torch.Tensor, size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """(M, h, w) mask logits -> (M, H, W) in ``dtype``, bilinear with ``align_corners=False``."""
    x = mask_logits.to(dtype)
    if x.shape[0] == 0:
        return x.new_zeros((0, *size))
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x.unsqueeze(0), size=size, mode="bilinear", align_corners=False).squeeze(0)


# --------------------------------------------------------------------------------------------------
# semantic
# --------------------------------------------------------------------------------------------------


def semantic_inference(
    class_logits: torch.Tensor, mask_logits: torch.Tensor, out_size: tuple[int, int]
) -> SemanticResult:
    """Per-pixel class by marginalising over queries (official ``semantic_inference``).

    Args:
        class_logits: (Q, K+1) logits, last column = "no object".
        mask_logits: (Q, h, w) mask logits.
        out_size: (H, W) output size; masks are upsampled to it before combining.

    Returns:
        SemanticResult with ``label_map`` (H, W) int64 = argmax_c sum_q softmax(class)[q, c] * sigmoid(mask)[q].
    """
    size = _check_inputs(class_logits, mask_logits, out_size)
    dtype = _work_dtype(class_logits)
    class_probs = class_logits.to(dtype).softmax(dim=-1)[:, :-1]  # (Q, K)
    mask_probs = _upsample(mask_logits, size, dtype).sigmoid()  # (Q, H, W)
    seg = torch.einsum("qc,qhw->chw", class_probs, mask_probs)  # (K, H, W)
    return SemanticResult(label_map=seg.argmax(dim=0))


# --------------------------------------------------------------------------------------------------
# instance
# --------------------------------------------------------------------------------------------------


def instance_inference(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    out_size: tuple[int, int],
    top_k: int = 100,
    thing_class_ids: Sequence[int] | None = None,
    score_threshold: float = 0.0,
    min_area: int = 0,
) -> InstanceResult:
    """Top-k (query, class) pairs as instances (official ``instance_inference``).

    The class score of a pair is ``softmax(class_logits)[q, c]`` (no-object excluded); the top ``top_k``
    pairs over all ``Q*K`` pairs are kept (a query may yield several instances with different classes).
    Each instance's mask is ``upsampled mask logit > 0`` and its score is
    ``class score * mean(sigmoid(mask logit) inside the binary mask)``. If ``thing_class_ids`` is given,
    pairs of other classes are dropped after the top-k selection (as the official code does when
    panoptic inference is on); ``None`` keeps all classes. Finally instances scoring below ``score_threshold``
    or with fewer than ``min_area`` mask pixels (at ``out_size``; an empty mask always counts as too small when
    ``min_area > 0``) are dropped: top-k alone keeps ``top_k`` pairs however unlikely (the official code leaves
    thresholding to the caller, e.g. its demo's 0.5).

    Args:
        class_logits: (Q, K+1) logits, last column = "no object".
        mask_logits: (Q, h, w) mask logits.
        out_size: (H, W) output size.
        top_k: number of (query, class) pairs to keep before the thing filter (clamped to Q*K).
        thing_class_ids: optional class ids to keep.
        score_threshold: minimum final score of a kept instance (``>=``; 0 keeps all).
        min_area: minimum number of mask pixels of a kept instance (0 keeps all, empty masks included).

    Returns:
        InstanceResult sorted by decreasing final score: classes (N,) int64, scores (N,) float,
        masks (N, H, W) bool.
    """
    size = _check_inputs(class_logits, mask_logits, out_size)
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    _check_filter(score_threshold, min_area)
    device = class_logits.device
    dtype = _work_dtype(class_logits)
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[1] - 1

    pair_scores = class_logits.to(dtype).softmax(dim=-1)[:, :-1].flatten()  # (Q*K,) index = q*K + c
    k = min(int(top_k), pair_scores.numel())
    class_scores, flat_idx = pair_scores.topk(k, sorted=True)
    classes = flat_idx % num_classes
    query_idx = flat_idx // num_classes

    if thing_class_ids is not None:
        things = torch.as_tensor(list(thing_class_ids), dtype=torch.int64, device=device)
        keep = torch.isin(classes, things)
        class_scores, classes, query_idx = class_scores[keep], classes[keep], query_idx[keep]

    # Upsample each distinct selected query once; a query may back several (query, class) pairs.
    uniq, inverse = torch.unique(query_idx, return_inverse=True)
    logits_up = _upsample(mask_logits[uniq], size, dtype)  # (U, H, W)
    binary = logits_up > 0
    mask_scores = (logits_up.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    scores = class_scores * mask_scores[inverse]

    areas = binary.flatten(1).sum(1)[inverse]
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[(scores[order] >= score_threshold) & (areas[order] >= min_area)]
    result = InstanceResult(
        classes=classes[order].to(torch.int64),
        scores=scores[order],
        masks=binary[inverse[order]],
    )
    logger.debug(
        "instance_inference: Q=%d K=%d -> %d instances (%d below score %s / area %s)",
        num_queries, num_classes, result.classes.numel(), int(scores.numel()) - result.classes.numel(),
        score_threshold, min_area,
    )
    return result


# --------------------------------------------------------------------------------------------------
# panoptic
# --------------------------------------------------------------------------------------------------


def panoptic_inference(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    out_size: tuple[int, int],
    thing_class_ids: Sequence[int],
    object_mask_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
    score_threshold: float = 0.0,
    min_area: int = 0,
) -> PanopticResult:
    """Non-overlapping segments (official ``panoptic_inference``).

    1. Keep queries whose top class (softmax over K+1) is not "no object" and whose score is
       ``> object_mask_threshold``.
    2. Every pixel goes to the kept query maximising ``score * sigmoid(mask)``.
    3. In query order, a query's segment is ``(argmax == q) & (sigmoid(mask_q) >= 0.5)``; it is dropped if
       empty, or if ``area(argmax == q) / area(sigmoid(mask_q) >= 0.5) < overlap_threshold`` (the
       official ratio; its pixels then stay void). Thing queries each get a new segment id; stuff
       queries of the same class are merged into the first such segment. Queries scoring below
       ``score_threshold`` are not kept (step 1) and a query whose segment has fewer than ``min_area`` pixels
       is dropped like an empty one (its pixels stay void).

    Args:
        class_logits: (Q, K+1) logits, last column = "no object".
        mask_logits: (Q, h, w) mask logits.
        out_size: (H, W) output size.
        thing_class_ids: class ids that are "things" (all other classes are "stuff").
        object_mask_threshold: minimum class score of a kept query (strict ``>``).
        overlap_threshold: minimum visible fraction of a query's mask.
        score_threshold: minimum class score of a kept query (``>=``, on top of ``object_mask_threshold``).
        min_area: minimum pixels of a query's segment (0: only empty segments are dropped).

    Returns:
        PanopticResult: id_map (H, W) int32 (0 = void, ids 1..S) and segments_info (see the dataclass).
    """
    size = _check_inputs(class_logits, mask_logits, out_size)
    _check_filter(score_threshold, min_area)
    device = class_logits.device
    dtype = _work_dtype(class_logits)
    num_classes = class_logits.shape[1] - 1
    things = {int(c) for c in thing_class_ids}

    scores, labels = class_logits.to(dtype).softmax(dim=-1).max(dim=-1)  # (Q,), (Q,)
    keep = labels.ne(num_classes) & (scores > object_mask_threshold) & (scores >= score_threshold)
    cur_scores, cur_classes = scores[keep], labels[keep]
    num_kept = int(cur_scores.numel())
    if num_kept == 0:
        logger.debug("panoptic_inference: no query above object_mask_threshold=%s", object_mask_threshold)
        return PanopticResult(id_map=torch.zeros(size, dtype=torch.int32, device=device), segments_info=[])

    cur_masks = _upsample(mask_logits[keep], size, dtype).sigmoid()  # (M, H, W)
    mask_ids = (cur_scores[:, None, None] * cur_masks).argmax(dim=0)  # (H, W) in [0, M)
    binary = cur_masks >= 0.5  # (M, H, W)
    own = binary.gather(0, mask_ids.unsqueeze(0)).squeeze(0)  # (H, W): pixel inside its argmax query's mask

    # Per-query statistics in one pass each; only these M-length vectors reach Python.
    argmax_area = torch.bincount(mask_ids.flatten(), minlength=num_kept).tolist()
    original_area = binary.flatten(1).sum(1).tolist()
    segment_area = torch.bincount(mask_ids[own], minlength=num_kept).tolist()
    classes_list = cur_classes.tolist()
    scores_list = cur_scores.tolist()

    segment_of_query = [0] * num_kept
    stuff_segment: dict[int, int] = {}
    segments_info: list[dict] = []
    for q in range(num_kept):
        if argmax_area[q] == 0 or original_area[q] == 0 or segment_area[q] == 0 or segment_area[q] < min_area:
            continue
        if argmax_area[q] / original_area[q] < overlap_threshold:
            continue
        cls = int(classes_list[q])
        isthing = cls in things
        if not isthing and cls in stuff_segment:
            seg_id = stuff_segment[cls]
            segment_of_query[q] = seg_id
            info = segments_info[seg_id - 1]
            info["score"] = max(info["score"], float(scores_list[q]))
            continue
        seg_id = len(segments_info) + 1
        if not isthing:
            stuff_segment[cls] = seg_id
        segment_of_query[q] = seg_id
        segments_info.append(
            {"id": seg_id, "category_id": cls, "isthing": isthing, "score": float(scores_list[q]), "area": 0}
        )

    lookup = torch.tensor(segment_of_query, dtype=torch.int32, device=device)
    id_map = torch.where(own, lookup[mask_ids], torch.zeros((), dtype=torch.int32, device=device))
    areas = torch.bincount(id_map.flatten().to(torch.int64), minlength=len(segments_info) + 1).tolist()
    for info in segments_info:
        info["area"] = int(areas[info["id"]])
    logger.debug(
        "panoptic_inference: %d/%d queries kept, %d segments", num_kept, class_logits.shape[0], len(segments_info)
    )
    return PanopticResult(id_map=id_map, segments_info=segments_info)


# --------------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------------


def postprocess(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    kind: PostprocessKind,
    out_size: tuple[int, int],
    thing_class_ids: Sequence[int] = (),
    object_mask_threshold: float = 0.8,
    overlap_threshold: float = 0.8,
    top_k: int = 100,
    score_threshold: float = 0.0,
    min_area: int = 0,
) -> SemanticResult | InstanceResult | PanopticResult:
    """Dispatch one image's logits ``(Q, K+1)``, ``(Q, h, w)`` to the inference of ``kind``.

    For ``kind="instance"`` an empty ``thing_class_ids`` means "keep all classes"; a non-empty one keeps
    only those classes (as the official code does alongside panoptic inference). ``score_threshold`` and
    ``min_area`` filter instances and panoptic segments (semantic ignores them).
    """
    if kind == "semantic":
        return semantic_inference(class_logits, mask_logits, out_size)
    if kind == "instance":
        things = list(thing_class_ids)
        return instance_inference(
            class_logits, mask_logits, out_size, top_k=top_k, thing_class_ids=things or None,
            score_threshold=score_threshold, min_area=min_area,
        )
    if kind == "panoptic":
        return panoptic_inference(
            class_logits,
            mask_logits,
            out_size,
            thing_class_ids=list(thing_class_ids),
            object_mask_threshold=object_mask_threshold,
            overlap_threshold=overlap_threshold,
            score_threshold=score_threshold,
            min_area=min_area,
        )
    raise ValueError(f"unknown post-processing kind {kind!r}; choose 'semantic', 'instance' or 'panoptic'")

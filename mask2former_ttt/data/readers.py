"""Readers for the synthetic layouts that also read the real datasets through the same code path.

Supported layouts (``format``):

* ``coco``: COCO panoptic. Synthetic: ``panoptic_<split>.json`` + ``panoptic/<split>/*.png`` +
  ``images/<split>/*``; official COCO: ``annotations/panoptic_<split>.json`` +
  ``annotations/panoptic_<split>/*.png`` + ``<split>/*.jpg``. Category ids are mapped to contiguous
  class ids in increasing id order (synthetic category ``c + 1`` -> class ``c``).
* ``cityscapes``: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` +
  ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` (19 train ids, 255 ignore); when
  ``*_gtFine_instanceIds.png`` exist, thing classes (11-18) are split into instances.
* ``kitti-step``: ``images/<split>/<seq>/*.png`` + ``panoptic_maps/<split>/<seq>/*.png``
  (R = class, G * 256 + B = track id); the synthetic videos use the same layout. As stills, all
  frames of all sequences are used.

Every sample is a dict::

    image         uint8  (3, H, W)
    semantic      int64  (H, W)      class ids, 255 = ignore
    instance      int64  (H, W)      instance / track id of thing pixels, 0 elsewhere
    panoptic      int64  (H, W)      segment id, 0 = void (see ``segments``)
    segments      list[dict]         {"id", "category_id" (contiguous), "isthing", "iscrowd"}
    mask_labels   float32 (N, H, W)  Mask2Former targets: one mask per stuff class present and one per
    class_labels  int64  (N,)        non-crowd thing instance (classes follow the same order)
    name          str

The label set (class names, thing ids) comes from ``meta.json`` when present, else from the COCO
categories, else the Cityscapes / KITTI-STEP defaults (``classes.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .classes import CITYSCAPES, CITYSCAPES_LABEL_TO_TRAIN, IGNORE_INDEX, KITTI_STEP, LabelSet
from .formats import ID_DIVISOR, SegmentInfo, decode_kitti_step, load_raw, load_rgb, panoptic_from_semantic, rgb_to_id

Loader = Callable[[], "Annotated"]
log = logging.getLogger(__name__)
_ANNOUNCED: set[tuple] = set()


@dataclass
class Annotated:
    """A decoded sample before augmentation (numpy; H x W everywhere)."""

    image: np.ndarray  # (H, W, 3) uint8
    semantic: np.ndarray  # (H, W) uint8/int, 255 ignore
    instance: np.ndarray  # (H, W) int
    panoptic: np.ndarray  # (H, W) int64
    segments: dict[int, SegmentInfo]
    name: str


# --- label sets and format detection -----------------------------------------------------------------
def read_label_set(root: str | Path, format: str | None = None, split: str | None = None) -> LabelSet:
    """The dataset's :class:`LabelSet` (``meta.json`` > COCO categories > format default); logs which one it used."""
    labels, source = _label_set_and_source(Path(root), format, split)
    said = (str(root), labels.class_names, source)
    if said not in _ANNOUNCED:  # once per process and dataset, not for every video a benchmark opens
        _ANNOUNCED.add(said)
        log.info("%s: %d classes (%s) from %s", root, labels.num_classes, ", ".join(labels.class_names), source)
    return labels


def _label_set_and_source(root: Path, format: str | None, split: str | None) -> tuple[LabelSet, str]:
    if (root / "meta.json").exists():
        return LabelSet.from_json(json.loads((root / "meta.json").read_text())), "meta.json"
    format = format or detect_format(root, split or "train")
    if format == "coco":
        coco = _coco_json(root, split or "train")
        cats = sorted(json.loads(coco.read_text())["categories"], key=lambda c: c["id"])
        labels = LabelSet(
            name="coco-panoptic",
            class_names=tuple(c["name"] for c in cats),
            thing_ids=tuple(i for i, c in enumerate(cats) if c.get("isthing")),
            colors=tuple(tuple(c.get("color", (128, 128, 128))) for c in cats),  # type: ignore[misc]
        )
        return labels, f"the categories of {coco.name}"
    default = CITYSCAPES if format == "cityscapes" else KITTI_STEP
    return default, (f"the {format} default label set (no meta.json: write one to use other classes, "
                     "docs/own-data.md)")


def _coco_json(root: Path, split: str) -> Path:
    for p in (root / f"panoptic_{split}.json", root / "annotations" / f"panoptic_{split}.json"):
        if p.exists():
            return p
    raise FileNotFoundError(f"no panoptic_{split}.json under {root} or {root}/annotations")


def detect_format(root: str | Path, split: str) -> str:
    """``coco`` | ``cityscapes`` | ``kitti-step`` from the files present for ``split``."""
    root = Path(root)
    if (root / f"panoptic_{split}.json").exists() or (root / "annotations" / f"panoptic_{split}.json").exists():
        return "coco"
    if (root / "leftImg8bit" / split).is_dir():
        return "cityscapes"
    if (root / "panoptic_maps" / split).is_dir() or (root / "images" / split).is_dir():
        return "kitti-step"
    raise FileNotFoundError(f"cannot find a COCO / Cityscapes / KITTI-STEP layout for split {split!r} in {root}")


# --- per-format sample loaders -------------------------------------------------------------------------
def _first_dir(*cands: Path) -> Path:
    for c in cands:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"none of {[str(c) for c in cands]} exists")


def coco_loaders(root: Path, split: str, labels: LabelSet) -> list[Loader]:
    js = json.loads(_coco_json(root, split).read_text())
    cat_ids = sorted(c["id"] for c in js["categories"])
    to_contig = {cid: i for i, cid in enumerate(cat_ids)}
    isthing = {to_contig[c["id"]]: bool(c.get("isthing")) for c in js["categories"]}
    class_instance = js.get("info", {}).get("segment_id_encoding") == "class_instance"
    images = {im["id"]: im for im in js["images"]}
    pan_dir = _first_dir(
        root / "panoptic" / split, root / "annotations" / f"panoptic_{split}", root / f"panoptic_{split}"
    )
    img_dir = _first_dir(root / "images" / split, root / split)
    return [
        partial(
            _load_coco, img_dir / images[a["image_id"]]["file_name"], pan_dir / a["file_name"], a["segments_info"],
            to_contig, isthing, class_instance,
        )
        for a in sorted(js["annotations"], key=lambda a: a["image_id"])
    ]


def _load_coco(
    image_path: Path, pan_path: Path, segments_info: list[dict], to_contig: dict[int, int], isthing: dict[int, bool],
    class_instance: bool,
) -> Annotated:
    pan = rgb_to_id(load_rgb(pan_path))
    sem = np.full(pan.shape, IGNORE_INDEX, np.uint8)
    inst = np.zeros(pan.shape, np.int64)
    segs: dict[int, SegmentInfo] = {}
    n_things = 0
    for s in segments_info:
        c = to_contig[s["category_id"]]
        m = pan == s["id"]
        sem[m] = c
        crowd = bool(s.get("iscrowd", 0))
        if isthing[c] and not crowd:
            n_things += 1
            inst[m] = s["id"] % ID_DIVISOR if class_instance else n_things
        segs[int(s["id"])] = SegmentInfo(int(s["id"]), c, isthing[c], crowd)
    pan = np.where(np.isin(pan, list(segs)), pan, 0)
    return Annotated(load_rgb(image_path), sem, inst, pan, segs, image_path.stem)


def cityscapes_loaders(root: Path, split: str, labels: LabelSet) -> list[Loader]:
    img_root, gt_root = root / "leftImg8bit" / split, root / "gtFine" / split
    out: list[Loader] = []
    for img in sorted(img_root.glob("*/*_leftImg8bit.png")):
        stem = img.name[: -len("_leftImg8bit.png")]
        gt = gt_root / img.parent.name
        out.append(partial(
            _load_cityscapes, img, gt / f"{stem}_gtFine_labelTrainIds.png", gt / f"{stem}_gtFine_instanceIds.png",
            stem, labels.thing_ids,
        ))
    if not out:
        raise FileNotFoundError(f"no *_leftImg8bit.png under {img_root}")
    return out


def _load_cityscapes(img: Path, sem_p: Path, inst_p: Path, stem: str, thing_ids: tuple[int, ...]) -> Annotated:
    sem = load_raw(sem_p).astype(np.uint8)
    inst = None
    if inst_p.exists():  # labelId * 1000 + k for thing instances, labelId for stuff / crowd
        raw = load_raw(inst_p).astype(np.int64)
        label = np.where(raw >= 1000, raw // 1000, raw)
        lut = np.full(max(int(label.max()) + 1, 34), IGNORE_INDEX, np.int64)
        for k, v in CITYSCAPES_LABEL_TO_TRAIN.items():
            lut[k] = v
        train = lut[label]
        inst = np.where((raw >= 1000) & (train == sem), raw % 1000 + 1, 0)  # +1: instance 0 is valid
    pan, segs = panoptic_from_semantic(sem, inst, thing_ids if inst is not None else (), IGNORE_INDEX)
    inst_map = np.zeros(sem.shape, np.int64) if inst is None else inst
    return Annotated(load_rgb(img), sem, inst_map, pan, segs, stem)


def kitti_step_frame(image_path: Path, label_path: Path | None, labels: LabelSet, name: str) -> Annotated:
    """Decode one KITTI-STEP frame (labels optional: unlabelled frames get all-ignore targets)."""
    img = load_rgb(image_path)
    if label_path is None or not label_path.exists():
        sem = np.full(img.shape[:2], IGNORE_INDEX, np.uint8)
        inst = np.zeros(img.shape[:2], np.int32)
    else:
        sem, inst = decode_kitti_step(load_rgb(label_path))
    pan, segs = panoptic_from_semantic(sem, inst, labels.thing_ids, labels.ignore_index)
    inst = np.where(np.isin(sem, list(labels.thing_ids)), inst, 0)
    return Annotated(img, sem, inst, pan, segs, name)


def kitti_step_loaders(root: Path, split: str, labels: LabelSet) -> list[Loader]:
    out: list[Loader] = []
    for seq in _sequence_dirs(root, split):
        for img in sorted(seq.glob("*.png")):
            lab = root / "panoptic_maps" / split / seq.name / img.name
            out.append(partial(kitti_step_frame, img, lab, labels, f"{seq.name}/{img.stem}"))
    return out


def _sequence_dirs(root: Path, split: str) -> list[Path]:
    d = root / "images" / split
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


# --- geometry / augmentation ------------------------------------------------------------------------
def _resize_nearest(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = a.shape[:2]
    ys = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.intp), h - 1)
    xs = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.intp), w - 1)
    return a[ys[:, None], xs[None, :]]


def _resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if img.shape[:2] == tuple(size):
        return img
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR))


def resize_sample(s: Annotated, size: tuple[int, int]) -> Annotated:
    """Resize to ``size = (H, W)``: bilinear image, nearest-neighbour labels (ids preserved exactly)."""
    if s.image.shape[:2] == tuple(size):
        return s
    return Annotated(
        _resize_image(s.image, size), _resize_nearest(s.semantic, size), _resize_nearest(s.instance, size),
        _resize_nearest(s.panoptic, size), s.segments, s.name,
    )


@dataclass(frozen=True)
class Augment:
    """Training augmentation: random scale jitter, random crop (padded with ignore) and h-flip.

    ``crop_size`` None keeps the (resized) input size. Random draws use torch's RNG, so
    ``torch.manual_seed`` and DataLoader worker seeding make them reproducible.
    """

    crop_size: tuple[int, int] | None = None
    scale_range: tuple[float, float] = (0.75, 1.5)
    hflip: bool = True

    def __call__(self, s: Annotated) -> Annotated:
        h, w = s.image.shape[:2]
        ch, cw = self.crop_size or (h, w)
        scale = float(torch.empty(()).uniform_(*self.scale_range))
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        s = resize_sample(s, (nh, nw))
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        if ph or pw:
            s = Annotated(
                np.pad(s.image, ((0, ph), (0, pw), (0, 0))),
                np.pad(s.semantic, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX),
                np.pad(s.instance, ((0, ph), (0, pw))),
                np.pad(s.panoptic, ((0, ph), (0, pw))),
                s.segments,
                s.name,
            )
        y0 = int(torch.randint(0, s.image.shape[0] - ch + 1, ()))
        x0 = int(torch.randint(0, s.image.shape[1] - cw + 1, ()))
        sl = (slice(y0, y0 + ch), slice(x0, x0 + cw))
        flip = self.hflip and bool(torch.rand(()) < 0.5)
        step = -1 if flip else 1

        def crop(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a[sl][:, ::step])

        return Annotated(crop(s.image), crop(s.semantic), crop(s.instance), crop(s.panoptic), s.segments, s.name)


# --- targets -----------------------------------------------------------------------------------------
def mask_targets(
    panoptic: np.ndarray, segments: dict[int, SegmentInfo]
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Mask2Former targets from a panoptic map.

    Returns ``mask_labels`` (N, H, W) float32, ``class_labels`` (N,) int64 -- one entry per stuff class
    present (union of its segments, ascending class id) followed by one per non-crowd thing segment
    (ascending segment id) -- and the list of segments present (dicts, ascending id).
    """
    ids = [int(i) for i in np.unique(panoptic) if i != 0 and int(i) in segments]
    present = [segments[i] for i in ids]
    stuff = sorted({s.category_id for s in present if not s.isthing})
    things = [s for s in present if s.isthing and not s.iscrowd]
    masks, classes = [], []
    for c in stuff:
        sids = [s.id for s in present if not s.isthing and s.category_id == c]
        masks.append(np.isin(panoptic, sids))
        classes.append(c)
    for s in things:
        masks.append(panoptic == s.id)
        classes.append(s.category_id)
    h, w = panoptic.shape
    mask_arr = np.stack(masks).astype(np.float32) if masks else np.zeros((0, h, w), np.float32)
    seg_dicts = [
        {"id": s.id, "category_id": s.category_id, "isthing": s.isthing, "iscrowd": s.iscrowd} for s in present
    ]
    return mask_arr, np.asarray(classes, np.int64), seg_dicts


def to_sample(a: Annotated) -> dict:
    """Annotated (numpy) -> the sample dict of torch tensors described in the module docstring."""
    masks, classes, segs = mask_targets(a.panoptic, a.segments)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(a.image.transpose(2, 0, 1))),
        "semantic": torch.from_numpy(a.semantic.astype(np.int64)),
        "instance": torch.from_numpy(np.asarray(a.instance, np.int64)),
        "panoptic": torch.from_numpy(np.asarray(a.panoptic, np.int64)),
        "segments": segs,
        "mask_labels": torch.from_numpy(masks),
        "class_labels": torch.from_numpy(classes),
        "name": a.name,
    }


# --- datasets ---------------------------------------------------------------------------------------
_LOADERS = {"coco": coco_loaders, "cityscapes": cityscapes_loaders, "kitti-step": kitti_step_loaders}


class StillDataset(Dataset):
    """Training / evaluation stills from a COCO-panoptic, Cityscapes or KITTI-STEP tree.

    Args:
        root: dataset root. split: e.g. ``train``. format: ``auto`` | ``coco`` | ``cityscapes`` | ``kitti-step``.
        resize: optional ``(H, W)`` every sample is first resized to (e.g. for Cityscapes' 1024x2048).
        augment: an :class:`Augment`, ``True`` (default :class:`Augment`) or ``False``/None.
    Items are dicts (see the module docstring); batch them with :func:`collate`.
    """

    def __init__(
        self, root: str | Path, split: str = "train", format: str = "auto", resize: tuple[int, int] | None = None,
        augment: Augment | bool | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.format = detect_format(self.root, split) if format == "auto" else format
        if self.format not in _LOADERS:
            raise ValueError(f"unknown format {format!r}")
        self.labels = read_label_set(self.root, self.format, split)
        self._loaders = _LOADERS[self.format](self.root, split, self.labels)
        self.resize = tuple(resize) if resize else None
        self.augment: Augment | None = Augment() if augment is True else (augment or None)

    def __len__(self) -> int:
        return len(self._loaders)

    def load(self, i: int) -> Annotated:
        """Decoded sample ``i`` (numpy, after ``resize``, before augmentation)."""
        a = self._loaders[i]()
        return resize_sample(a, self.resize) if self.resize else a

    def __getitem__(self, i: int) -> dict:
        a = self.load(i)
        if self.augment is not None:
            a = self.augment(a)
        return to_sample(a)


def collate(batch: list[dict]) -> dict:
    """Stack equal-size tensors (``image`` -> (B, 3, H, W) ...); per-sample ``mask_labels`` /
    ``class_labels`` / ``segments`` / ``name`` stay lists (the Mask2Former loss takes lists)."""
    out: dict = {}
    for k in batch[0]:
        vals = [b[k] for b in batch]
        if k in ("mask_labels", "class_labels", "segments", "name") or not isinstance(vals[0], torch.Tensor):
            out[k] = vals
        else:
            out[k] = torch.stack(vals)
    return out


class VideoSequence:
    """Frames of one KITTI-STEP-layout sequence, in order, with the same fields as :class:`StillDataset`.

    ``info`` holds the ``videos.json`` entry (synthetic: ``family``, ``world_seed``, per-frame
    ``severity`` and ``frame_family`` ...) or ``{}`` for real data. Items also carry ``index`` (frame
    number), ``video`` and, when known, ``severity`` / ``family``.
    """

    def __init__(
        self, root: str | Path, split: str, name: str, labels: LabelSet | None = None, info: dict | None = None,
        resize: tuple[int, int] | None = None,
    ) -> None:
        self.root, self.split, self.name = Path(root), split, name
        self.labels = labels or read_label_set(self.root, "kitti-step", split)
        self.info = info or {}
        self.resize = tuple(resize) if resize else None
        self.frames = sorted((self.root / "images" / split / name).glob("*.png"))
        if not self.frames:
            raise FileNotFoundError(f"no frames in {self.root / 'images' / split / name}")

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        return f"VideoSequence({self.split}/{self.name}, {len(self)} frames, family={self.info.get('family')})"

    @property
    def family(self) -> str | None:
        return self.info.get("family")

    def __getitem__(self, t: int) -> dict:
        if not 0 <= t < len(self):
            raise IndexError(t)
        img = self.frames[t]
        lab = self.root / "panoptic_maps" / self.split / self.name / img.name
        a = kitti_step_frame(img, lab, self.labels, f"{self.name}/{img.stem}")
        if self.resize:
            a = resize_sample(a, self.resize)
        s = to_sample(a)
        s["index"] = t
        s["video"] = self.name
        if "severity" in self.info:
            s["severity"] = float(self.info["severity"][t])
            s["family"] = self.info["frame_family"][t]
        return s

    def __iter__(self) -> Iterator[dict]:
        for t in range(len(self)):
            yield self[t]


def list_videos(root: str | Path, split: str, resize: tuple[int, int] | None = None) -> list[VideoSequence]:
    """All sequences of ``split`` (sorted by name), with their ``videos.json`` info when present."""
    root = Path(root)
    manifest = json.loads((root / "videos.json").read_text())["videos"] if (root / "videos.json").exists() else {}
    labels = read_label_set(root, "kitti-step", split)
    return [
        VideoSequence(root, split, d.name, labels, manifest.get(d.name), resize) for d in _sequence_dirs(root, split)
    ]

"""Can a stream tell, from signals it has while serving, that its adaptation hurts? (docs/benchmark/domains.md)

Streams each named video through a preset (`default`) and, per frame, records what a guard could read, beside what
only the labels know:

- `u_served`, `u_theta0`: mean per-pixel uncertainty (1 − max_k p(k) of h∘f's semantic distribution) of the served
  (adapted) prediction and of θ0's prediction on the same frame;
- `loss_ratio`: the frame's ℓ_s (the TTT step's loss) over the checkpoint's clean reference `recon_loss_reference`;
- `acc_served`, `acc_theta0`: pixel accuracy of each prediction against the labels; `step_scale`.

Per video it prints the accuracy change adaptation brings, how often the adapted model is less sure than θ0, the
correlation of the two changes over frames, and ℓ_s's median ratio: a harm detector would need the less-sure
frames (or high ℓ_s) to be the harmed ones on every domain.

    python scripts/adaptation_probe.py --model-dir DIR --data-root ROOT --split val --video val-fog-w00 ... --out rows.json
"""

from __future__ import annotations

import json
import statistics

import torch
from torch.nn import functional as F

from model.checkpoint import load_checkpoint
from model.main_head import HeadOutput
from model.masking import normalize, with_flag
from mask2former_ttt.evaluation.benchmark import load_video
from mask2former_ttt.ttt import build_adapter
from mask2former_ttt.ttt.confidence_shift import uncertainty_from_logits
from mask2former_ttt.ttt.frame_step import step_frame
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.objectives import semantic_probs
from probe_args import video_probe_parser


def uncertainty_and_accuracy(class_logits: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """class_logits (Q, K+1), mask_logits (Q, h, w), labels (H, W) int64 (255 ignored) -> (mean 1 − max_k p(k),
    pixel accuracy of the arg-max upsampled to the labels' size)."""
    probs = semantic_probs(HeadOutput(class_logits=class_logits[None], mask_logits=mask_logits[None], aux=[]))[0]
    pred = F.interpolate(probs.argmax(0)[None, None].float(), size=labels.shape, mode="nearest")[0, 0].long()
    valid = labels != 255
    uncertainty = uncertainty_from_logits(class_logits[None], mask_logits[None])[0]  # the confidence gate's statistic
    return float(uncertainty), float((pred[valid] == labels[valid]).float().mean())


def probe_video(model, frames, preset: str, seed: int) -> list[dict]:  # noqa: ANN001
    adapter = build_adapter(model, "online", preset, seed)
    ref = model.cfg.recon_loss_reference
    rows = []
    for t, frame in enumerate(frames):
        labels = frame.semantic.long()
        res = step_frame(adapter, frame.image, "semantic", tuple(labels.shape)).logits
        u_a, acc_a = uncertainty_and_accuracy(res.class_logits, res.mask_logits, labels)
        x = to_working_resolution(frame.image, model.cfg.image_size, model.cfg.max_size)
        with torch.no_grad():
            out = model(with_flag(normalize(x[None], model.cfg)), mode="predict")
        u_0, acc_0 = uncertainty_and_accuracy(out.class_logits[0].float(), out.mask_logits[0].float(), labels)
        loss = res.stats.loss
        rows.append({"t": t, "u_served": u_a, "u_theta0": u_0, "acc_served": acc_a, "acc_theta0": acc_0,
                     "loss_ratio": None if loss is None or not ref else loss / ref, "step_scale": res.stats.step_scale})
    return rows


def summary(rows: list[dict]) -> dict:
    du = [r["u_served"] - r["u_theta0"] for r in rows]
    da = [r["acc_served"] - r["acc_theta0"] for r in rows]
    ratios = [r["loss_ratio"] for r in rows if r["loss_ratio"] is not None]
    corr = statistics.correlation(du, da) if len(set(du)) > 1 and len(set(da)) > 1 else None
    return {"acc_theta0": statistics.fmean(r["acc_theta0"] for r in rows), "acc_change": statistics.fmean(da),
            "less_sure_frames": sum(d > 0 for d in du) / len(du), "corr_uncertainty_accuracy": corr,
            "loss_ratio_median": statistics.median(ratios) if ratios else None}


def main() -> None:
    ap = video_probe_parser(__doc__, "val")
    ap.add_argument("--seed", type=int, default=0, help="mask seed")
    ap.add_argument("--out", default=None, help="write the per-frame rows as JSON here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = load_checkpoint(a.model_dir).eval()
    out = {}
    for video in a.video:
        rows = probe_video(model, load_video(a.data_root, a.split, video), a.preset, a.seed)
        out[video] = {"summary": summary(rows), "frames": rows}
        print(video, json.dumps({k: None if v is None else round(v, 3) for k, v in out[video]["summary"].items()}),
              flush=True)
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(out, fh)


if __name__ == "__main__":
    main()

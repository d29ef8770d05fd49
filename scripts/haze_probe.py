"""Why does the MAE step hurt under a shift? At θ0, per frame of the named videos: ℓ_s (the `default` preset's
masked-patch MSE, fixed masks), the MAE gradient's norm over the adapted tensors, the frame's contrast (pixel std
in the normalized units ℓ_s is measured in), ℓ_s relative to that variance, and the cosine between the MAE
gradient and the gradient of the supervised semantic loss on the frame's labels (per-pixel NLL of h∘f's class
distribution). A negative cosine means a small MAE step raises the supervised loss (used to diagnose domain B's haze,
docs/benchmark/domains.md).

    python scripts/haze_probe.py --model-dir DIR --data-root ROOT --split test --video test-fog-w00 ... --every 20
"""

from __future__ import annotations

import json
import math

import torch
from torch.nn import functional as F

from model.checkpoint import load_checkpoint
from model.masking import normalize, with_flag
from mask2former_ttt.evaluation.benchmark import load_video
from mask2former_ttt.ttt.config import ttt_preset
from mask2former_ttt.ttt.frames import to_working_resolution
from mask2former_ttt.ttt.objectives import mae_loss, semantic_probs
from mask2former_ttt.ttt.param_groups import mae_names
from probe_args import video_probe_parser


def grads(model, names, loss) -> torch.Tensor:
    params = dict(model.named_parameters())
    g = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    return torch.cat([(x if x is not None else torch.zeros_like(params[n])).reshape(-1) for x, n in zip(g, names)])


def probe(model, cfg, frame, seed: int = 0) -> dict:
    names = mae_names(model)
    params = dict(model.named_parameters())
    for n in names:
        params[n].requires_grad_(True)
    x8 = to_working_resolution(frame.image, model.cfg.image_size)
    x = normalize(x8[None], model.cfg)
    gen = torch.Generator().manual_seed(seed)
    ls = mae_loss(lambda inp, mode: model(inp, mode=mode), x, cfg, gen)
    g_mae = grads(model, names, ls)
    out = model(with_flag(x), mode="predict")
    p = semantic_probs(out)
    sem = frame.semantic[None, None].float()
    sem = F.interpolate(sem, size=p.shape[-2:], mode="nearest")[:, 0].long()
    sem[sem == 255] = -100
    l_m = F.nll_loss(p.clamp_min(1e-8).log(), sem, ignore_index=-100)
    g_m = grads(model, names, l_m)
    var = float(x.var(dim=(2, 3)).mean())
    for n in names:
        params[n].requires_grad_(False)
    return {
        "l_s": float(ls), "l_s_rel": float(ls) / max(var, 1e-8), "contrast": math.sqrt(var),
        "g_mae": float(g_mae.norm()), "g_sup": float(g_m.norm()), "l_sup": float(l_m),
        "cos": float(F.cosine_similarity(g_mae, g_m, dim=0)),
    }


def main() -> None:
    ap = video_probe_parser(__doc__, "test")
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--out", default=None, help="write the per-frame rows as JSON here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = load_checkpoint(a.model_dir).eval()
    cfg = ttt_preset(a.preset)
    rows = []
    for video in a.video:
        frames = load_video(a.data_root, a.split, video)
        for t in range(0, len(frames), a.every):
            r = {"video": video, "frame": t, **probe(model, cfg, frames[t], seed=t)}
            rows.append(r)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()

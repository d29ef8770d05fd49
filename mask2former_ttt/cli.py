"""`m2f-ttt`: the project's command line (data, training, evaluation, conversion, offline segmentation).

The `serve` command is added by `server.cli`, which wraps this app so that layering stays one-way.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Mask2Former + online TTT-MAE: streaming video segmentation that keeps learning.", no_args_is_help=True)
console = Console()


_RECIPE_HELP = {
    "recon_variant": "light from scratch, release when fine-tuning", "steps": "1500 from scratch, 2000 fine-tuning",
    "warmup_steps": "50 / 0", "batch_size": "8", "lr": "1e-3 from scratch, 1e-4 fine-tuning",
    "backbone_lr_mult": "1.0 / 0.1", "grad_clip": "1.0 / 0.01", "checkpoint_every": "250 / 500",
}


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


EVAL_EXTRA = ("matplotlib", "torchmetrics")  # pyproject's `eval` extra: metrics and plots


def _require_eval_extra(command: str) -> None:
    """Commands that score and plot need the `eval` extra: without it, one line naming it (exit 2), no traceback."""
    import importlib.util

    missing = [name for name in EVAL_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        typer.echo(f"m2f-ttt {command} needs the `eval` extra ({', '.join(missing)} missing): "
                   "pip install 'mask2former-ttt[eval]' (from a checkout: pip install -e '.[eval]')", err=True)
        raise typer.Exit(2)


@app.command()
def params(presets: list[str] = typer.Argument(None, help="model presets (default: tiny swin-s)")) -> None:
    """Print parameter counts of f, h, g for model presets (both g variants)."""
    from model.config import preset
    from model.ymodel import build_model, parameter_counts

    table = Table("preset", "g variant", "f", "h", "g", "f+h", "total")
    for name in presets or ["tiny", "swin-s"]:
        for variant in ("release", "light"):
            cfg = preset(name)
            cfg.recon.variant = variant
            c = parameter_counts(build_model(cfg))
            table.add_row(name, variant, *(f"{c[k] / 1e6:.2f} M" for k in ("f", "h", "g", "f+h", "total")))
    console.print(table)


@app.command()
def generate(
    root: Path = typer.Option(Path("data/synth"), help="output directory"),
    train_stills: int = typer.Option(2000, help="clean training stills"),
    frames: int = typer.Option(200, help="frames per video"),
    test_worlds: int = typer.Option(3, help="test worlds per shift family"),
    val_worlds: int = typer.Option(3, help="validation worlds per shift family (tuning only)"),
    seed: int = 0,
    workers: int = typer.Option(2, help="processes (output is identical for any value)"),
    overwrite: bool = typer.Option(False, help="replace an existing dataset"),
    domain: str = typer.Option("street", help="street (domain A) | aerial (domain B, held out)"),
) -> None:
    """Generate the labelled synthetic worlds: training stills + shifted videos (KITTI-STEP layout)."""
    if domain not in ("street", "aerial"):
        raise typer.BadParameter(f"unknown domain {domain!r}; choose street or aerial", param_hint="'--domain'")
    _logging()
    if domain == "aerial":
        from mask2former_ttt.data.aerial.generate import generate_aerial_dataset

        generate_aerial_dataset(
            root, n_train_stills=train_stills, frames_per_video=frames, n_test_worlds=test_worlds,
            n_val_worlds=val_worlds, seed=seed, workers=workers, overwrite=overwrite,
        )
        console.print(f"aerial dataset (domain B) written to {root}")
        return
    from mask2former_ttt.data.generate import generate_dataset

    generate_dataset(
        root, n_train_stills=train_stills, frames_per_video=frames, n_test_worlds=test_worlds, n_val_worlds=val_worlds,
        seed=seed, workers=workers, overwrite=overwrite,
    )
    console.print(f"dataset written to {root}")


@app.command()
def train(
    data_root: Path = typer.Option(Path("data/synth")),
    dataset_format: str = typer.Option("auto", help="auto | coco | cityscapes | kitti-step"),
    out_dir: Path = typer.Option(Path("runs/train")),
    init: str = typer.Option("scratch", help="scratch | checkpoint | hf"),
    init_path: Optional[Path] = typer.Option(None, help="project checkpoint dir or Hugging Face Mask2Former dir"),
    model_preset: str = typer.Option("tiny"),
    recon_variant: Optional[str] = typer.Option(
        None, help="g: release (second Mask2Former head) | light (FPN)", show_default=_RECIPE_HELP["recon_variant"]),
    steps: Optional[int] = typer.Option(None, min=1, show_default=_RECIPE_HELP["steps"]),
    warmup_steps: Optional[int] = typer.Option(None, min=0, show_default=_RECIPE_HELP["warmup_steps"]),
    batch_size: Optional[int] = typer.Option(None, min=1, show_default=_RECIPE_HELP["batch_size"]),
    lr: Optional[float] = typer.Option(None, show_default=_RECIPE_HELP["lr"]),
    backbone_lr_mult: Optional[float] = typer.Option(None, show_default=_RECIPE_HELP["backbone_lr_mult"]),
    grad_clip: Optional[float] = typer.Option(None, help="0 = no clipping", show_default=_RECIPE_HELP["grad_clip"]),
    resize: Optional[tuple[int, int]] = typer.Option(
        None, metavar="H W", help="resize the training images to H x W (default: their own size); the checkpoint "
        "then infers at the trained short side"),
    device: str = "auto",
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads (default: all cores)"),
    checkpoint_every: Optional[int] = typer.Option(None, min=1, show_default=_RECIPE_HELP["checkpoint_every"]),
    main_task_only: bool = typer.Option(
        False, help="train f and h on the labels only (no ℓ_s); `m2f-ttt prepare` trains g later from unlabelled footage"),
    seed: int = 0,
) -> None:
    """Joint training ℓ_m + ℓ_s (resumes from out_dir/last when present). Unset options follow the bundled model's
    recipe from scratch, or a gentle fine-tune recipe with --init checkpoint/hf."""
    _logging()
    from mask2former_ttt.training.config import TrainConfig, recipe_for
    from mask2former_ttt.training.trainer import train as run

    recipe = recipe_for(init, {"recon_variant": recon_variant, "steps": steps, "warmup_steps": warmup_steps,
                               "batch_size": batch_size, "lr": lr, "backbone_lr_mult": backbone_lr_mult,
                               "grad_clip": grad_clip, "checkpoint_every": checkpoint_every})
    logging.getLogger(__name__).info("training recipe (%s): %s", init, recipe)
    cfg = TrainConfig(
        data_root=data_root, dataset_format=dataset_format, out_dir=out_dir, init=init, init_path=init_path,
        model_preset=model_preset, resize=resize, device=device, threads=threads, seed=seed,
        recon_weight=0.0 if main_task_only else 1.0, **{**recipe, "grad_clip": recipe["grad_clip"] or None},
    )
    final = run(cfg)
    console.print(f"final checkpoint: {final}")


def _fail(message: str) -> None:
    """One line on stderr, exit status 2 (bad input: no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


FOOTAGE_HELP = ("video files, image folders (JPG/PNG, recursive), quoted glob patterns ('clips/**/*.mp4') or "
                "camera URLs with a frame count (rtsp://host/x#frames=200, or --camera-frames)")


@app.command()
def calibrate(
    footage: Optional[list[str]] = typer.Argument(None, help=FOOTAGE_HELP, show_default=False),
    model_dir: Path = typer.Option(..., help="checkpoint directory to update (config.json only)"),
    data_root: Optional[Path] = typer.Option(
        None, help="instead of footage: the training set the checkpoint was trained on (a dataset layout)"),
    split: str = typer.Option("train", help="--data-root only"),
    dataset_format: str = typer.Option("auto", help="--data-root only: auto | coco | cityscapes | kitti-step"),
    max_images: int = typer.Option(500, min=2, help="--data-root only: most images used"),
    max_frames: int = typer.Option(500, min=2, help="footage only: most frames used (evenly spread)"),
    camera_frames: Optional[int] = typer.Option(None, min=1, help="frames to read from each camera URL"),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:i]"),
) -> None:
    """Store the safe-adaptation guard's references in a checkpoint: the low-level statistics of images the model
    should treat as unshifted, the frozen encoder's feature statistics on them and the frozen model's prediction
    uncertainty on them (its shift gate, feature alignment and confidence gate). From your own unlabelled FOOTAGE
    (`m2f-ttt calibrate --model-dir DIR clips/ cam.mp4`) or from a training set (--data-root). Joint training and
    `m2f-ttt prepare` do this themselves."""
    from model.checkpoint import load_config

    if bool(footage) == (data_root is not None):
        _fail("give either FOOTAGE (videos, image folders, globs, camera URLs) or --data-root, not "
              + ("both" if footage else "neither"))
    try:
        load_config(model_dir)
    except (FileNotFoundError, ValueError) as exc:
        _fail(f"--model-dir {model_dir}: " + " ".join(str(exc).split()))
    if data_root is not None:
        if not data_root.is_dir():
            _fail(f"--data-root {data_root}: no such folder")
        _logging()
        from mask2former_ttt.training.calibration import calibrate_checkpoint

        try:
            ref = calibrate_checkpoint(model_dir, data_root, split, dataset_format, max_images=max_images)
        except (FileNotFoundError, ValueError) as exc:
            _fail(" ".join(str(exc).split()))
    else:
        from model.device import resolve_device
        from mask2former_ttt.footage import Footage, FootageError
        from mask2former_ttt.training.calibration import calibrate_on_frames

        try:
            source = Footage(footage, max_frames, camera_frames)
            if len(source) < 2:
                raise FootageError(f"the footage gives {len(source)} frame; calibration needs at least 2")
            dev = resolve_device(device)
        except (FootageError, RuntimeError) as exc:
            _fail(str(exc))
        _logging()
        logging.getLogger("m2f-ttt.calibrate").info("footage: %s", source.describe())
        try:
            ref = calibrate_on_frames(model_dir, source, dev)
        except (FootageError, ValueError) as exc:  # a file that stops decoding part-way
            _fail(str(exc))
    console.print(f"{model_dir}: input_stats_reference mean={[round(v, 4) for v in ref['mean']]}; "
                  "feature_stats_reference and confidence_reference written")


@app.command()
def prepare(
    model: Path = typer.Argument(..., help="a converted checkpoint directory, a Hugging Face Mask2Former directory, "
                                 "hf:<repo-id>[@<revision>] or a detectron2 / TTT-MAE release .pkl/.pth (converted as "
                                 "`m2f-ttt convert` does)"),
    footage: list[str] = typer.Argument(..., help=FOOTAGE_HELP, show_default=False),
    out: Path = typer.Option(..., "-o", "--out", help="output checkpoint directory (created; written only when done)"),
    steps: int = typer.Option(1000, min=1, help="training steps"),
    batch_size: int = typer.Option(8, min=1, help="frames per step"),
    lr: float = typer.Option(1e-3, min=0.0, help="AdamW learning rate of g (decays to 0)"),
    max_frames: int = typer.Option(500, min=3, help="most footage frames used (evenly spread; ~10% held out)"),
    adapt_encoder: bool = typer.Option(
        False, "--adapt-encoder", help="train f as well, with a self-distillation term keeping h∘f's predictions "
        "on the footage equal to the original model's"),
    encoder_lr: float = typer.Option(1e-4, min=0.0, help="--adapt-encoder: AdamW learning rate of f"),
    distill_weight: float = typer.Option(1.0, min=0.0, help="--adapt-encoder: weight of the distillation term"),
    camera_frames: Optional[int] = typer.Option(None, min=1, help="frames to read from each camera URL"),
    task: Optional[str] = typer.Option(None, help="converted sources: semantic | instance | panoptic"),
    overrides: Optional[str] = typer.Option(None, help="converted sources: ModelConfig fields as nested JSON"),
    model_preset: Optional[str] = typer.Option(
        None, "--model-preset", show_default="swin-s", help="detectron2 sources: preset for what tensor shapes cannot "
        "tell (as in `m2f-ttt convert`)"),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle", help="detectron2 sources: allow arbitrary pickled objects (only for files you trust)"),
    checkpoint_every: int = typer.Option(100, min=1, help="save the training state every N steps (resumable)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:i]"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default: all cores)"),
    seed: int = 0,
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing, non-empty -o directory"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Make a real Mask2Former TTT-ready from your own unlabelled footage: train g (the reconstruction decoder,
    new in converted models) with the TTT-MAE objective, f and h frozen; store the guard's references from the
    same footage; write a complete checkpoint and OUT/prepare.json (reconstruction loss before/after on held-out
    frames). Interrupted? Rerun the same command: it continues from the last saved step."""
    import torch

    from model.device import resolve_device
    from mask2former_ttt.footage import Footage, FootageError
    from mask2former_ttt.model_source import ModelSourceError, load_model_source
    from mask2former_ttt.readiness import recon_state
    from mask2former_ttt.training.prepare import PrepareError, PrepareOptions, check_out, prepare_model

    if threads:
        torch.set_num_threads(threads)
    try:
        check_out(out, overwrite)
        cfg_overrides = _convert_overrides(task, overrides)
        resolve_device(device)
        source = Footage(footage, max_frames, camera_frames)
        if len(source) < 3:
            raise FootageError(f"the footage gives {len(source)} frame{'s' if len(source) != 1 else ''}; prepare "
                               "needs at least 3 (a few are held out to measure the result)")
        torch.manual_seed(seed)  # a converted model's new g: the same on a rerun (resuming)
        ymodel, kind = load_model_source(model, cfg_overrides, model_preset, trust_pickle)
        _warn_untagged_panoptic(ymodel.cfg, f"{out}/config.json")
    except typer.BadParameter as exc:
        _fail(exc.format_message() if hasattr(exc, "format_message") else str(exc))
    except (FootageError, ModelSourceError, PrepareError, RuntimeError) as exc:
        _fail(str(exc))
    _logging()
    log = logging.getLogger("m2f-ttt.prepare")
    log.info("model %s (%s, g %s); footage: %s", model, kind, recon_state(ymodel.cfg), source.describe())
    opts = PrepareOptions(steps=steps, batch_size=batch_size, lr=lr, adapt_encoder=adapt_encoder,
                          encoder_lr=encoder_lr, distill_weight=distill_weight, checkpoint_every=checkpoint_every,
                          seed=seed, device=device)
    identity = {"model": str(model) if str(model).startswith("hf:") else str(model.resolve()), "footage": [str(f) for f in footage], "max_frames": max_frames,
                "task": task, "overrides": overrides, "model_preset": model_preset}
    try:
        report = prepare_model(ymodel, source, out, opts, identity, overwrite=overwrite, progress=progress)
    except (PrepareError, FootageError) as exc:  # FootageError: a file that stops decoding part-way
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo(f"interrupted: rerun the same command to continue from the last saved step "
                   f"(every {checkpoint_every} steps)", err=True)
        raise typer.Exit(130) from None
    line = (f"prepared {out} in {report['seconds'] / 60:.1f} min ({report['steps']} steps, "
            f"{report['frames']['total']} frames): reconstruction loss on held-out frames "
            f"{report['recon_loss_before']:.4f} -> {report['recon_loss_after']:.4f}")
    if "distill_agreement" in report:
        line += f"; agreement with the original predictions {100 * report['distill_agreement']:.1f} %"
    console.print(line + "; g trained, guard calibrated")


@app.command()
def evaluate(
    model_dir: Path = typer.Option(None, help="checkpoint directory (default: the bundled model)"),
    data_root: Path = typer.Option(Path("data/synth")),
    split: str = typer.Option("test"),
    rows: list[str] = typer.Option(None, "--row", help="rows to run (default: all standard rows)"),
    families: list[str] = typer.Option(None, "--family", help="restrict to shift families"),
    seeds: int = typer.Option(2, help="mask seeds per video"),
    workers: int = typer.Option(2),
    max_frames: Optional[int] = typer.Option(None),
    out_dir: Path = typer.Option(Path("runs/benchmark")),
    docs_dir: Optional[Path] = typer.Option(None, help="also write results.json/.md and plots here"),
    report_only: bool = typer.Option(False, help="aggregate the finished jobs in out_dir without running more"),
    shuffle_frames: bool = typer.Option(False, help="add a frame-order-shuffled twin of every adapting row"),
    k: list[int] = typer.Option(None, "--k", min=1, help="window sizes of the online_k<k> sweep (default 1 4 16 64)"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads per worker (default: cores / workers)"),
    guard: list[str] = typer.Option(
        None, "--guard", metavar="FIELD=VALUE", help="safe-adaptation guard setting, or a setting of the "
        "step it scales, for every guarded row, e.g. 'shift_gate=[1.0,1.6]', anchor=0.01, feature_align=0.1, "
        "optimizer=adamw, lr=1e-4, schedule=pipelined (per-frame shift scores and step scales are in "
        "OUT_DIR/jobs/*.json)"),
    camera_fps: Optional[float] = typer.Option(
        None, "--camera-fps", help="replay each video as a camera at this many frames per "
        "second against the cost model's per-frame costs: frames arriving while busy are dropped and scored with the "
        "last delivered result (rows default to main_task_only, fast_preset, default_preset, default_async; report "
        "in OUT_DIR/camera_<F>fps)"),
    cost_model: Optional[Path] = typer.Option(
        None, "--cost-model", help="bench JSON with the per-frame costs for --camera-fps (default: "
        "docs/benchmark/bench_quick_cpu.json)"),
) -> None:
    """Run methods × videos × seeds; print the table; write JSON, Markdown and per-video curve plots."""
    _require_eval_extra("evaluate")
    _logging()
    from model.checkpoint import bundled_model_dir
    from mask2former_ttt.evaluation.benchmark import read_manifest, run_benchmark
    from mask2former_ttt.evaluation.protocol import parse_guard_overrides, rows_by_name, with_guard, with_shuffled_twins
    from mask2former_ttt.evaluation.benchmark import final_clean_ranges
    from mask2former_ttt.evaluation.report import aggregate, markdown_table, plot_curves, write_report

    from mask2former_ttt.evaluation.compat import ClassMismatch, check_model_matches_data

    model_is_default = model_dir is None
    model_dir = model_dir or bundled_model_dir()
    try:
        check_model_matches_data(model_dir, data_root, split, model_is_default)
    except (ClassMismatch, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    manifest = {n: fam or "real" for n, fam in read_manifest(data_root, split).items()}
    if families:
        manifest = {n: fam for n, fam in manifest.items() if fam in families}
    if not manifest:
        raise typer.BadParameter(f"no {split} videos under {data_root} (families {families})")
    if camera_fps is not None:
        if camera_fps <= 0:
            raise typer.BadParameter(f"{camera_fps}: frames per second must be > 0", param_hint="'--camera-fps'")
        if guard or shuffle_frames:
            raise typer.BadParameter("--camera-fps replays the rows as the cost model measured them: no --guard or "
                                     "--shuffle-frames", param_hint="'--camera-fps'")
        _evaluate_camera(model_dir, data_root, split, rows, manifest, seeds, workers, max_frames, out_dir, docs_dir,
                         report_only, threads, camera_fps, cost_model)
        return
    selected = rows_by_name(rows, tuple(k) if k else (1, 4, 16, 64))
    try:
        guard_overrides = parse_guard_overrides(guard or [])
        selected = with_guard(selected, guard_overrides)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise typer.BadParameter(str(exc), param_hint="'--guard'") from None
    if shuffle_frames:
        selected = with_shuffled_twins(selected)
    final_clean = final_clean_ranges(data_root, split, manifest, max_frames)
    scores = run_benchmark(
        model_dir, data_root, split, sorted(manifest), selected, seeds, out_dir, workers, max_frames, families=manifest,
        run=not report_only, threads=threads, segments=final_clean,
    )
    summary = aggregate(scores, manifest, [r.name for r in selected], final_clean)
    summary["protocol"] = {"split": split, "videos": sorted(manifest), "seeds": seeds, "model": str(model_dir), "max_frames": max_frames,
                           "guard": guard_overrides}
    for target in filter(None, [out_dir, docs_dir]):
        write_report(summary, target)
        plot_curves(scores, target / "curves", [r.name for r in selected])
    typer.echo(markdown_table(summary))


def _evaluate_camera(model_dir: Path, data_root: Path, split: str, rows: list[str] | None, manifest: dict[str, str],
                     seeds: int, workers: int, max_frames: int | None, out_dir: Path, docs_dir: Path | None,
                     report_only: bool, threads: int | None, fps: float, cost_path: Path | None) -> None:
    """`evaluate --camera-fps`: the camera-rate replay of `rows` (camera_eval.py), its table printed and written to
    OUT_DIR/camera_<fps>fps (and DOCS_DIR/camera_<fps>fps)."""
    from mask2former_ttt.evaluation.benchmark import final_clean_ranges, run_benchmark
    from mask2former_ttt.evaluation.camera_eval import CameraSpec, camera_rows
    from mask2former_ttt.evaluation.camera_report import camera_summary, camera_table
    from mask2former_ttt.evaluation.cost_model import DEFAULT_COST_MODEL, load_cost_model
    from mask2former_ttt.evaluation.report import aggregate, plot_curves, write_report

    try:
        costs = load_cost_model(cost_path or DEFAULT_COST_MODEL)
        selected = camera_rows(rows)
        camera = CameraSpec(fps, costs)
        for row in selected:
            camera.costs(row)  # every row has measured costs before any job runs
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="'--camera-fps'") from None
    final_clean = final_clean_ranges(data_root, split, manifest, max_frames)
    scores = run_benchmark(
        model_dir, data_root, split, sorted(manifest), selected, seeds, out_dir, workers, max_frames, families=manifest,
        run=not report_only, threads=threads, segments=final_clean, camera=camera,
    )
    names = [r.name for r in selected]
    summary = camera_summary(aggregate(scores, manifest, names, final_clean), scores, costs, fps)
    summary["protocol"] = {"split": split, "videos": sorted(manifest), "seeds": seeds, "model": str(model_dir),
                           "max_frames": max_frames, "camera_fps": fps}
    for target in filter(None, [out_dir, docs_dir]):
        write_report(summary, target / f"camera_{fps:g}fps")
        plot_curves(scores, target / f"camera_{fps:g}fps" / "curves", names)
    typer.echo(camera_table(summary))


@app.command()
def benchmark(
    data_root: Path = typer.Option(Path("data/synth"), help="generated here first when missing"),
    model_dir: Optional[Path] = typer.Option(None, help="checkpoint to score (default: the bundled model)"),
    retrain: bool = typer.Option(False, help="train a fresh model instead of using the bundled one"),
    train_steps: int = typer.Option(1500, help="joint-training steps when --retrain"),
    seeds: int = typer.Option(2),
    workers: int = typer.Option(2),
    threads: Optional[int] = typer.Option(None, min=1, help="torch threads per worker (default: cores / workers)"),
    out_dir: Path = typer.Option(Path("runs/benchmark")),
    docs_dir: Optional[Path] = typer.Option(
        None, help="also write results.json/.md and curves here (the committed figures in docs/benchmark are "
        "regenerated by scripts/benchmark_results.py)"),
) -> None:
    """One command: generate the synthetic data (if missing), train (or use the bundled model), print the table."""
    _require_eval_extra("benchmark")
    _logging()
    if retrain and model_dir is not None:
        raise typer.BadParameter("give either --model-dir or --retrain, not both", param_hint="'--retrain'")
    if not (data_root / "videos.json").is_file():
        generate(root=data_root, train_stills=2000, frames=200, test_worlds=3, val_worlds=3, seed=0, workers=workers, overwrite=False,
                 domain="street")
    if retrain:
        train(
            data_root=data_root, dataset_format="auto", out_dir=out_dir / "train", init="scratch", init_path=None,
            model_preset="tiny", recon_variant="light", steps=train_steps, warmup_steps=50, batch_size=8, lr=1e-3,
            backbone_lr_mult=1.0, grad_clip=1.0, resize=None, device="auto", threads=None, checkpoint_every=250,
            main_task_only=False, seed=0,
        )
        model_dir = out_dir / "train" / "final"
    evaluate(
        model_dir=model_dir, data_root=data_root, split="test", rows=None, families=None, seeds=seeds, workers=workers,
        max_frames=None, out_dir=out_dir, docs_dir=docs_dir, report_only=False, shuffle_frames=False, k=None,
        threads=threads, guard=None, camera_fps=None, cost_model=None,
    )


def _convert_overrides(task: str | None, overrides: str | None) -> dict:
    """`--overrides` JSON (a nested dict of ModelConfig fields) with `--task` merged in; BadParameter when invalid."""
    try:
        merged = json.loads(overrides) if overrides else {}
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON ({exc}): {overrides!r}", param_hint="'--overrides'") from None
    if not isinstance(merged, dict):
        raise typer.BadParameter(f"must be a JSON object of ModelConfig fields, got {overrides!r}",
                                 param_hint="'--overrides'")
    if task is not None:
        from model.config import TASKS

        if task not in TASKS:
            raise typer.BadParameter(f"{task!r} is not one of {', '.join(TASKS)}", param_hint="'--task'")
        if merged.get("task", task) != task:
            raise typer.BadParameter(f"--task {task} contradicts the task {merged['task']!r} in --overrides",
                                     param_hint="'--task'")
        merged["task"] = task
    return merged


def _warn_untagged_panoptic(cfg, where: str) -> None:
    """One warning line when a panoptic model has no thing ids: its panoptic output would have no instances."""
    if cfg.task == "panoptic" and not cfg.thing_class_ids:
        typer.echo("warning: panoptic model without thing_class_ids, so panoptic output will have no instances: "
                   "pass --overrides '{\"thing_class_ids\": [0, 1, ...]}' (the ids of the classes with instances) "
                   f"or set them in {where}", err=True)


@app.command()
def convert(
    source: Path = typer.Argument(..., help="detectron2 .pkl/.pth checkpoint, Hugging Face Mask2Former directory or "
                                  "hf:<repo-id>[@<revision>] (downloaded, or taken from the Hugging Face cache offline)"),
    out_dir: Path = typer.Argument(..., help="output checkpoint directory"),
    model_preset: str | None = typer.Option(
        None, "--model-preset", "--preset", show_default="swin-s",
        help="detectron2 only: preset for what tensor shapes cannot tell (drop path, image size, ...)",
    ),
    task: str | None = typer.Option(
        None, show_default="guessed from the source's name", help="semantic | instance | panoptic"
    ),
    overrides: str | None = typer.Option(
        None, help='ModelConfig fields as nested JSON, e.g. \'{"class_names": ["road", ...], "thing_class_ids": [9]}\'',
    ),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle", help="detectron2 only: allow arbitrary pickled objects (only for files you trust)"
    ),
) -> None:
    """Convert released TTT / detectron2 Mask2Former checkpoints or HF directories into the project format.

    The architecture comes from the source; class names and thing ids (absent from detectron2 files) and the task
    can be set with --overrides / --task."""
    from model.hub import is_hf_spec

    if is_hf_spec(source):
        _convert_hf(str(source), out_dir, _convert_overrides(task, overrides), model_preset, trust_pickle)
        return
    if not source.exists():
        _fail(f"{source}: no such file or directory")
    _logging()
    from model.checkpoint import save_checkpoint

    cfg_overrides = _convert_overrides(task, overrides)
    if source.is_dir():
        for flag, given in (("--model-preset", model_preset is not None), ("--trust-pickle", trust_pickle)):
            if given:
                raise typer.BadParameter(f"applies to detectron2 checkpoint files, not to the Hugging Face "
                                         f"directory {source}", param_hint=f"'{flag}'")
    try:
        if source.is_dir():
            from model.hf_import import load_hf_mask2former

            save_checkpoint(load_hf_mask2former(source, cfg_overrides), out_dir)
        else:
            from model.convert_detectron2 import convert_detectron2_checkpoint

            convert_detectron2_checkpoint(source, out_dir, model_preset or "swin-s", cfg_overrides, trust_pickle)
    except (ValueError, TypeError, OSError, pickle.UnpicklingError) as exc:  # pydantic's ValidationError: ValueError
        from mask2former_ttt.model_source import one_line

        typer.echo(f"error: cannot convert {source}: {one_line(exc)}", err=True)
        raise typer.Exit(2) from None
    from model.checkpoint import load_config

    cfg = load_config(out_dir)
    _warn_untagged_panoptic(cfg, f"{out_dir}/config.json")
    _converted(source, out_dir, cfg)


def _converted(source: object, out_dir: Path, cfg) -> None:
    console.print(f"converted {source} -> {out_dir}")
    if cfg.recon_untrained:
        console.print(f"g (the reconstruction decoder) is new: make the model TTT-ready with "
                      f"`m2f-ttt prepare {out_dir} FOOTAGE... -o {out_dir}-ttt` (docs/real-weights.md)")


def _convert_hf(spec: str, out_dir: Path, cfg_overrides: dict, model_preset: str | None, trust_pickle: bool) -> None:
    """`m2f-ttt convert hf:<repo-id>[@<revision>] OUT`: the cached conversion copied to OUT, or with --overrides /
    --task a conversion of the cached snapshot."""
    import shutil

    from model.checkpoint import load_config, save_checkpoint
    from model.hub import (HubModelError, download_snapshot, hf_name_overrides, resolve_hf_model,
                           untagged_panoptic_error)

    for flag, given in (("--model-preset", model_preset is not None), ("--trust-pickle", trust_pickle)):
        if given:
            raise typer.BadParameter(f"applies to detectron2 checkpoint files, not to {spec}", param_hint=f"'{flag}'")
    _logging()
    try:
        if not cfg_overrides:
            shutil.copytree(resolve_hf_model(spec), out_dir, dirs_exist_ok=True)
        else:
            from model.hf_import import load_hf_mask2former

            snapshot, repo_id, _ = download_snapshot(spec)
            model = load_hf_mask2former(snapshot, hf_name_overrides(repo_id, cfg_overrides))
            if model.cfg.task == "panoptic" and not model.cfg.thing_class_ids:
                raise untagged_panoptic_error(spec, str(out_dir))
            save_checkpoint(model, out_dir)
    except HubModelError as exc:
        _fail(str(exc))
    except (ValueError, TypeError, OSError) as exc:  # pydantic's ValidationError: ValueError
        from mask2former_ttt.model_source import one_line

        _fail(f"cannot convert {spec}: {one_line(exc)}")
    _converted(spec, out_dir, load_config(out_dir))


def _model_path(model: Path | None) -> Path | None:
    """A model option's directory: `hf:<repo-id>[@<revision>]` resolved to its cached conversion (one line and exit
    2 when it cannot be had), anything else as given."""
    from model.hub import HubModelError, is_hf_spec, resolve_hf_model

    if not is_hf_spec(model):
        return model
    try:
        return resolve_hf_model(str(model))
    except HubModelError as exc:
        _fail(str(exc))


@app.command()
def info(model_dir: Path = typer.Option(None, help="checkpoint directory or hf:<repo-id>[@<revision>] (default: "
                                        "the bundled model)")) -> None:
    """Show a checkpoint's config (classes, sizes, reference loss, whether g is trained and the guard calibrated)."""
    from model.checkpoint import bundled_model_dir, load_config

    try:
        cfg = load_config(_model_path(model_dir) or bundled_model_dir())
    except (FileNotFoundError, ValueError) as exc:
        _fail(f"--model-dir {model_dir}: " + " ".join(str(exc).split()))
    console.print_json(json.dumps({**cfg.model_dump(), "guard_calibrated": cfg.guard_calibrated}))


@app.command()
def segment(
    video: str = typer.Argument(..., help="video file, folder of videos, quoted glob ('clips/*.mp4'), rtsp:// URL "
                                "or camera device (/dev/video0)"),
    out: Path = typer.Option(..., "-o", "--out", help="output directory (created; must be empty unless --overwrite); "
                             "a folder / glob writes OUT/<video stem>/ per video"),
    method: Optional[str] = typer.Option(
        None, help="TTT method (online, main_only, no_memory, ...)",
        show_default="online; main_only when the model's g is untrained (m2f-ttt prepare)"),
    preset: str = typer.Option("default", help="TTT preset: fast | default | full | release (docs/benchmark/cost_levers.md)"),
    task: str = typer.Option("panoptic", help="semantic | instance | panoptic"),
    device: str = typer.Option("auto", help="auto | cpu | cuda[:i]"),
    model: Optional[Path] = typer.Option(
        None, help="checkpoint directory or hf:<repo-id>[@<revision>] (default: the bundled model)"),
    max_frames: Optional[int] = typer.Option(
        None, min=1, help="stop after this many frames (live inputs run until Ctrl-C otherwise)"
    ),
    max_width: Optional[int] = typer.Option(None, min=16, help="scale frames down to this width first"),
    input_format: Optional[str] = typer.Option(
        None, "--format", help="FFmpeg input format (v4l2, lavfi, ...); guessed when unset"
    ),
    seed: int = typer.Option(0, help="seed of the TTT masks"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default: torch's, all cores)"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="replace a previous segment output in -o (refused if -o holds other files)"
    ),
    score_threshold: Optional[float] = typer.Option(
        None, min=0.0, max=1.0, help="drop instances / panoptic segments scoring less (default 0.3)"
    ),
    min_area: Optional[int] = typer.Option(None, min=0, help="drop instances / segments with fewer pixels (default 16)"),
    ttt_view: bool = typer.Option(
        False, "--ttt-view", help="also write ttt_view.mp4: masked input, reconstruction and the l_s curve per frame"
    ),
    legend: str = typer.Option(
        "auto", help="class legend of overlay.mp4: auto (in the frame from 240 rows, else a strip beside it, which "
        "widens the video) | always (a strip beside every frame) | never"),
    labels: bool = typer.Option(True, "--labels/--no-labels", help="label each instance 'class #id score'"),
    encodings: str = typer.Option(
        "", help="comma-separated encodings results.jsonl adds to each frame: rle (COCO RLEs for every task), "
        "polygons (COCO polygons of each mask's outer contours)"),
) -> None:
    """Segment a video while adapting to it: overlay MP4, per-frame JSONL, PNGs (+ COCO-panoptic JSON).

    A folder or glob segments each of its videos in turn (sorted), stopping at the first error."""
    _logging()
    if threads:
        import torch

        torch.set_num_threads(threads)
    from mask2former_ttt.segment import SegmentError, segment_video
    from mask2former_ttt.segment_batch import plan_runs
    from mask2former_ttt.video_io import VideoError

    model = _model_path(model)
    try:
        runs = plan_runs(video, out, input_format, overwrite)
    except SegmentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for video, out in runs:
        try:
            summary = segment_video(video, out, task=task, method=method, preset=preset, device=device, model_dir=model,
                                    max_frames=max_frames, max_width=max_width, input_format=input_format, seed=seed,
                                    progress=progress, score_threshold=score_threshold, min_area=min_area,
                                    ttt_view=ttt_view, legend=legend, labels=labels,
                                    encodings=[e.strip() for e in encodings.split(",") if e.strip()])
        except VideoError as exc:
            typer.echo(f"error: cannot use {video!r} ({exc.kind}): {exc.message}", err=True)
            raise typer.Exit(2) from None
        except SegmentError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        state = "interrupted after" if summary.interrupted else "segmented"
        console.print(f"{state} {summary.frames} frames in {summary.seconds:.1f} s ({summary.fps:.2f} fps) "
                      f"-> {summary.out_dir}: {', '.join(summary.files)}")
        if summary.interrupted and summary.kind == "file":
            raise typer.Exit(130)  # a live source is stopped with Ctrl-C normally; a file was left incomplete


def main() -> None:
    app()

"""`m2f-ttt bench`: the cost of online TTT on this machine (library rows, memory, a real server), one table + JSON.

Lives in `server/` because its server rows start `m2f-ttt serve`; the library and memory rows are
`mask2former_ttt.evaluation.bench`, the server rows `server.bench_service`.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected HEIGHTxWIDTH such as 128x160, got {text!r}") from None
    if h < 32 or w < 32:
        raise typer.BadParameter(f"frames must be at least 32x32, got {text!r}")
    return h, w


def bench(
    quick: bool = typer.Option(False, help="fewer frames and seconds, tiny model only (about 3 min on 2 cores)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the figures here"),
    threads: int = typer.Option(1, min=1, help="torch threads for the library loop (and per server lane)"),
    model_dir: Optional[Path] = typer.Option(None, help="checkpoint directory (default: the bundled model)"),
    model_preset: Optional[str] = typer.Option(
        None, help="time this model preset (e.g. swin-s) with random weights instead of a checkpoint"
    ),
    image_size: int = typer.Option(0, help="working short side for --model-preset (default: 128 on CPU, the preset's on CUDA)"),
    size: str = typer.Option("128x160", help="frame size HEIGHTxWIDTH"),
    frames: int = typer.Option(0, help="timed frames per library row (default 30, 12 with --quick)"),
    streams: list[int] = typer.Option(None, "--streams", help="server stream counts (default 1 4 16; quick 1 4)"),
    seconds: float = typer.Option(0.0, help="seconds per server measurement (default 20, 8 with --quick)"),
    server: bool = typer.Option(True, help="also measure a real `m2f-ttt serve` over WebSocket"),
    swin_s: bool = typer.Option(True, help="also time swin-s (small resolution on CPU); off with --quick"),
    cross_stream_batch: int = typer.Option(
        4, min=0, help="streams of the cross-stream batching rows: N streams one after another vs one batched call "
        "(library), and a server lane batching N streams (M2F_WORKER_CROSS_STREAM_BATCH) beside the serial lane; 0: skip",
    ),
) -> None:
    """Time main_only / default / fast / release / online_k16 per frame (interleaved, mean s/frame, ratio to
    main_only), the stage split, per-stream memory (estimate vs measured) and a real server: 1/4/16 streams on
    the default worker layout and on one serial lane, and the latency of one camera-paced stream."""
    import torch

    from model.checkpoint import bundled_model_dir, load_checkpoint, save_checkpoint
    from model.config import preset
    from model.device import prepare_model, resolve_device
    from model.ymodel import build_model
    from mask2former_ttt.evaluation.bench import (
        as_json, bench_frames, measure_memory, time_cross_stream, time_rows, write_json,
    )

    torch.set_num_threads(threads)
    n_frames = frames or (12 if quick else 30)
    t_start = time.perf_counter()
    device = resolve_device("auto")
    scratch = Path(tempfile.mkdtemp(prefix="m2f-bench-model-"))
    try:
        if model_preset:
            torch.manual_seed(0)
            short = image_size or (128 if device.type == "cpu" else 0)
            model = prepare_model(build_model(preset(model_preset, **({"image_size": short} if short else {}))), device).eval()
            model_dir = save_checkpoint(model, scratch)  # the server rows load it like any checkpoint
        else:
            model_dir = model_dir or bundled_model_dir()
            model = load_checkpoint(model_dir, device)
        clip = bench_frames(n_frames + 2, size=_size(size))
        rows = time_rows(model, clip)
        _print_rows(f"{model.cfg.name} ({model_dir.name}), {tuple(clip[0].shape[1:])}, {threads} thread(s)", rows)
        extra: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": threads,
                                   "device": str(device), "torch": torch.__version__}}
        if cross_stream_batch > 1:
            batching = time_cross_stream(model, clip, streams=cross_stream_batch)
            extra["cross_stream"] = vars(batching)
            console.print(
                f"cross-stream batching, {batching.streams} streams of `{batching.preset}`: serial "
                f"{batching.serial_s_per_round:.4f} s per round, one batched call {batching.batched_s_per_round:.4f} s "
                f"({batching.speedup:.2f}x)")
        memory = {
            f"{model.cfg.name}/{p}": measure_memory(model, p, clip, streams=4) for p in ("default", "release")
        }
        if swin_s and not quick and not model_preset:
            torch.manual_seed(0)
            short = 128 if device.type == "cpu" else 512
            big = prepare_model(build_model(preset("swin-s", image_size=short)), device).eval()
            big_clip = bench_frames(8, size=(short, 2 * short))
            big_rows = time_rows(big, big_clip, warmup=1)
            extra["swin_s_rows"] = {k: vars(v) for k, v in big_rows.items()}
            _print_rows(f"swin-s (random weights), {(short, 2 * short)}", big_rows)
            for p in ("default", "release"):
                memory[f"swin-s/{p}"] = measure_memory(big, p, big_clip, streams=2)
            del big
        _print_memory(memory)
        if server:
            from server.bench_service import latency_rows, server_rows

            counts = tuple(streams) if streams else ((1, 4) if quick else (1, 4, 16))
            secs = seconds or (8.0 if quick else 20.0)
            srv = server_rows(model, model_dir, clip, counts, secs, None)
            multi = tuple(c for c in counts if c > 1) or counts
            one_by_one = {"M2F_WORKER_CROSS_STREAM_BATCH": "1"}
            serial = server_rows(model, model_dir, clip, multi, secs, threads, lanes=1, extra_env=one_by_one)
            extra["server"] = {k: vars(v) for k, v in srv.items()}
            extra["server_serial"] = {k: vars(v) for k, v in serial.items()}
            asynchronous = server_rows(model, model_dir, clip, counts, secs, None,
                                       extra_env={"M2F_TTT_SCHEDULE": "async"})
            extra["server_async"] = {k: vars(v) for k, v in asynchronous.items()}
            main_only = server_rows(model, model_dir, clip, counts, secs, None, method="main_only")
            extra["server_main_only"] = {k: vars(v) for k, v in main_only.items()}
            _print_server("server over WebSocket (closed loop), default worker layout, vs the bare library loop", srv)
            _print_server("the same on one serial lane (the worker before lanes)", serial)
            _print_server("`default` with schedule=async (steps on the worker's step executor)", asynchronous)
            _print_server("main_only (no adaptation), default worker layout", main_only)
            if cross_stream_batch > 1:  # the default worker runs streams one by one
                batch_env = {"M2F_WORKER_CROSS_STREAM_BATCH": str(cross_stream_batch)}
                batched = server_rows(model, model_dir, clip, multi, secs, threads, lanes=1, extra_env=batch_env)
                extra["server_batched"] = {k: vars(v) for k, v in batched.items()}
                _print_server(f"one lane batching up to {cross_stream_batch} streams per call", batched)
            pace = round(min(10.0, 0.5 / rows["default"].s_per_frame), 2)  # well inside what the device sustains
            configs = {"main_only": ("main_only", "default"), "default": ("online", "default"), "fast": ("online", "fast")}
            latency = latency_rows(model_dir, clip, configs, pace, secs, threads)
            extra["latency"] = {k: vars(v) for k, v in latency.items()}
            _print_latency(latency)
        extra["seconds"] = round(time.perf_counter() - t_start, 1)
        doc = as_json(rows, memory, extra)
        if json_path:
            write_json(doc, json_path)
            console.print(f"JSON: {json_path}")
        console.print(f"bench finished in {extra['seconds']:.0f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _print_rows(title: str, rows: dict | None) -> None:
    if not rows:
        return
    from mask2former_ttt.evaluation.bench import STAGES

    table = Table("row", "s/frame", "× main_only", "steps/frame", *(f"{s} ms" for s in STAGES), title=title)
    for name, r in rows.items():
        table.add_row(name, f"{r.s_per_frame:.4f}", f"{r.ratio:.2f}" if r.ratio else "–", f"{r.steps_per_frame:g}",
                      *(f"{r.stages_ms[s]:.1f}" for s in STAGES))
    console.print(table)


def _print_memory(memory: dict) -> None:
    table = Table("model/preset", "frame", "estimate MiB", "measured MiB/stream", "state MiB", "error",
                  title="per-stream memory")
    for name, m in memory.items():
        table.add_row(name, "×".join(map(str, m.frame)), f"{m.estimate_mb:.1f}", f"{m.measured_mb:.1f}",
                      f"{m.state_mb:.1f}", f"{100 * m.error:+.0f} %")
    console.print(table)


def _print_server(title: str, rows: dict) -> None:
    table = Table("streams", "fps (all)", "fps per stream (min / mean)", "p50 ms", "p99 ms", "steps/s", "skipped",
                  "errors", "bare fps", title=title)
    for r in rows.values():
        per = r.per_stream_fps
        table.add_row(str(r.streams), f"{r.fps:.2f}", f"{min(per):.2f} / {sum(per) / len(per):.2f}",
                      f"{r.p50_ms:.0f}", f"{r.p99_ms:.0f}", f"{r.steps_per_s:.2f}", str(r.steps_skipped),
                      str(r.errors), f"{r.bare_fps:.2f}")
    console.print(table)


def _print_latency(rows: dict) -> None:
    table = Table("row", "method / preset", "paced fps", "p50 ms", "p99 ms", "frames", "errors",
                  title="one camera-paced stream through the server: end-to-end latency")
    for name, r in rows.items():
        table.add_row(name, f"{r.method} / {r.preset}", f"{r.fps:g}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}",
                      str(r.frames), str(r.errors))
    console.print(table)

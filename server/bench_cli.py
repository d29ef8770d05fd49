"""`m2f-ttt bench`: the cost of online TTT on this machine (library rows, memory, a real server), one table + JSON.

Lives in `server/` because its server rows start `m2f-ttt serve`; the library and memory rows are
`mask2former_ttt.evaluation.bench`.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def bench(
    quick: bool = typer.Option(False, help="fewer frames and seconds, tiny model only (about 3 min on 2 cores)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the figures here"),
    threads: int = typer.Option(1, min=1, help="torch threads for the library loop and the server's worker"),
    model_dir: Optional[Path] = typer.Option(None, help="checkpoint directory (default: the bundled model)"),
    frames: int = typer.Option(0, help="timed frames per library row (default 30, 12 with --quick)"),
    streams: list[int] = typer.Option(None, "--streams", help="server stream counts (default 1 4 16; quick 1 4)"),
    seconds: float = typer.Option(0.0, help="seconds per server measurement (default 20, 8 with --quick)"),
    server: bool = typer.Option(True, help="also measure a real `m2f-ttt serve` over WebSocket"),
    swin_s: bool = typer.Option(True, help="also time swin-s (small resolution on CPU); off with --quick"),
) -> None:
    """Time main_only / default / release / online_k16 per frame (interleaved, mean s/frame, ratio to main_only), the
    stage split, per-stream memory (estimate vs measured) and, optionally, a real server with 1/4/16 streams."""
    import torch

    from model.checkpoint import bundled_model_dir, load_checkpoint
    from model.config import preset
    from model.device import resolve_device
    from model.ymodel import build_model
    from mask2former_ttt.evaluation.bench import as_json, bench_frames, measure_memory, time_rows, write_json

    torch.set_num_threads(threads)
    n_frames = frames or (12 if quick else 30)
    t_start = time.perf_counter()
    model_dir = model_dir or bundled_model_dir()
    device = resolve_device("auto")
    model = load_checkpoint(model_dir, device)
    clip = bench_frames(n_frames + 2)
    rows = time_rows(model, clip)
    _print_rows(f"{model.cfg.name} ({model_dir.name}), {tuple(clip[0].shape[1:])}, {threads} thread(s)", rows)
    memory = {
        f"{model.cfg.name}/{p}": measure_memory(model, p, clip, streams=4) for p in ("default", "release")
    }
    extra: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": threads,
                               "device": str(device), "torch": torch.__version__}}
    if swin_s and not quick:
        torch.manual_seed(0)
        big = build_model(preset("swin-s")).eval().to(device)
        big_clip = bench_frames(8, size=(128, 256))
        big_rows = time_rows(big, big_clip, warmup=1)
        extra["swin_s_rows"] = {k: vars(v) for k, v in big_rows.items()}
        _print_rows("swin-s (random weights), (128, 256)", big_rows)
        for p in ("default", "release"):
            memory[f"swin-s/{p}"] = measure_memory(big, p, big_clip, streams=2)
        del big
    _print_memory(memory)
    if server:
        from server.bench_service import server_rows

        counts = tuple(streams) if streams else ((1, 4) if quick else (1, 4, 16))
        srv = server_rows(model, model_dir, clip, counts, seconds or (8.0 if quick else 20.0), threads)
        extra["server"] = {k: vars(v) for k, v in srv.items()}
        _print_server(srv)
    extra["seconds"] = round(time.perf_counter() - t_start, 1)
    doc = as_json(rows, memory, extra)
    if json_path:
        write_json(doc, json_path)
        console.print(f"JSON: {json_path}")
    console.print(f"bench finished in {extra['seconds']:.0f} s")


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


def _print_server(rows: dict) -> None:
    table = Table("streams", "fps (all)", "fps per stream (min / mean)", "p50 ms", "p99 ms", "errors", "bare fps",
                  title="server over WebSocket (closed loop) vs the bare library loop")
    for r in rows.values():
        per = r.per_stream_fps
        table.add_row(str(r.streams), f"{r.fps:.2f}", f"{min(per):.2f} / {sum(per) / len(per):.2f}",
                      f"{r.p50_ms:.0f}", f"{r.p99_ms:.0f}", str(r.errors), f"{r.bare_fps:.2f}")
    console.print(table)

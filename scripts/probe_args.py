"""The command line the per-video probes share (haze_probe.py, adaptation_probe.py)."""

from __future__ import annotations

import argparse


def video_probe_parser(doc: str | None, split: str) -> argparse.ArgumentParser:
    """--model-dir, --data-root, --split (default `split`), --video (repeatable) and --preset (default `default`)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--split", default=split)
    ap.add_argument("--video", action="append", required=True)
    ap.add_argument("--preset", default="default")
    return ap

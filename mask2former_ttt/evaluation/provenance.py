"""What a measurement ran: the commit of the checkout (and whether it had uncommitted changes) and the resolved
TTT configuration of each row, recorded beside the figures so that a figure can be traced and checked for
staleness (docs/benchmark/results.json, the bench JSONs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def git_state(repo: Path = REPO) -> dict:
    """{"commit": HEAD, "dirty": uncommitted changes to tracked files}; both None outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def method_config(method: str, preset: str, overrides: dict | None = None) -> dict:
    """{"method", "preset", "config": the resolved TTTConfig as JSON}; a method that does not adapt has no config."""
    from mask2former_ttt.ttt.config import ttt_preset

    if method == "main_only":
        return {"method": method}
    return {"method": method, "preset": preset,
            "config": ttt_preset(preset, **(overrides or {})).model_dump(mode="json")}

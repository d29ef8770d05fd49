"""README.md's per-stream memory table (admission control reserves these bytes) is what the code computes:
`StreamAdapter.estimated_memory_bytes(frame)` for each (model, g variant, preset), and, for the bundled model's
configuration, `memory_bytes()` once the window is full (the "= memory_bytes() in steady state" claim)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from mask2former_ttt.ttt.methods import build_adapter
from model.config import preset
from model.ymodel import build_model

README = Path(__file__).resolve().parents[2] / "README.md"
MIB = 2**20
TABLE_HEADER = "| model | frame | preset `default`"


def readme_memory_table() -> dict[tuple[str, str], dict]:
    """{(model preset, g variant): {"frame": (h, w), "default": "12.6", "release": "6.7"}} parsed from README.md."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(TABLE_HEADER))
    assert "`release`" in lines[start].split("|")[4], lines[start]  # column order: default, then release
    rows: dict[tuple[str, str], dict] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        model = re.fullmatch(r"(\S+), g (release|light)", cells[0])
        frame = re.fullmatch(r"(\d+)×(\d+)", cells[1])
        default, release = (re.match(r"(\d+\.\d) MiB", c) for c in cells[2:4])
        assert model and frame and default and release, line
        rows[(model[1], model[2])] = {
            "frame": (int(frame[1]), int(frame[2])),
            "default": default[1],
            "release": release[1],
        }
    return rows


@pytest.fixture(scope="module")
def table() -> dict[tuple[str, str], dict]:
    return readme_memory_table()


def test_the_table_covers_both_models_and_both_g_variants(table) -> None:
    assert set(table) == {("tiny", "light"), ("tiny", "release"), ("swin-s", "release"), ("swin-s", "light")}
    assert {table[k]["frame"] for k in table if k[0] == "tiny"} == {(128, 160)}
    assert {table[k]["frame"] for k in table if k[0] == "swin-s"} == {(512, 1024)}


@pytest.mark.parametrize("model_preset", ["tiny", "swin-s"])  # swin-s: one build, ≈ 1 s and 300 MB on CPU
def test_readme_figures_are_the_estimates_of_the_code(table, model_preset: str) -> None:
    for variant in ("light", "release"):
        cfg = preset(model_preset)
        cfg.recon.variant = variant
        model = build_model(cfg)
        row = table[(model_preset, variant)]
        for ttt_preset in ("default", "release"):
            estimate = build_adapter(model, "online", ttt_preset).estimated_memory_bytes(row["frame"])
            assert f"{estimate / MIB:.1f}" == row[ttt_preset], (model_preset, variant, ttt_preset, estimate / MIB)
        del model


def test_steady_state_memory_of_the_bundled_configuration_is_the_readme_figure(table) -> None:
    """tiny, g light, preset default (the bundled model's serving configuration): after `window` frames the stream
    holds exactly what the README says (release's B = 32 steps are too slow for a unit test; its estimate is
    checked above)."""
    cfg = preset("tiny")
    cfg.recon.variant = "light"
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    h, w = table[("tiny", "light")]["frame"]
    adapter = build_adapter(model, "online", "default")
    g = torch.Generator().manual_seed(0)
    for _ in range(adapter.cfg.window):
        adapter.step((torch.rand(3, h, w, generator=g) * 255).to(torch.uint8))
    steady = adapter.memory_bytes()
    assert f"{steady / MIB:.1f}" == table[("tiny", "light")]["default"], steady / MIB
    adapter.step((torch.rand(3, h, w, generator=g) * 255).to(torch.uint8))
    assert adapter.memory_bytes() == steady  # steady: the window is full, the optimizer buffers exist

"""Bad inputs to `calibrate`, `prepare`, `convert`, `segment` and `info` end in exit status 2 and exactly one line
on stderr, no traceback; a failed `prepare` leaves nothing in (or beside) its -o directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.checkpoint import bundled_model_dir
from tests.prepare.helpers import bikes, cli


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    (root / "fake.mp4").write_text("this is a text file, not a video\n")
    (root / "no-images").mkdir()
    (root / "no-images" / "readme.txt").write_text("nothing to see")
    (root / "not-a-model").mkdir()
    (root / "not-a-model" / "weights.bin").write_bytes(b"\0" * 16)
    from model.config import tiny_config
    from model.hf_config import mask2former_config

    odd = mask2former_config(tiny_config())  # a Hugging Face head option the project's model cannot express
    odd.enforce_input_projection = not odd.enforce_input_projection
    odd.save_pretrained(root / "odd-hf")
    from PIL import Image

    for i in range(2):
        (root / "two").mkdir(exist_ok=True)
        Image.new("RGB", (64, 48), (40 * i, 90, 120)).save(root / "two" / f"{i}.png")
    return {"root": root, "fake": root / "fake.mp4", "oddhf": root / "odd-hf", "twoimages": root / "two", "empty": root / "no-images", "badmodel": root / "not-a-model",
            "missing": root / "missing.mp4"}


CASES = {
    "calibrate, missing footage": (["calibrate", "--model-dir", "{bundled}", "{missing}"], "no such file"),
    "calibrate, text named .mp4": (["calibrate", "--model-dir", "{bundled}", "{fake}"], "not a video file"),
    "calibrate, folder without images": (["calibrate", "--model-dir", "{bundled}", "{empty}"], "no images"),
    "calibrate, wrong model dir": (["calibrate", "--model-dir", "{badmodel}", "{bikes}"], "no config.json"),
    "calibrate, no footage": (["calibrate", "--model-dir", "{bundled}"], "either FOOTAGE"),
    "prepare, missing footage": (["prepare", "{bundled}", "{missing}", "-o", "{out}"], "no such file"),
    "prepare, text named .mp4": (["prepare", "{bundled}", "{fake}", "-o", "{out}"], "not a video file"),
    "prepare, folder without images": (["prepare", "{bundled}", "{empty}", "-o", "{out}"], "no images"),
    "prepare, wrong model dir": (["prepare", "{badmodel}", "{bikes}", "-o", "{out}"], "not a model directory"),
    "prepare, unsupported HF model": (["prepare", "{oddhf}", "{bikes}", "-o", "{out}"], "cannot be expressed"),
    "prepare, two frames": (["prepare", "{bundled}", "{twoimages}", "-o", "{out}"], "needs at least 3"),
    "prepare, missing model": (["prepare", "{missing}", "{bikes}", "-o", "{out}"], "no such model"),
    "prepare, text as model": (["prepare", "{fake}", "{bikes}", "-o", "{out}"], "not a model"),
    "convert, missing source": (["convert", "{missing}", "{out}"], "no such file"),
    "convert, wrong model dir": (["convert", "{badmodel}", "{out}"], "cannot convert"),
    "segment, text named .mp4": (["segment", "{fake}", "-o", "{out}"], "not a video file"),
    "segment, wrong model dir": (["segment", "{bikes}", "-o", "{out}", "--model", "{badmodel}"], "no model checkpoint"),
    "info, wrong model dir": (["info", "--model-dir", "{badmodel}"], "no config.json"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(case: str, inputs: dict[str, Path], tmp_path: Path) -> None:
    args, expected = CASES[case]
    out = tmp_path / "out"
    values = {**inputs, "out": out, "bundled": bundled_model_dir(), "bikes": bikes()}
    result = cli(*(a.format(**values) for a in args))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout and expected in lines[0], lines
    if args[0] == "prepare":
        assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []  # nothing in or beside -o


def test_prepare_refuses_a_non_empty_out_before_any_work(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = cli("prepare", str(bundled_model_dir()), bikes(), "-o", str(out))
    assert result.exit_code == 2 and "--overwrite" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.parametrize("case", ["prepare, two frames", "prepare, unsupported HF model"])
def test_the_installed_command_prints_one_line_too(case: str, inputs: dict[str, Path], tmp_path: Path) -> None:
    """In a real process logging is configured and transformers may talk: still one line when the input is bad."""
    import subprocess
    import sys

    args, expected = CASES[case]
    values = {**inputs, "out": tmp_path / "out", "bundled": bundled_model_dir(), "bikes": bikes()}
    cmd = [sys.executable, "-c", "from server.cli import main; main()", *(a.format(**values) for a in args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()

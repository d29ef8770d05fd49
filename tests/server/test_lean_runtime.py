"""`m2f-ttt serve` and `m2f-ttt segment` run on the base dependencies: they import no synthetic-world generator,
no evaluation / training code and none of the `eval` extra (matplotlib, torchmetrics). Checked in a fresh
interpreter (`sys.executable`), on `sys.modules` after the import or the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# the data modules the service and `segment` use: label sets and on-disk format detection
DATA_ALLOWED = {"mask2former_ttt.data", "mask2former_ttt.data.classes", "mask2former_ttt.data.formats"}
EXTRA_PACKAGES = ("matplotlib", "torchmetrics")  # the `eval` extra
EVAL_ONLY = ("mask2former_ttt.evaluation", "mask2former_ttt.training")


def loaded_after(code: str, cwd: Path | None = None) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def heavy(mods: list[str]) -> list[str]:
    """Generator modules (everything under mask2former_ttt.data but the label sets and formats) and extras."""
    generators = [m for m in mods if m.startswith("mask2former_ttt.data") and m not in DATA_ALLOWED]
    extras = [m for m in mods if m.split(".")[0] in EXTRA_PACKAGES or m.startswith(EVAL_ONLY)]
    return generators + extras


def test_the_service_module_imports_no_generator_and_no_extra() -> None:
    assert heavy(loaded_after("import server.app")) == []


def test_the_cli_serve_and_segment_paths_import_no_generator_and_no_extra() -> None:
    code = (
        "import server.cli\n"
        "server.cli.build_app()\n"
        "import mask2former_ttt.segment, mask2former_ttt.segment_batch, mask2former_ttt.video_io\n"
    )
    assert heavy(loaded_after(code)) == []


def test_a_started_service_imports_no_generator_and_no_extra(tmp_path: Path) -> None:
    """The app built as `serve` builds it, with its lifespan run (model loaded, worker started, routes ready)."""
    code = (
        "from pathlib import Path\n"
        "from fastapi.testclient import TestClient\n"
        "from server.app import create_app\n"
        "from server.settings import Settings\n"
        f"tmp = Path({str(tmp_path)!r})\n"
        "settings = Settings.from_flat(\n"
        "    jobs_dir=tmp / 'jobs', checkpoint_dir=tmp / 'states', recording_dir=tmp / 'rec',\n"
        "    model_device='cpu', worker_torch_threads=1, worker_lanes=1,\n"
        ")\n"
        "with TestClient(create_app(settings)) as client:\n"
        "    assert client.get('/readyz').status_code == 200\n"
        "    assert client.get('/').status_code == 200\n"
    )
    assert heavy(loaded_after(code, cwd=tmp_path)) == []


def test_the_check_sees_a_generator_import() -> None:
    assert heavy(loaded_after("import mask2former_ttt.data.world")) != []
    assert "matplotlib" in heavy(loaded_after("import server.app\nimport matplotlib"))


def test_evaluate_without_the_eval_extra_says_so_in_one_line() -> None:
    for command in ("evaluate", "benchmark"):
        code = (
            "import sys\n"
            "sys.modules['matplotlib'] = None  # as if the `eval` extra were not installed\n"
            "from server.cli import main\n"
            f"sys.argv = ['m2f-ttt', '{command}']\n"
            "main()\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, (out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "`eval` extra" in lines[0] and "matplotlib" in lines[0], out.stderr
        assert "Traceback" not in out.stderr + out.stdout

"""The Docker image's contract, checked without a Docker engine.

The Dockerfile is parsed; its ENTRYPOINT (+ CMD) is run as-is in this environment — only `--host` (to stay on
127.0.0.1) and `--port` (a free one) are swapped, and the model / storage paths of its ENV point at a tiny
checkpoint and tmp — then `/healthz` must answer 200, `/readyz` must become ready, and the HEALTHCHECK command
itself must succeed. Static checks: the image installs through `scripts/install.sh` (the README / Makefile path)
with `VENV=system`, runs as a non-root USER, exposes 8000, keeps /models as a volume, copies only files that exist
and are not docker-ignored; compose reserves an NVIDIA GPU and only sets known settings.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from server.settings import Settings
from tests.e2e.server_proc import BIN_DIR, REPO, free_port, run_service, service_env
from tests.server.svc_helpers import build_tiny_checkpoint

pytestmark = pytest.mark.e2e

DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "compose.yaml"
DOCKERIGNORE = REPO / ".dockerignore"
PATH_SETTINGS = {"M2F_MODEL_PATH", "M2F_DATA_DIR"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    return out


def exec_form(args: str) -> list[str]:
    """A JSON exec-form array (the form the image must use so signals reach the server)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def env_pairs(args: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(args))


def parsed() -> dict:
    ins = instructions(DOCKERFILE)
    by_kind: dict[str, list[str]] = {}
    for kind, args in ins:
        by_kind.setdefault(kind, []).append(args)
    env: dict[str, str] = {}
    for args in by_kind.get("ENV", []):
        env.update(env_pairs(args))
    entrypoint = exec_form(by_kind["ENTRYPOINT"][-1])
    cmd = exec_form(by_kind["CMD"][-1]) if "CMD" in by_kind else []
    health = by_kind["HEALTHCHECK"][-1]
    health_cmd = exec_form(health.split(" CMD ", 1)[1]) if " CMD " in f" {health}" else None
    return {"by_kind": by_kind, "env": env, "argv": entrypoint + cmd, "health": health, "health_cmd": health_cmd}


def swap(argv: list[str], option: str, value: str) -> list[str]:
    """argv with the value after `option` replaced (the option must be there)."""
    assert option in argv, f"{option} missing from {argv}"
    i = argv.index(option)
    return [*argv[: i + 1], value, *argv[i + 2 :]]


def test_dockerfile_static_contract() -> None:
    d = parsed()
    by_kind = d["by_kind"]
    base = by_kind["FROM"][-1]
    args = " ".join(by_kind.get("ARG", []))
    assert re.search(r"pytorch/pytorch:[\w.]+-cuda[\w.]+-cudnn\d+-runtime", f"{base} {args}"), (base, args)

    # same install path as the README / Makefile, into the image's Python (keeps its CUDA torch)
    installs = [r for r in by_kind["RUN"] if "scripts/install.sh" in r]
    assert installs and "VENV=system" in installs[0], by_kind["RUN"]
    assert "bash scripts/install.sh" in (REPO / "Makefile").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make serve" in readme or "scripts/install.sh" in readme
    assert not any(re.search(r"\b(gcc|g\+\+|build-essential|clang)\b", r) for r in by_kind["RUN"])
    assert any("ffmpeg" in r for r in by_kind["RUN"])

    users = by_kind.get("USER", [])
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert "8000" in " ".join(by_kind.get("EXPOSE", []))
    volumes = " ".join(by_kind.get("VOLUME", []))
    assert "/models" in volumes and d["env"].get("M2F_MODEL_PATH") == "/models"
    assert d["argv"][:2] == ["m2f-ttt", "serve"] and swap(d["argv"], "--port", "8000") == d["argv"]
    assert "/healthz" in d["health"] and d["health_cmd"], d["health"]
    for key in d["env"]:
        if key.startswith("M2F_"):
            assert key in Settings.env_names(), f"{key} is not a setting"

    # every COPY source exists and is part of the build context
    lines = DOCKERIGNORE.read_text().splitlines()
    patterns = [p.strip().rstrip("/") for p in lines if p.strip() and not p.startswith("#")]
    ignored = [p for p in patterns if not p.startswith("!")]

    def excluded(src: str) -> bool:
        """Docker's rule: the last pattern that matches decides; `!pattern` re-includes."""
        verdict = False
        for pat in patterns:
            negate, pat = pat.startswith("!"), pat.lstrip("!")
            if fnmatch.fnmatch(src, pat) or src.startswith(f"{pat}/"):
                verdict = not negate
        return verdict

    for copy in by_kind["COPY"]:
        parts = [p for p in shlex.split(copy) if not p.startswith("--")]
        for src in parts[:-1]:
            assert (REPO / src).exists(), f"COPY source {src} does not exist"
            assert not excluded(src), f"COPY source {src} is excluded by .dockerignore"
    assert {".git", ".venv"} <= set(ignored)
    # the bundled model seeds the /models volume: it must be in the sources the image copies
    for run in by_kind["RUN"]:
        for src in re.findall(r"cp -r (model/bundled/[\w.-]+)", run):
            assert (REPO / src / "config.json").is_file(), f"{src} (copied into /models) is missing"


def test_compose_reserves_gpu_and_volumes() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    (service,) = doc["services"].values()
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(dev.get("driver") == "nvidia" and "gpu" in dev.get("capabilities", []) for dev in devices)
    mounts = {v.split(":")[1] for v in service["volumes"]}
    assert {"/models", "/data"} <= mounts
    assert set(doc["volumes"]) >= {v.split(":")[0] for v in service["volumes"] if not v.startswith((".", "/"))}
    assert (COMPOSE.parent / service["build"]["context"]).resolve() == REPO.resolve()
    assert (REPO / service["build"]["dockerfile"]).resolve() == DOCKERFILE.resolve()
    for key in service["environment"]:
        assert key in Settings.env_names(), f"{key} is not a setting"


@pytest.mark.timeout(120)
def test_entrypoint_serves_health_and_ready(tmp_path: Path) -> None:
    d = parsed()
    port = free_port()
    argv = swap(swap(d["argv"], "--port", str(port)), "--host", "127.0.0.1")
    exe = shutil.which(argv[0], path=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    assert exe, f"{argv[0]} is not installed (run scripts/install.sh)"
    argv[0] = exe
    ckpt = build_tiny_checkpoint(tmp_path / "models")
    image_env = {k: v for k, v in d["env"].items() if k.startswith("M2F_") and k not in PATH_SETTINGS}
    env = service_env(ckpt, tmp_path / "data", **image_env)
    with run_service(argv, env, tmp_path / "server.log", port=port, ready_timeout_s=90) as server:
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
        # the mounted model is the one served (by name: /readyz is open, so it never shows the path)
        assert ready.json()["model"] == {"name": json.loads((ckpt / "config.json").read_text())["name"]}
        # the image's HEALTHCHECK command, pointed at this port
        health = [sys.executable if a == "python" else a.replace(":8000/", f":{port}/") for a in d["health_cmd"]]
        probe = subprocess.run(health, capture_output=True, text=True, timeout=30, check=False)
        assert probe.returncode == 0, probe.stderr
    assert server.proc.returncode is not None

"""Run the service as a real subprocess (uvicorn via `m2f-ttt serve` or any command) on a free 127.0.0.1 port.

Used by the browser, README-client and Docker-entrypoint tests: the process is started in its own process group,
its output goes to a log file (shown when start-up fails), readiness is `/readyz == 200`, and it is stopped with
SIGTERM (SIGKILL after a grace period) on exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """A started service: `url`, `ws_url`, the process and its log file."""

    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def service_env(model_path: Path, work_dir: Path, **extra: str) -> dict[str, str]:
    """The current environment plus settings that isolate a test service in `work_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("M2F_")}
    env.update({
        "M2F_MODEL_PATH": str(model_path),
        "M2F_DATA_DIR": str(work_dir),
        "M2F_JOBS_DIR": str(work_dir / "jobs"),
        "M2F_CHECKPOINT_DIR": str(work_dir / "states"),
        "M2F_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def serve_command(port: int) -> list[str]:
    """`m2f-ttt serve` on `port` (through `python -m server.cli`, so a stale console script cannot interfere)."""
    return [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]


def wait_ready(server: ServerProcess, timeout_s: float, path: str = "/readyz") -> httpx.Response:
    """Poll `path` until it answers 200; raises with the log tail when the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    last: str = "no answer"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            code = server.proc.returncode
            raise RuntimeError(f"the service exited with {code} during start-up:\n{server.log_tail()}")
        try:
            resp = httpx.get(server.url + path, timeout=2.0)
            if resp.status_code == 200:
                return resp
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise TimeoutError(f"{path} not 200 within {timeout_s:g} s ({last}):\n{server.log_tail()}")


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


@contextmanager
def run_service(
    command: Sequence[str] | None,
    env: dict[str, str],
    log_path: Path,
    port: int | None = None,
    ready_timeout_s: float = 60.0,
) -> Iterator[ServerProcess]:
    """Start `command` (default: `serve_command(port)`), wait for `/readyz`, yield, then stop the process group."""
    port = port or free_port()
    cmd = list(command) if command is not None else serve_command(port)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    server = ServerProcess(proc, port, log_path)
    try:
        wait_ready(server, ready_timeout_s)
        yield server
    finally:
        _stop(proc)

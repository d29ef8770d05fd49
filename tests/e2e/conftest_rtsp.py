"""Pytest helpers for a real RTSP camera (GStreamer's RTSP server in a subprocess).

Import the fixture into a test module (this file is not a ``conftest.py``)::

    from tests.e2e.conftest_rtsp import RtspCamera, rtsp_camera  # noqa: F401

``rtsp_camera`` yields a started :class:`RtspCamera` (320x240, 10 fps H.264 on
``rtsp://127.0.0.1:<free port>/cam``) and stops it afterwards.  The camera runs
under Debian's ``/usr/bin/python3`` (which has the ``gi`` bindings), not the
venv.  The fixture skips only when that interpreter lacks ``gi`` or the
GStreamer RTSP server introspection data; any other problem is an error.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SYSTEM_PYTHON = os.environ.get("RTSP_CAMERA_PYTHON", "/usr/bin/python3")
CAMERA_SCRIPT = Path(__file__).with_name("rtsp_camera.py")
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


def gi_missing_reason() -> str | None:
    """Why the camera cannot run here (None if it can): checks gi + GstRtspServer."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found (needed to run the GStreamer RTSP test camera)"
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import Gst, GstRtspServer"
    )
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return None  # let the real start report the problem
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        return (
            f"{SYSTEM_PYTHON} lacks gi / GStreamer RTSP server bindings ({last}); "
            "install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,ugly}"
        )
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RtspCamera:
    """Controls one ``rtsp_camera.py`` subprocess.

    ``start(port, width, height)`` launches it and waits (bounded) for READY;
    ``stop()`` sends SIGTERM (then SIGKILL); ``kill()`` sends SIGKILL at once;
    ``restart(width, height)`` stops and starts it again on the same port.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.port: int | None = None
        self.width = 320
        self.height = 240
        self.url: str = ""
        self.output: list[str] = []

    # -- life cycle ----------------------------------------------------------------

    def start(self, port: int | None = None, width: int = 320, height: int = 240) -> str:
        """Start serving; returns the ``/cam`` URL. ``port`` None picks a free one."""
        if self.running:
            raise RuntimeError("camera already running")
        self.width, self.height = width, height
        port = port if port is not None else (self.port or free_port())
        last_error = ""
        for _attempt in range(3):  # a just-freed port can linger briefly
            try:
                self._spawn(port, width, height)
                return self.url
            except RuntimeError as exc:
                last_error = str(exc)
                if "cannot listen" not in last_error:
                    raise
                time.sleep(0.5)
        raise RuntimeError(last_error)

    def _spawn(self, port: int, width: int, height: int) -> None:
        cmd = [SYSTEM_PYTHON, str(CAMERA_SCRIPT), "--port", str(port), "--width", str(width), "--height", str(height)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,  # its own process group, so killpg reaches GStreamer too
        )
        self.proc = proc
        lines: queue.Queue[str | None] = queue.Queue()

        def _reader() -> None:  # also keeps the pipe drained after READY
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                self.output.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=_reader, name=f"rtsp-camera-{proc.pid}-out", daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._terminate(signal.SIGKILL)
                raise RuntimeError(f"RTSP camera not READY within {READY_TIMEOUT_S:g} s: {self.output[-5:]}")
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line is None:  # EOF: the process is exiting
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self._terminate(signal.SIGKILL)
                self._raise_exited()
            elif line.startswith("READY "):
                self.url = line.split()[1]
                self.port = int(self.url.rsplit(":", 1)[1].split("/", 1)[0])
                return

    def _raise_exited(self) -> None:
        code = self.proc.returncode if self.proc is not None else None
        tail = "\n".join(self.output[-10:])
        self.proc = None
        raise RuntimeError(f"RTSP camera exited with status {code}: {tail}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url_for(self, path: str) -> str:
        """URL of another path on the same server (e.g. ``/audio``, ``/missing``)."""
        return f"rtsp://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def _terminate(self, sig: int) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None

    def stop(self) -> None:
        """Graceful stop (SIGTERM, SIGKILL after 5 s). Idempotent."""
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        """Abrupt stop (SIGKILL), like a camera losing power."""
        self._terminate(signal.SIGKILL)

    def pause(self) -> None:
        """Freeze the camera (SIGSTOP): connections stay open but nothing is sent."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause` (SIGCONT)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def restart(self, width: int | None = None, height: int | None = None, *, kill: bool = False) -> str:
        """Stop (or kill) and start again on the same port, optionally at a new size."""
        port = self.port
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(port, width or self.width, height or self.height)


@pytest.fixture
def rtsp_camera() -> Iterator[RtspCamera]:
    """A running fake RTSP camera (320x240 @ 10 fps H.264 at ``camera.url``)."""
    reason = gi_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    camera = RtspCamera()
    camera.start()
    try:
        yield camera
    finally:
        if camera.proc is not None and camera.proc.poll() is None:
            try:  # a paused camera must be resumed to honour SIGTERM
                os.killpg(camera.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        camera.stop()


__all__ = ["RtspCamera", "free_port", "gi_missing_reason", "rtsp_camera"]

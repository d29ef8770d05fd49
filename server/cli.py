"""Console entry point `m2f-ttt`: the project's CLI (`mask2former_ttt.cli`) plus `serve`.

The CLI lives in `mask2former_ttt`; `serve` is added here so that `mask2former_ttt` never imports `server`.
"""

from __future__ import annotations

import importlib.util
import signal
from types import FrameType
from typing import Annotated

import typer

WS_HEADROOM_BYTES = 1024 * 1024


def ws_max_size(max_frame_bytes: int) -> int:
    """uvicorn's hard cap on one WebSocket message: twice `M2F_STREAMS_MAX_FRAME_BYTES` plus 1 MiB.

    The app enforces `M2F_STREAMS_MAX_FRAME_BYTES` itself (an `error` message `frame_too_big`, then close 1009), so the
    transport cap must lie well above it: a frame somewhat over the limit reaches the app and the client learns
    why; only a runaway message beyond this cap is cut by uvicorn (a bare close 1009)."""
    return 2 * max_frame_bytes + WS_HEADROOM_BYTES


def _exit_cleanly(sig: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handler: exit with status 0.

    uvicorn catches SIGTERM, shuts down gracefully (WebSocket streams get their close, running jobs commit a
    checkpoint and go back to `queued`), then restores the handler it found and raises the signal again. With the
    default handler that re-raise killed the drained process with status 143; with this one it exits 0."""
    raise SystemExit(0)


def _serve(
    host: str | None = typer.Option(None, help="interface to bind (default: M2F_HOST or 127.0.0.1)"),
    port: int | None = typer.Option(None, min=1, max=65535, help="TCP port (default: M2F_PORT or 8000)"),
    log_level: str = typer.Option(None, help="log level (default: M2F_LOG_LEVEL or INFO)"),
    backend: Annotated[  # Annotated: a plain default, so `_serve(...)` called directly gets None
        str | None, typer.Option(help="local | ray: device-worker actors on a Ray cluster (default: M2F_BACKEND or local)")
    ] = None,
) -> None:
    """Run the HTTP/WebSocket service (settings from M2F_* environment variables; flags win over them)."""
    import uvicorn

    from server.app import create_app
    from server.logging_setup import setup_logging
    from server.settings import Settings

    if backend not in (None, "local", "ray"):
        typer.echo(f"--backend must be local or ray, not {backend!r}", err=True)
        raise typer.Exit(2)
    try:
        settings = Settings(backend=backend) if backend else Settings()
    except ValueError as exc:  # pydantic's ValidationError: one line per setting, no traceback
        errors = getattr(exc, "errors", lambda: [])()
        from model.hub import HubModelError

        for error in errors:  # M2F_MODEL_PATH=hf:...: the model cannot be had; the line says what to do
            if isinstance((error.get("ctx") or {}).get("error"), HubModelError):
                typer.echo(f"error: {error['ctx']['error']}", err=True)
                raise typer.Exit(2) from None
        lines = [f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in errors] or [str(exc)]
        typer.echo("invalid settings (docs/configuration.md): " + "; ".join(lines), err=True)
        raise typer.Exit(2) from None
    if settings.backend == "ray" and importlib.util.find_spec("ray") is None:
        typer.echo("backend=ray needs Ray: pip install '.[ray]' (docs/deployment-ray.md)", err=True)
        raise typer.Exit(2)
    level = log_level or settings.log_level
    setup_logging(level)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        log_level=level.lower(),
        ws_max_size=ws_max_size(int(settings.streams.max_frame_bytes)),
    )


def build_app() -> typer.Typer:
    """The project's typer app with `serve` and `bench` added."""
    from mask2former_ttt.cli import app
    from server.bench_cli import bench

    app.command("serve")(_serve)
    app.command("bench")(bench)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()

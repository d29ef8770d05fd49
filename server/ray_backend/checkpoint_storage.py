"""Where failover checkpoints go besides the front-end's memory: a local directory (atomic replace) or any fsspec
URL (`s3://`, `gs://`, `memory://` ...) that every front-end replica can read."""

from __future__ import annotations

from pathlib import Path


def write_checkpoint(base: str | Path, stream_id: str, data: bytes) -> str:
    """Write `data` as `<base>/<stream_id>.pt`; returns where. URLs need `fsspec` (and its filesystem's package)."""
    text = str(base)
    if "://" in text:
        try:
            import fsspec
        except ImportError as exc:  # pragma: no cover - fsspec ships with the ray extra
            raise RuntimeError(f"ray_checkpoint_dir={text!r} is a URL: install fsspec to write there") from exc
        url = f"{text.rstrip('/')}/{stream_id}.pt"
        with fsspec.open(url, "wb") as f:
            f.write(data)
        return url
    folder = Path(text)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{stream_id}.pt.tmp"
    tmp.write_bytes(data)
    tmp.replace(folder / f"{stream_id}.pt")
    return str(folder / f"{stream_id}.pt")


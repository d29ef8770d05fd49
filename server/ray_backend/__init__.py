"""Ray backend (optional extra `ray`): sticky per-stream device-worker actors, a stream registry, and failover of a
dead actor's streams from their last checkpoint. Library-level for now: see docs/deployment-ray.md.

`ray` is imported lazily by the modules that need it, so importing this package does not require it."""

from server.ray_backend.state_bytes import load_state_bytes, state_bytes

__all__ = ["load_state_bytes", "state_bytes"]

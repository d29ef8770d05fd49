"""Import layering of the service, checked in a fresh interpreter (`sys.modules` after the import)."""

from __future__ import annotations

import json
import subprocess
import sys


def loaded_after(code: str) -> list[str]:
    """The module names a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_result_types_are_a_leaf_below_the_worker_and_the_wire() -> None:
    mods = loaded_after("import server.events")
    assert not [m for m in mods if m.startswith(("server.worker", "server.wire"))]


def test_the_wire_formats_do_not_import_the_worker() -> None:
    mods = loaded_after("import server.wire.outbound, server.wire.inbound")
    assert not [m for m in mods if m.startswith("server.worker")]

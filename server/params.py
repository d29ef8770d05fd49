"""Path parameters with bounds: ids and result names are checked before any lookup or filesystem call, so an
over-long or malformed value gets a 422 naming the problem instead of a 500 (e.g. ENAMETOOLONG) or a slow path.

Ids the service hands out are short hex strings (jobs: 16 digits, cameras: 12); `MAX_ID_CHARS` leaves room.
Result names are relative paths inside a job's results directory (`overlay.mp4`, `panoptic/000000.png`): at most
`MAX_NAME_CHARS` characters, `/`-separated components of ASCII letters, digits, `.`, `_`, `-`, each at most
`MAX_COMPONENT_BYTES` long (the usual filesystem limit on a name), which is also what the OpenAPI schema states; a
result folder (`panoptic/`, as `results` lists it) may end in one `/`.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator

MAX_ID_CHARS = 64
MAX_NAME_CHARS = 1024
MAX_COMPONENT_BYTES = 255
ID_PATTERN = r"^[A-Za-z0-9_-]+$"
COMPONENT = re.compile(r"[A-Za-z0-9._-]+")
NAME_PATTERN = rf"^[A-Za-z0-9._-]{{1,{MAX_COMPONENT_BYTES}}}(/[A-Za-z0-9._-]{{1,{MAX_COMPONENT_BYTES}}})*/?$"


def _check_result_name(name: str) -> str:
    """ValueError naming the problem if `name` cannot be a result file's relative path (a folder may end in `/`)."""
    for part in name.removesuffix("/").split("/"):
        if not COMPONENT.fullmatch(part):
            raise ValueError(
                f"result name component {part[:40]!r} is not 1+ ASCII letters, digits, '.', '_' or '-' "
                "(names look like 'overlay.mp4' or 'panoptic/000000.png')"
            )
        if len(part) > MAX_COMPONENT_BYTES:
            raise ValueError(f"a result name component is {len(part)} bytes; the limit is {MAX_COMPONENT_BYTES}")
    return name


def _id(what: str) -> object:
    return Path(
        min_length=1,
        max_length=MAX_ID_CHARS,
        pattern=ID_PATTERN,
        description=f"{what} id (letters, digits, `_`, `-`; at most {MAX_ID_CHARS} characters)",
    )


JobId = Annotated[str, _id("job")]
StreamId = Annotated[str, _id("camera stream")]
CheckpointId = Annotated[str, _id("checkpoint")]
ResultName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_NAME_CHARS,
        description=f"result file path, e.g. `overlay.mp4` or `panoptic/000000.png` (at most {MAX_NAME_CHARS} "
        f"characters, {MAX_COMPONENT_BYTES} per `/` component)",
        json_schema_extra={"pattern": NAME_PATTERN},
    ),
    AfterValidator(_check_result_name),
]
SegmentId = Annotated[
    str,
    Path(min_length=1, max_length=20, pattern=r"^[0-9]+$", description="recording segment id (digits, as listed)"),
]

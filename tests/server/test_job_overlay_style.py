"""Upload jobs take the overlay's style: `legend` (auto | always | never) and `labels` form fields; a small video's
overlay.mp4 grows by the legend strip under `auto` and keeps its size under `never`."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from mask2former_ttt.outputs.legend_strip import strip_width
from model.checkpoint import load_config
from tests.server.svc_helpers import make_client, make_clip
from tests.server.test_api_jobs import upload, wait_job


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 frames of Big Buck Bunny at 96x54: far below the in-frame legend's 240 rows."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=4, width=96)


def _overlay_width(client, job_id: str, tmp_path: Path) -> int:
    out = tmp_path / f"{job_id}.mp4"
    out.write_bytes(client.get(f"/v1/jobs/{job_id}/results/overlay.mp4").content)
    with av.open(str(out)) as container:
        return container.streams.video[0].codec_context.width


def test_a_jobs_legend_option_sets_the_overlay_width(tmp_path: Path, tiny_checkpoint: Path, clip: Path) -> None:
    strip = strip_width(load_config(tiny_checkpoint).class_names)
    with make_client(tmp_path, tiny_checkpoint) as client:
        auto = upload(client, clip.read_bytes(), task="semantic").json()
        never = upload(client, clip.read_bytes(), task="semantic", legend="never", labels="false").json()
        assert (auto["legend"], auto["labels"]) == ("auto", True)
        assert (never["legend"], never["labels"]) == ("never", False)
        for job in (auto, never):
            assert wait_job(client, job["id"])["state"] == "succeeded"
        assert _overlay_width(client, auto["id"], tmp_path) == 96 + strip
        assert _overlay_width(client, never["id"], tmp_path) == 96


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"legend": "sometimes"}, "form field 'legend': legend must be one of auto, always, never, got 'sometimes'"),
        ({"labels": "maybe"}, "form field 'labels' must be true or false, got 'maybe'"),
    ],
)
def test_bad_overlay_options_are_refused(tmp_path: Path, tiny_checkpoint: Path, clip: Path, fields: dict,
                                         message: str) -> None:
    with make_client(tmp_path, tiny_checkpoint) as client:
        r = upload(client, clip.read_bytes(), **fields)
        assert r.status_code == 422 and r.json()["detail"] == message
        assert client.get("/v1/jobs").json()["jobs"] == []

"""Models by name: `hf:<repo-id>[@<revision>]` wherever a model directory is accepted.

`resolve_hf_model("hf:facebook/mask2former-swin-small-coco-panoptic")` fetches the repository's config and weights
with `huggingface_hub.snapshot_download` into the Hugging Face cache (offline, `HF_HUB_OFFLINE=1` or no network:
only from that cache), converts the snapshot once with `model.hf_import` and keeps the converted checkpoint under
`<user cache>/mask2former-ttt/models/<org>--<name>@<commit>/` (written to a temporary folder, then renamed), which
later calls reuse. Every failure is a `HubModelError` with a one-line message that says what to do.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model.checkpoint import CONFIG, WEIGHTS

HF_PREFIX = "hf:"
ALLOW_PATTERNS = ["config.json", "*.safetensors", "*.bin", "preprocessor_config.json"]
APP_NAME = "mask2former-ttt"


class HubModelError(ValueError):
    """An `hf:` model that cannot be had; the message is one line."""


def is_hf_spec(value: object) -> bool:
    return value is not None and str(value).startswith(HF_PREFIX)


def parse_hf_spec(spec: str) -> tuple[str, str | None]:
    """`hf:org/name@rev` -> ("org/name", "rev"); `hf:org/name` -> ("org/name", None)."""
    body = str(spec)[len(HF_PREFIX) :]
    repo_id, _, revision = body.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubModelError(f"{spec}: expected hf:<org>/<name> or hf:<org>/<name>@<revision>")
    return repo_id, revision or None


def user_cache_dir() -> Path:
    """Where converted models are kept: `$XDG_CACHE_HOME/mask2former-ttt` (default `~/.cache/mask2former-ttt`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / APP_NAME


def _hub_cache_dir() -> str | None:
    """The Hugging Face cache as the environment names it now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE")
    return constants.HF_HUB_OFFLINE if flag is None else flag.strip().lower() in ("1", "true", "yes", "on")


def _not_cached(spec: str, repo_id: str) -> HubModelError:
    return HubModelError(
        f"{spec} is not in the local Hugging Face cache and the hub cannot be reached; run "
        f"'hf download {repo_id}' on a machine with internet and copy ~/.cache/huggingface, "
        "or pass a local directory"
    )


def download_snapshot(spec: str) -> tuple[Path, str, str]:
    """(the snapshot directory, the repo id, the commit hash) of an `hf:` spec: downloaded when online, else from
    the local Hugging Face cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    repo_id, revision = parse_hf_spec(spec)
    kwargs: dict[str, Any] = {"revision": revision, "allow_patterns": ALLOW_PATTERNS, "cache_dir": _hub_cache_dir()}
    path = None
    if not _offline():
        try:
            path = snapshot_download(repo_id, **kwargs)
        except GatedRepoError:
            raise HubModelError(f"{spec} is gated: accept its terms on huggingface.co and log in "
                                "('hf auth login')") from None
        except RepositoryNotFoundError:
            raise HubModelError(f"{spec}: no such model on the Hugging Face hub (a private one needs "
                                "'hf auth login')") from None
        except RevisionNotFoundError:
            raise HubModelError(f"{spec}: no revision {revision!r} in {repo_id}") from None
        except Exception:  # noqa: BLE001  # no network, hub down, proxy...: fall back to the cache below
            path = None
    if path is None:
        try:
            path = snapshot_download(repo_id, local_files_only=True, **kwargs)
        except Exception:  # noqa: BLE001  # not in the cache (or an incomplete snapshot)
            raise _not_cached(spec, repo_id) from None
    snapshot = Path(path)
    if not (snapshot / "config.json").is_file():
        raise _not_cached(spec, repo_id)
    return snapshot, repo_id, snapshot.name


def hf_name_overrides(repo_id: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`overrides` plus the model's name and task taken from the repo id (`...-coco-panoptic` -> panoptic) unless
    `overrides` set them."""
    from model.weight_transfer import infer_task

    merged: dict[str, Any] = {"name": f"hf-{repo_id.replace('/', '--')}"}
    task = infer_task(repo_id)
    if task:
        merged["task"] = task
    merged.update(overrides or {})
    return merged


def untagged_panoptic_error(spec: str, where: str = "DIR") -> HubModelError:
    return HubModelError(
        f"{spec} is a panoptic model whose label set is not a known one and whose config names no thing classes: "
        f"run `m2f-ttt convert {spec} {where} --overrides '{{\"thing_class_ids\": [0, 1, ...]}}'` with the ids of "
        "the classes that have instances, and use that directory"
    )


def converted_dir(repo_id: str, commit: str) -> Path:
    return user_cache_dir() / "models" / f"{repo_id.replace('/', '--')}@{commit}"


def resolve_hf_model(spec: str) -> Path:
    """The converted checkpoint directory of `hf:<repo-id>[@<revision>]` (converted now unless cached)."""
    from model.checkpoint import save_checkpoint
    from model.hf_import import load_hf_mask2former

    snapshot, repo_id, commit = download_snapshot(spec)
    final = converted_dir(repo_id, commit)
    if (final / CONFIG).is_file() and (final / WEIGHTS).is_file():
        return final
    try:
        model = load_hf_mask2former(snapshot, hf_name_overrides(repo_id))
    except (ValueError, TypeError, OSError, RuntimeError, KeyError) as exc:
        text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise HubModelError(f"cannot convert {spec}: {text or exc.__class__.__name__}") from None
    if model.cfg.task == "panoptic" and not model.cfg.thing_class_ids:
        raise untagged_panoptic_error(spec)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        save_checkpoint(model, tmp)
        try:
            tmp.rename(final)
        except OSError:  # converted meanwhile by another process: keep theirs
            if not (final / CONFIG).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final

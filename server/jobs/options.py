"""Per-job options from the upload form: the instance filter (`score_threshold`, `min_area`), `webhook_url`, the
overlay's style (`legend`, `labels`) and the extra `encodings` of results.jsonl."""

from __future__ import annotations

from mask2former_ttt.outputs.legend_strip import check_legend_mode
from mask2former_ttt.outputs.writer import check_jsonl_encodings
from model.postprocess import InstanceFilter
from server.jobs.upload import UploadError
from server.jobs.webhook import check_webhook_url
from server.settings import Settings


def _number(fields: dict[str, str], name: str, kind: type) -> float | int | None:
    """`fields[name]` as `kind` (None when absent or empty); UploadError 422 naming the field otherwise."""
    text = fields.get(name, "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise UploadError(422, f"form field {name!r} must be {what}, got {text!r}") from None


def job_options(fields: dict[str, str], settings: Settings) -> tuple[InstanceFilter, str | None]:
    """The job's instance filter (service defaults for unset fields) and webhook URL (checked against the URL policy);
    UploadError 422 naming the bad field."""
    score, area = _number(fields, "score_threshold", float), _number(fields, "min_area", int)
    try:
        keep = settings.instance_filter(score, area)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UploadError(422, f"bad instance filter: {exc}") from None
    url = fields.get("webhook_url", "").strip() or None
    if url is not None:
        try:
            check_webhook_url(url, settings.webhook.allowed_hosts)
        except ValueError as exc:
            raise UploadError(422, f"webhook_url: {exc}") from None
    return keep, url


BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def overlay_options(fields: dict[str, str]) -> tuple[str, bool]:
    """The overlay's `legend` (auto | always | never, default auto) and `labels` (true | false, default true);
    UploadError 422 naming the bad field."""
    legend = fields.get("legend", "").strip() or "auto"
    try:
        check_legend_mode(legend)
    except ValueError as exc:
        raise UploadError(422, f"form field 'legend': {exc}") from None
    text = fields.get("labels", "").strip().lower() or "true"
    if text not in BOOLEANS:
        raise UploadError(422, f"form field 'labels' must be true or false, got {text!r}")
    return legend, BOOLEANS[text]


def jsonl_encodings(fields: dict[str, str]) -> list[str]:
    """The form field `encodings` (comma-separated: `polygons`, `rle`) as the encodings results.jsonl adds to its
    layout; UploadError 422 naming an unknown one."""
    names = [n.strip() for n in fields.get("encodings", "").split(",") if n.strip()]
    try:
        return list(check_jsonl_encodings(names))
    except ValueError as exc:
        raise UploadError(422, f"form field 'encodings': {exc}") from None

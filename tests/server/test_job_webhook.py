"""Job webhooks: a real HTTP receiver on 127.0.0.1 checks the HMAC signature; a receiver that fails twice
gets the call on the third attempt; URLs outside the host policy are refused (no SSRF)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from server.jobs import webhook
from server.jobs.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSender, check_webhook_url, sign, verify
from tests.server.svc_helpers import make_client, make_clip, make_settings
from tests.server.test_api_jobs import upload, wait_job

SECRET = "s3cret-for-tests"


class Receiver:
    """What the test HTTP server saw; answers 500 to the first `fail_first` requests, then 204."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[dict] = []
        self.delivered = threading.Event()


@contextmanager
def receiver(fail_first: int = 0) -> Iterator[tuple[Receiver, str]]:
    rec = Receiver(fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            stamp, signature = self.headers.get(TIMESTAMP_HEADER, ""), self.headers.get(SIGNATURE_HEADER, "")
            rec.requests.append({"raw": raw, "valid": verify(SECRET, stamp, raw, signature), "path": self.path,
                                 "delivery": self.headers.get("X-M2F-Delivery")})
            ok = len(rec.requests) > rec.fail_first
            self.send_response(204 if ok else 500)
            self.end_headers()
            if ok:
                rec.delivered.set()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec, f"http://127.0.0.1:{server.server_address[1]}/hooks/m2f?x=1"
    finally:
        server.shutdown()
        server.server_close()


def test_signature_covers_timestamp_and_body() -> None:
    stamp = str(int(time.time()))
    sig = sign(SECRET, stamp, b'{"a":1}')
    assert sig.startswith("sha256=") and verify(SECRET, stamp, b'{"a":1}', sig)
    assert not verify(SECRET, stamp, b'{"a":2}', sig)  # body changed
    assert not verify(SECRET, str(int(stamp) + 1), b'{"a":1}', sig)  # timestamp changed
    old = str(int(time.time()) - 3600)
    assert not verify(SECRET, old, b'{"a":1}', sign(SECRET, old, b'{"a":1}'))  # replayed an hour later


def test_job_end_calls_the_webhook_signed(tmp_path: Path, tiny_checkpoint: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=2, width=64)
    with receiver() as (rec, url), make_client(
        tmp_path, tiny_checkpoint, webhook_secret=SECRET, webhook_allowed_hosts="127.0.0.1"
    ) as client:
        r = upload(client, clip.read_bytes(), task="panoptic", webhook_url=url)
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["id"])
        assert rec.delivered.wait(20), "the webhook was not called"
    (req,) = rec.requests
    assert req["valid"] and req["path"] == "/hooks/m2f?x=1"
    body = json.loads(req["raw"])
    assert body["event"] == "job.finished" and body["job_id"] == job["id"] and body["state"] == "succeeded"
    assert body["frames"] == 2 and body["results"] == job["results"] and body["error"] is None
    assert body["archive"] == f"/v1/jobs/{job['id']}/archive"


def test_a_failing_receiver_gets_the_call_on_the_third_attempt(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhook, "BACKOFF_S", 0.05)
    monkeypatch.setattr(webhook, "MAX_ATTEMPTS", 3)
    settings = make_settings(tmp_path, tiny_checkpoint, webhook_secret=SECRET, webhook_allowed_hosts=["127.0.0.1"])
    with receiver(fail_first=2) as (rec, url):
        assert WebhookSender(settings).deliver(url, {"job_id": "j1", "state": "failed"}) is True
    assert [r["valid"] for r in rec.requests] == [True, True, True]
    assert len({r["delivery"] for r in rec.requests}) == 1  # one delivery id over the retries
    with receiver(fail_first=5) as (rec, url):
        assert WebhookSender(settings).deliver(url, {"job_id": "j2"}) is False  # bounded: gives up after 3
    assert len(rec.requests) == 3


@pytest.mark.parametrize(
    ("url", "allowed", "needle"),
    [
        ("ftp://example.com/x", None, "scheme"),
        ("http://user:pw@example.com/x", None, "credentials"),
        ("http://127.0.0.1:9/x", None, "loopback"),
        ("http://10.1.2.3/x", None, "private"),
        ("http://169.254.169.254/latest/meta-data", None, "link-local"),
        ("https://hooks.example.com/x", ["*.internal"], "not in the allowed hosts list"),
    ],
)
def test_webhook_url_policy(url: str, allowed: list[str] | None, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        check_webhook_url(url, allowed)


def test_names_resolving_to_internal_addresses_are_not_called(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhook, "BACKOFF_S", 0.01)
    settings = make_settings(tmp_path, tiny_checkpoint)
    with receiver() as (rec, url):
        port = url.split(":")[2].split("/")[0]
        sender = WebhookSender(settings, resolver=lambda host, p: ["127.0.0.1"])  # DNS says: loopback
        assert sender.deliver(f"http://hooks.example.com:{port}/x", {"job_id": "j"}) is False
    assert rec.requests == []


def test_upload_refuses_a_bad_webhook_url(tmp_path: Path, tiny_checkpoint: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", frames=1, width=64)
    with make_client(tmp_path, tiny_checkpoint) as client:
        r = upload(client, clip.read_bytes(), webhook_url="http://192.168.0.1/hook")
        assert r.status_code == 422 and "webhook_url" in r.json()["detail"] and "private" in r.json()["detail"]

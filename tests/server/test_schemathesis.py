"""The OpenAPI contract, fuzzed: schemathesis (the `--checks all` set, every phase) against the ASGI app in-process
(fake adapters, tiny model), a bounded number of examples per operation. A failure means the schema and the
service disagree (an undocumented status or media type, a 500, a schema-violating body, valid data refused, ...).

The WebSocket routes are not in OpenAPI (docs/websocket-protocol.md; tests/server/test_bad_input.py covers them).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.engine import Status, events, from_schema  # noqa: E402
from schemathesis.python import asgi  # noqa: E402

from server.app import create_app  # noqa: E402
from tests.server.svc_helpers import fake_factory, make_settings  # noqa: E402

pytestmark = pytest.mark.timeout(300)
MAX_EXAMPLES = 15  # per operation and phase: ~1 min on 2 cores

# Valid-by-schema data the service still refuses for reasons a schema cannot state (positive_data_acceptance):
# an upload's bytes are not a video (415) or not a usable one (422: corrupt, too long, unknown method/preset);
# a predicted image is not a JPEG / PNG (415) or not a decodable one (422);
# a camera URL outside the allow-list or an unknown method / preset (400), also when only probed.
SEMANTIC_REFUSALS = [
    {"include-name": "POST /v1/jobs", "statuses": ["413", "415", "422"]},
    {"include-name": "POST /v1/predict", "statuses": ["413", "415", "422"]},
    {"include-name": "POST /v1/streams", "statuses": ["400"]},
    {"include-name": "POST /v1/streams/test", "statuses": ["400"]},
    {"include-name-regex": r"^POST /v1/streams/\{stream_id\}/(restore|reset|checkpoint)$", "statuses": ["400"]},
]


def _config() -> SchemathesisConfig:
    accepted = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
    operations = [
        {
            **{k: v for k, v in rule.items() if k != "statuses"},
            "checks": {"positive_data_acceptance": {"expected-statuses": accepted + rule["statuses"]}},
        }
        for rule in SEMANTIC_REFUSALS
    ]
    config = SchemathesisConfig.from_dict({"seed": 1, "operations": operations})
    config.projects.override.checks.update(included_check_names=["all"])
    config.projects.override.generation.update(max_examples=MAX_EXAMPLES, database="none")
    return config


def test_openapi_contract_holds_under_schemathesis_all_checks(tmp_path: Path, tiny_checkpoint: Path) -> None:
    settings = make_settings(tmp_path, tiny_checkpoint, rtsp_allowed_hosts=["camera.invalid"])
    app = create_app(settings, adapter_factory=fake_factory())
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=_config())
    started = time.monotonic()
    cases, checks, failures, errors, operations = 0, 0, [], [], set()
    try:
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                operations.add(event.label)
                cases += len(event.recorder.cases)
                for case_id, nodes in event.recorder.checks.items():
                    checks += len(nodes)
                    for node in nodes:
                        if node.status == Status.FAILURE and node.failure_info is not None:
                            info = node.failure_info
                            failures.append(
                                f"{event.label} [{node.name}]: {info.failure.title}: {info.failure.message[:300]!r}\n"
                                f"    {info.code_sample[:300]}"
                            )
            elif isinstance(event, (events.NonFatalError, events.FatalError)):
                errors.append(str(getattr(event, "info", event)))
    finally:
        asgi.shutdown_lifespans()
    unique = sorted(set(failures))
    print(
        f"\nschemathesis: {len(operations)} operations, {cases} cases, {checks} checks, "
        f"{len(unique)} distinct failures, {len(errors)} errors in {time.monotonic() - started:.1f} s"
    )
    for line in unique:
        print("  FAIL", line)
    assert cases > 10 * len(operations) > 0, (cases, operations)
    assert not errors, errors
    assert not unique, "\n".join(unique)

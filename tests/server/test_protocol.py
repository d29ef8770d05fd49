"""Wire format: binary frame header parsing, message validation."""

from __future__ import annotations

import json
import struct

import pytest
from pydantic import ValidationError

from server.wire.inbound import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED,
    ProtocolError,
    StartMessage,
    encodings_for,
    pack_frame,
    parse_frame,
    parse_text,
)
from tests.server.svc_helpers import jpeg, png, rgb_frame


def test_pack_and_parse_round_trip() -> None:
    image = jpeg(rgb_frame())
    header, body = parse_frame(pack_frame(image, frame_id=7, capture_ts=12.5), 1 << 20)
    assert header == {"frame_id": 7, "capture_ts": 12.5}
    assert body == image
    header, body = parse_frame(struct.pack(">I", 0) + png(rgb_frame()), 1 << 20)
    assert header == {} and body.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("data", "close_code", "needle"),
    [
        (b"\x00\x01", CLOSE_INVALID_PAYLOAD, "shorter than its 4-byte"),
        (struct.pack(">I", 100) + b"{}", CLOSE_INVALID_PAYLOAD, "header length 100 is invalid"),
        (struct.pack(">I", 3) + b"{x}" + b"\xff\xd8\xff", CLOSE_INVALID_PAYLOAD, "not UTF-8 JSON"),
        (struct.pack(">I", 2) + b"[]" + b"\xff\xd8\xff", CLOSE_INVALID_PAYLOAD, "must be a JSON object"),
        (struct.pack(">I", 14) + b'{"frame_id":[]}'[:14] + b"\xff\xd8\xff", CLOSE_INVALID_PAYLOAD, ""),
        (struct.pack(">I", 2) + b"{}", CLOSE_INVALID_PAYLOAD, "no image bytes"),
        (struct.pack(">I", 2) + b"{}" + b"GIF89a....", CLOSE_UNSUPPORTED, "neither JPEG nor PNG"),
        (pack_frame(b"\xff\xd8\xff" + b"0" * 2000), CLOSE_TOO_BIG, "limit is 1000"),
    ],
)
def test_malformed_frames_name_the_problem(data: bytes, close_code: int, needle: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_frame(data, 1000)
    assert exc.value.close_code == close_code
    assert needle in exc.value.message


def test_frame_id_and_capture_ts_types_are_checked() -> None:
    with pytest.raises(ProtocolError, match="frame_id must be"):
        parse_frame(pack_frame(jpeg(rgb_frame()), frame_id=[1]), 1 << 20)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="capture_ts must be"):
        parse_frame(pack_frame(jpeg(rgb_frame()), capture_ts="now"), 1 << 20)  # type: ignore[arg-type]


def test_text_messages_must_be_json_objects_with_type() -> None:
    assert parse_text('{"type": "stats"}') == {"type": "stats"}
    for bad in ("not json", "[1]", '{"kind": "start"}'):
        with pytest.raises(ProtocolError) as exc:
            parse_text(bad)
        assert exc.value.close_code == CLOSE_INVALID_PAYLOAD


def test_start_message_validation_and_default_encodings() -> None:
    msg = StartMessage.model_validate({"type": "start", "task": "instance", "encodings": ["rle", "rle", "overlay"]})
    assert msg.encodings == ["rle", "overlay"] and msg.policy == "latest"
    assert encodings_for("instance", None) == ("rle",)
    assert encodings_for("panoptic", None) == ("png",)
    for bad in (
        {"type": "start", "task": "depth"},
        {"type": "start", "encodings": ["gif"]},
        {"type": "start", "policy": "sometimes"},
        {"type": "start", "extra": 1},
    ):
        with pytest.raises(ValidationError):
            StartMessage.model_validate(bad)
    assert json.loads(StartMessage(type="start").model_dump_json())["task"] == "semantic"

"""The frame-path map in `server`'s docstring names only functions and classes that exist."""

from __future__ import annotations

import importlib
import re

import pytest

import server

DOTTED = re.compile(r"`((?:server|mask2former_ttt|model)(?:\.\w+)+)`")


def resolve(name: str) -> object:
    """Import the longest importable module prefix of `name`, then look up the rest as attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise  # the module exists but one of its own imports is missing
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)  # AttributeError: the map names something that does not exist
        return obj
    raise ModuleNotFoundError(name)


def names() -> list[str]:
    return sorted(set(DOTTED.findall(server.__doc__ or "")))


def test_the_map_names_the_steps() -> None:
    found = names()
    for step in ("server.wire.inbound.parse_frame", "server.worker.frame_processing.FrameProcessor.process",
                 "server.worker.decode_ahead.DecodeAhead.start", "server.streaming.LoopForwarder",
                 "server.wire.outbound.outgoing_message"):
        assert step in found


@pytest.mark.parametrize("name", names())
def test_each_dotted_name_resolves(name: str) -> None:
    assert callable(resolve(name)), name


def test_a_missing_name_is_caught() -> None:
    with pytest.raises(AttributeError):
        resolve("server.worker.frame_processing.FrameProcessor.no_such_method")
    with pytest.raises(AttributeError):
        resolve("server.no_such_module.thing")

"""`release_freed_memory` trims glibc's heap and does nothing where the C library cannot."""

from __future__ import annotations

import ctypes.util
from collections.abc import Iterator

import pytest

from server.worker import memory_trim


@pytest.fixture(autouse=True)
def fresh_lookup() -> Iterator[None]:
    memory_trim._malloc_trim.cache_clear()
    yield
    memory_trim._malloc_trim.cache_clear()


def test_without_a_c_library_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert memory_trim.release_freed_memory() is False


def test_a_c_library_without_malloc_trim_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoTrim:
        def __init__(self, name: str) -> None:
            self.name = name

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libc-without-trim")
    monkeypatch.setattr(ctypes, "CDLL", NoTrim)
    assert memory_trim.release_freed_memory() is False


def test_glibc_trims_with_a_zero_pad(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    class Trim:
        argtypes: list = []
        restype = None

        def __call__(self, pad: int) -> int:
            calls.append(pad)
            return 1

    class GlibC:
        def __init__(self, name: str) -> None:
            self.malloc_trim = Trim()

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libc.so.6")
    monkeypatch.setattr(ctypes, "CDLL", GlibC)
    assert memory_trim.release_freed_memory() is True
    assert calls == [0]

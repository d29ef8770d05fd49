"""Giving memory freed by closed streams back to the operating system.

A closed stream's adapted weights, optimizer buffers and frame window are freed to the C allocator, which keeps
most of them mapped for reuse: the process's resident memory stays at its peak long after the streams are gone.
On glibc, `malloc_trim(0)` returns the free heap pages to the system. Other C libraries (musl, macOS, Windows)
have no such call or return memory on their own; there the call does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from typing import Callable

log = logging.getLogger(__name__)

__all__ = ["release_freed_memory"]


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the allocator's free memory to the OS; True if the C library has a way to (glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True

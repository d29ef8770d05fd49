"""Deterministic seed derivation: every random stream is named, so results never depend on call order."""

from __future__ import annotations

import zlib

import numpy as np


def _tag(t: object) -> int:
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= int(t) < 2**32:
        return int(t)
    return zlib.crc32(str(t).encode("utf-8"))


def derive_seed(base: int, *tags: object) -> int:
    """A 63-bit seed from a base seed and any number of tags (ints or strings), stable across runs."""
    ss = np.random.SeedSequence([int(base) % 2**32, int(base) // 2**32 % 2**32, *[_tag(t) for t in tags]])
    lo, hi = (int(v) for v in ss.generate_state(2, dtype=np.uint32))
    return lo | (hi & 0x7FFFFFFF) << 32


def rng_for(base: int, *tags: object) -> np.random.Generator:
    """A numpy Generator for the named stream ``(base, *tags)``."""
    return np.random.default_rng(derive_seed(base, *tags))

"""Appearance model: how a rendered pixel's colour is formed from the world's albedo and textures.

For a pixel of class ``c`` with base colour ``b`` (RGB), texture ``t`` and alternative texture ``t2``::

    rgb = gain * (M[c] @ b + bias_c[c] + tex_gain[c] * ((1 - mix[c]) * t + mix[c] * t2)) + bias

The identity appearance (``M = I``, no bias, gain 1, ``tex_gain = 1``, ``mix = 0``) is the clean
world the model is trained on; the ``drift`` shift moves these parameters (per-class colour
rotation/saturation/brightness, global illumination tint, texture strength and texture swap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Appearance:
    """Per-class colour transform (arrays indexed by class id, length ``K``; K >= number of classes)."""

    color_matrix: np.ndarray  # (K, 3, 3) float32
    color_bias: np.ndarray  # (K, 3) float32
    tex_gain: np.ndarray  # (K,) float32
    tex2_mix: np.ndarray  # (K,) float32 in [0, 1]
    gain: np.ndarray  # (3,) float32, global illumination (per channel)
    bias: np.ndarray  # (3,) float32

    @classmethod
    def identity(cls, num_classes: int) -> "Appearance":
        k = num_classes
        return cls(
            color_matrix=np.tile(np.eye(3, dtype=np.float32), (k, 1, 1)),
            color_bias=np.zeros((k, 3), np.float32),
            tex_gain=np.ones(k, np.float32),
            tex2_mix=np.zeros(k, np.float32),
            gain=np.ones(3, np.float32),
            bias=np.zeros(3, np.float32),
        )

    def apply(self, sem: np.ndarray, base: np.ndarray, tex: np.ndarray, tex2: np.ndarray) -> np.ndarray:
        """Colour pixels: ``sem`` (...,) class ids, ``base`` (..., 3) uint8, ``tex``/``tex2`` (...,) int8.

        Returns (..., 3) uint8.
        """
        s = sem.astype(np.intp)
        col = np.einsum("...ij,...j->...i", self.color_matrix[s], base.astype(np.float32))
        col += self.color_bias[s]
        mix = self.tex2_mix[s]
        t = self.tex_gain[s] * ((1 - mix) * tex.astype(np.float32) + mix * tex2.astype(np.float32))
        col += t[..., None]
        col = col * self.gain + self.bias
        return np.clip(col + 0.5, 0, 255).astype(np.uint8)


def hue_rotation(angle: float) -> np.ndarray:
    """(3, 3) rotation of RGB about the grey axis by ``angle`` radians (preserves grey)."""
    k = np.ones(3) / np.sqrt(3.0)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return (np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx).astype(np.float32)


def saturation(scale: float) -> np.ndarray:
    """(3, 3) matrix scaling the distance from grey by ``scale``."""
    g = np.full((3, 3), 1 / 3.0)
    return (g + scale * (np.eye(3) - g)).astype(np.float32)

"""Intensity normalisations named in task specs (see spec.NORMALIZATIONS)."""

from __future__ import annotations

import numpy as np

#: ImageNet statistics, the usual choice for RGB photos.
RGB_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
RGB_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _zscore(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    sample = values if mask is None else values[mask]
    if sample.size == 0:
        return np.zeros_like(values)
    mean = float(sample.mean())
    std = float(sample.std())
    out = (values - mean) / max(std, 1e-8)
    if mask is not None:
        out[~mask] = 0.0
    return out


def normalize(array: np.ndarray, method: str) -> np.ndarray:
    """Normalise a channels-first array, each channel on its own. Returns float32."""
    array = np.asarray(array, dtype=np.float32)
    if method == "none":
        return array.copy()
    if method == "rgb":
        if array.shape[0] != 3:
            raise ValueError("rgb normalisation needs 3 channels")
        scale = 255.0 if array.max() > 1.0 else 1.0
        shape = (3,) + (1,) * (array.ndim - 1)
        return ((array / scale - RGB_MEAN.reshape(shape)) / RGB_STD.reshape(shape)).astype(np.float32)
    out = np.empty_like(array)
    for c, channel in enumerate(array):
        if method == "zscore":
            out[c] = _zscore(channel)
        elif method == "zscore-nonzero":
            out[c] = _zscore(channel, channel != 0)
        elif method == "percentile":
            lo, hi = np.percentile(channel, [0.5, 99.5])
            out[c] = _zscore(np.clip(channel, lo, hi))
        else:
            raise ValueError(f"unknown normalisation {method!r}")
    return out

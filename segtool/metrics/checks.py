"""Argument checks shared by the metric functions: array pairs and voxel spacing."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from segtool.metrics.results import SURFACES


def as_spacing(spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...]:
    """The voxel size per axis as floats; None means 1 (pixels), a scalar means isotropic."""
    if spacing is None:
        return (1.0,) * ndim
    if np.isscalar(spacing):
        spacing = (float(spacing),) * ndim
    out = tuple(float(s) for s in spacing)
    if len(out) != ndim:
        raise ValueError(f"spacing has {len(out)} values for a {ndim}-D image")
    if not all(s > 0 and math.isfinite(s) for s in out):
        raise ValueError(f"spacing must be positive and finite, got {out}")
    return out


def check_pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays of one shape, at least 1-D."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    if pred.ndim < 1:
        raise ValueError("images must have at least one dimension")
    return pred, gt


def check_binary(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    """Two boolean masks of one shape (any truthy value is foreground)."""
    pred, gt = check_pair(pred, gt)
    return pred.astype(bool, copy=False), gt.astype(bool, copy=False)


def check_surface(surface: str, ndim: int) -> None:
    """Refuse an unknown surface definition, and surfels outside 2D and 3D."""
    if surface not in SURFACES:
        raise ValueError(f"surface must be one of {', '.join(SURFACES)}, got {surface!r}")
    if surface == "surfel" and ndim not in (2, 3):
        raise ValueError("surfels are defined for 2D and 3D images only")

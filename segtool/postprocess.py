"""Named postprocessing steps on label maps (numpy/scipy)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from segtool.spec import Postprocess


def labels_from_probabilities(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Argmax over classes; for binary tasks with a threshold, foreground where p(1) >= threshold."""
    if threshold is not None and probs.shape[0] == 2:
        return (probs[1] >= threshold).astype(np.uint8)
    dtype = np.uint8 if probs.shape[0] <= 256 else np.uint16
    return np.argmax(probs, axis=0).astype(dtype)


def _components(labels: np.ndarray):
    """For each non-zero label: (value, component map, component sizes with background 0)."""
    structure = ndimage.generate_binary_structure(labels.ndim, labels.ndim)
    for value in np.unique(labels):
        if value == 0:
            continue
        components, _ = ndimage.label(labels == value, structure)
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        yield value, components, sizes


def keep_largest_component(labels: np.ndarray) -> np.ndarray:
    """For each label, keep only its largest connected component (full connectivity)."""
    out = labels.copy()
    for _, components, sizes in _components(labels):
        out[(components != 0) & (components != sizes.argmax())] = 0
    return out


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Fill background holes enclosed by a single label."""
    out = labels.copy()
    for value in np.unique(labels):
        if value == 0:
            continue
        filled = ndimage.binary_fill_holes(labels == value)
        out[filled & (out == 0)] = value
    return out


def remove_small_objects(labels: np.ndarray, min_voxels: int) -> np.ndarray:
    """Remove connected components (per label) smaller than ``min_voxels``."""
    if min_voxels <= 1:
        return labels
    out = labels.copy()
    for _, components, sizes in _components(labels):
        small = sizes < min_voxels
        small[0] = False
        out[small[components]] = 0
    return out


def apply_postprocess(labels: np.ndarray, steps: Postprocess, voxel_volume_mm3: float) -> np.ndarray:
    """Run the enabled steps in a fixed order: small objects, largest component, holes."""
    if steps.min_size_mm3 > 0:
        labels = remove_small_objects(labels, int(np.ceil(steps.min_size_mm3 / voxel_volume_mm3)))
    if steps.keep_largest:
        labels = keep_largest_component(labels)
    if steps.fill_holes:
        labels = fill_holes(labels)
    return labels


def override(defaults: Postprocess, **changes) -> Postprocess:
    """Task defaults with the user's overrides (None means keep the default)."""
    return replace(defaults, **{k: v for k, v in changes.items() if v is not None})

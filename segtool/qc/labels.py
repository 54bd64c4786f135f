"""Label maps: checking a segmentation against its image's grid, label names and volumes."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def label_name(value: int, label_names: Mapping[int, str] | None) -> str:
    names = {int(k): str(v) for k, v in dict(label_names or {}).items()}
    return names.get(int(value), f"label {int(value)}")


def label_volumes(
    labels: np.ndarray, spacing: Sequence[float], label_names: Mapping[int, str] | None = None
) -> dict[str, float]:
    """Volume (product of spacings, e.g. mm³) of every label in ``label_names`` and any other value found."""
    arr = label_array(labels)
    values, counts = np.unique(arr[arr > 0], return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist()))
    unit = float(np.prod([float(s) for s in spacing])) if len(spacing) else 1.0
    out: dict[str, float] = {}
    for value in sorted(set(int(k) for k in dict(label_names or {})) | set(found)):
        out[label_name(value, label_names)] = round(found.get(value, 0) * unit, 3)
    return out


def label_array(labels: Any) -> np.ndarray:
    """The array of ``labels`` (an array or a Volume), as is."""
    arr = np.asarray(getattr(labels, "array", labels))
    return arr


def labels_on(image_spatial: tuple[int, ...], labels: Any, what: str = "segmentation") -> np.ndarray:
    """``labels`` as an int64 array of shape ``image_spatial``; a GeometryError naming ``what`` if it cannot be."""
    from segtool.errors import GeometryError

    arr = label_array(labels)
    if arr.ndim == len(image_spatial) + 1 and arr.shape[0] == 1:
        arr = arr[0]
    if tuple(arr.shape) != tuple(image_spatial):
        raise GeometryError(f"{what} has shape {tuple(arr.shape)}, the image {tuple(image_spatial)}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise GeometryError(f"{what} holds non-integer values")
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise GeometryError(f"{what} holds negative values")
    return arr.astype(np.int64, copy=False)

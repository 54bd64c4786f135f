"""The :class:`Volume`: an image as a channels-first array, its voxel-to-RAS affine and header."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


#: Largest difference (mm, or direction-cosine units) between two affines that are one voxel grid.
GRID_ATOL = 1e-3


def affine_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest absolute difference between two affines' entries (compare with ``GRID_ATOL``)."""
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).max())


def spacing_of(affine: np.ndarray, ndim: int = 3) -> tuple[float, ...]:
    """Voxel sizes (mm) along the first ``ndim`` voxel axes of an affine."""
    top_left = np.asarray(affine, dtype=float)[:-1, :-1]
    zooms = np.sqrt(np.sum(top_left**2, axis=0))  # nibabel.affines.voxel_sizes, without importing nibabel (0.3 s)
    return tuple(float(z) for z in zooms[:ndim])


@dataclass
class Volume:
    array: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    kind: str = "nifti"  # nifti | analyze | dicom | sitk | photo
    header: Any = None
    meta: dict = field(default_factory=dict)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    @property
    def ndim(self) -> int:
        return self.array.ndim - 1

    @property
    def channels(self) -> int:
        return self.array.shape[0]

    @property
    def spacing(self) -> tuple[float, ...]:
        return spacing_of(self.affine, self.ndim)

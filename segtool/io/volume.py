"""The :class:`Volume`: an image as a channels-first array, its voxel-to-RAS affine and header."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def spacing_of(affine: np.ndarray, ndim: int = 3) -> tuple[float, ...]:
    """Voxel sizes (mm) along the first ``ndim`` voxel axes of an affine."""
    zooms = np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
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

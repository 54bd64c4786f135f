"""Reorientation and resampling, each undoable exactly.

Arrays are channels-first: ``(C, *spatial)``. Reorientation permutes and flips
voxel axes (no interpolation) so the voxel axes point along the task's axis
codes (e.g. RAS); resampling rescales the grid to the task's spacing and back to
the exact original shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segtool.io.volume import spacing_of  # noqa: F401 - part of this module's API


@dataclass(frozen=True)
class Reorientation:
    """How an array was reoriented, so predictions can be put back."""

    transform: np.ndarray  # nibabel ornt: input voxel axes -> target axes
    inverse: np.ndarray  # target axes -> input voxel axes
    input_shape: tuple[int, ...]  # spatial shape before reorientation

    def apply(self, array: np.ndarray) -> np.ndarray:
        return _apply_ornt(array, self.transform)

    def undo(self, array: np.ndarray) -> np.ndarray:
        """Map a (C, *spatial) array in target orientation back onto the input's voxel grid."""
        out = _apply_ornt(array, self.inverse)
        if tuple(out.shape[1:]) != self.input_shape:
            raise ValueError(f"undo gave shape {out.shape[1:]}, expected {self.input_shape}")
        return out

    @property
    def is_identity(self) -> bool:
        n = self.transform.shape[0]
        return bool(np.array_equal(self.transform, np.column_stack([np.arange(n), np.ones(n)])))


def _apply_ornt(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    from nibabel import orientations  # here, not at import: nibabel (and pydicom with it) costs photo runs 0.3 s

    moved = np.moveaxis(array, 0, -1)  # spatial axes first for nibabel
    out = orientations.apply_orientation(moved, ornt)
    return np.ascontiguousarray(np.moveaxis(out, -1, 0))


def reorient(array: np.ndarray, affine: np.ndarray, target: str) -> tuple[np.ndarray, np.ndarray, Reorientation]:
    """Reorient ``array`` (C, x, y, z) so its axes follow ``target`` codes, e.g. 'RAS'.

    Returns the reoriented array, its affine and the Reorientation to undo it.
    Oblique affines are reoriented to the closest axis codes (no interpolation).
    """
    from nibabel import orientations

    spatial = tuple(array.shape[1:])
    start = orientations.io_orientation(affine)
    end = orientations.axcodes2ornt(tuple(target))
    transform = orientations.ornt_transform(start, end)
    inverse = orientations.ornt_transform(end, start)
    new_affine = affine @ orientations.inv_ornt_aff(transform, spatial)
    info = Reorientation(transform=transform, inverse=inverse, input_shape=spatial)
    return info.apply(array), new_affine, info


def resampled_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> tuple[int, ...]:
    """The grid size that covers the same extent at ``target`` spacing (at least 1 voxel)."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def resample(array, shape: tuple[int, ...], mode: str = "linear"):
    """Resample a (C, *spatial) torch tensor or numpy array to ``shape``.

    ``mode`` is 'linear' (images, probabilities) or 'nearest' (labels). Returns the
    same kind as given (torch tensor or numpy array). Identity when shapes match.
    """
    import torch
    import torch.nn.functional as F

    as_numpy = isinstance(array, np.ndarray)
    tensor = torch.from_numpy(array) if as_numpy else array
    if tuple(tensor.shape[1:]) == tuple(shape):
        return array
    ndim = tensor.dim() - 1
    if mode == "nearest":
        dtype = tensor.dtype
        out = F.interpolate(tensor[None].float(), size=tuple(shape), mode="nearest-exact")[0].to(dtype)
    elif mode == "linear":
        interp = {1: "linear", 2: "bilinear", 3: "trilinear"}[ndim]
        dtype = tensor.dtype if tensor.is_floating_point() else torch.float32
        out = F.interpolate(tensor[None].to(dtype), size=tuple(shape), mode=interp, align_corners=False)[0]
    else:
        raise ValueError(f"unknown resampling mode {mode!r}")
    return out.numpy() if as_numpy else out

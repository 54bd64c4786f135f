"""Localise, then segment: a task's ``locate`` runs another task's model first and crops around its result.

Small structures in a large field of view (the spinal cord gray matter in a whole
neck) are segmented in two stages, as SCT does: a coarse model finds the containing
structure (the cord), the input is cropped to that structure's bounding box plus a
margin, and the fine model runs on the crop at its own resolution. The crop is
taken in the input's own voxel grid (no resampling), so the result pastes back
exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np
from scipy import ndimage

from segtool.geometry import spacing_of

if TYPE_CHECKING:
    from segtool.io import Volume
    from segtool.pipeline import Segmenter
    from segtool.spec import Locate


@dataclass(frozen=True)
class CropBox:
    """A box of input voxels: ``start`` inclusive, ``stop`` exclusive, per spatial axis."""

    start: tuple[int, ...]
    stop: tuple[int, ...]

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))


def margins_in_voxels(affine: np.ndarray, margin_mm: tuple[float, ...]) -> tuple[int, ...]:
    """Per input voxel axis, the margin of the world (RAS) axis it runs along, in voxels."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    spacing = spacing_of(affine, len(ornt))
    return tuple(int(np.ceil(margin_mm[int(world)] / s)) for (world, _), s in zip(ornt, spacing))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of ``mask`` (uint16 component map and chunked counts when they fit)."""
    from segtool.postprocess import _bincount, _label

    components, count = _label(mask, ndimage.generate_binary_structure(mask.ndim, 1))
    if count <= 1:
        return mask
    sizes = _bincount(components)
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def box_around(mask: np.ndarray, margins: tuple[int, ...]) -> CropBox | None:
    """The bounding box of ``mask`` grown by ``margins`` voxels and clipped to the array; None if empty."""
    found = ndimage.find_objects(mask.astype(np.uint8))
    if not found or found[0] is None:
        return None
    start = tuple(max(0, s.start - m) for s, m in zip(found[0], margins))
    stop = tuple(min(n, s.stop + m) for s, m, n in zip(found[0], margins, mask.shape))
    return CropBox(start, stop)


def needs_locating(volume: "Volume", locate: "Locate") -> bool:
    """Whether the field of view is large enough for a crop to pay (any margin axis wider than min_extent)."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(volume.affine)
    extents = [n * s for n, s in zip(volume.spatial_shape, volume.spacing)]
    return any(locate.margin_mm[int(world)] > 0 and extent > locate.min_extent_mm
               for (world, _), extent in zip(ornt, extents))


@dataclass(frozen=True)
class Located:
    """What the localiser found: its largest component (input grid) and the box to segment."""

    mask: np.ndarray
    box: CropBox


def locate_structure(
    locator: "Segmenter", volume: "Volume", locate: "Locate", warn: Callable[[str], None] | None = None
) -> Located | None:
    """The localiser's largest component and the box around it; None means: segment the whole input."""
    if not needs_locating(volume, locate):
        return None
    found = locator.predict(volume).labels > 0
    if not found.any():
        if warn is not None:
            warn(f"{locate.task} found nothing to crop around; segmenting the whole image (slower)")
        return None
    mask = largest_component(found)
    return Located(mask, box_around(mask, margins_in_voxels(volume.affine, locate.margin_mm)))


def keep_within(probs: np.ndarray, mask: np.ndarray, spacing: tuple[float, ...], grow_mm: float) -> np.ndarray:
    """Probabilities with every label outside ``mask`` grown by ``grow_mm`` set to background."""
    near = ndimage.distance_transform_edt(~mask, sampling=spacing) <= grow_mm
    out = probs.copy()
    out[1:, ~near] = 0.0
    out[0, ~near] = 1.0
    return out


def crop_volume(volume: "Volume", box: CropBox) -> "Volume":
    """The sub-volume in ``box``, its affine moved so every voxel keeps its world position."""
    affine = np.array(volume.affine, dtype=float, copy=True)
    affine[:3, 3] = affine[:3, :3] @ np.asarray(box.start, dtype=float) + affine[:3, 3]
    array = np.ascontiguousarray(volume.array[(slice(None), *box.slices)])
    return replace(volume, array=array, affine=affine)


def paste_probabilities(probs: np.ndarray, box: CropBox, volume: "Volume") -> np.ndarray:
    """Crop probabilities (K, *box) on the whole input grid; outside the box, background is certain."""
    out = np.zeros((probs.shape[0], *volume.spatial_shape), dtype=probs.dtype)
    out[0] = 1.0
    out[(slice(None), *box.slices)] = probs
    return out

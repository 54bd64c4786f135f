"""Localise, then segment: a task's ``locate`` runs another task's model first and crops around its result.

Small structures in a large field of view (the spinal cord gray matter in a whole
neck) are segmented in two stages, as SCT does: a coarse model finds the containing
structure (the cord), the input is cropped to that structure's bounding box plus a
margin, and the fine model runs on the crop at its own resolution. The crop is
taken in the input's own voxel grid (no resampling), so the result pastes back
exactly. The localiser is any callable from a Volume to its labels (`Segmenter`
passes its locator's), so nothing here knows a model.

    locate_structure -> Located.crop -> (segment the crop) -> Located.paste_labels or paste_probabilities
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np
from scipy import ndimage

from segtool.geometry import spacing_of

if TYPE_CHECKING:
    from segtool.io import Volume
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
    from segtool.postprocess import label_components, label_counts

    components, count = label_components(mask, ndimage.generate_binary_structure(mask.ndim, 1))
    if count <= 1:
        return mask
    sizes = label_counts(components)
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


def near(mask: np.ndarray, spacing: tuple[float, ...], grow_mm: float) -> np.ndarray:
    """Voxels within ``grow_mm`` (Euclidean, in mm) of ``mask``: the one distance rule of ``Locate.within_mm``."""
    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= grow_mm


def keep_within(probs: np.ndarray, mask: np.ndarray, spacing: tuple[float, ...], grow_mm: float) -> np.ndarray:
    """Probabilities with every label outside ``mask`` grown by ``grow_mm`` set to background."""
    close = near(mask, spacing, grow_mm)
    out = probs.copy()
    out[1:, ~close] = 0.0
    out[0, ~close] = 1.0
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


def paste_labels(labels: np.ndarray, box: CropBox, volume: "Volume") -> np.ndarray:
    """Crop labels (*box) on the whole input grid (uint8); outside the box, background."""
    out = np.zeros(volume.spatial_shape, dtype=np.uint8)
    out[box.slices] = labels
    return out


@dataclass(frozen=True)
class Located:
    """What the localiser found: its largest component (input grid) and the box to segment."""

    mask: np.ndarray
    box: CropBox

    def crop(self, volume: "Volume") -> "Volume":
        """The part of ``volume`` to segment (its own copy)."""
        return crop_volume(volume, self.box)

    def paste_labels(self, labels: np.ndarray, volume: "Volume", within_mm: float | None) -> np.ndarray:
        """The crop's labels on ``volume``'s grid: background outside the box and beyond ``within_mm`` of the mask.

        The same labels as `paste_probabilities` gives probabilities for; the distance is
        measured in the box, which holds the whole mask.
        """
        out = paste_labels(labels, self.box, volume)
        if within_mm is not None:
            box = self.box.slices
            out[box][~near(self.mask[box], volume.spacing, within_mm)] = 0
        return out

    def paste_probabilities(self, probs: np.ndarray, volume: "Volume", within_mm: float | None) -> np.ndarray:
        """The crop's probabilities (K, *box) on ``volume``'s grid: background outside the box and beyond within_mm."""
        out = paste_probabilities(probs, self.box, volume)
        if within_mm is not None:
            out = keep_within(out, self.mask, volume.spacing, within_mm)
        return out


def locate_structure(
    find: Callable[["Volume"], np.ndarray], volume: "Volume", locate: "Locate",
    warn: Callable[[str], None] | None = None,
) -> Located | None:
    """The largest component of ``find(volume)`` (the localiser's labels) and the box around it.

    None means: segment the whole input (the field of view is small, or the localiser found nothing).
    """
    if not needs_locating(volume, locate):
        return None
    found = find(volume) > 0
    if not found.any():
        if warn is not None:
            warn(f"{locate.task} found nothing to crop around; segmenting the whole image (slower)")
        return None
    mask = largest_component(found)
    return Located(mask, box_around(mask, margins_in_voxels(volume.affine, locate.margin_mm)))

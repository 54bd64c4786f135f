"""QC pictures: PNG mosaics of a case's segmentation (or prediction and reference).

What is shown: the segmented structure with a margin (:mod:`segtool.qc.crop`: the
labels' bounding box widened by half its extent or at least 20 mm, 32 px on photos,
and a panel's shorter side widened to at least half its longer side), or the whole
field of view with ``full_fov=True`` (and when the mask is empty).

3D: one PNG per view, ``<case_id>_axial.png``, ``_sagittal.png``, ``_coronal.png``.
The display is reoriented to the closest RAS axes of the affine, then shown upright
in radiological convention (axial and coronal: patient's right on the image's left,
anterior/superior at the top; sagittal: anterior on the left, superior at the top).
Each PNG is a mosaic of up to ``n_slices`` tiles (one per distinct slice, left to
right in increasing R/A/S coordinate), separated by ``GAP`` pixels. The slices sit
at evenly spaced quantiles of the mask voxels along the view's axis (so every tile
shows mask), or at the centre when the mask is empty. Pixels are square in mm
(anisotropic voxels are resampled), each tile's longer side measures ``size`` pixels
(default 256) and its shorter side at least ``size // 2`` (:func:`~segtool.qc.crop.fit_hw`),
so views may differ in scale; small crops are enlarged (bilinear for the image,
nearest for labels). Intensities (first channel) are windowed to the 1st-99th
percentile of the whole image. Labels are resampled with nearest neighbour (when
shrinking, by largest coverage >= 25 % so thin structures survive), filled with
``FILL_ALPHA`` opacity and outlined (inside the mask) in the exact label colour.

2D: one PNG, ``<case_id>_photo.png``: the photo (RGB when it has >= 3 channels, else
the first channel windowed), cropped the same way and scaled by the same rule with
``photo_size`` (default 512), with the same overlay.

Comparisons: the prediction row above the reference row (3D) or the prediction panel
left of the reference panel (2D), each under a ``TITLE_HEIGHT`` band that names it
("prediction", "reference"). Both use the same crop (around both masks).

Label colours: ``LABEL_COLOURS[(value - 1) % 20]`` (see :func:`label_colour`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from PIL import Image

from segtool.io.atomic import replacing
from segtool.qc.ids import safe_id
from segtool.qc.labels import labels_on
from segtool.qc.crop import MIN_MARGIN_MM, MIN_MARGIN_PX, balanced, fit_hw, structure_box, whole
from segtool.qc.mosaic import hstack, titled, vstack
from segtool.qc.overlay import overlay_labels, resize_labels
from segtool.qc.slicing import VIEWS, pick_slices, plane_axes, slice_plane, tile_hw, to_ras, voxel_spacing
from segtool.qc.windowing import grey_tile, intensity_window, photo_rgb

if TYPE_CHECKING:  # pragma: no cover
    from segtool.io import Volume


#: Titles of the two rows (3D) or panels (2D) of a comparison, in drawing order.
COMPARISON_TITLES = ("prediction", "reference")


def _prepare_3d(image: "Volume", label_sets: list[np.ndarray]):
    grey = np.asarray(image.array[0])
    arrays, spacing = to_ras([grey, *label_sets], image.affine)
    return arrays[0], arrays[1:], spacing


def _titled(parts: list[np.ndarray]) -> list[np.ndarray]:
    return [titled(p, t) for p, t in zip(parts, COMPARISON_TITLES)] if len(parts) == 2 else parts


def _render_3d(image: "Volume", label_sets: list[np.ndarray], n_slices: int, size: int,
               colours=None, full_fov: bool = False) -> dict[str, np.ndarray]:
    grey, ras_labels, spacing = _prepare_3d(image, label_sets)
    window = intensity_window(np.asarray(image.array[0]))
    box = whole(grey.shape) if full_fov else structure_box(ras_labels, spacing, MIN_MARGIN_MM)
    views: dict[str, np.ndarray] = {}
    for view, axis in VIEWS.items():
        slices = pick_slices([lab > 0 for lab in ras_labels], axis, n_slices)
        where = list(balanced(box, grey.shape, spacing, plane_axes(axis)))
        where[axis] = slice(None)  # the slices are chosen along the whole axis
        crop = tuple(where)
        hw = tile_hw(grey[crop].shape, spacing, axis, size)
        rows = []
        for lab in ras_labels:
            tiles = []
            for k in slices:
                base = grey_tile(slice_plane(grey[crop], axis, k), hw, window)
                tiles.append(overlay_labels(base, resize_labels(slice_plane(lab[crop], axis, k), hw), colours))
            rows.append(hstack(tiles))
        rows = _titled(rows)
        views[view] = rows[0] if len(rows) == 1 else vstack(rows)
    return views


def _render_2d(image: "Volume", label_sets: list[np.ndarray], size: int, colours=None,
               full_fov: bool = False) -> np.ndarray:
    photo = image.kind == "photo"
    spacing = (1.0, 1.0) if photo else tuple(voxel_spacing(image.affine, 2))
    shape = tuple(image.spatial_shape)
    box = whole(shape)
    if not full_fov:
        box = structure_box(label_sets, spacing, MIN_MARGIN_PX if photo else MIN_MARGIN_MM)
        box = balanced(box, shape, spacing, (0, 1))
    rows, cols = box[0].stop - box[0].start, box[1].stop - box[1].start
    hw = fit_hw(rows * spacing[0], cols * spacing[1], size)
    base = photo_rgb(image, hw, box)
    panels = [overlay_labels(base, resize_labels(lab[box], hw), colours) for lab in label_sets]
    panels = _titled(panels)
    return panels[0] if len(panels) == 1 else hstack(panels)


def _save(pixels: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp, format="PNG", optimize=False)
    return path


def _render(
    image: "Volume",
    label_sets: list[Any],
    out_dir: str | os.PathLike,
    case_id: str,
    n_slices: int,
    size: int,
    photo_size: int,
    colours=None,
    full_fov: bool = False,
) -> list[Path]:
    from segtool.errors import GeometryError

    spatial = tuple(image.spatial_shape)
    names = ("prediction", "ground truth") if len(label_sets) == 2 else ("segmentation",)
    arrays = [labels_on(spatial, lab, what) for lab, what in zip(label_sets, names)]
    out = Path(out_dir)
    stem = safe_id(case_id)
    if image.ndim == 3:
        views = _render_3d(image, arrays, max(1, int(n_slices)), int(size), colours, full_fov)
        return [_save(pixels, out / f"{stem}_{view}.png") for view, pixels in views.items()]
    if image.ndim == 2:
        return [_save(_render_2d(image, arrays, int(photo_size), colours, full_fov), out / f"{stem}_photo.png")]
    raise GeometryError(f"QC pictures need a 2D or 3D image, got {image.ndim}D")


def render_case(
    image: "Volume",
    labels: Any,
    label_names: Mapping[int, str] | None,
    out_dir: str | os.PathLike,
    case_id: str,
    *,
    n_slices: int = 5,
    size: int = 256,
    photo_size: int = 512,
    colours: Mapping[int, tuple[int, int, int]] | None = None,
    full_fov: bool = False,
) -> list[Path]:
    """Write the QC PNGs of one case to ``out_dir`` and return their paths (see the module doc).

    ``labels``: integer array ``spatial`` or ``(1, *spatial)`` on the image's grid (or a Volume).
    ``label_names`` is accepted for symmetry with the report; colours depend only on values:
    ``colours`` (the task's, ``TaskSpec.label_colours()``) or else :func:`label_colour`.
    """
    return _render(image, [labels], out_dir, case_id, n_slices, size, photo_size, colours, full_fov)


def render_comparison(
    image: "Volume | None",
    pred: Any,
    gt: Any,
    label_names: Mapping[int, str] | None,
    out_dir: str | os.PathLike,
    case_id: str,
    *,
    n_slices: int = 5,
    size: int = 256,
    photo_size: int = 512,
    colours: Mapping[int, tuple[int, int, int]] | None = None,
    full_fov: bool = False,
) -> list[Path]:
    """Prediction and ground truth on the same slices: 3D, prediction row above the
    ground-truth row in each view's PNG; 2D, prediction left, ground truth right.

    ``image`` None: ``pred`` must be a Volume; its grid is drawn on black.
    """
    if image is None:
        image = blank_like(pred)
    return _render(image, [pred, gt], out_dir, case_id, n_slices, size, photo_size, colours, full_fov)


def blank_like(labels: Any) -> "Volume":
    """A black one-channel Volume on the grid of ``labels`` (a Volume), for QC without an image."""
    from segtool.errors import GeometryError
    from segtool.io import Volume

    if not hasattr(labels, "affine"):
        raise GeometryError("QC without an image needs the prediction as a Volume (for its grid)")
    spatial = np.asarray(labels.array).shape[1:]  # a Volume is channels-first
    kind = getattr(labels, "kind", "nifti")
    return Volume(array=np.zeros((1, *spatial), np.float32), affine=np.asarray(labels.affine), kind=kind)

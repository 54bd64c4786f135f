"""Reading a prediction and its ground truth, concurrently, onto one grid.

The two files are read in two threads (gunzip, nibabel's parsing and the label
conversion release the GIL for their heavy parts); prediction and ground truth must
share a grid (shape, and affine within AFFINE_ATOL), or the prediction is resampled
onto the ground-truth grid with nearest-neighbour interpolation when asked.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from segtool.errors import GeometryError
from segtool.io.volume import GRID_ATOL, affine_difference

#: largest difference (mm, or direction-cosine units) allowed between the two affines
AFFINE_ATOL = GRID_ATOL


def _read_labels(path: Path):
    from segtool.io import read_labels

    return read_labels(path)


def read_both(pred_path: Path, gt_path: Path):
    """(prediction Volume, ground-truth Volume), read concurrently.

    When both fail, the ground truth's error is the one raised (as when read in turn).
    """
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="segtool-read") as pool:
        gt_future = pool.submit(_read_labels, gt_path)
        pred_future = pool.submit(_read_labels, pred_path)
        gt_vol = gt_future.result()
        return pred_future.result(), gt_vol


def resample_nearest(
    pred: np.ndarray, pred_affine: np.ndarray, gt_shape: Sequence[int], gt_affine: np.ndarray
) -> np.ndarray:
    """Map a label image onto another grid with nearest-neighbour interpolation.

    Each ground-truth voxel takes the label of the prediction voxel nearest to its
    centre (via ``inv(pred_affine) @ gt_affine``); voxels outside the prediction are 0.
    """
    from scipy import ndimage

    nd = pred.ndim
    to_pred = np.linalg.inv(np.asarray(pred_affine, dtype=float)) @ np.asarray(gt_affine, dtype=float)
    matrix = to_pred[:nd, :nd]
    offset = to_pred[:nd, 3]
    return ndimage.affine_transform(
        pred, matrix, offset=offset, output_shape=tuple(int(s) for s in gt_shape), order=0,
        mode="constant", cval=0, prefilter=False,
    )


def load_pair(pred_path: Path, gt_path: Path, resample: bool = False):
    """Read PRED and GT; returns (pred array, gt array, spacing, unit, resampled, gt Volume).

    Raises GeometryError when the grids differ (shape, or affine beyond AFFINE_ATOL)
    and ``resample`` is False.
    """
    pred_vol, gt_vol = read_both(pred_path, gt_path)
    pred, gt = pred_vol.array[0], gt_vol.array[0]
    if pred.ndim != gt.ndim:
        raise GeometryError(f"{pred_path} is {pred.ndim}D but {gt_path} is {gt.ndim}D")
    resampled = False
    shape_differs = pred.shape != gt.shape
    diff = affine_difference(pred_vol.affine, gt_vol.affine)
    if shape_differs or diff > AFFINE_ATOL:
        if not resample:
            what = (
                f"shape {'x'.join(map(str, pred.shape))} vs {'x'.join(map(str, gt.shape))}"
                if shape_differs
                else f"affines differ by up to {diff:.4g} (tolerance {AFFINE_ATOL:g})"
            )
            raise GeometryError(
                f"{pred_path} and {gt_path} are on different grids: {what}; "
                "pass --resample-pred to map the prediction onto the ground-truth grid"
            )
        pred = resample_nearest(pred, pred_vol.affine, gt.shape, gt_vol.affine)
        resampled = True
    unit = "px" if getattr(gt_vol, "kind", "") == "photo" else "mm"
    return pred, gt, tuple(gt_vol.spacing), unit, resampled, gt_vol


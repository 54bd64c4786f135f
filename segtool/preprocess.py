"""An image onto the model's grid, and results back onto the image's: one code for `segtool run` and `segtool train`.

    reorient to spec.orientation -> resample to spec.target_spacing (or spec.input_size) -> normalise

`preprocess` does it to an image (linear), `preprocess_labels` to a label map (nearest
neighbour) on the same grid, so training and inference cannot drift apart;
`probabilities_to_input_grid` undoes the grid change for the model's probabilities.
No file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from segtool.geometry import Reorientation, reorient, resample, resampled_shape, spacing_of
from segtool.normalize import normalize
from segtool.spec import TaskSpec

if TYPE_CHECKING:
    import torch

    from segtool.io import Volume


@dataclass(frozen=True)
class Prepared:
    """An image in the model's space, and how to map results back."""

    array: np.ndarray  # (C, *spatial) float32, reoriented, resampled, normalised
    reorientation: Reorientation | None
    oriented_shape: tuple[int, ...]  # spatial shape after reorientation, before resampling
    spacing: tuple[float, ...]  # model-space spacing


#: The most voxels the model grid may have (per channel): 1 G float32 voxels is 4 GiB already.
MAX_MODEL_VOXELS = 1_000_000_000


def to_model_grid(spec: TaskSpec, array: np.ndarray, affine: np.ndarray, mode: str):
    """(array on the model grid, reorientation, oriented spatial shape, model spacing) of a (C, *spatial) array.

    Reorients to ``spec.orientation``, resamples (``mode``: linear or nearest) to
    ``spec.target_spacing`` and then to ``spec.input_size`` when the task has one;
    GeometryError when the model grid would be absurdly large (a wrong voxel size).
    """
    reorientation = None
    if spec.orientation is not None:
        array, affine, reorientation = reorient(array, affine, spec.orientation)
    oriented_shape = tuple(array.shape[1:])
    spacing = spacing_of(affine, spec.ndim)
    if spec.target_spacing is not None:
        target = tuple(s if t is None else t for s, t in zip(spacing, spec.target_spacing))
        target_shape = resampled_shape(oriented_shape, spacing, target)
        if float(np.prod(target_shape, dtype=np.float64)) > MAX_MODEL_VOXELS:
            from segtool.errors import GeometryError

            raise GeometryError(
                f"resampling {'x'.join(map(str, oriented_shape))} voxels of {'x'.join(f'{s:g}' for s in spacing)} mm "
                f"to {'x'.join(f'{t:g}' for t in target)} mm would need {'x'.join(map(str, target_shape))} voxels, "
                f"more than segtool handles ({MAX_MODEL_VOXELS:,}); is the voxel size in the header right?"
            )
        if target_shape != oriented_shape:
            array = resample(array, target_shape, mode=mode)
        spacing = target
    if getattr(spec, "input_size", None) is not None and tuple(array.shape[1:]) != tuple(spec.input_size):
        # a fixed network input (photos of any size): resized here, probabilities resized back
        spacing = tuple(s * n / m for s, n, m in zip(spacing, array.shape[1:], spec.input_size))
        array = resample(array, tuple(spec.input_size), mode=mode)
    return array, reorientation, oriented_shape, spacing


#: Normalisations applied on the input's own grid, before resampling. The masked z-scores must come first:
#: resampling blends the zero background into the edge of the head, and those blended voxels would
#: count as inside it (a raw-scaled and a z-scored copy of one image would then differ); linear
#: resampling commutes with the gain and offset every other method removes.
NORMALISE_FIRST = ("zscore-nonzero", "zscore-foreground")


def preprocess(spec: TaskSpec, volume: "Volume", consume_input: bool = False) -> Prepared:
    """Reorient, resample (linear) and normalise an image for ``spec`` (normalise first: NORMALISE_FIRST).

    A resampled array is preprocess's own and is normalised in place. With
    ``consume_input`` (the caller needs the input's values no more: `segtool run` without
    overlays or QC) the input's own float32 array may be normalised in place too, so the
    input and its normalised copy are never held together; its shape, affine and header
    stay valid, its values do not.
    """
    array = np.asarray(volume.array, dtype=np.float32)
    first = spec.normalization in NORMALISE_FIRST
    if first:
        array = normalize(array, spec.normalization, in_place=consume_input)
    source = array
    array, reorientation, oriented_shape, spacing = to_model_grid(spec, array, volume.affine, "linear")
    if not first:
        own = consume_input or not np.may_share_memory(array, source)
        array = normalize(array, spec.normalization, in_place=own)
    return Prepared(array, reorientation, oriented_shape, tuple(spacing))


def preprocess_labels(spec: TaskSpec, labels: "Volume") -> np.ndarray:
    """A label map on the same model grid as `preprocess` gives its image (nearest neighbour)."""
    array = np.asarray(labels.array).astype(np.int64)
    array, _, _, _ = to_model_grid(spec, array, labels.affine, "nearest")
    return array[0]


def probabilities_to_input_grid(spec: TaskSpec, probs: "torch.Tensor", prepared: Prepared) -> np.ndarray:
    """Resample model-space probabilities back and undo the reorientation: (K, *input spatial)."""
    if tuple(probs.shape[1:]) != tuple(prepared.oriented_shape):
        probs = resample(probs, prepared.oriented_shape, mode="linear")
    array = probs.float().cpu().numpy()
    if prepared.reorientation is not None:
        array = prepared.reorientation.undo(array)
    return array


def is_constant(array: np.ndarray) -> bool:
    """Every channel holds one value everywhere (an all-zero or blank image): nothing to segment."""
    flat = np.asarray(array).reshape(array.shape[0], -1)
    return bool(flat.size) and bool((flat.min(axis=1) == flat.max(axis=1)).all())

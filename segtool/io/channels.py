"""A task's input channels: read each file, check dimensionality, count and grid, stack."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from segtool.errors import GeometryError
from segtool.io.messages import shape_text
from segtool.io.readers import read_volume
from segtool.io.volume import GRID_ATOL, Volume, affine_difference


def read_channels(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    ndim: int,
    channel_names: Sequence[str],
    allow_uneven: bool = False,
    grey_as_rgb: bool = False,
) -> Volume:
    """Read a task's input channels and stack them into one Volume.

    Each path gives as many channels as it holds (an RGB photo 3, a grey file 1); a
    grey photo given alone is repeated as RGB when ``grey_as_rgb`` (colour-photo tasks).
    Raises :class:`GeometryError` when a file's dimensionality does not match
    ``ndim`` ("4D volume for a 3D task"), when the total channel count is not
    ``len(channel_names)``, or when files are on different grids (shape, or affine
    beyond ``GRID_ATOL``).  Geometry, header, path and kind come from the first file;
    ``meta['input_paths']`` lists every input and ``meta['channel_paths']`` the paths.
    ``allow_uneven`` is passed to :func:`read_volume` (DICOM series with uneven spacing).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p).expanduser() for p in paths]
    if not paths:
        raise GeometryError(f"task expects {_channels_str(channel_names)}, got no input files")
    volumes, stacked = _read_into_one_array(paths, allow_uneven)
    for vol in volumes:
        _check_ndim(vol, ndim)
    if grey_as_rgb and len(volumes) == 1 and len(channel_names) == 3 and volumes[0].kind == "photo" and volumes[0].channels == 1:
        # a grey photo for a colour-photo task: grey as RGB (R = G = B), as Pillow's convert("RGB") does
        volumes = [replace(volumes[0], array=np.repeat(volumes[0].array, 3, axis=0))]
    _check_channel_count(volumes, channel_names)
    for vol in volumes[1:]:
        check_same_grid(volumes[0], vol)
    return _stack(volumes, stacked)


def _read_into_one_array(paths: list[Path], allow_uneven: bool) -> tuple[list[Volume], np.ndarray | None]:
    """(each file read as a Volume, the channels-first array of all of them or None).

    With several files, each file's values move into one preallocated array as soon as
    it is read (its Volume then holds a view of it), so the files and their stack are
    never all held at once: the peak is the stack plus one file (1.5x the input for two
    channels, not the 2x of reading all and concatenating). None when a file does not
    fit its place (another shape or channel count than its header promised): the checks
    after reading refuse it, or `_stack` concatenates.
    """
    volumes = [read_volume(paths[0], allow_uneven=allow_uneven)]
    counts = [channel_count(p) for p in paths[1:]]
    if len(paths) == 1 or None in counts:
        return volumes + [read_volume(p, allow_uneven=allow_uneven) for p in paths[1:]], None
    stack = np.empty((volumes[0].channels + sum(counts), *volumes[0].spatial_shape), dtype=np.float32)
    fits, start = True, 0
    for i, path in enumerate(paths):
        vol = volumes[0] if i == 0 else read_volume(path, allow_uneven=allow_uneven)
        part = stack[start : start + vol.channels]
        if fits and vol.array.shape == part.shape:
            part[...] = vol.array
            vol = replace(vol, array=part)  # the file's own array is dropped here
        else:
            fits = False
        if i == 0:
            volumes[0] = vol
        else:
            volumes.append(vol)
        start += vol.channels
        del vol
    return volumes, stack if fits and start == stack.shape[0] else None


def channel_count(path: str | os.PathLike) -> int | None:
    """How many channels :func:`read_volume` will give for ``path``, found cheaply (no pixels read).

    A photo (PNG, JPEG, TIFF, or a file Pillow recognises) gives what its header says
    (RGB 3, grey 1); every other format holds one channel per file.  None when the file
    cannot be opened (a missing or unreadable file): reading it will say why.
    """
    from segtool.io.formats import ANALYZE_SUFFIXES, DICOM_SUFFIXES, NIFTI_SUFFIXES, SITK_SUFFIXES, split_suffix
    from segtool.io.photos import photo_channel_count

    p = Path(path).expanduser()
    if p.is_dir() or split_suffix(p.name)[1].lower() in NIFTI_SUFFIXES + ANALYZE_SUFFIXES + SITK_SUFFIXES + DICOM_SUFFIXES:
        return 1
    if not p.is_file():
        return None
    return photo_channel_count(p)


def _channels_str(names: Sequence[str]) -> str:
    return f"{len(names)} channel{'s' if len(names) != 1 else ''} ({', '.join(names)})"


def _check_ndim(vol: Volume, ndim: int) -> None:
    """Refuse a volume whose spatial dimensionality is not the task's."""
    if vol.ndim == ndim:
        return
    what = "image" if vol.ndim == 2 else "volume"
    raise GeometryError(
        f"{vol.path}: {vol.ndim}D {what} for a {ndim}D task (shape {shape_text(vol.spatial_shape)})"
    )


def _check_channel_count(volumes: list[Volume], names: Sequence[str]) -> None:
    """The total channel count over all files must equal the task's."""
    got = sum(v.channels for v in volumes)
    if got != len(names):
        files = ", ".join(f"{v.path}: {v.channels}" for v in volumes)
        raise GeometryError(f"task expects {_channels_str(names)}, got {got} ({files})")


def check_same_grid(first: Volume, other: Volume) -> None:
    """Both volumes must have the same spatial shape and affine (within GRID_ATOL): channels of one case,
    or contrasts combined into one mask (`Segmenter.predict_combined`)."""
    if first.spatial_shape != other.spatial_shape:
        raise GeometryError(
            f"{first.path} and {other.path} are on different grids: shape "
            f"{shape_text(first.spatial_shape)} vs {shape_text(other.spatial_shape)}; register or resample them first"
        )
    diff = affine_difference(first.affine, other.affine)
    if diff > GRID_ATOL:
        raise GeometryError(
            f"{first.path} and {other.path} are on different grids: affines differ by up to {diff:.4g}; "
            "register or resample them first"
        )


def _stack(volumes: list[Volume], stacked: np.ndarray | None = None) -> Volume:
    """One Volume with all channels, geometry and metadata of the first (``stacked``: their channels, already
    in one array)."""
    first = volumes[0]
    if len(volumes) == 1:
        array = first.array
    elif stacked is not None:
        array = stacked
    else:
        array = np.concatenate([v.array for v in volumes], axis=0)
    meta = dict(first.meta)
    inputs: list[Path] = []
    for vol in volumes:
        inputs.extend(p for p in vol.meta.get("input_paths", [vol.path]) if p not in inputs)
    meta["input_paths"] = inputs
    meta["channel_paths"] = [v.path for v in volumes]
    meta["warnings"] = [w for v in volumes for w in v.meta.get("warnings", [])]
    return Volume(array, first.affine, first.path, first.kind, first.header, meta)

"""Intensity normalisations named in task specs (see spec.NORMALIZATIONS)."""

from __future__ import annotations

import numpy as np

#: ImageNet statistics, the usual choice for RGB photos.
RGB_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
RGB_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

#: Normalised values are computed and written about this many voxels at a time (no whole-channel temporaries).
CHUNK_VOXELS = 1 << 22

_Z_METHODS = ("zscore", "zscore-nonzero", "percentile")


def _slabs(channel: np.ndarray):
    """Slices of ``channel``'s first axis holding about CHUNK_VOXELS voxels each."""
    step = max(1, CHUNK_VOXELS // max(1, int(np.prod(channel.shape[1:], dtype=np.int64))))
    return [slice(first, first + step) for first in range(0, channel.shape[0], step)]


def _statistics(channel: np.ndarray, bounds=None, nonzero: bool = False) -> tuple[float, float] | None:
    """(mean, std) of the channel's values (clipped to ``bounds``; the non-zero voxels only if ``nonzero``),
    in float64, a slab at a time (two passes: the mean, then the squared deviations); None if empty.

    No whole-channel temporary: numpy would copy the masked sample, or the channel clipped
    to float64 percentiles (twice the input), and then hold a deviation array as large.
    """
    def parts():
        for part in _slabs(channel):
            values = channel[part] if bounds is None else np.clip(channel[part], *bounds)
            yield values[channel[part] != 0] if nonzero else values

    count, total = 0, 0.0
    for values in parts():
        count += values.size
        total += float(values.sum(dtype=np.float64))
    if count == 0:
        return None
    mean = total / count
    squares = sum(float(np.square(np.subtract(values, mean, dtype=np.float64)).sum()) for values in parts())
    return mean, float(np.sqrt(squares / count))


def _channel_plan(channel: np.ndarray, method: str, scratch: np.ndarray | None = None
                  ) -> tuple[tuple | None, tuple[float, float] | None]:
    """(clip bounds or None, (mean, std) or None) of one channel.

    ``scratch``: a contiguous copy of the channel that may be scrambled (the output buffer,
    written afterwards): the percentiles partition it instead of a copy of their own.
    """
    if method == "zscore":  # numpy's own statistics: the deviation temporary is input-sized, as the output is
        return None, ((float(channel.mean()), float(channel.std())) if channel.size else None)
    if method == "zscore-nonzero":
        return None, _statistics(channel, nonzero=True)
    if scratch is not None:
        lo, hi = np.percentile(scratch, [0.5, 99.5], overwrite_input=True)
    else:
        lo, hi = np.percentile(channel, [0.5, 99.5])
    return (lo, hi), _statistics(channel, (lo, hi))


def _zscore_into(out: np.ndarray, channel: np.ndarray, method: str, bounds, stats) -> None:
    """``out[...] = (values - mean) / max(std, 1e-8)``, 0 outside the mask, written a few planes at a time.

    ``values`` is the channel, clipped to ``bounds`` if given. The arithmetic is the
    elementwise arithmetic of the whole channel (in the values' dtype, then cast to
    float32), so the result is identical to computing it at once.
    """
    if stats is None:  # no voxel to take statistics from (zscore-nonzero of an all-zero channel)
        out[...] = 0.0
        return
    mean, std = stats
    scale = max(std, 1e-8)
    for part in _slabs(channel):
        zero = channel[part] == 0 if method == "zscore-nonzero" else None  # before ``out`` may overwrite it
        values = channel[part] if bounds is None else np.clip(channel[part], *bounds)
        out[part] = (values - mean) / scale
        if zero is not None:
            out[part][zero] = 0.0


def normalize(array: np.ndarray, method: str, in_place: bool = False) -> np.ndarray:
    """Normalise a channels-first array, each channel on its own. Returns float32.

    Every channel's statistics come first (one channel's sample at a time), then the
    output is written in slabs: peak memory stays near the input plus the output (the
    percentile method allocates the output first and partitions it for its percentiles).
    With ``in_place`` (a float32 array nobody else needs, e.g. a freshly resampled one)
    the z-score methods write over the input instead: the same values, no second array.
    """
    array = np.asarray(array, dtype=np.float32)
    if method == "none":
        return array if in_place else array.copy()
    if method == "rgb":
        if array.shape[0] != 3:
            raise ValueError("rgb normalisation needs 3 channels")
        scale = 255.0 if array.max() > 1.0 else 1.0
        shape = (3,) + (1,) * (array.ndim - 1)
        return ((array / scale - RGB_MEAN.reshape(shape)) / RGB_STD.reshape(shape)).astype(np.float32)
    if method not in _Z_METHODS:
        raise ValueError(f"unknown normalisation {method!r}")
    if in_place and array.flags.writeable:
        out, scratch = array, False
    elif method == "percentile":  # the output starts as the percentiles' scratch copy: no third array
        out, scratch = np.array(array, dtype=np.float32, order="C", copy=True), True
    else:
        out, scratch = np.empty_like(array), False
    plans = [_channel_plan(channel, method, out[c] if scratch else None) for c, channel in enumerate(array)]
    for c, (channel, (bounds, stats)) in enumerate(zip(array, plans)):
        _zscore_into(out[c], channel, method, bounds, stats)
    return out

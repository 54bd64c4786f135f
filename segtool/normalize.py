"""Intensity normalisations named in task specs (see spec.NORMALIZATIONS)."""

from __future__ import annotations

import numpy as np

#: ImageNet statistics, the usual choice for RGB photos.
RGB_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
RGB_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

#: Normalised values are computed and written about this many voxels at a time (no whole-channel temporaries).
CHUNK_VOXELS = 1 << 22

_Z_METHODS = ("zscore", "zscore-nonzero", "zscore-foreground", "percentile")

#: ``zscore-foreground``: the value filling at least this share of a channel's border voxels is its
#: background (0 for a raw skull-stripped scan, e.g. -3.62 for a scan z-scored inside the brain whose
#: outside kept the value the z-score gave it); below that share the background is 0, as ``zscore-nonzero``.
BACKGROUND_BORDER_SHARE = 0.5


def _slabs(channel: np.ndarray):
    """Slices of ``channel``'s first axis holding about CHUNK_VOXELS voxels each."""
    step = max(1, CHUNK_VOXELS // max(1, int(np.prod(channel.shape[1:], dtype=np.int64))))
    return [slice(first, first + step) for first in range(0, channel.shape[0], step)]


def border_constant(channel: np.ndarray) -> float | None:
    """The commonest value of a channel's border voxels if it fills BACKGROUND_BORDER_SHARE of them, else None."""
    faces = []
    for axis in range(channel.ndim):
        for index in (0, -1):
            faces.append(np.take(channel, index, axis=axis).ravel())
    border = np.concatenate(faces)
    if border.size == 0:
        return None
    values, counts = np.unique(border, return_counts=True)
    best = int(counts.argmax())
    return float(values[best]) if counts[best] >= BACKGROUND_BORDER_SHARE * border.size else None


def background_value(channel: np.ndarray) -> float:
    """The value outside the head of one channel: the commonest value of its border voxels if it fills
    BACKGROUND_BORDER_SHARE of them (`border_constant`), else 0.

    Skull-stripped scans keep a constant outside the brain: 0 when raw, but a scan z-scored inside its
    brain mask (the BraTS copies DeepMedic ships) holds ``-mean/std`` there. Taking that value as the
    background makes the z-score inside the head the same for both (and for any gain and offset).
    """
    value = border_constant(channel)
    return 0.0 if value is None else value


def _statistics(channel: np.ndarray, bounds=None, background: float | None = None) -> tuple[float, float] | None:
    """(mean, std) of the channel's values (clipped to ``bounds``; only those unequal to ``background`` if given),
    in float64, a slab at a time (two passes: the mean, then the squared deviations); None if empty.

    No whole-channel temporary: numpy would copy the masked sample, or the channel clipped
    to float64 percentiles (twice the input), and then hold a deviation array as large.
    """
    def parts():
        for part in _slabs(channel):
            values = channel[part] if bounds is None else np.clip(channel[part], *bounds)
            yield values if background is None else values[channel[part] != background]

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
                  ) -> tuple[tuple | None, tuple[float, float] | None, float | None]:
    """(clip bounds or None, (mean, std) or None, background value or None) of one channel.

    ``scratch``: a contiguous copy of the channel that may be scrambled (the output buffer,
    written afterwards): the percentiles partition it instead of a copy of their own.
    """
    if method == "zscore":  # numpy's own statistics: the deviation temporary is input-sized, as the output is
        return None, ((float(channel.mean()), float(channel.std())) if channel.size else None), None
    if method in ("zscore-nonzero", "zscore-foreground"):
        background = 0.0 if method == "zscore-nonzero" else background_value(channel)
        return None, _statistics(channel, background=background), background
    if scratch is not None:
        lo, hi = np.percentile(scratch, [0.5, 99.5], overwrite_input=True)
    else:
        lo, hi = np.percentile(channel, [0.5, 99.5])
    return (lo, hi), _statistics(channel, (lo, hi)), None


def _zscore_into(out: np.ndarray, channel: np.ndarray, bounds, stats, background: float | None) -> None:
    """``out[...] = (values - mean) / max(std, 1e-8)``, 0 where the channel holds ``background`` (if given),
    written a few planes at a time.

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
        zero = channel[part] == background if background is not None else None  # before ``out`` may overwrite it
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
    for c, (channel, (bounds, stats, background)) in enumerate(zip(array, plans)):
        _zscore_into(out[c], channel, bounds, stats, background)
    return out

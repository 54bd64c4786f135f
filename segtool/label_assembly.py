"""Labels from probabilities that arrive a few planes at a time, resampled back onto the input's grid.

`segtool run` never holds a whole volume of class probabilities: the sliding window
(:func:`segtool.sliding_window.stream_probabilities`) hands over finished planes of the
model grid in order along one axis, and a `LabelAssembler` turns them into uint8
labels on the (reoriented) input grid as soon as every plane a label depends on has
arrived. The result is the one the whole-volume path gives: probabilities resampled
linearly (as :func:`segtool.geometry.resample`: PyTorch's ``align_corners=False``
rule), then the argmax (first class on a tie) or, for a binary task with a threshold,
``p(1) >= threshold``. Resampling happens in two steps (the other axes of each plane,
then along the streaming axis), the outermost step of trilinear interpolation, so
values may differ from one trilinear call by a rounding error: a label can differ
only where two classes are tied within that error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


#: Output planes are interpolated and labelled in groups of about this many bytes of probabilities.
PLANES_BYTES = 4 * 1024 * 1024


def source_rows(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index of a linear resampling (align_corners=False): the two source indices and the weight of the second."""
    scale = np.float32(size_in) / np.float32(size_out)
    out = np.arange(size_out, dtype=np.float32)
    src = np.maximum(scale * (out + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    low = np.minimum(src.astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    weight = np.clip(src - low.astype(np.float32), 0.0, 1.0).astype(np.float32)
    return low, high, weight


def argmax_classes(probs: np.ndarray) -> np.ndarray:
    """``np.argmax(probs, axis=1)`` (the first class on a tie) of (n, K, ...) probabilities, K <= 256, as uint8.

    One pass per class over contiguous planes: numpy's argmax off the last axis is several
    times slower. NaN values (numpy counts the first NaN as the maximum) go to numpy.
    """
    best = probs[:, 0].copy()
    labels = np.zeros(best.shape, dtype=np.uint8)
    for k in range(1, probs.shape[1]):
        candidate = probs[:, k]
        labels[candidate > best] = k
        np.maximum(best, candidate, out=best)
    if np.isnan(best).any():
        return np.argmax(probs, axis=1).astype(np.uint8)
    return labels


class LabelAssembler:
    """Collects probability planes (model grid, in order along ``axis``) into labels on ``out_shape``.

    ``add(first, rows)`` takes ``rows`` (r, K, *rest): the planes [first, first + r)
    along ``axis`` of the model grid, ``rest`` the other axes in order.
    """

    def __init__(self, model_shape: tuple[int, ...], out_shape: tuple[int, ...], axis: int,
                 threshold: float | None = None):
        self.axis = axis
        self.threshold = threshold
        self.labels = np.zeros(out_shape, dtype=np.uint8)
        self.rest_out = tuple(n for i, n in enumerate(out_shape) if i != axis)
        self.low, self.high, self.weight = source_rows(model_shape[axis], out_shape[axis])
        self.resample_axis = model_shape[axis] != out_shape[axis]
        self.pending: dict[int, torch.Tensor] = {}  # model planes, resampled in-plane, still needed
        self.next_out = 0  # the first output plane not yet labelled

    def add(self, first: int, rows: "torch.Tensor") -> None:
        import torch

        rows = rows.float().cpu()
        if not self.resample_axis:
            step = self._step(rows)
            for start in range(0, rows.shape[0], step):
                self._write(first + start, self._in_plane(rows[start : start + step]))
            self.next_out = first + rows.shape[0]
            return
        for i, plane in enumerate(rows):
            self.pending[first + i] = plane
        arrived = first + rows.shape[0]
        stop = self.next_out
        while stop < len(self.high) and self.high[stop] < arrived:
            stop += 1
        step = self._step(rows)
        for start in range(self.next_out, stop, step):  # a few output planes at a time
            picked = slice(start, min(stop, start + step))
            lowest = int(self.low[picked.start])
            sources = self._in_plane(torch.stack([self.pending[j] for j in range(lowest, int(self.high[picked.stop - 1]) + 1)]))
            low, high = sources[self.low[picked] - lowest], sources[self.high[picked] - lowest]
            weight = torch.from_numpy(self.weight[picked]).reshape(-1, *([1] * (low.dim() - 1)))
            self._write(start, (1 - weight) * low + weight * high)
        self.next_out = stop
        if stop < len(self.low):
            keep = int(self.low[stop])
            for index in [k for k in self.pending if k < keep]:
                del self.pending[index]

    def _step(self, rows: "torch.Tensor") -> int:
        """How many planes make about PLANES_BYTES once resampled in-plane."""
        return max(1, PLANES_BYTES // (rows.shape[1] * int(np.prod(self.rest_out)) * 4))

    def _in_plane(self, rows: "torch.Tensor") -> "torch.Tensor":
        """The other axes first, plane by plane (planes as the batch): trilinear's inner steps."""
        import torch.nn.functional as F

        if tuple(rows.shape[2:]) == self.rest_out:
            return rows
        mode = {1: "linear", 2: "bilinear"}[rows.dim() - 2]
        return F.interpolate(rows, size=self.rest_out, mode=mode, align_corners=False)

    def _write(self, first: int, probs: "torch.Tensor") -> None:
        labels = _decider(self.threshold, probs.shape[1])(probs.numpy())
        np.moveaxis(self.labels, self.axis, 0)[first : first + probs.shape[0]] = labels

    def finish(self) -> np.ndarray:
        if self.next_out != self.labels.shape[self.axis]:
            raise RuntimeError(f"labels incomplete: {self.next_out} of {self.labels.shape[self.axis]} planes")
        return self.labels


def image_labels(probs: "torch.Tensor", out_shape: tuple[int, int], threshold: float | None = None) -> np.ndarray:
    """uint8 labels on ``out_shape`` of one 2D image's probabilities (K, rows, cols): bilinear, then argmax or threshold.

    The labels `LabelAssembler` gives, made where they can differ: a pixel whose four
    source pixels all carry the same label keeps it (interpolation is a convex
    combination, so the winner at every corner wins between them, first class on a tie
    included), and only the other pixels, along the label boundaries, get their K
    probabilities interpolated (PyTorch's bilinear, ``align_corners=False``: columns, then
    rows). Output rows go a few at a time, so memory stays near the output's own uint8.
    """
    values = probs.float().cpu().contiguous().numpy()
    if np.isnan(values).any():  # NaN ranks as numpy's maximum: the whole-plane path keeps that rule
        assembler = LabelAssembler(tuple(values.shape[1:]), tuple(out_shape), 0, threshold)
        assembler.add(0, probs.float().cpu().movedim(1, 0))
        return assembler.finish()
    decide = _decider(threshold, values.shape[0])
    source = decide(values[None])[0]
    row_low, row_high, row_weight = source_rows(values.shape[1], out_shape[0])
    col_low, col_high, col_weight = source_rows(values.shape[2], out_shape[1])
    labels = np.empty(out_shape, dtype=np.uint8)
    step = max(1, PLANES_BYTES // (values.shape[0] * out_shape[1] * 4))
    for start in range(0, out_shape[0], step):
        low, high = row_low[start : start + step], row_high[start : start + step]
        corner = source[low][:, col_low]
        mixed = corner != source[low][:, col_high]
        mixed |= corner != source[high][:, col_low]
        mixed |= corner != source[high][:, col_high]
        rows, cols = np.nonzero(mixed)
        if rows.size:
            r_low, r_high, c_low, c_high = low[rows], high[rows], col_low[cols], col_high[cols]
            wc, wr = col_weight[cols], row_weight[start + rows]
            top = values[:, r_low, c_low] * (np.float32(1) - wc) + values[:, r_low, c_high] * wc
            bottom = values[:, r_high, c_low] * (np.float32(1) - wc) + values[:, r_high, c_high] * wc
            corner[rows, cols] = decide((top * (np.float32(1) - wr) + bottom * wr)[None])[0]
        labels[start : start + step] = corner
    return labels


def _decider(threshold: float | None, num_classes: int):
    """Labels of (n, K, ...) probabilities: ``p(1) >= threshold`` for a binary task with a threshold, else the argmax."""
    if threshold is not None and num_classes == 2:
        return lambda probs: probs[:, 1] >= threshold
    return argmax_classes

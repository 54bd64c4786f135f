"""Training patches: random crops with foreground oversampling, padding small volumes.

Like nnU-Net, the last third of every batch (``foreground_fraction``) is centred on
a voxel of a label chosen uniformly among the labels the case holds, so rare
structures are seen; the rest are uniform crops. Volumes smaller than the patch
are placed at a random offset inside it and padded with 0 (as sliding-window
inference pads). All randomness comes from the ``numpy.random.Generator`` passed
in, so a batch is a pure function of its seed.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class SampleSource(Protocol):
    name: str

    @property
    def image(self) -> np.ndarray: ...  # (C, *spatial)

    @property
    def label(self) -> np.ndarray: ...  # (*spatial)

    @property
    def foreground(self) -> dict[int, np.ndarray]: ...  # label -> (K, ndim) positions


def crop_start_range(size: int, patch: int, overhang: int = 0) -> tuple[int, int]:
    """Inclusive range of crop starts: inside the volume (reaching ``overhang`` beyond either end), or
    placing a small volume inside the patch."""
    lo, hi = -overhang, size - patch + overhang
    return (lo, hi) if lo <= hi else (size - patch, 0)


def crop(array: np.ndarray, start: Sequence[int], patch: Sequence[int], spatial_axes_from: int) -> np.ndarray:
    """The window [start, start + patch) of ``array``'s trailing spatial axes, zero outside the array."""
    lead = array.shape[:spatial_axes_from]
    out = np.zeros(lead + tuple(patch), dtype=array.dtype)
    src, dst = [slice(None)] * spatial_axes_from, [slice(None)] * spatial_axes_from
    for size, s, p in zip(array.shape[spatial_axes_from:], start, patch):
        lo, hi = max(s, 0), min(s + p, size)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


class PatchSampler:
    """Batches of (image, label) patches drawn from preprocessed cases."""

    def __init__(
        self,
        cases: Sequence[SampleSource],
        patch_size: Sequence[int],
        batch_size: int,
        foreground_fraction: float = 0.33,
        overhang: Sequence[int] | None = None,
    ):
        if not cases:
            raise ValueError("no training cases")
        self.cases = list(cases)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = int(batch_size)
        self.foreground_fraction = float(foreground_fraction)
        # per axis, how far a crop may reach beyond the volume (zeros there): a 2.5D slab's neighbours of
        # the first and last slices, as inference pads them
        self.overhang = tuple(int(h) for h in overhang) if overhang is not None else (0,) * len(self.patch_size)

    def forced_foreground(self, index: int) -> bool:
        """Whether sample ``index`` of a batch is centred on a foreground voxel."""
        first_forced = round(self.batch_size * (1.0 - self.foreground_fraction))
        return index >= first_forced

    def start_for(self, case: SampleSource, rng: np.random.Generator, foreground: bool) -> tuple[int, ...]:
        shape = case.label.shape
        ranges = [crop_start_range(n, p, h) for n, p, h in zip(shape, self.patch_size, self.overhang)]
        labels = sorted(case.foreground) if foreground else []
        if labels:
            value = labels[int(rng.integers(len(labels)))]
            positions = case.foreground[value]
            centre = positions[int(rng.integers(len(positions)))]
            return tuple(
                int(min(max(int(c) - p // 2, lo), hi)) for c, p, (lo, hi) in zip(centre, self.patch_size, ranges)
            )
        return tuple(int(rng.integers(lo, hi + 1)) for lo, hi in ranges)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One batch: images (B, C, *patch) float32 and labels (B, *patch) int64."""
        images, labels = [], []
        for i in range(self.batch_size):
            case = self.cases[int(rng.integers(len(self.cases)))]
            start = self.start_for(case, rng, self.forced_foreground(i))
            images.append(crop(case.image, start, self.patch_size, 1))
            labels.append(crop(case.label, start, self.patch_size, 0))
        return np.stack(images).astype(np.float32, copy=False), np.stack(labels).astype(np.int64)

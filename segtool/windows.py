"""Windows over an image: where they go, what each one holds, and how their values add up.

The geometry and bookkeeping under `segtool.sliding_window`: a `WindowPlan` pads an
image to at least the patch and spreads window starts evenly with the asked overlap;
each window's probabilities are weighted by a Gaussian map, summed into rows (images
of a stack, or planes along the first spatial axis) and handed out as soon as no later
window touches them, padding cut off and weights divided out (`Stitcher`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Evenly spaced window starts covering [0, size) with at least ``overlap`` overlap."""
    if size <= patch:
        return [0]
    step = patch * (1.0 - overlap)
    count = math.ceil((size - patch) / step) + 1
    last = size - patch
    return sorted({round(i * last / (count - 1)) for i in range(count)})


def gaussian_importance(patch: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """A separable Gaussian map (peak 1, never 0) that favours window centres."""
    weights = None
    for size in patch:
        coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2.0
        sigma = max(size * sigma_scale, 1e-3)
        axis = torch.exp(-0.5 * (coords / sigma) ** 2)
        weights = axis if weights is None else weights[..., None] * axis
    weights = weights / weights.max()
    return weights.clamp_min(1e-3)


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows go over a padded image."""

    padded_shape: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]  # (before, after) per spatial axis
    starts: tuple[tuple[int, ...], ...]

    def slices(self, patch: Sequence[int]) -> Iterator[tuple[slice, ...]]:
        for start in self.starts:
            yield tuple(slice(s, s + p) for s, p in zip(start, patch))


def plan_windows(shape: Sequence[int], patch: Sequence[int], overlap: float) -> WindowPlan:
    pads = []
    for size, p in zip(shape, patch):
        total = max(0, p - size)
        pads.append((total // 2, total - total // 2))
    padded = tuple(s + a + b for s, (a, b) in zip(shape, pads))
    per_axis = [window_starts(s, p, overlap) for s, p in zip(padded, patch)]
    return WindowPlan(padded, tuple(pads), tuple(itertools.product(*per_axis)))


def pad_image(image: torch.Tensor, pads: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``image`` (N, C, *spatial) padded with zeros by ``pads`` (before, after) per spatial axis."""
    if not any(a or b for a, b in pads):
        return image
    flat = [v for pair in reversed(pads) for v in pair]  # F.pad wants last axis first
    return F.pad(image, flat, mode="constant", value=0.0)


def window_order(count: int, plan: WindowPlan, patch: Sequence[int], chunk: int) -> list[tuple[int, tuple[slice, ...]]]:
    """(image, window) pairs in the order they go through the model: position-major within chunks of ``chunk`` images."""
    positions = list(plan.slices(patch))
    order = []
    for first in range(0, count, chunk):
        order.extend((n, s) for s in positions for n in range(first, min(count, first + chunk)))
    return order


def window_input(stack: torch.Tensor, n: int, window: tuple[slice, ...], context: int) -> torch.Tensor:
    """Image ``n``'s window (C, *patch); with ``context`` k, images n-k..n+k's windows as (C * (2k + 1), *patch).

    Each channel's 2k+1 images in order, zero beyond the stack: the layout of
    `segtool.training.batches.slab_to_channels`. Built per window, so the input is never copied whole.
    """
    if not context:
        return stack[(n, slice(None), *window)]
    lo, hi = n - context, n + context + 1
    part = stack[(slice(max(lo, 0), min(hi, stack.shape[0])), slice(None), *window)]
    missing = (max(0, -lo), max(0, hi - stack.shape[0]))
    if any(missing):
        part = F.pad(part, (0, 0) * (part.dim() - 1) + missing)
    return part.movedim(0, 1).reshape(-1, *part.shape[2:])


def holds_nothing(images: torch.Tensor, n: int, window: tuple[slice, ...], pads: Sequence[tuple[int, int]],
                  floor: torch.Tensor) -> bool:
    """Whether the part of image ``n`` under a (padded-grid) window holds only each channel's lowest value."""
    inner = tuple(slice(max(w.start - a, 0), min(w.stop - a, size))
                  for w, (a, _), size in zip(window, pads, images.shape[2:]))
    part = images[(n, slice(None), *inner)]
    if part.numel() == 0:  # only padding
        return True
    return bool((part.amax(dim=tuple(range(1, part.dim()))) <= floor).all())


def plane_weight(plan: WindowPlan, patch: Sequence[int], importance: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """The summed importance of the padded planes [lo, hi) along the first axis, added in window order."""
    weight = torch.zeros((hi - lo, *plan.padded_shape[1:]), dtype=torch.float32, device=importance.device)
    for s in plan.slices(patch):
        a, b = max(lo, s[0].start), min(hi, s[0].stop)
        if a < b:
            weight[(slice(a - lo, b - lo), *s[1:])] += importance[a - s[0].start : b - s[0].start]
    return weight


class _Rows:
    """Accumulates rows of a (rows, K, *rest) output, each row its own tensor; finished rows pop off the front.

    Rows are images of a stack (slice-wise) or planes along the first spatial axis (one
    volume). Every voxel sums its windows in the order they ran, so the values are those
    of one whole-image accumulator, without holding the whole image.
    """

    def __init__(self, rest: tuple[int, ...], num_classes: int, device: torch.device):
        self.rest, self.num_classes, self.device = rest, num_classes, device
        self.base = 0
        self.rows: dict[int, torch.Tensor] = {}

    def add(self, rows: tuple[int, int], where: tuple[slice, ...], value: torch.Tensor) -> None:
        """Add ``value`` (rows, K, *window) at rows [rows[0], rows[1]) and ``where`` in the rest."""
        whole = tuple(value.shape[2:]) == self.rest  # the window covers the row: its first value is the sum
        for r in range(*rows):
            row = self.rows.get(r)
            if row is None and whole:
                self.rows[r] = value[r - rows[0]]  # a view of this batch's probabilities, no longer used elsewhere
                continue
            if row is None:
                row = self.rows[r] = torch.zeros((self.num_classes, *self.rest), dtype=torch.float32, device=self.device)
            row[(slice(None), *where)] += value[r - rows[0]]

    def pop(self, stop: int) -> tuple[int, torch.Tensor | None]:
        """(first row, rows [first, stop) stacked), removed; None when no row is finished."""
        first = self.base
        if stop <= first:
            return first, None
        done = [self.rows.pop(r, None) for r in range(first, stop)]
        self.base = stop
        zeros = torch.zeros((self.num_classes, *self.rest), dtype=torch.float32, device=self.device)
        return first, torch.stack([zeros if row is None else row for row in done])


class Stitcher:
    """Weighted window probabilities of a stack (N, C, *spatial) summed into rows, handed out finished.

    With ``by_image`` a row is one image of the stack (rest: its spatial shape), else (N
    is 1) a plane along the first spatial axis (rest: the other spatial axes). Rows come
    out in order with the padding cut off and the summed ``importance`` divided out
    (``importance`` None: one window per image, nothing to divide).
    """

    def __init__(self, plan: WindowPlan, patch: Sequence[int], spatial: tuple[int, ...], count: int,
                 num_classes: int, importance: torch.Tensor | None, device: torch.device, by_image: bool):
        self.plan, self.patch, self.importance, self.by_image = plan, patch, importance, by_image
        self.crop = tuple(slice(a, a + n) for (a, _), n in zip(plan.pads, spatial))
        self.weight = None
        if by_image:
            if importance is not None:
                weight = torch.zeros(plan.padded_shape, dtype=torch.float32, device=device)
                for s in plan.slices(patch):
                    weight[s] += importance
                self.weight = weight[self.crop]
            self.first_real, self.real_rows = 0, count
            self.buffer = _Rows(plan.padded_shape, num_classes, device)
        else:
            self.first_real, self.real_rows = plan.pads[0][0], spatial[0]
            self.buffer = _Rows(plan.padded_shape[1:], num_classes, device)

    def add(self, window: torch.Tensor, where: tuple[slice, ...], rows: tuple[int, int]) -> None:
        """One window's weighted probabilities (K, *patch) at ``where`` (padded grid), covering ``rows``."""
        if self.by_image:
            self.buffer.add(rows, where, window[None])
        else:
            self.buffer.add(rows, where[1:], window.movedim(1, 0))

    def finished(self, stop: int) -> Iterator[tuple[int, torch.Tensor]]:
        """(first real row, probabilities (rows, K, *rest)) of the rows before ``stop``, cut and divided."""
        first, done = self.buffer.pop(stop)
        if done is None:
            return
        lo, hi = max(first, self.first_real), min(first + done.shape[0], self.first_real + self.real_rows)
        if hi <= lo:
            return
        part = done[lo - first : hi - first]
        crop = self.crop
        if self.importance is None:
            yield lo - self.first_real, part[(slice(None), slice(None), *(crop if self.by_image else crop[1:]))]
        elif self.by_image:  # divided in place: `done` is this call's own stacked copy
            yield lo, part[(slice(None), slice(None), *crop)].div_(self.weight)
        else:
            weight_rows = plane_weight(self.plan, self.patch, self.importance, lo, hi)[(slice(None), *crop[1:])]
            yield lo - self.first_real, part[(slice(None), slice(None), *crop[1:])].div_(weight_rows[:, None])

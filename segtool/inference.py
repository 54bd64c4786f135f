"""Batched sliding-window inference with Gaussian blending, on CPU or GPU.

Windows are cut from the (padded) image, run through the model ``batch_size`` at a
time on ``device`` (mixed precision on CUDA), weighted by a Gaussian importance map
and accumulated on ``stitch_device``. On CUDA out-of-memory the call is retried
with stitching on the CPU and half the batch size, and the caller is told.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F


def pick_device(name: str = "auto") -> torch.device:
    """'auto' is cuda, then mps, then cpu; otherwise the named device, checked."""
    from segtool.errors import UsageError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for, but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("device 'mps' asked for, but MPS is not available")
    return device


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


def _pad(image: torch.Tensor, pads: Sequence[tuple[int, int]]) -> torch.Tensor:
    if not any(a or b for a, b in pads):
        return image
    flat = [v for pair in reversed(pads) for v in pair]  # F.pad wants last axis first
    return F.pad(image, flat, mode="constant", value=0.0)


def _window_order(count: int, plan: WindowPlan, patch: Sequence[int], chunk: int) -> list[tuple[int, tuple[slice, ...]]]:
    """(image, window) pairs in the order they go through the model: position-major within chunks of ``chunk`` images."""
    positions = list(plan.slices(patch))
    order = []
    for first in range(0, count, chunk):
        order.extend((n, s) for s in positions for n in range(first, min(count, first + chunk)))
    return order


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


def _stream_windows(
    model: torch.nn.Module,
    images: torch.Tensor,
    patch: Sequence[int],
    overlap: float,
    batch_size: int,
    device: torch.device,
    stitch_device: torch.device,
    num_classes: int,
    precision: str,
    on_batch: Callable[[int, int], None] | None,
    by_image: bool,
    chunk: int,
    context: int = 0,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Probabilities of a stack of images (N, C, *spatial) sharing one window plan, as finished rows, in order.

    Yields ``(first row, probabilities (rows, K, *rest))``: with ``by_image`` a row is one
    image of the stack (rest: its spatial shape), else (N is 1) a plane along the first
    spatial axis (rest: the other spatial axes). Windows of ``chunk`` images at a time
    go through the model together, ``batch_size`` windows per forward pass. With
    ``context`` k, image n's windows hold images n-k..n+k as channels (`_window_input`).
    """
    from segtool.precision import memory_format

    spatial = tuple(images.shape[2:])
    plan = plan_windows(spatial, patch, overlap)
    padded = _pad(images, plan.pads)
    # One window per image (a photo at a fixed input size): its Gaussian weight would cancel, so it is left out.
    importance = gaussian_importance(patch).to(device) if len(plan.starts) > 1 else None
    importance_stitch = None if importance is None else importance.to(stitch_device)
    count = images.shape[0]
    windows = _window_order(count, plan, patch, chunk if by_image else count)
    crop = tuple(slice(a, a + n) for (a, _), n in zip(plan.pads, spatial))
    if by_image:
        rows_of = [(n, n + 1) for n, _ in windows]
        weight = None
        if importance is not None:
            weight = torch.zeros(plan.padded_shape, dtype=torch.float32, device=stitch_device)
            for s in plan.slices(patch):
                weight[s] += importance_stitch
            weight = weight[crop]
        first_real, real_rows = 0, count
        buffer = _Rows(plan.padded_shape, num_classes, stitch_device)
    else:
        rows_of = [(s[0].start, s[0].stop) for _, s in windows]
        first_real, real_rows = plan.pads[0][0], spatial[0]
        buffer = _Rows(plan.padded_shape[1:], num_classes, stitch_device)
    later_start = [r for r, _ in rows_of][1:] + [count if by_image else plan.padded_shape[0]]
    for i in range(len(later_start) - 2, -1, -1):  # the first row any later window touches
        later_start[i] = min(later_start[i], later_start[i + 1])

    def finished(stop: int) -> Iterator[tuple[int, torch.Tensor]]:
        first, done = buffer.pop(stop)
        if done is None:
            return
        lo, hi = max(first, first_real), min(first + done.shape[0], first_real + real_rows)
        if hi <= lo:
            return
        part = done[lo - first : hi - first]
        if importance is None:
            yield lo - first_real, part[(slice(None), slice(None), *(crop if by_image else crop[1:]))]
        elif by_image:  # divided in place: `done` is this call's own stacked copy
            yield lo, part[(slice(None), slice(None), *crop)].div_(weight)
        else:
            weight_rows = _plane_weight(plan, patch, importance_stitch, lo, hi)[(slice(None), *crop[1:])]
            yield lo - first_real, part[(slice(None), slice(None), *crop[1:])].div_(weight_rows[:, None])

    layout = memory_format(device, precision, len(spatial))
    floor = images.amin(dim=(0, *range(2, images.dim())))  # each channel's lowest value
    for first in range(0, len(windows), batch_size):
        chosen = windows[first : first + batch_size]
        batch = torch.stack([_window_input(padded, n, s, context) for n, s in chosen]).to(device, non_blocking=True)
        empty = torch.tensor([_holds_nothing(images, n, s, plan.pads, floor) for n, s in chosen], device=device)
        probs = _window_probabilities(model, batch, empty, num_classes, device, precision, layout)
        probs = (probs if importance is None else probs * importance).to(stitch_device)
        for window, (n, s), rows in zip(probs, chosen, rows_of[first : first + batch_size]):
            if by_image:
                buffer.add(rows, s, window[None])
            else:
                buffer.add(rows, s[1:], window.movedim(1, 0))
        done = first + len(chosen)
        if on_batch is not None:
            on_batch(done, len(windows))
        yield from finished(later_start[done - 1])


def _window_input(stack: torch.Tensor, n: int, window: tuple[slice, ...], context: int) -> torch.Tensor:
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


def _holds_nothing(images: torch.Tensor, n: int, window: tuple[slice, ...], pads: Sequence[tuple[int, int]],
                   floor: torch.Tensor) -> bool:
    """Whether the part of image ``n`` under a (padded-grid) window holds only each channel's lowest value."""
    inner = tuple(slice(max(w.start - a, 0), min(w.stop - a, size))
                  for w, (a, _), size in zip(window, pads, images.shape[2:]))
    part = images[(n, slice(None), *inner)]
    if part.numel() == 0:  # only padding
        return True
    return bool((part.amax(dim=tuple(range(1, part.dim()))) <= floor).all())


def _window_probabilities(model: torch.nn.Module, batch: torch.Tensor, empty: torch.Tensor, num_classes: int,
                          device: torch.device, precision: str, layout: torch.memory_format) -> torch.Tensor:
    """Softmax probabilities (B, K, *patch) of a batch of windows (B, C, *patch).

    A window whose image part holds nothing but each channel's lowest value of the image
    (``empty``: the zero background of a skull-stripped or masked scan, an empty slice;
    the padding around a small image does not count) has nothing to segment: it is
    background (class 0) without going through the network, which has never seen such
    an input and may answer anything there.
    """
    from segtool.precision import autocast

    if not bool(empty.any()):
        with torch.inference_mode(), autocast(device, precision):
            logits = model(batch.contiguous(memory_format=layout))
        return torch.softmax(logits.float(), dim=1)
    probs = torch.zeros((batch.shape[0], num_classes, *batch.shape[2:]), dtype=torch.float32, device=batch.device)
    probs[:, 0] = 1.0
    live = ~empty
    if bool(live.any()):
        with torch.inference_mode(), autocast(device, precision):
            logits = model(batch[live].contiguous(memory_format=layout))
        probs[live] = torch.softmax(logits.float(), dim=1)
    return probs


def _plane_weight(plan: WindowPlan, patch: Sequence[int], importance: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """The summed importance of the padded planes [lo, hi) along the first axis, added in window order."""
    weight = torch.zeros((hi - lo, *plan.padded_shape[1:]), dtype=torch.float32, device=importance.device)
    for s in plan.slices(patch):
        a, b = max(lo, s[0].start), min(hi, s[0].stop)
        if a < b:
            weight[(slice(a - lo, b - lo), *s[1:])] += importance[a - s[0].start : b - s[0].start]
    return weight


def _run_windows(
    model: torch.nn.Module,
    images: torch.Tensor,
    patch: Sequence[int],
    overlap: float,
    batch_size: int,
    device: torch.device,
    stitch_device: torch.device,
    num_classes: int,
    precision: str,
    on_batch: Callable[[int, int], None] | None,
    context: int = 0,
) -> torch.Tensor:
    """Probabilities (N, K, *spatial) of a stack of images (N, C, *spatial) sharing one window plan.

    Windows of all N images go through the model together, ``batch_size`` at a time
    (N is 1 for a volume, the number of slices for a slice-wise 2D network).
    """
    count, spatial = images.shape[0], tuple(images.shape[2:])
    by_image = count > 1
    rows = _stream_windows(model, images, patch, overlap, batch_size, device, stitch_device, num_classes, precision,
                           on_batch, by_image=by_image, chunk=count, context=context)
    first, part = next(rows)
    if by_image and part.shape[0] == count:  # one batch of whole images (photos): its probabilities, not a copy
        return part
    output = torch.empty((count, num_classes, *spatial), dtype=torch.float32, device=stitch_device)
    for first, part in itertools.chain([(first, part)], rows):
        if by_image:
            output[first : first + part.shape[0]] = part
        else:
            output[0, :, first : first + part.shape[0]] = part.movedim(0, 1)
    return output


def _flip_sets(ndim: int, axes: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """Every combination of flips of ``axes`` (0-based spatial axes; None: all ``ndim``), as (C, *spatial) dims."""
    dims = [a + 1 for a in (range(ndim) if axes is None else axes)]
    return [combo for r in range(len(dims) + 1) for combo in itertools.combinations(dims, r)]


def sliding_window_inference(
    model: torch.nn.Module,
    image: torch.Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    overlap: float = 0.5,
    batch_size: int = 2,
    device: torch.device | str = "cpu",
    stitch_device: torch.device | str | None = None,
    precision: str = "fp32",
    tta: bool = False,
    tta_axes: Sequence[int] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    slice_axis: int | None = None,
    make_sink: Callable[[], Callable[[int, torch.Tensor], None]] | None = None,
    slice_context: int = 0,
) -> torch.Tensor | None:
    """Class probabilities (num_classes, *spatial) for a (C, *spatial) image.

    ``precision`` is a resolved `segtool.precision` name (fp32, bf16 or fp16).
    With ``slice_axis`` the image is 3D and the model 2D: the slices along that
    spatial axis go through the model in batches (windows of many slices per
    forward pass) and are stacked back; with ``slice_context`` k each slice goes in with
    its k neighbours on each side as extra channels (2.5D; zero beyond the volume). With ``tta``, predictions over every
    combination of flips of ``tta_axes`` (the network's spatial axes, in-plane for
    slices; None: all) are averaged. On CUDA out-of-memory,
    retries with CPU stitching and a halved batch.

    With ``make_sink`` (not with ``tta``) nothing is returned: finished planes go to the
    sink as they come, and the whole image's probabilities are never held
    (see `_stream_to_sink`).
    """
    if make_sink is not None:
        if tta:
            raise ValueError("tta needs every probability at once; it cannot stream to a sink")
        _stream_to_sink(model, image, patch_size, num_classes, make_sink, overlap, batch_size, device, precision,
                        on_batch, warn, slice_axis, context=slice_context)
        return None
    device = torch.device(device)
    stitch = torch.device(stitch_device) if stitch_device is not None else device
    if slice_axis is not None:
        stack = image.movedim(slice_axis + 1, 0)  # (S, C, *in-plane)
    else:
        stack = image[None]
    flips = _flip_sets(stack.dim() - 2, tta_axes) if tta else [()]
    while True:
        try:
            total = None
            for axes in flips:
                shifted = tuple(a + 1 for a in axes)  # the stack has one more leading axis
                source = stack.flip(shifted) if axes else stack
                probs = _run_windows(
                    model, source, patch_size, overlap, batch_size, device, stitch, num_classes, precision, on_batch,
                    slice_context,
                )
                probs = probs.flip(shifted) if axes else probs
                total = probs if total is None else total.add_(probs)
            total = total / len(flips) if len(flips) > 1 else total
            if slice_axis is not None:
                return total.movedim(0, slice_axis + 1)  # (K, *spatial) with the slices back in place
            return total[0]
        except torch.cuda.OutOfMemoryError:
            stitch, batch_size = _after_out_of_memory(device, stitch, batch_size, warn)


#: Slice-wise streaming: the slices whose windows go through the network together hold at most this many
#: bytes of probabilities (at least one slice).
STREAM_CHUNK_BYTES = 16 * 1024 * 1024


def _stream_to_sink(
    model: torch.nn.Module,
    image: torch.Tensor,
    patch_size: Sequence[int],
    num_classes: int,
    make_sink: Callable[[], Callable[[int, torch.Tensor], None]],
    overlap: float = 0.5,
    batch_size: int = 2,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    on_batch: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    slice_axis: int | None = None,
    chunk_bytes: int = STREAM_CHUNK_BYTES,
    context: int = 0,
) -> None:
    """Class probabilities of a (C, *spatial) image, handed to a sink as they are finished, never all at once.

    The sink gets ``(first, rows)``: ``rows`` is (r, K, *rest), the probabilities of the
    planes [first, first + r) along spatial axis ``slice_axis`` (0 without it), ``rest``
    the other spatial axes in order; planes come in order. The values are exactly those
    of :func:`sliding_window_inference` (the same windows, summed in the same order);
    slice-wise, slices go through the network in groups of ``chunk_bytes`` of
    probabilities. On CUDA out-of-memory, a fresh sink (``make_sink()``) gets the
    retry, stitched on the CPU with half the batch.
    """
    device = torch.device(device)
    stitch = device
    by_image = slice_axis is not None
    stack = image.movedim(slice_axis + 1, 0) if by_image else image[None]
    while True:
        sink = make_sink()
        try:
            padded = plan_windows(tuple(stack.shape[2:]), patch_size, overlap).padded_shape
            per_image = num_classes * math.prod(padded) * 4
            chunk = max(1, chunk_bytes // per_image) if by_image else 1
            rows = _stream_windows(model, stack, patch_size, overlap, batch_size, device, stitch, num_classes,
                                   precision, on_batch, by_image=by_image, chunk=chunk, context=context)
            for first, part in rows:
                sink(first, part)
            return
        except torch.cuda.OutOfMemoryError:
            stitch, batch_size = _after_out_of_memory(device, stitch, batch_size, warn)


def _after_out_of_memory(device: torch.device, stitch: torch.device, batch_size: int,
                         warn: Callable[[str], None] | None) -> tuple[torch.device, int]:
    """CPU stitching and half the batch for the retry; re-raises when there is nothing left to give."""
    if device.type != "cuda" or (stitch.type == "cpu" and batch_size == 1):
        raise
    torch.cuda.empty_cache()
    batch_size = max(1, batch_size // 2)
    if warn is not None:
        warn(f"CUDA out of memory: retrying with stitching on the CPU and batch size {batch_size}")
    return torch.device("cpu"), batch_size

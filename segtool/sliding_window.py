"""Batched sliding-window inference with Gaussian blending, on CPU or GPU.

Windows are cut from the (padded) image, run through the model ``batch_size`` at a
time on ``device`` (mixed precision on CUDA), weighted by a Gaussian importance map
and accumulated on ``stitch_device`` (`segtool.windows`). On CUDA out-of-memory the
call is retried with stitching on the CPU and half the batch size, and the caller is
told. Every setting but the model, the image and the callbacks is one frozen
`WindowSettings`:

    sliding_window_inference(model, image, settings)           -> probabilities (K, *spatial)
    stream_probabilities(model, image, settings, make_sink)    -> finished planes to a sink
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch

from segtool.windows import (
    Stitcher,
    gaussian_importance,
    holds_nothing,
    pad_image,
    plan_windows,
    window_input,
    window_order,
)


@dataclass(frozen=True)
class WindowSettings:
    """How a network runs over an image.

    ``precision`` is a resolved `segtool.precision` name (fp32, bf16 or fp16). With
    ``slice_axis`` the image is 3D and the model 2D: the slices along that spatial axis
    go through the model in batches (windows of many slices per forward pass) and are
    stacked back; with ``slice_context`` k each slice goes in with its k neighbours on
    each side as extra channels (2.5D; zero beyond the volume). With ``tta``,
    predictions over every combination of flips of ``tta_axes`` (the network's spatial
    axes, in-plane for slices; None: all) are averaged. ``stitch_device`` None stitches
    on ``device``.
    """

    patch_size: tuple[int, ...]
    num_classes: int
    overlap: float = 0.5
    batch_size: int = 2
    device: torch.device = torch.device("cpu")
    stitch_device: torch.device | None = None
    precision: str = "fp32"
    slice_axis: int | None = None
    slice_context: int = 0
    tta: bool = False
    tta_axes: tuple[int, ...] | None = None

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise the given values once, here
        set_(self, "patch_size", tuple(int(p) for p in self.patch_size))
        set_(self, "device", torch.device(self.device))
        if self.stitch_device is not None:
            set_(self, "stitch_device", torch.device(self.stitch_device))
        if self.tta_axes is not None:
            set_(self, "tta_axes", tuple(self.tta_axes))
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size!r}")

    @property
    def stitch(self) -> torch.device:
        """Where window values are summed: ``stitch_device``, else ``device``."""
        return self.device if self.stitch_device is None else self.stitch_device


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


def flip_sets(ndim: int, axes: tuple[int, ...] | None = None) -> list[tuple[int, ...]]:
    """Every combination of flips of ``axes`` (0-based spatial axes; None: all ``ndim``), as (C, *spatial) dims."""
    dims = [a + 1 for a in (range(ndim) if axes is None else axes)]
    return [combo for r in range(len(dims) + 1) for combo in itertools.combinations(dims, r)]


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


def _stream_windows(model: torch.nn.Module, images: torch.Tensor, settings: WindowSettings,
                    on_batch: Callable[[int, int], None] | None, by_image: bool,
                    chunk: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Probabilities of a stack of images (N, C, *spatial) sharing one window plan, as finished rows, in order.

    Yields ``(first row, probabilities (rows, K, *rest))``: with ``by_image`` a row is one
    image of the stack (rest: its spatial shape), else (N is 1) a plane along the first
    spatial axis (rest: the other spatial axes). Windows of ``chunk`` images at a time
    go through the model together, ``batch_size`` windows per forward pass. With
    ``slice_context`` k, image n's windows hold images n-k..n+k as channels (`window_input`).
    """
    from segtool.precision import memory_format

    patch, device, batch_size = settings.patch_size, settings.device, settings.batch_size
    spatial = tuple(images.shape[2:])
    plan = plan_windows(spatial, patch, settings.overlap)
    padded = pad_image(images, plan.pads)
    # One window per image (a photo at a fixed input size): its Gaussian weight would cancel, so it is left out.
    importance = gaussian_importance(patch).to(device) if len(plan.starts) > 1 else None
    count = images.shape[0]
    stitcher = Stitcher(plan, patch, spatial, count, settings.num_classes,
                        None if importance is None else importance.to(settings.stitch), settings.stitch, by_image)
    windows = window_order(count, plan, patch, chunk if by_image else count)
    rows_of = [(n, n + 1) for n, _ in windows] if by_image else [(s[0].start, s[0].stop) for _, s in windows]
    later_start = [r for r, _ in rows_of][1:] + [count if by_image else plan.padded_shape[0]]
    for i in range(len(later_start) - 2, -1, -1):  # the first row any later window touches
        later_start[i] = min(later_start[i], later_start[i + 1])

    layout = memory_format(device, settings.precision, len(spatial))
    floor = images.amin(dim=(0, *range(2, images.dim())))  # each channel's lowest value
    for first in range(0, len(windows), batch_size):
        chosen = windows[first : first + batch_size]
        batch = torch.stack([window_input(padded, n, s, settings.slice_context) for n, s in chosen])
        batch = batch.to(device, non_blocking=True)
        empty = torch.tensor([holds_nothing(images, n, s, plan.pads, floor) for n, s in chosen], device=device)
        probs = _window_probabilities(model, batch, empty, settings.num_classes, device, settings.precision, layout)
        probs = (probs if importance is None else probs * importance).to(settings.stitch)
        for window, (n, s), rows in zip(probs, chosen, rows_of[first : first + batch_size]):
            stitcher.add(window, s, rows)
        done = first + len(chosen)
        if on_batch is not None:
            on_batch(done, len(windows))
        yield from stitcher.finished(later_start[done - 1])


def _run_windows(model: torch.nn.Module, images: torch.Tensor, settings: WindowSettings,
                 on_batch: Callable[[int, int], None] | None) -> torch.Tensor:
    """Probabilities (N, K, *spatial) of a stack of images (N, C, *spatial) sharing one window plan.

    Windows of all N images go through the model together, ``batch_size`` at a time
    (N is 1 for a volume, the number of slices for a slice-wise 2D network).
    """
    count, spatial = images.shape[0], tuple(images.shape[2:])
    by_image = count > 1
    rows = _stream_windows(model, images, settings, on_batch, by_image=by_image, chunk=count)
    first, part = next(rows)
    if by_image and part.shape[0] == count:  # one batch of whole images (photos): its probabilities, not a copy
        return part
    output = torch.empty((count, settings.num_classes, *spatial), dtype=torch.float32, device=settings.stitch)
    for first, part in itertools.chain([(first, part)], rows):
        if by_image:
            output[first : first + part.shape[0]] = part
        else:
            output[0, :, first : first + part.shape[0]] = part.movedim(0, 1)
    return output


def sliding_window_inference(model: torch.nn.Module, image: torch.Tensor, settings: WindowSettings,
                             on_batch: Callable[[int, int], None] | None = None,
                             warn: Callable[[str], None] | None = None) -> torch.Tensor:
    """Class probabilities (num_classes, *spatial) for a (C, *spatial) image (see `WindowSettings`).

    ``on_batch(done, total)`` follows the windows; ``warn`` hears of an out-of-memory retry.
    """
    stack = image.movedim(settings.slice_axis + 1, 0) if settings.slice_axis is not None else image[None]
    flips = flip_sets(stack.dim() - 2, settings.tta_axes) if settings.tta else [()]
    while True:
        try:
            total = None
            for axes in flips:
                shifted = tuple(a + 1 for a in axes)  # the stack has one more leading axis
                source = stack.flip(shifted) if axes else stack
                probs = _run_windows(model, source, settings, on_batch)
                probs = probs.flip(shifted) if axes else probs
                total = probs if total is None else total.add_(probs)
            total = total / len(flips) if len(flips) > 1 else total
            if settings.slice_axis is not None:
                return total.movedim(0, settings.slice_axis + 1)  # (K, *spatial) with the slices back in place
            return total[0]
        except torch.cuda.OutOfMemoryError:
            settings = _after_out_of_memory(settings, warn)


#: Slice-wise streaming: the slices whose windows go through the network together hold at most this many
#: bytes of probabilities (at least one slice).
STREAM_CHUNK_BYTES = 16 * 1024 * 1024


def stream_probabilities(
    model: torch.nn.Module,
    image: torch.Tensor,
    settings: WindowSettings,
    make_sink: Callable[[], Callable[[int, torch.Tensor], None]],
    on_batch: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    chunk_bytes: int = STREAM_CHUNK_BYTES,
) -> None:
    """Class probabilities of a (C, *spatial) image, handed to a sink as they are finished, never all at once.

    The sink gets ``(first, rows)``: ``rows`` is (r, K, *rest), the probabilities of the
    planes [first, first + r) along spatial axis ``slice_axis`` (0 without it), ``rest``
    the other spatial axes in order; planes come in order. The values are exactly those
    of :func:`sliding_window_inference` (the same windows, summed in the same order);
    slice-wise, slices go through the network in groups of ``chunk_bytes`` of
    probabilities. On CUDA out-of-memory, a fresh sink (``make_sink()``) gets the
    retry, stitched on the CPU with half the batch. Not with ``tta``: it needs every
    probability at once (ValueError).
    """
    if settings.tta:
        raise ValueError("tta needs every probability at once; it cannot stream to a sink")
    by_image = settings.slice_axis is not None
    stack = image.movedim(settings.slice_axis + 1, 0) if by_image else image[None]
    while True:
        sink = make_sink()
        try:
            padded = plan_windows(tuple(stack.shape[2:]), settings.patch_size, settings.overlap).padded_shape
            per_image = settings.num_classes * math.prod(padded) * 4
            chunk = max(1, chunk_bytes // per_image) if by_image else 1
            for first, part in _stream_windows(model, stack, settings, on_batch, by_image=by_image, chunk=chunk):
                sink(first, part)
            return
        except torch.cuda.OutOfMemoryError:
            settings = _after_out_of_memory(settings, warn)


def _after_out_of_memory(settings: WindowSettings, warn: Callable[[str], None] | None) -> WindowSettings:
    """CPU stitching and half the batch for the retry; re-raises when there is nothing left to give."""
    if settings.device.type != "cuda" or (settings.stitch.type == "cpu" and settings.batch_size == 1):
        raise
    torch.cuda.empty_cache()
    batch_size = max(1, settings.batch_size // 2)
    if warn is not None:
        warn(f"CUDA out of memory: retrying with stitching on the CPU and batch size {batch_size}")
    return replace(settings, stitch_device=torch.device("cpu"), batch_size=batch_size)

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
) -> torch.Tensor:
    """Probabilities (N, K, *spatial) of a stack of images (N, C, *spatial) sharing one window plan.

    Windows of all N images go through the model together, ``batch_size`` at a time
    (N is 1 for a volume, the number of slices for a slice-wise 2D network).
    """
    from segtool.precision import autocast, memory_format

    spatial = tuple(images.shape[2:])
    plan = plan_windows(spatial, patch, overlap)
    padded = _pad(images, plan.pads)
    importance = gaussian_importance(patch).to(device)
    count = images.shape[0]
    output = torch.zeros((count, num_classes, *plan.padded_shape), dtype=torch.float32, device=stitch_device)
    weight = torch.zeros(plan.padded_shape, dtype=torch.float32, device=stitch_device)
    importance_stitch = importance.to(stitch_device)
    for s in plan.slices(patch):
        weight[s] += importance_stitch
    windows = [(n, s) for s in plan.slices(patch) for n in range(count)]
    layout = memory_format(device, precision, len(spatial))
    done = 0
    for first in range(0, len(windows), batch_size):
        chosen = windows[first : first + batch_size]
        batch = torch.stack([padded[(n, slice(None), *s)] for n, s in chosen]).to(device, non_blocking=True)
        batch = batch.contiguous(memory_format=layout)
        with torch.inference_mode(), autocast(device, precision):
            logits = model(batch)
        probs = (torch.softmax(logits.float(), dim=1) * importance).to(stitch_device)
        for window, (n, s) in zip(probs, chosen):
            output[(n, slice(None), *s)] += window
        done += len(chosen)
        if on_batch is not None:
            on_batch(done, len(windows))
    output /= weight
    crop = tuple(slice(a, a + n) for (a, _), n in zip(plan.pads, spatial))
    return output[(slice(None), slice(None), *crop)]


def _flip_sets(ndim: int) -> list[tuple[int, ...]]:
    axes = range(1, ndim + 1)  # spatial axes of a (C, *spatial) tensor
    return [combo for r in range(ndim + 1) for combo in itertools.combinations(axes, r)]


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
    on_batch: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    slice_axis: int | None = None,
) -> torch.Tensor:
    """Class probabilities (num_classes, *spatial) for a (C, *spatial) image.

    ``precision`` is a resolved `segtool.precision` name (fp32, bf16 or fp16).
    With ``slice_axis`` the image is 3D and the model 2D: the slices along that
    spatial axis go through the model in batches (windows of many slices per
    forward pass) and are stacked back. With ``tta``, predictions over every
    combination of (in-plane) axis flips are averaged. On CUDA out-of-memory,
    retries with CPU stitching and a halved batch.
    """
    device = torch.device(device)
    stitch = torch.device(stitch_device) if stitch_device is not None else device
    if slice_axis is not None:
        stack = image.movedim(slice_axis + 1, 0)  # (S, C, *in-plane)
    else:
        stack = image[None]
    flips = _flip_sets(stack.dim() - 2) if tta else [()]
    while True:
        try:
            total = None
            for axes in flips:
                shifted = tuple(a + 1 for a in axes)  # the stack has one more leading axis
                source = stack.flip(shifted) if axes else stack
                probs = _run_windows(
                    model, source, patch_size, overlap, batch_size, device, stitch, num_classes, precision, on_batch
                )
                probs = probs.flip(shifted) if axes else probs
                total = probs if total is None else total.add_(probs)
            total = total / len(flips) if len(flips) > 1 else total
            if slice_axis is not None:
                return total.movedim(0, slice_axis + 1)  # (K, *spatial) with the slices back in place
            return total[0]
        except torch.cuda.OutOfMemoryError:
            if device.type != "cuda" or (stitch.type == "cpu" and batch_size == 1):
                raise
            torch.cuda.empty_cache()
            stitch = torch.device("cpu")
            batch_size = max(1, batch_size // 2)
            if warn is not None:
                warn(f"CUDA out of memory: retrying with stitching on the CPU and batch size {batch_size}")

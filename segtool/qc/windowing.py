"""Image intensities to RGB pixels: the 1st-99th percentile window, grey tiles and photos."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # pragma: no cover
    from segtool.io import Volume


def intensity_window(arr: np.ndarray) -> tuple[float, float]:
    """1st and 99th percentile of the finite values (on a sample for large arrays)."""
    arr = np.asarray(arr)
    if arr.size > 2_000_000:  # a strided sample, without copying the whole array
        step = max(1, int(round((arr.size / 1_000_000) ** (1 / arr.ndim))))
        arr = arr[(slice(None, None, step),) * arr.ndim]
    flat = arr.reshape(-1)
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(flat.astype(np.float64), [1, 99])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def grey_tile(plane: np.ndarray, size_hw: tuple[int, int], window: tuple[float, float]) -> np.ndarray:
    """``plane`` resized (bilinear) to ``size_hw`` and windowed to grey RGB uint8."""
    lo, hi = window
    plane = np.nan_to_num(plane.astype(np.float32), nan=lo, posinf=hi, neginf=lo)
    img = Image.fromarray(np.ascontiguousarray(plane))
    h, w = size_hw
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    out = (np.asarray(img, np.float32) - lo) / (hi - lo)
    grey = np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def photo_rgb(image: "Volume", hw: tuple[int, int], box: tuple[slice, slice] | None = None) -> np.ndarray:
    """A 2D image (its ``box`` part) as RGB uint8 of size ``hw``: a photo's colours, else its first
    channel windowed (over the whole image, so a crop is shown as it looks in the whole)."""
    full = np.asarray(image.array)
    arr = full if box is None else full[(slice(None), *box)]
    h, w = hw
    if arr.shape[0] >= 3 and image.kind == "photo":
        rgb = np.moveaxis(arr[:3], 0, -1)
        if rgb.dtype != np.uint8:
            finite = rgb[np.isfinite(rgb)] if np.issubdtype(rgb.dtype, np.floating) else rgb
            top = float(finite.max()) if finite.size else 1.0
            low = float(finite.min()) if finite.size else 0.0
            if low >= 0 and top <= 1.0:
                rgb = rgb.astype(np.float32) * 255.0
            elif low < 0 or top > 255:
                lo, hi = intensity_window(rgb)
                rgb = (rgb.astype(np.float32) - lo) / (hi - lo) * 255.0
            rgb = np.clip(np.round(np.nan_to_num(rgb.astype(np.float32))), 0, 255).astype(np.uint8)
        img = Image.fromarray(np.ascontiguousarray(rgb))
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        return np.asarray(img, np.uint8).copy()
    first = arr[0]
    if image.kind == "photo" and first.dtype == np.uint8:
        window = (0.0, 255.0)
    else:
        window = intensity_window(full[0])
    return grey_tile(first, hw, window)

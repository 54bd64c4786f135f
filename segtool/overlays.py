"""2D overlays written beside masks (``--overlay``): the image with its labels blended in and a legend."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def display_rgb(volume) -> np.ndarray:
    """A 2D image as (rows, cols, 3) uint8 for pictures: 8-bit photos kept, others scaled (1st-99th percentile)."""
    array = np.asarray(volume.array)
    if volume.kind != "photo":
        array = np.swapaxes(array, 1, 2)  # (C, x, y) -> (C, rows=y, cols=x), as 2D masks are written
    if volume.kind == "photo" and volume.meta.get("mode") in ("RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK",
                                                            "YCbCr") and array.size and 0 <= array.min() <= array.max() <= 255:
        array = np.asarray(array, np.float32).round().astype(np.uint8)  # an 8-bit photo: its own values
    if array.dtype != np.uint8:
        finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
        lo, hi = (np.percentile(finite, (1, 99)) if finite.size else (0.0, 1.0))
        array = np.clip((array.astype(np.float32) - lo) / max(float(hi - lo), 1e-6) * 255.0, 0, 255).astype(np.uint8)
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    return np.moveaxis(array[:3], 0, -1)


def write_overlay(volume, labels, colours, names, path: Path, overwrite: bool = False, protect=()) -> Path:
    """``path`` (PNG): the 2D image with its labels blended in their colours and a legend of those present."""
    from PIL import Image

    from segtool.io.atomic import atomic_write
    from segtool.qc.overlay import photo_overlay

    planes = np.asarray(labels)
    if volume.kind != "photo":
        planes = planes.T
    picture = photo_overlay(display_rgb(volume), planes, colours or {}, names)
    return atomic_write(path, volume, overwrite, lambda tmp: Image.fromarray(picture).save(str(tmp), format="PNG"),
                        protect)

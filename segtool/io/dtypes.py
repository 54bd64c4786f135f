"""Storage types for label maps: the smallest integer type a format allows that holds the labels."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def smallest_label_dtype(data: np.ndarray, allowed: Sequence[type]) -> np.dtype:
    """The first of ``allowed`` integer types that holds every value of ``data``."""
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    for dtype in allowed:
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    raise ValueError(f"label values {lo}..{hi} do not fit any of {[np.dtype(t).name for t in allowed]}")


NIFTI_LABEL_TYPES = (np.uint8, np.uint16, np.int16, np.int32)
ANALYZE_LABEL_TYPES = (np.uint8, np.int16, np.int32)
PHOTO_LABEL_TYPES = (np.uint8, np.uint16)

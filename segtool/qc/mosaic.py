"""Tiles laid out side by side or one above the other, separated by GAP pixels of GAP_COLOUR."""

from __future__ import annotations

import numpy as np

#: Pixels between mosaic tiles (and between prediction and ground truth rows).
GAP = 4
#: Colour of the gaps.
GAP_COLOUR = (32, 32, 32)


def hstack(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles of equal height, left to right."""
    return _with_gaps(tiles, (tiles[0].shape[0], GAP, 3), axis=1)


def vstack(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of equal width, top to bottom."""
    return _with_gaps(rows, (GAP, max(r.shape[1] for r in rows), 3), axis=0)


def _with_gaps(parts: list[np.ndarray], gap_shape: tuple[int, int, int], axis: int) -> np.ndarray:
    gap = np.empty(gap_shape, np.uint8)
    gap[:] = GAP_COLOUR
    joined: list[np.ndarray] = []
    for i, part in enumerate(parts):
        if i:
            joined.append(gap)
        joined.append(part)
    return np.concatenate(joined, axis=axis)

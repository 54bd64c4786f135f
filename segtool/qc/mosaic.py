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


#: Height in pixels of the title band drawn above a titled part (comparisons: "prediction", "reference").
TITLE_HEIGHT = 20
#: Colour of the title text (on GAP_COLOUR).
TITLE_COLOUR = (255, 255, 255)


def titled(part: np.ndarray, text: str) -> np.ndarray:
    """``part`` with a TITLE_HEIGHT band of GAP_COLOUR above it, ``text`` written in it."""
    from PIL import Image, ImageDraw, ImageFont

    band = Image.new("RGB", (part.shape[1], TITLE_HEIGHT), GAP_COLOUR)
    try:
        font = ImageFont.load_default(size=TITLE_HEIGHT - 6)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        font = ImageFont.load_default()
    ImageDraw.Draw(band).text((4, 2), text, fill=TITLE_COLOUR, font=font)
    return np.concatenate([np.asarray(band, np.uint8), part], axis=0)

"""Labels drawn over RGB tiles: resampling a label plane, translucent fill and exact-colour outline."""

from __future__ import annotations

import numpy as np
from PIL import Image

from segtool.qc.colours import label_colour

#: Opacity of the label fill (the outline is opaque).
FILL_ALPHA = 0.35


def resize_labels(plane: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour when growing; largest coverage (>= 25 %) when shrinking."""
    rows, cols = plane.shape
    h, w = size_hw
    if h >= rows and w >= cols:
        ri = np.minimum(((np.arange(h) + 0.5) * rows / h).astype(np.int64), rows - 1)
        ci = np.minimum(((np.arange(w) + 0.5) * cols / w).astype(np.int64), cols - 1)
        return plane[np.ix_(ri, ci)]
    out = np.zeros((h, w), np.int64)
    best = np.full((h, w), 0.25, np.float32)
    for value in np.unique(plane[plane > 0]).tolist():
        mask = Image.fromarray((plane == value).astype(np.float32))
        cover = np.asarray(mask.resize((w, h), Image.BOX), np.float32)
        take = cover >= best
        out[take] = value
        best = np.where(take, cover + 1e-6, best)
    return out


def _outline(labels: np.ndarray, thickness: int) -> np.ndarray:
    """Pixels of each label within ``thickness`` of a pixel of another value (image border included)."""
    inside = labels > 0
    interior = inside.copy()
    padded = np.pad(labels, 1, constant_values=-1)
    same = np.ones_like(inside)
    for dr, dc in ((0, 1), (2, 1), (1, 0), (1, 2)):
        same &= padded[dr : dr + labels.shape[0], dc : dc + labels.shape[1]] == labels
    interior &= same
    for _ in range(thickness - 1):
        p = np.pad(interior, 1, constant_values=False)
        interior = (
            interior
            & p[0:-2, 1:-1]
            & p[2:, 1:-1]
            & p[1:-1, 0:-2]
            & p[1:-1, 2:]
        )
    return inside & ~interior


def overlay_labels(rgb: np.ndarray, labels: np.ndarray, colours=None) -> np.ndarray:
    """Fill labels with FILL_ALPHA and outline them in their exact colour (``colours``: the task's, value -> RGB)."""
    own = colours
    out = rgb.astype(np.float32)
    inside = labels > 0
    if not inside.any():
        return rgb
    colours = np.zeros(labels.shape + (3,), np.float32)
    for value in np.unique(labels[inside]).tolist():
        colours[labels == value] = (own or {}).get(value) or label_colour(value)
    out[inside] = (1.0 - FILL_ALPHA) * out[inside] + FILL_ALPHA * colours[inside]
    thickness = max(1, int(round(min(labels.shape) / 160)))
    edge = _outline(labels, thickness)
    out[edge] = colours[edge]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def photo_overlay(
    rgb: np.ndarray,
    labels: np.ndarray,
    colours: "dict[int, tuple[int, int, int]]",
    names: "dict[int, str]",
    alpha: float = 0.5,
) -> np.ndarray:
    """The photo (H, W, 3 uint8) with each label blended in its colour, and a legend of the labels present.

    Background (0) is left as it is. The legend is a white panel on the right of the
    photo (the photo's pixels are not covered): one swatch and name per label present,
    in value order. Returns (H, W + legend width, 3) uint8.
    """
    from PIL import ImageDraw, ImageFont

    out = rgb.astype(np.float32)
    present = [int(v) for v in np.unique(labels) if int(v) > 0]
    for value in present:
        mask = labels == value
        colour = np.asarray(colours.get(value, label_colour(value)), np.float32)
        out[mask] = (1.0 - alpha) * out[mask] + alpha * colour
    photo = Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))
    rows = photo.height
    font = ImageFont.load_default()
    line = max(12, min(24, rows // max(1, len(present) + 1)))
    swatch = line - 4
    texts = [f"{v} {names.get(v, f'label {v}')}" for v in present] or ["no labels"]
    probe = ImageDraw.Draw(photo)
    text_width = max(int(probe.textlength(t, font=font)) for t in texts)
    panel = Image.new("RGB", (photo.width + swatch + text_width + 16, max(rows, line * len(texts) + 8)), "white")
    panel.paste(photo, (0, 0))
    draw = ImageDraw.Draw(panel)
    x = photo.width + 4
    for i, (value, text) in enumerate(zip(present or [0], texts)):
        y = 4 + i * line
        if present:
            draw.rectangle([x, y, x + swatch, y + swatch], fill=tuple(colours.get(value, label_colour(value))),
                           outline="black")
        draw.text((x + swatch + 6, y + max(0, (swatch - 11) // 2)), text, fill="black", font=font)
    return np.asarray(panel)

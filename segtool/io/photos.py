"""2D photos through Pillow: reading as (C, rows, cols) and writing lossless PNG/TIFF masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segtool.errors import ImageReadError, SegtoolError
from segtool.io.dtypes import PHOTO_LABEL_TYPES, smallest_label_dtype
from segtool.io.formats import split_suffix
from segtool.io.messages import read_error
from segtool.io.volume import Volume


def read_photo(p: Path, labels: bool) -> Volume:
    """A 2D photo via Pillow as (C, rows, cols) with the identity affine.

    RGB -> 3 channels; grey, 16-bit and float -> 1; alpha is dropped; palette images
    become grey if their palette is grey, else RGB (for label maps, palette indices
    are kept).  EXIF orientation is applied so the mask lines up with the photo as
    viewers display it.  ``meta`` records the original ``mode`` and ``format``.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(p) as im:
            fmt, mode = im.format, im.mode
            if getattr(im, "n_frames", 1) > 1:
                raise ImageReadError(f"{p}: multi-page images are not supported ({im.n_frames} pages)")
            im.load()
            im = ImageOps.exif_transpose(im)
            data = _label_pixels(p, im) if labels else _photo_pixels(im)
    except SegtoolError:
        raise
    except Exception as exc:
        raise read_error(p, "cannot read image, corrupt or truncated?", exc) from exc
    array = data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)
    meta = {"input_paths": [p], "mode": mode, "format": fmt}
    return Volume(array, np.eye(4), p, "photo", None, meta)


def photo_channel_count(p: Path) -> int | None:
    """Channels :func:`read_photo` would give for ``p``, from the header only; None if Pillow cannot open it."""
    from PIL import Image

    try:
        with Image.open(p) as im:
            if im.mode in ("P", "PA"):  # grey or colour depends on the palette
                im.load()
                data = _photo_pixels(im)
                return 1 if data.ndim == 2 else data.shape[-1]
            bands = len(im.getbands())
    except Exception:
        return None
    if im.mode in ("1", "L", "LA", "La", "I", "F") or im.mode.startswith("I;"):
        return 1
    return 3 if bands >= 3 else bands


def _photo_pixels(im) -> np.ndarray:
    """Pixels of a Pillow image as (H, W) or (H, W, 3)."""
    mode = im.mode
    if mode in ("P", "PA"):
        rgb = np.asarray(im.convert("RGB"))
        return rgb[..., 0] if _is_grey(rgb) else rgb
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode in ("LA", "La"):
        return np.asarray(im)[..., 0]
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(im)[..., :3]
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(im.convert("RGB"))
    return np.asarray(im)  # L, RGB, I, I;16*, F


def _label_pixels(p: Path, im) -> np.ndarray:
    """Pixels of a label image: palette indices, grey values, or equal RGB channels."""
    if im.mode == "1":
        return np.asarray(im).astype(np.uint8)
    if im.mode in ("P", "PA", "LA", "La"):
        data = np.asarray(im)
        return data[..., 0] if data.ndim == 3 else data
    data = _photo_pixels(im)
    if data.ndim == 3:
        if not _is_grey(data):
            raise ImageReadError(f"{p}: colour image is not a label map (use grey or palette values)")
        data = data[..., 0]
    return data


def _is_grey(rgb: np.ndarray) -> bool:
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def write_photo_labels(data: np.ndarray, reference: Volume, path: Path, palette=None) -> None:
    """PNG/TIFF mask: mode L (8-bit) when labels fit, else I;16.

    With ``palette`` (label value -> RGB) and labels that fit in 8 bits, an indexed
    (mode P) image whose pixel values are still the label values: viewers show the
    task's colours, readers get the values (values without a colour are black).
    """
    from PIL import Image

    dtype = smallest_label_dtype(data, PHOTO_LABEL_TYPES)
    if reference.kind != "photo":
        data = data.T  # (x, y) -> (rows=y, cols=x), as ITK writes 2D images
    img = Image.fromarray(np.ascontiguousarray(data.astype(dtype)))
    if palette and dtype == np.uint8:
        img.putpalette(palette_bytes(palette))
    fmt = "PNG" if split_suffix(path.name)[1].lower() == ".png" else "TIFF"
    # PNG at zlib level 1: 3x faster than the default 6 on label maps (lossless either way; files ~1.9x larger)
    img.save(str(path), format=fmt, **({"compression": "tiff_deflate"} if fmt == "TIFF" else {"compress_level": 1}))


def palette_bytes(colours) -> list[int]:
    """A 256-entry RGB palette (flat list) from label value -> (r, g, b); unlisted values are black."""
    flat = [0] * (256 * 3)
    for value, rgb in dict(colours).items():
        if 0 <= int(value) < 256:
            flat[3 * int(value) : 3 * int(value) + 3] = [int(c) for c in rgb]
    return flat

"""Headless quality-control pictures and an HTML report that many runs append to.

Pillow + numpy (+ nibabel's orientation helpers) only: no torch, no matplotlib, no
display, no network, no JavaScript.

API FOR COMMANDS (``run``, ``evaluate``, ``qc``)
------------------------------------------------
``qc_case(qc_dir, image, labels, label_names, row, *, case_id=None, **render_options) -> list[Path]``
    Render one segmented case and append it to ``qc_dir/index.html``. ``image`` is the
    input :class:`~segtool.io.Volume`; ``labels`` the integer segmentation, an array of
    shape ``spatial`` or ``(1, *spatial)`` (or a Volume) on the image's grid;
    ``label_names`` maps label value -> name (``TaskSpec.labels``); ``row`` holds the
    report fields below. Volumes per label are computed when ``row`` has none.

``qc_comparison(qc_dir, image, pred, gt, label_names, row, *, case_id=None, **render_options) -> list[Path]``
    The same for ``segtool evaluate``: prediction and ground truth on the same slices
    (3D: prediction above, ground truth below; 2D: side by side). ``image`` may be
    None when ``pred`` is a Volume (its affine is used, on a black background).

``record_failure(qc_dir, row) -> None``
    Append a row without pictures (e.g. ``{"input": ..., "status": "failed", "error": msg}``).

Row fields (all optional, any JSON-able values): ``task``, ``input``, ``output``,
``model``, ``seconds`` (run time), ``volumes`` ({name: mm³} or {label value: mm³}),
``volume_unit`` (default "mm³"; "px" for photos), ``status`` (default "ok"),
``error``. Any other key (e.g. ``dice``: {name: value}) is shown under "details".

Lower level: ``render_case`` / ``render_comparison`` write PNGs and return their paths;
``QcReport(dir).add_case(row, images)`` appends; ``label_volumes`` computes volumes.

PICTURES
--------
3D: one PNG per view, ``<case_id>_axial.png``, ``_sagittal.png``, ``_coronal.png``.
The display is reoriented to the closest RAS axes of the affine, then shown upright
in radiological convention (axial and coronal: patient's right on the image's left,
anterior/superior at the top; sagittal: anterior on the left, superior at the top).
Each PNG is a mosaic of up to ``n_slices`` tiles (one per distinct slice, left to
right in increasing R/A/S coordinate), separated by ``GAP`` pixels. The slices sit
at evenly spaced quantiles of the mask voxels along the view's axis (so every tile
shows mask), or at the centre when the mask is empty. Pixels are square in mm and
each tile's longer side measures ``size`` pixels (default 256), so views may differ
in scale. Intensities (first channel) are windowed to the
1st-99th percentile. Labels are resampled with nearest neighbour (when shrinking,
by largest coverage >= 25 % so thin structures survive), filled with
``FILL_ALPHA`` opacity and outlined (inside the mask) in the exact label colour.

2D: one PNG, ``<case_id>_photo.png``: the photo (RGB when it has >= 3 channels, else
the first channel windowed) scaled so its longer side measures ``photo_size`` pixels
(default 512), with the same overlay.

Label colours: ``LABEL_COLOURS[(value - 1) % 20]`` (see :func:`label_colour`).

REPORT
------
``DIR/index.html`` is regenerated from ``DIR/records/*.json`` (one file per case,
written atomically) under an exclusive ``fcntl.flock`` on ``DIR/.lock`` and renamed
into place, so concurrent processes never lose rows. Pictures live under
``DIR/images/`` and are referenced by relative paths; the page is static HTML with
inline CSS and everything HTML-escaped.
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence
from urllib.parse import quote

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # pragma: no cover
    from segtool.io import Volume

#: Label value -> RGB, for values 1..20; larger values cycle (value 21 gets label 1's colour).
#: Chosen for mutual distinctness (after Sasha Trubetskoy's "20 simple distinct colours",
#: without its greys so that no label colour can be mistaken for image intensity).
LABEL_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),  # 1 red
    (60, 180, 75),  # 2 green
    (255, 225, 25),  # 3 yellow
    (0, 130, 200),  # 4 blue
    (245, 130, 48),  # 5 orange
    (145, 30, 180),  # 6 purple
    (70, 240, 240),  # 7 cyan
    (240, 50, 230),  # 8 magenta
    (210, 245, 60),  # 9 lime
    (250, 190, 212),  # 10 pink
    (0, 128, 128),  # 11 teal
    (220, 190, 255),  # 12 lavender
    (170, 110, 40),  # 13 brown
    (255, 250, 200),  # 14 beige
    (128, 0, 0),  # 15 maroon
    (170, 255, 195),  # 16 mint
    (128, 128, 0),  # 17 olive
    (255, 215, 180),  # 18 apricot
    (0, 0, 128),  # 19 navy
    (0, 191, 255),  # 20 sky blue
)

#: Opacity of the label fill (the outline is opaque).
FILL_ALPHA = 0.35
#: Pixels between mosaic tiles (and between prediction and ground truth rows).
GAP = 4
#: Colour of the gaps.
GAP_COLOUR = (32, 32, 32)
#: 3D views in the order they are rendered: name -> axis of the RAS array they slice.
VIEWS = {"axial": 2, "sagittal": 0, "coronal": 1}

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def label_colour(value: int) -> tuple[int, int, int]:
    """The RGB colour of label ``value`` (>= 1); colours cycle after 20 labels."""
    return LABEL_COLOURS[(int(value) - 1) % len(LABEL_COLOURS)]


def label_name(value: int, label_names: Mapping[int, str] | None) -> str:
    names = {int(k): str(v) for k, v in dict(label_names or {}).items()}
    return names.get(int(value), f"label {int(value)}")


def label_volumes(
    labels: np.ndarray, spacing: Sequence[float], label_names: Mapping[int, str] | None = None
) -> dict[str, float]:
    """Volume (product of spacings, e.g. mm³) of every label in ``label_names`` and any other value found."""
    arr = _label_array(labels)
    values, counts = np.unique(arr[arr > 0], return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist()))
    unit = float(np.prod([float(s) for s in spacing])) if len(spacing) else 1.0
    out: dict[str, float] = {}
    for value in sorted(set(int(k) for k in dict(label_names or {})) | set(found)):
        out[label_name(value, label_names)] = round(found.get(value, 0) * unit, 3)
    return out


# --------------------------------------------------------------------------- arrays


def _label_array(labels: Any) -> np.ndarray:
    arr = np.asarray(getattr(labels, "array", labels))
    return arr


def _labels_on(image_spatial: tuple[int, ...], labels: Any, what: str = "segmentation") -> np.ndarray:
    from segtool.errors import GeometryError

    arr = _label_array(labels)
    if arr.ndim == len(image_spatial) + 1 and arr.shape[0] == 1:
        arr = arr[0]
    if tuple(arr.shape) != tuple(image_spatial):
        raise GeometryError(f"{what} has shape {tuple(arr.shape)}, the image {tuple(image_spatial)}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise GeometryError(f"{what} holds non-integer values")
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise GeometryError(f"{what} holds negative values")
    return arr.astype(np.int64, copy=False)


def _spacing(affine: np.ndarray, ndim: int) -> np.ndarray:
    zooms = np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))[:ndim]
    return np.where(np.isfinite(zooms) & (zooms > 0), zooms, 1.0)


def _to_ras(arrays: list[np.ndarray], affine: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Reorient 3D arrays to the closest RAS+ axes of ``affine``; returns them and their spacing."""
    from nibabel.orientations import apply_orientation, io_orientation

    spacing = _spacing(affine, 3)
    try:
        ornt = io_orientation(np.asarray(affine, float))
    except Exception:  # noqa: BLE001 - a degenerate affine: show the voxel order as is
        ornt = np.array([[0, 1], [1, 1], [2, 1]], float)
    if np.isnan(ornt).any():
        ornt = np.array([[0, 1], [1, 1], [2, 1]], float)
    new_spacing = np.empty(3)
    for axis in range(3):
        new_spacing[int(ornt[axis, 0])] = spacing[axis]
    return [apply_orientation(a, ornt) for a in arrays], new_spacing


def _window(arr: np.ndarray) -> tuple[float, float]:
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


def _grey_tile(plane: np.ndarray, size_hw: tuple[int, int], window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    plane = np.nan_to_num(plane.astype(np.float32), nan=lo, posinf=hi, neginf=lo)
    img = Image.fromarray(np.ascontiguousarray(plane))
    h, w = size_hw
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    out = (np.asarray(img, np.float32) - lo) / (hi - lo)
    grey = np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _resize_labels(plane: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
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


def _overlay(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Fill labels with FILL_ALPHA and outline them in their exact colour."""
    out = rgb.astype(np.float32)
    inside = labels > 0
    if not inside.any():
        return rgb
    colours = np.zeros(labels.shape + (3,), np.float32)
    for value in np.unique(labels[inside]).tolist():
        colours[labels == value] = label_colour(value)
    out[inside] = (1.0 - FILL_ALPHA) * out[inside] + FILL_ALPHA * colours[inside]
    thickness = max(1, int(round(min(labels.shape) / 160)))
    edge = _outline(labels, thickness)
    out[edge] = colours[edge]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _hstack(tiles: list[np.ndarray]) -> np.ndarray:
    h = tiles[0].shape[0]
    gap = np.empty((h, GAP, 3), np.uint8)
    gap[:] = GAP_COLOUR
    parts: list[np.ndarray] = []
    for i, tile in enumerate(tiles):
        if i:
            parts.append(gap)
        parts.append(tile)
    return np.concatenate(parts, axis=1)


def _vstack(rows: list[np.ndarray]) -> np.ndarray:
    w = max(r.shape[1] for r in rows)
    gap = np.empty((GAP, w, 3), np.uint8)
    gap[:] = GAP_COLOUR
    parts: list[np.ndarray] = []
    for i, row in enumerate(rows):
        if i:
            parts.append(gap)
        parts.append(row)
    return np.concatenate(parts, axis=0)


def _pick_slices(masks: list[np.ndarray], axis: int, n: int) -> list[int]:
    """Slices at evenly spaced quantiles of the mask voxels along ``axis``, else the centre."""
    shape = masks[0].shape
    other = tuple(a for a in range(masks[0].ndim) if a != axis)
    counts = sum(m.sum(axis=other, dtype=np.int64) for m in masks)
    total = int(counts.sum())
    if total == 0:
        return [shape[axis] // 2]
    cum = np.cumsum(counts)
    positions = [int(np.searchsorted(cum, (i + 0.5) / n * total, side="right")) for i in range(n)]
    return sorted(set(min(p, shape[axis] - 1) for p in positions))


def _safe_id(text: str) -> str:
    return _SAFE.sub("_", text).strip("._") or "case"


# --------------------------------------------------------------------------- rendering


def _prepare_3d(image: "Volume", label_sets: list[np.ndarray]):
    grey = np.asarray(image.array[0])
    arrays, spacing = _to_ras([grey, *label_sets], image.affine)
    return arrays[0], arrays[1:], spacing


def _plane(arr: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` of a RAS array along ``axis``, upright in radiological convention."""
    where: list[Any] = [slice(None)] * 3
    where[axis] = index
    return arr[tuple(where)].T[::-1, ::-1]  # basic indexing: a view, no copy


def _tile_hw(shape: tuple[int, ...], spacing: np.ndarray, axis: int, size: int) -> tuple[int, int]:
    """Tile (rows, cols) for slices along ``axis``: square pixels in mm, longer side ``size``."""
    # after .T the rows run along the last remaining axis, the columns along the first
    col_axis, row_axis = [a for a in range(3) if a != axis]
    rows_mm = shape[row_axis] * spacing[row_axis]
    cols_mm = shape[col_axis] * spacing[col_axis]
    mm_per_px = max(rows_mm, cols_mm) / float(size)
    return max(1, int(round(rows_mm / mm_per_px))), max(1, int(round(cols_mm / mm_per_px)))


def _render_3d(image: "Volume", label_sets: list[np.ndarray], n_slices: int, size: int) -> dict[str, np.ndarray]:
    grey, ras_labels, spacing = _prepare_3d(image, label_sets)
    window = _window(np.asarray(image.array[0]))
    views: dict[str, np.ndarray] = {}
    for view, axis in VIEWS.items():
        slices = _pick_slices([lab > 0 for lab in ras_labels], axis, n_slices)
        hw = _tile_hw(grey.shape, spacing, axis, size)
        rows = []
        for lab in ras_labels:
            tiles = []
            for k in slices:
                base = _grey_tile(_plane(grey, axis, k), hw, window)
                tiles.append(_overlay(base, _resize_labels(_plane(lab, axis, k), hw)))
            rows.append(_hstack(tiles))
        views[view] = rows[0] if len(rows) == 1 else _vstack(rows)
    return views


def _photo_rgb(image: "Volume", hw: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(image.array)
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
                lo, hi = _window(rgb)
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
        window = _window(first)
    return _grey_tile(first, hw, window)


def _render_2d(image: "Volume", label_sets: list[np.ndarray], size: int) -> np.ndarray:
    rows, cols = image.spatial_shape
    sr, sc = _spacing(image.affine, 2)
    mm_per_px = max(rows * sr, cols * sc) / float(size)
    hw = (max(1, int(round(rows * sr / mm_per_px))), max(1, int(round(cols * sc / mm_per_px))))
    base = _photo_rgb(image, hw)
    panels = [_overlay(base, _resize_labels(lab, hw)) for lab in label_sets]
    return panels[0] if len(panels) == 1 else _hstack(panels)


def _save(pixels: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    Image.fromarray(np.ascontiguousarray(pixels)).save(tmp, format="PNG", optimize=False)
    os.replace(tmp, path)
    return path


def _render(
    image: "Volume",
    label_sets: list[Any],
    out_dir: str | os.PathLike,
    case_id: str,
    n_slices: int,
    size: int,
    photo_size: int,
) -> list[Path]:
    from segtool.errors import GeometryError

    spatial = tuple(image.spatial_shape)
    names = ("prediction", "ground truth") if len(label_sets) == 2 else ("segmentation",)
    arrays = [_labels_on(spatial, lab, what) for lab, what in zip(label_sets, names)]
    out = Path(out_dir)
    stem = _safe_id(case_id)
    if image.ndim == 3:
        views = _render_3d(image, arrays, max(1, int(n_slices)), int(size))
        return [_save(pixels, out / f"{stem}_{view}.png") for view, pixels in views.items()]
    if image.ndim == 2:
        return [_save(_render_2d(image, arrays, int(photo_size)), out / f"{stem}_photo.png")]
    raise GeometryError(f"QC pictures need a 2D or 3D image, got {image.ndim}D")


def render_case(
    image: "Volume",
    labels: Any,
    label_names: Mapping[int, str] | None,
    out_dir: str | os.PathLike,
    case_id: str,
    *,
    n_slices: int = 5,
    size: int = 256,
    photo_size: int = 512,
) -> list[Path]:
    """Write the QC PNGs of one case to ``out_dir`` and return their paths (see the module doc).

    ``labels``: integer array ``spatial`` or ``(1, *spatial)`` on the image's grid (or a Volume).
    ``label_names`` is accepted for symmetry with the report; colours depend only on values.
    """
    return _render(image, [labels], out_dir, case_id, n_slices, size, photo_size)


def render_comparison(
    image: "Volume | None",
    pred: Any,
    gt: Any,
    label_names: Mapping[int, str] | None,
    out_dir: str | os.PathLike,
    case_id: str,
    *,
    n_slices: int = 5,
    size: int = 256,
    photo_size: int = 512,
) -> list[Path]:
    """Prediction and ground truth on the same slices: 3D, prediction row above the
    ground-truth row in each view's PNG; 2D, prediction left, ground truth right.

    ``image`` None: ``pred`` must be a Volume; its grid is drawn on black.
    """
    if image is None:
        image = _blank_like(pred)
    return _render(image, [pred, gt], out_dir, case_id, n_slices, size, photo_size)


def _blank_like(labels: Any) -> "Volume":
    from segtool.errors import GeometryError
    from segtool.io import Volume

    if not hasattr(labels, "affine"):
        raise GeometryError("QC without an image needs the prediction as a Volume (for its grid)")
    spatial = np.asarray(labels.array).shape[1:]  # a Volume is channels-first
    kind = getattr(labels, "kind", "nifti")
    return Volume(array=np.zeros((1, *spatial), np.float32), affine=np.asarray(labels.affine), kind=kind)


# --------------------------------------------------------------------------- report


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: rename is still atomic; a lost race only delays a row
        yield
        return
    with open(path, "a+", encoding="utf-8") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


_KNOWN = ("task", "input", "output", "model", "seconds", "volumes", "volume_unit", "status", "error", "label_names")


class QcReport:
    """``DIR/index.html`` built from one JSON record per case (see the module doc)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory)
        self.records = self.dir / "records"
        self.images = self.dir / "images"
        self.index = self.dir / "index.html"
        self.records.mkdir(parents=True, exist_ok=True)
        self.images.mkdir(parents=True, exist_ok=True)

    def add_case(
        self, row: Mapping[str, Any], images: Sequence[str | os.PathLike] = (), *, case_id: str | None = None
    ) -> Path:
        """Append one case: write its record atomically, then rebuild index.html. Returns the record's path."""
        now = time.time()
        case_id = _safe_id(case_id or f"case-{uuid.uuid4().hex[:10]}")
        pictures = []
        for image in images:
            path = Path(image)
            try:
                rel = Path(os.path.relpath(path.resolve(), self.dir.resolve())).as_posix()
            except ValueError:  # another drive
                rel = path.resolve().as_uri()
            pictures.append({"src": rel, "caption": _caption(path)})
        record = {
            "version": 1,
            "case_id": case_id,
            "created": now,
            "row": _jsonable(dict(row)),
            "images": pictures,
        }
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}.json"
        path = self.records / name
        _write_atomic(path, json.dumps(record, indent=1, sort_keys=True))
        self.rebuild()
        return path

    def read_records(self) -> list[dict]:
        out = []
        for path in sorted(self.records.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # unreadable records are skipped, never fatal
            if isinstance(record, dict) and isinstance(record.get("row"), dict):
                out.append(record)
        out.sort(key=lambda r: (float(r.get("created") or 0), str(r.get("case_id"))))
        return out

    def rebuild(self) -> Path:
        """Regenerate index.html from every record, under the report's lock."""
        with _locked(self.dir / ".lock"):
            _write_atomic(self.index, render_html(self.read_records()))
        return self.index


def _caption(path: Path) -> str:
    stem = path.stem
    tail = stem.rsplit("_", 1)[-1] if "_" in stem else stem
    return tail if tail in (*VIEWS, "photo") else stem


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt_number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"


def _fmt_value(value: Any) -> str:
    """HTML for a details value: nested mappings become 'key: value' lines."""
    if isinstance(value, Mapping):
        return "<br>".join(f"{_e(k)}: {_fmt_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return _e(", ".join(_fmt_number(v) for v in value))
    return _e(_fmt_number(value))


def _volumes_html(row: Mapping[str, Any]) -> str:
    volumes = row.get("volumes")
    if not isinstance(volumes, Mapping) or not volumes:
        return ""
    unit = str(row.get("volume_unit") or "mm³")
    names = {str(k): str(v) for k, v in dict(row.get("label_names") or {}).items()}
    by_name = {v: k for k, v in names.items()}
    lines = []
    for key, amount in volumes.items():
        key = str(key)
        generic = re.fullmatch(r"label (\d+)", key)
        if key in names:
            value, name = key, names[key]
        elif key in by_name:
            value, name = by_name[key], key
        elif key.isdigit():
            value, name = key, f"label {key}"
        elif generic:
            value, name = generic.group(1), key
        else:
            value, name = None, key
        swatch = ""
        if value is not None and value.isdigit() and int(value) > 0:
            r, g, b = label_colour(int(value))
            swatch = f'<span class="sw" style="background:rgb({r},{g},{b})"></span>'
        lines.append(f"{swatch}{_e(name)}: {_e(_fmt_number(amount))}&nbsp;{_e(unit)}")
    return "<br>".join(lines)


def render_html(records: Sequence[Mapping[str, Any]]) -> str:
    """The whole report page for ``records`` (as written by QcReport.add_case)."""
    generated = datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>segtool QC report</title>",
        "<style>",
        "body{font-family:system-ui,sans-serif;margin:1em;background:#fafafa;color:#222}",
        "table{border-collapse:collapse;width:100%}",
        "th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top;font-size:13px}",
        "th{background:#eee;position:sticky;top:0}",
        "tr.case td{background:#fff}",
        "tr.pictures td{background:#1e1e1e;border-bottom:3px solid #888}",
        "figure{display:inline-block;margin:4px;color:#ddd;font-size:12px}",
        "figure img{display:block;max-width:100%;height:auto;image-rendering:pixelated}",
        ".st-ok{color:#1a7f37;font-weight:bold}.st-failed,.st-error{color:#c00;font-weight:bold}",
        ".sw{display:inline-block;width:.9em;height:.9em;margin-right:4px;vertical-align:middle;border:1px solid #555}",
        ".path{font-family:ui-monospace,monospace;word-break:break-all}",
        ".note{color:#666;font-size:12px}",
        "</style></head><body>",
        "<h1>segtool QC report</h1>",
        f'<p class="note">{len(records)} case(s); page regenerated {_e(generated)}. '
        "3D views are radiological: the patient's right is on the image's left (axial, coronal), "
        "anterior on the left (sagittal), superior at the top. "
        "Evaluations show the prediction above (3D) or left of (2D) the ground truth.</p>",
        '<table id="cases"><thead><tr><th>#</th><th>task</th><th>input</th><th>output</th><th>model</th>'
        "<th>when</th><th>seconds</th><th>volumes</th><th>status</th><th>details</th></tr></thead><tbody>",
    ]
    for number, record in enumerate(records, 1):
        row = record.get("row") or {}
        case_id = str(record.get("case_id") or number)
        when = datetime.fromtimestamp(float(record.get("created") or 0)).strftime("%Y-%m-%d %H:%M:%S")
        status = str(row.get("status") or "ok")
        details = {k: v for k, v in row.items() if k not in _KNOWN}
        if row.get("error"):
            details = {"error": row["error"], **details}
        seconds = row.get("seconds")
        numeric = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
        seconds_text = f"{seconds:.2f}" if numeric else _e(seconds)
        parts.append(
            f'<tr class="case" id="case-{_e(case_id)}" data-case="{_e(case_id)}">'
            f"<td>{number}</td><td>{_e(row.get('task'))}</td>"
            f'<td class="path">{_e(row.get("input"))}</td><td class="path">{_e(row.get("output"))}</td>'
            f"<td>{_e(row.get('model'))}</td><td>{_e(when)}</td><td>{seconds_text}</td>"
            f"<td>{_volumes_html(row)}</td>"
            f'<td class="st-{_e(_safe_id(status.lower()))}">{_e(status)}</td>'
            f"<td>{_fmt_value(details) if details else ''}</td></tr>"
        )
        images = record.get("images") or []
        if images:
            figures = []
            for picture in images:
                src = str(picture.get("src", ""))
                url = src if src.startswith("file:") else quote(src)
                caption = str(picture.get("caption", ""))
                figures.append(
                    f'<figure><img src="{_e(url)}" alt="{_e(caption)} of {_e(row.get("input"))}">'
                    f"<figcaption>{_e(caption)}</figcaption></figure>"
                )
            parts.append(
                f'<tr class="pictures" data-case="{_e(case_id)}"><td colspan="10">{"".join(figures)}</td></tr>'
            )
    parts.append("</tbody></table></body></html>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- one call per case


_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".img", ".hdr", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def _new_case_id(row: Mapping[str, Any]) -> str:
    source = Path(str(row.get("input") or "case")).name
    for suffix in _SUFFIXES:
        if source.lower().endswith(suffix):
            source = source[: -len(suffix)]
            break
    return f"{_safe_id(source)[:60]}-{uuid.uuid4().hex[:8]}"


def _complete_row(
    row: Mapping[str, Any], image: "Volume", labels: Any, label_names: Mapping[int, str] | None
) -> dict:
    out = dict(row)
    out.setdefault("status", "ok")
    names = {int(k): str(v) for k, v in dict(label_names or {}).items()}
    out.setdefault("label_names", names)
    photo = image.kind == "photo"
    out.setdefault("volume_unit", "px" if photo else ("mm²" if image.ndim == 2 else "mm³"))
    if "volumes" not in out:
        arr = _labels_on(tuple(image.spatial_shape), labels)
        spacing = (1.0, 1.0) if photo else tuple(_spacing(image.affine, image.ndim))
        out["volumes"] = label_volumes(arr, spacing, names)
    return out


def qc_case(
    qc_dir: str | os.PathLike,
    image: "Volume",
    labels: Any,
    label_names: Mapping[int, str] | None,
    row: Mapping[str, Any],
    *,
    case_id: str | None = None,
    **render_options: Any,
) -> list[Path]:
    """Render one case into ``qc_dir/images`` and append its row to ``qc_dir/index.html``.

    ``render_options``: ``n_slices``, ``size``, ``photo_size`` of :func:`render_case`.
    """
    report = QcReport(qc_dir)
    case_id = _safe_id(case_id) if case_id else _new_case_id(row)
    images = render_case(image, labels, label_names, report.images, case_id, **render_options)
    report.add_case(_complete_row(row, image, labels, label_names), images, case_id=case_id)
    return images


def qc_comparison(
    qc_dir: str | os.PathLike,
    image: "Volume | None",
    pred: Any,
    gt: Any,
    label_names: Mapping[int, str] | None,
    row: Mapping[str, Any],
    *,
    case_id: str | None = None,
    **render_options: Any,
) -> list[Path]:
    """Render prediction vs ground truth into ``qc_dir/images`` and append the row."""
    report = QcReport(qc_dir)
    case_id = _safe_id(case_id) if case_id else _new_case_id(row)
    if image is None:
        image = _blank_like(pred)
    images = render_comparison(image, pred, gt, label_names, report.images, case_id, **render_options)
    full = _complete_row(row, image, pred, label_names)
    if "ground truth volumes" not in full:
        gt_row = _complete_row({}, image, gt, label_names)
        full["ground truth volumes"] = {k: f"{v:g} {gt_row['volume_unit']}" for k, v in gt_row["volumes"].items()}
    report.add_case(full, images, case_id=case_id)
    return images


def record_failure(qc_dir: str | os.PathLike, row: Mapping[str, Any], *, case_id: str | None = None) -> None:
    """Append a row without pictures, e.g. for a case that failed (status defaults to 'failed')."""
    out = dict(row)
    out.setdefault("status", "failed")
    QcReport(qc_dir).add_case(out, [], case_id=case_id or _new_case_id(row))

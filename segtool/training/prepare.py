"""Read, check and preprocess training cases with the same code as `segtool run`.

Each training case is read (``segtool.io``), its labels renumbered by the labels
map and checked, then brought onto the model grid by `segtool.preprocess.preprocess`
and `preprocess_labels`. The results are cached as ``.npy`` files that every
process (and every DataLoader worker) memory-maps, so N distributed ranks share
one copy in the page cache. A fingerprint of the inputs and of the task's
preprocessing decides whether a cache can be reused.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from segtool.errors import GeometryError, SegtoolError
from segtool.io.atomic import replacing, write_text_atomic
from segtool.labels_map import renumber
from segtool.spec import TaskSpec
from segtool.training.datasets import Case, DataLayoutError

#: Bumped when preprocessing changes in a way the fingerprint cannot see (2: zscore-nonzero before resampling).
CACHE_FORMAT = 2
#: Foreground voxel positions kept per label and case for oversampling.
MAX_FOREGROUND_POSITIONS = 10_000
#: Intensity samples kept per channel and case for the statistics.
MAX_INTENSITY_SAMPLES = 10_000


class CaseError(SegtoolError):
    """A training case cannot be used; the message names the case."""


def read_case(spec: TaskSpec, case: Case, labels_map: Mapping[int, int] | None):
    """(image Volume, label Volume) on the same grid, labels renumbered into 0..N."""
    from segtool.io import read_channels, read_labels
    from segtool.io.volume import GRID_ATOL, affine_difference

    try:
        image = read_channels(list(case.images), spec.ndim, spec.channels, grey_as_rgb=spec.normalization == "rgb")
        label = read_labels(case.label)
    except SegtoolError as exc:
        raise CaseError(f"case {case.name!r}: {exc.one_line()}") from None
    if image.spatial_shape != label.spatial_shape:
        raise GeometryError(
            f"case {case.name!r}: image {image.spatial_shape} ({case.images[0]}) and label {label.spatial_shape} "
            f"({case.label}) differ in shape"
        )
    if affine_difference(image.affine, label.affine) > GRID_ATOL:
        raise GeometryError(f"case {case.name!r}: image {case.images[0]} and label {case.label} have different "
                            "affines (voxel grids)")
    values = remap_labels(np.asarray(label.array), labels_map)
    check_label_values(values, len(spec.labels), case.name, labels_map is not None)
    return image, replace(label, array=values)


def remap_labels(array: np.ndarray, labels_map: Mapping[int, int] | None) -> np.ndarray:
    """Integer labels, renumbered by ``labels_map`` (sources it does not name become 0)."""
    if array.dtype.kind == "f":
        rounded = np.rint(array)
        if not np.allclose(rounded, array, atol=1e-3):
            raise DataLayoutError("label image holds non-integer values (is it an image rather than a label map?)")
        array = rounded
    array = array.astype(np.int64, copy=False)
    return array if labels_map is None else renumber(array, labels_map)


def check_label_values(array: np.ndarray, num_labels: int, name: str, mapped: bool) -> None:
    values = np.unique(array)
    bad = [int(v) for v in values if not 0 <= v <= num_labels]
    if bad:
        shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
        hint = "" if mapped else "; merge them into the task's labels with --labels-map (e.g. --labels-map 3:1,42:2)"
        raise DataLayoutError(f"case {name!r}: label values {shown} are not among the task's labels 0..{num_labels}{hint}")


def label_dtype(num_labels: int):
    return np.uint8 if num_labels < 256 else np.int16


@dataclass
class PreparedCase:
    """A preprocessed training case whose arrays are memory-mapped on first use."""

    name: str
    image_path: Path
    label_path: Path
    foreground_path: Path
    image_files: tuple[Path, ...] = ()  # the source files, for samplers that need more than the cached arrays
    label_file: Path | None = None
    _arrays: dict = field(default_factory=dict, repr=False, compare=False)

    def _load(self, key: str, path: Path):
        if key not in self._arrays:
            self._arrays[key] = np.load(path, mmap_mode="r")
        return self._arrays[key]

    @property
    def image(self) -> np.ndarray:
        return self._load("image", self.image_path)

    @property
    def label(self) -> np.ndarray:
        return self._load("label", self.label_path)

    @property
    def foreground(self) -> dict[int, np.ndarray]:
        """label value -> (K, ndim) voxel positions of that label (a sample of at most 10,000)."""
        if "fg" not in self._arrays:
            with np.load(self.foreground_path) as data:
                self._arrays["fg"] = {int(k): data[k] for k in data.files}
        return self._arrays["fg"]

    def __getstate__(self):  # DataLoader workers re-open the memory maps instead of copying them
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state


def foreground_positions(label: np.ndarray, name: str) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    out = {}
    for value in np.unique(label):
        if value == 0:
            continue
        positions = np.argwhere(label == value)
        if len(positions) > MAX_FOREGROUND_POSITIONS:
            positions = positions[np.sort(rng.choice(len(positions), MAX_FOREGROUND_POSITIONS, replace=False))]
        out[int(value)] = positions.astype(np.int32)
    return out


def _intensity_sample(image: np.ndarray, label: np.ndarray, name: str) -> np.ndarray:
    """(C, K) raw intensities inside the foreground (everywhere when there is none)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()) + 1)
    mask = label > 0
    if not mask.any():
        mask = np.ones_like(mask)
    values = image[:, mask]
    if values.shape[1] > MAX_INTENSITY_SAMPLES:
        values = values[:, rng.choice(values.shape[1], MAX_INTENSITY_SAMPLES, replace=False)]
    return values.astype(np.float64)


def intensity_statistics(samples: Sequence[np.ndarray], channels: Sequence[str], method: str) -> dict:
    """Per-channel statistics of the raw foreground intensities (recorded in config.json)."""
    stats: dict = {"method": method, "per_image": True, "region": "foreground", "channels": {}}
    if not samples:
        return stats
    joined = np.concatenate(samples, axis=1)
    for c, name in enumerate(channels):
        v = joined[c]
        p = np.percentile(v, [0.5, 50, 99.5])
        stats["channels"][name] = {
            "mean": float(v.mean()),
            "std": float(v.std()),
            "median": float(p[1]),
            "percentile_00_5": float(p[0]),
            "percentile_99_5": float(p[2]),
        }
    return stats


def file_id(path: Path) -> list:
    """What identifies a data file's version for a cache key: resolved path, size, modification time."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def fingerprint(spec: TaskSpec, cases: Sequence[Case], labels_map: Mapping[int, int] | None) -> str:
    """A hash of what the cache depends on: the files (path, size, mtime) and the preprocessing."""
    payload = {
        "format": CACHE_FORMAT,
        "task": [spec.name, list(spec.channels), spec.ndim, spec.orientation, spec.target_spacing, spec.normalization]
        + ([list(spec.input_size)] if spec.input_size else []),
        "labels": sorted(spec.labels.items()),
        "labels_map": sorted((labels_map or {}).items()),
        "cases": [[c.name, [file_id(p) for p in c.images], file_id(c.label)] for c in cases],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with replacing(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def build_cache(
    spec: TaskSpec,
    cases: Sequence[Case],
    labels_map: Mapping[int, int] | None,
    cache_dir: Path,
    on_case=None,
) -> dict:
    """Preprocess ``cases`` into ``cache_dir`` (reused when the fingerprint matches); returns the manifest."""
    from segtool.preprocess import preprocess, preprocess_labels

    cache_dir = Path(cache_dir)
    manifest_path = cache_dir / "manifest.json"
    key = fingerprint(spec, cases, labels_map)
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if manifest.get("fingerprint") == key and all("images" in e for e in manifest.get("cases", [])):
                return manifest
        except ValueError:
            pass
    cache_dir.mkdir(parents=True, exist_ok=True)
    entries, samples = [], []
    dtype = label_dtype(len(spec.labels))
    for i, case in enumerate(cases):
        image, label = read_case(spec, case, labels_map)
        prepared = preprocess(spec, image)
        model_label = preprocess_labels(spec, label).astype(dtype)
        if tuple(model_label.shape) != tuple(prepared.array.shape[1:]):
            raise GeometryError(
                f"case {case.name!r}: preprocessed image {prepared.array.shape[1:]} and label {model_label.shape} differ"
            )
        stem = f"case_{i:05d}"
        _save_npy(cache_dir / f"{stem}_image.npy", prepared.array.astype(np.float32))
        _save_npy(cache_dir / f"{stem}_label.npy", model_label)
        fg = foreground_positions(model_label, case.name)
        np.savez(cache_dir / f"{stem}_fg.npz", **{str(k): v for k, v in fg.items()})
        samples.append(_intensity_sample(np.asarray(image.array), np.asarray(label.array)[0], case.name))
        entries.append({"name": case.name, "stem": stem, "shape": list(model_label.shape), "labels": sorted(fg),
                        "images": [str(p) for p in case.images], "label": str(case.label)})
        if on_case is not None:
            on_case(i + 1, len(cases))
    manifest = {
        "fingerprint": key,
        "cases": entries,
        "intensity": intensity_statistics(samples, spec.channels, spec.normalization),
    }
    write_text_atomic(manifest_path, json.dumps(manifest, indent=1))
    return manifest


def open_cache(cache_dir: Path) -> tuple[list[PreparedCase], dict]:
    """The cached cases (memory-mapped lazily) and the manifest."""
    cache_dir = Path(cache_dir)
    manifest = json.loads((cache_dir / "manifest.json").read_text(encoding="utf-8"))
    cases = [
        PreparedCase(
            e["name"],
            cache_dir / f"{e['stem']}_image.npy",
            cache_dir / f"{e['stem']}_label.npy",
            cache_dir / f"{e['stem']}_fg.npz",
            tuple(Path(p) for p in e.get("images", ())),
            Path(e["label"]) if e.get("label") else None,
        )
        for e in manifest["cases"]
    ]
    return cases, manifest

"""The fingerprint of a training folder: what the planner needs to know about the data.

Per case: shape, spacing and source orientation (after reorientation to the task's
orientation, the grid the network sees), per channel intensity statistics over the image
and inside the labelled foreground, whether the outside of the image is one constant value
(the lesson of ``zscore-foreground``: BraTS copies hold ``-mean/std`` there, raw scans 0),
the share of voxels each label holds, and its objects (connected components: count, size,
thickness). Aggregated over the cases: medians, anisotropy, extents.

The fingerprint is a plain JSON-ready dict, cached in the model folder as
``fingerprint.json`` and reused while the data files (names, sizes, times) and the labels
map are unchanged. `segtool.training.planner` turns it into a plan; nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from segtool.io.atomic import write_text_atomic
from segtool.normalize import border_constant
from segtool.spec import TaskSpec
from segtool.training.datasets import Case

FINGERPRINT_FILENAME = "fingerprint.json"
#: Bumped when the fingerprint's content changes (a cached one of another version is recomputed).
FINGERPRINT_VERSION = 3  # 3: labels carry median_largest_share
#: Cases read at most (evenly spread over the sorted names): a folder of thousands of slices is fingerprinted in seconds.
MAX_CASES_READ = 240
#: Intensity samples kept per channel and case.
SAMPLES_PER_CASE = 4000


def data_key(cases: Sequence[Case], labels_map: Mapping[int, int] | None, spec: TaskSpec) -> str:
    """A hash of what the fingerprint depends on: the files (path, size, mtime), the labels map, channels, grid."""
    from segtool.training.prepare import file_id

    payload = {
        "version": FINGERPRINT_VERSION,
        "task": [spec.name, list(spec.channels), spec.ndim, spec.orientation, spec.normalization == "rgb"],
        "labels_map": sorted((labels_map or {}).items()),
        "cases": [[c.name, [file_id(p) for p in c.images], file_id(c.label)] for c in cases],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _sample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    values = values.ravel()
    if values.size > SAMPLES_PER_CASE:
        values = values[rng.choice(values.size, SAMPLES_PER_CASE, replace=False)]
    return values.astype(np.float64)


def _thickness(distances: np.ndarray, spacing: Sequence[float]) -> float:
    """A structure's thickness (mm) from its voxels' distances to the outside: 4 x mean - 2 voxels.

    Across a slab T voxels thick the distances run 1, 2, ..., 2, 1 voxels (mean about T/4 + 1/2).
    """
    return round(max(float(min(spacing)), 4.0 * float(distances.mean()) - 2.0 * float(min(spacing))), 3)


def _objects(label: np.ndarray, spacing: Sequence[float]) -> dict:
    """Per label value: connected components (count, sizes in mm³/mm², largest share) and thickness in mm.

    The thickness of a structure is estimated from the distances (mm) of its voxels to the nearest
    voxel outside it (`_thickness`).
    """
    from scipy import ndimage

    voxel = float(np.prod(spacing))
    out = {}
    union = label > 0
    if union.any():  # everything below works on the labelled box (+1 voxel): a 240³ scan in a second
        where = np.argwhere(union)
        box = tuple(slice(max(0, lo - 1), hi + 2) for lo, hi in zip(where.min(0), where.max(0)))
        label, union = label[box], union[box]
    for value in (int(v) for v in np.flatnonzero(np.bincount(label.ravel().astype(np.int64))) if v != 0):
        mask = label == value
        components, count = ndimage.label(mask)
        sizes = np.bincount(components.ravel())[1:] if count else np.zeros(0, dtype=np.int64)
        padded = np.pad(mask, 1)
        distance = ndimage.distance_transform_edt(padded, sampling=spacing)[tuple(slice(1, -1) for _ in mask.shape)]
        out[str(value)] = {
            "voxels": int(mask.sum()),
            "components": int(count),
            "largest_share": float(sizes.max() / sizes.sum()) if count else 0.0,
            "component_sizes_mm": [round(float(s) * voxel, 3) for s in sorted(sizes, reverse=True)[:20]],
            "thickness_mm": _thickness(distance[mask], spacing),
        }
    components, count = ndimage.label(union)
    extent = [0.0] * label.ndim
    thickness = None
    if count:
        distance = ndimage.distance_transform_edt(np.pad(union, 1), sampling=spacing)
        thickness = _thickness(distance[tuple(slice(1, -1) for _ in union.shape)][union], spacing)
        where = np.argwhere(union)
        extent = [float((hi - lo + 1) * s) for lo, hi, s in zip(where.min(0), where.max(0), spacing)]
        sizes = np.bincount(components.ravel())[1:]
        union_share = float(sizes.max() / sizes.sum())
    else:
        union_share = 0.0
    return {"labels": out, "union_components": int(count), "union_largest_share": union_share,
            "foreground_extent_mm": [round(e, 3) for e in extent], "union_thickness_mm": thickness}


def case_fingerprint(spec: TaskSpec, case: Case, labels_map: Mapping[int, int] | None) -> tuple[dict, list]:
    """(the case's record, per channel (image sample, foreground sample)) on the task's oriented grid."""
    from segtool.geometry import reorient
    from segtool.io.volume import spacing_of
    from segtool.training.prepare import read_case

    image, label = read_case(spec, case, labels_map)
    array, labels, affine = np.asarray(image.array), np.asarray(label.array), image.affine
    source_orientation = None
    if spec.orientation is not None and spec.ndim == 3:
        import nibabel as nib

        source_orientation = "".join(nib.aff2axcodes(affine))
        array, affine, _ = reorient(array, affine, spec.orientation)
        labels, _, _ = reorient(labels, image.affine, spec.orientation)
    spacing = [float(s) for s in spacing_of(affine, spec.ndim)]
    labels = labels[0]
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    foreground = labels > 0
    channels, samples = [], []
    for c in range(array.shape[0]):
        channel = array[c]
        outside = border_constant(channel)  # the rule zscore-foreground normalises by
        inside = channel[channel != outside] if outside is not None else channel
        channels.append({
            "outside_value": outside,
            "outside_share": float(1.0 - inside.size / max(1, channel.size)),
            "zero_share": float((channel == 0).mean()),
            "min": float(channel.min()), "max": float(channel.max()),
        })
        samples.append((_sample(inside, rng), _sample(channel[foreground], rng)))
    record = {
        "name": case.name,
        "shape": [int(n) for n in array.shape[1:]],
        "spacing": [round(s, 6) for s in spacing],
        "source_orientation": source_orientation,
        "channels": channels,
        "label_voxels": {str(v): int(n) for v, n in enumerate(np.bincount(labels.ravel().astype(np.int64))) if n},
        "objects": _objects(labels, spacing),
    }
    return record, samples


def _channel_summary(name: str, cases: list[dict], index: int, samples: list) -> dict:
    image = np.concatenate([s[index][0] for s in samples]) if samples else np.zeros(0)
    fg = np.concatenate([s[index][1] for s in samples]) if samples else np.zeros(0)
    outside = [c["channels"][index]["outside_value"] for c in cases]

    def stats(v: np.ndarray) -> dict | None:
        if v.size == 0:
            return None
        p = np.percentile(v, [0.5, 50, 99.5])
        return {"mean": float(v.mean()), "std": float(v.std()), "percentile_00_5": float(p[0]),
                "median": float(p[1]), "percentile_99_5": float(p[2])}

    constant = [v for v in outside if v is not None]
    return {
        "name": name,
        "image": stats(image),
        "foreground": stats(fg),
        "constant_outside_cases": len(constant),
        "nonzero_outside_cases": sum(1 for v in constant if v != 0.0),
        "outside_values": sorted({round(v, 4) for v in constant})[:8],
        "median_outside_share": float(np.median([c["channels"][index]["outside_share"] for c in cases])),
        "min": min(c["channels"][index]["min"] for c in cases),
        "max": max(c["channels"][index]["max"] for c in cases),
    }


def summarise(spec: TaskSpec, cases: list[dict], samples: list, total_cases: int) -> dict:
    """The dataset's fingerprint from its cases' records."""
    shapes = np.array([c["shape"] for c in cases], dtype=np.float64)
    spacings = np.array([c["spacing"] for c in cases], dtype=np.float64)
    median_spacing = np.median(spacings, axis=0)
    label_values = [str(v) for v in spec.labels]
    voxels_total = sum(sum(c["label_voxels"].values()) for c in cases)
    labels = {}
    for value in label_values:
        present = [c for c in cases if value in c["objects"]["labels"]]
        records = [c["objects"]["labels"][value] for c in present]
        sizes = [s for r in records for s in r["component_sizes_mm"]]
        labels[value] = {
            "name": spec.labels[int(value)],
            "cases_with": len(present),
            "voxel_share": sum(c["label_voxels"].get(value, 0) for c in cases) / max(1, voxels_total),
            "median_components": float(np.median([r["components"] for r in records])) if records else 0.0,
            "one_component_share": (sum(r["components"] == 1 for r in records) / len(records)) if records else 0.0,
            "median_largest_share": float(np.median([r["largest_share"] for r in records])) if records else None,
            "median_thickness_mm": float(np.median([r["thickness_mm"] for r in records])) if records else None,
            "min_thickness_mm": float(np.percentile([r["thickness_mm"] for r in records], 10)) if records else None,
            "median_object_size": float(np.median(sizes)) if sizes else None,
            "small_object_size": float(np.percentile(sizes, 5)) if sizes else None,
        }
    with_fg = [c for c in cases if c["objects"]["union_components"] > 0]
    extents = np.array([c["objects"]["foreground_extent_mm"] for c in with_fg]) if with_fg else np.zeros((0, spec.ndim))
    return {
        "version": FINGERPRINT_VERSION,
        "task": spec.name,
        "ndim": spec.ndim,
        "photo": spec.is_photo,
        "channels": [_channel_summary(n, cases, i, samples) for i, n in enumerate(spec.channels)],
        "cases": total_cases,
        "cases_read": len(cases),
        "median_shape": [float(v) for v in np.median(shapes, axis=0)],
        "min_shape": [int(v) for v in shapes.min(axis=0)],
        "max_shape": [int(v) for v in shapes.max(axis=0)],
        "median_spacing": [float(v) for v in median_spacing],
        "spacing_percentile_10": [float(v) for v in np.percentile(spacings, 10, axis=0)],
        "anisotropy": float(median_spacing.max() / median_spacing.min()),
        "median_extent_mm": [float(v) for v in np.median(shapes * spacings, axis=0)],
        "empty_case_share": 1.0 - len(with_fg) / max(1, len(cases)),
        "foreground_share": sum(c["label_voxels"].get(v, 0) for c in cases for v in label_values) / max(1, voxels_total),
        "median_foreground_extent_mm": [float(v) for v in np.median(extents, axis=0)] if len(extents) else None,
        "foreground_thickness_mm": float(np.percentile(
            [c["objects"]["union_thickness_mm"] for c in with_fg], 10)) if with_fg else None,
        "union_one_component_share": (sum(c["objects"]["union_components"] == 1 for c in with_fg) / len(with_fg))
        if with_fg else 0.0,
        "labels": labels,
        "per_case": cases,
    }


def chosen_cases(cases: Sequence[Case], most: int = MAX_CASES_READ) -> list[Case]:
    """At most ``most`` cases, evenly spread over the given order (all when there are fewer)."""
    if len(cases) <= most:
        return list(cases)
    picks = np.linspace(0, len(cases) - 1, most).round().astype(int)
    return [cases[i] for i in sorted(set(picks.tolist()))]


def compute(spec: TaskSpec, cases: Sequence[Case], labels_map: Mapping[int, int] | None, on_case=None) -> dict:
    """The fingerprint of ``cases`` (a sample of at most MAX_CASES_READ of them)."""
    picked = chosen_cases(cases)
    records, samples = [], []
    for i, case in enumerate(picked):
        record, sample = case_fingerprint(spec, case, labels_map)
        records.append(record)
        samples.append(sample)
        if on_case is not None:
            on_case(i + 1, len(picked))
    return summarise(spec, records, samples, len(cases))


def load_or_compute(spec: TaskSpec, cases: Sequence[Case], labels_map: Mapping[int, int] | None,
                    folder: Path | None, on_case=None) -> tuple[dict, bool]:
    """(fingerprint, whether it came from the cache ``folder/fingerprint.json``); computed and cached otherwise."""
    key = data_key(cases, labels_map, spec)
    path = Path(folder) / FINGERPRINT_FILENAME if folder is not None else None
    if path is not None and path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("data_key") == key:
                return cached, True
        except ValueError:
            pass
    import time

    started = time.monotonic()
    fingerprint = compute(spec, cases, labels_map, on_case)
    fingerprint["seconds_per_case"] = round((time.monotonic() - started) / max(1, fingerprint["cases_read"]), 4)
    fingerprint["data_key"] = key
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(fingerprint, indent=1) + "\n")
    return fingerprint, False

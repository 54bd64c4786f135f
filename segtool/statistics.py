"""Per-label statistics of a written mask on its input's grid (``segtool run --statistics`` / ``--stats FILE``).

For each label of the task: the voxel count, the volume and the mean input
intensity inside the label (one mean per channel for multi-channel inputs). They
are computed after the mask is written, from the mask file read back and the
input image(s) read again, so they describe exactly what is on disk.

Units: 3D images give mm³ (``"mm3"``), 2D images with a physical grid (a 2D NIfTI)
mm² (``"mm2"``), photos and TIFF slices pixels (``"px"``: volume is the pixel count).

JSON follows TotalSegmentator's ``statistics.json``: one object per label name,
``{"gm": {"volume": 45.3, "intensity": 612.4, "voxels": 812, "unit": "mm3", "label": 1}}``.
``intensity`` is a number for single-channel inputs and ``{channel: mean}`` for
multi-channel ones; an empty label has ``intensity`` null. CSV has one row per
case and label: ``case, label, value, voxels, volume, unit, intensity`` (or one
``intensity_<channel>`` column per channel).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from segtool.errors import UsageError

#: File name endings that mark a mask (stripped before ``_statistics.*`` is added).
MASK_ROLES = ("_dseg", "_seg")


@dataclass(frozen=True)
class LabelStats:
    """One label of one case."""

    name: str
    value: int
    voxels: int
    volume: float
    unit: str
    intensity: dict[str, float | None]  # channel name -> mean input value inside the label (None: empty label)

    def to_json(self) -> dict:
        means = list(self.intensity.values())
        return {
            "volume": self.volume,
            "intensity": means[0] if len(means) == 1 else dict(self.intensity),
            "voxels": self.voxels,
            "unit": self.unit,
            "label": self.value,
        }


@dataclass(frozen=True)
class CaseStats:
    """Every label of one case: ``case`` is its (first) input, ``mask`` the written mask."""

    case: str
    mask: str
    labels: tuple[LabelStats, ...]

    def to_json(self) -> dict:
        return {s.name: s.to_json() for s in self.labels}

    def rows(self) -> list[dict]:
        """CSV rows, one per label."""
        out = []
        for s in self.labels:
            row = {"case": self.case, "label": s.name, "value": s.value, "voxels": s.voxels,
                   "volume": s.volume, "unit": s.unit}
            if len(s.intensity) == 1:
                row["intensity"] = next(iter(s.intensity.values()))
            else:
                row.update({f"intensity_{c}": m for c, m in s.intensity.items()})
            out.append(row)
        return out


def label_statistics(labels: np.ndarray, image: np.ndarray, label_names: Mapping[int, str],
                     channel_names: Sequence[str], voxel_size: float, unit: str) -> list[LabelStats]:
    """Statistics of ``labels`` (spatial) over ``image`` (channels first, same spatial shape)."""
    if tuple(labels.shape) != tuple(image.shape[1:]):
        raise ValueError(f"mask shape {labels.shape} differs from the image's {image.shape[1:]}")
    flat = np.asarray(labels).ravel().astype(np.int64)
    size = max(int(flat.max(initial=0)), max(label_names, default=0)) + 1
    counts = np.bincount(flat, minlength=size)
    sums = [np.bincount(flat, weights=np.asarray(c, dtype=np.float64).ravel(), minlength=size) for c in image]
    out = []
    for value, name in sorted(label_names.items()):
        n = int(counts[value])
        means = {c: (float(s[value] / n) if n else None) for c, s in zip(channel_names, sums)}
        out.append(LabelStats(name, int(value), n, float(n * voxel_size), unit, means))
    return out


def case_statistics(case_inputs: Sequence[Path], mask_path: Path, label_names: Mapping[int, str],
                    channel_names: Sequence[str], allow_uneven: bool = False) -> CaseStats:
    """Read ``mask_path`` and the case's input files again and compute :func:`label_statistics`."""
    from segtool.io import read_labels, read_volume

    mask = read_labels(mask_path)
    volumes = [read_volume(p, allow_uneven=allow_uneven) for p in case_inputs]
    image = np.concatenate([v.array for v in volumes], axis=0) if len(volumes) > 1 else volumes[0].array
    reference = volumes[0]
    labels = mask.array[0]
    if labels.shape != reference.spatial_shape and labels.ndim == 2 and labels.T.shape == reference.spatial_shape:
        labels = labels.T  # a 2D non-photo image written as PNG/TIFF: rows = y (see segtool.io.write_labels)
    names = _channel_names(channel_names, image.shape[0], case_inputs)
    if reference.kind == "photo":
        voxel, unit = 1.0, "px"
    else:
        voxel, unit = float(np.prod(reference.spacing)), "mm3" if reference.ndim == 3 else "mm2"
    stats = label_statistics(labels, image, label_names, names, voxel, unit)
    return CaseStats(str(case_inputs[0]), str(mask_path), tuple(stats))


def _channel_names(declared: Sequence[str], count: int, inputs: Sequence[Path]) -> list[str]:
    """The task's channel names when they match the image; else one per input file (--combine); else numbers."""
    if len(declared) == count:
        return list(declared)
    if len(inputs) == count:
        from segtool.io.formats import split_suffix

        return [split_suffix(Path(p).name)[0] for p in inputs]
    return [f"channel{i}" for i in range(count)]


def statistics_paths(mask_path: Path) -> tuple[Path, Path]:
    """``case_seg.nii.gz`` -> ``case_statistics.json``, ``case_statistics.csv`` (beside the mask)."""
    from segtool.io.formats import split_suffix

    stem = split_suffix(Path(mask_path).name)[0]
    for role in MASK_ROLES:
        if stem.endswith(role) and len(stem) > len(role):
            stem = stem[: -len(role)]
            break
    base = Path(mask_path).with_name(f"{stem}_statistics")
    return base.with_suffix(".json"), base.with_suffix(".csv")


def csv_text(rows: Sequence[dict]) -> str:
    """Rows as CSV (columns: the union of the rows' keys, in first-seen order); empty cells for missing values."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def write_case_statistics(stats: CaseStats) -> tuple[Path, Path]:
    """``<stem>_statistics.json`` and ``.csv`` beside the case's mask; returns their paths."""
    from segtool.io.atomic import write_text_atomic

    json_path, csv_path = statistics_paths(Path(stats.mask))
    write_text_atomic(json_path, json.dumps(stats.to_json(), indent=2) + "\n")
    write_text_atomic(csv_path, csv_text(stats.rows()))
    return json_path, csv_path


def check_stats_file(path: Path, overwrite: bool) -> None:
    """Usage errors of ``--stats FILE``, before any work: its format, an existing file, a missing folder."""
    if path.suffix.lower() not in (".json", ".csv"):
        raise UsageError(f"--stats {path}: name a .json or .csv file")
    if path.is_dir():
        raise UsageError(f"--stats {path}: a folder; name a .json or .csv file")
    if path.exists() and not overwrite:
        raise UsageError(f"--stats {path}: file exists (use --overwrite)")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"--stats {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--stats {path}: folder {folder} is not writable")


def write_cohort_statistics(path: Path, cases: Sequence[CaseStats]) -> Path:
    """Every case in one file: JSON ``{case: {label: {...}}}`` or CSV rows, by ``path``'s suffix."""
    from segtool.io.atomic import write_text_atomic

    if path.suffix.lower() == ".json":
        text = json.dumps({c.case: c.to_json() for c in cases}, indent=2) + "\n"
    else:
        text = csv_text([row for c in cases for row in c.rows()])
    return write_text_atomic(path, text)


def written_label_names(spec, regions: bool = False) -> dict[int, str]:
    """The values and names of the masks a run writes: the task's labels, or its nested regions (``--regions``)."""
    if not regions:
        return dict(spec.labels)
    from segtool.regions import nested_regions

    return {value: name for value, (name, _) in enumerate(nested_regions(spec.regions), start=1)}


class StatisticsWriter:
    """Statistics of each case a run writes (or skips: its existing mask), beside the mask and/or in one file.

    ``after(case, result)`` is called once per result; the cohort file (``--stats FILE``) is rewritten after
    each case, so a run that stops early leaves the table of the cases it finished.
    """

    what = "statistics"

    def __init__(self, label_names: Mapping[int, str], channel_names: Sequence[str], per_case: bool,
                 cohort: Path | None = None, allow_uneven: bool = False):
        self.label_names = dict(label_names)
        self.channel_names = tuple(channel_names)
        self.per_case = per_case
        self.cohort = cohort
        self.allow_uneven = allow_uneven
        self.collected: list[CaseStats] = []

    def after(self, case, result) -> None:
        if result.status not in ("done", "skipped") or result.output is None:
            return
        stats = case_statistics(case.inputs, Path(result.output), self.label_names, self.channel_names,
                                self.allow_uneven)
        if self.per_case:
            write_case_statistics(stats)
        self.collected.append(stats)
        if self.cohort is not None:
            write_cohort_statistics(self.cohort, self.collected)

"""What a new task declares, read from its training data: channels, labels, regions, 2D or 3D, photo or volume.

`segtool plugin new NAME --from DATA` scaffolds a plugin from these, so that `plugin new` plus
`segtool train --budget` is the whole path for a new dataset: everything else (spacing, patch,
network, normalisation) is planned by `segtool train` from the data.

Sources, in order: nnU-Net's ``dataset.json`` (``channel_names`` or ``modality``; ``labels`` as
name -> value, a list of values making a region), then the files themselves (channel count from
``CASE_0000``-style names, 2D/3D and colour from one image, label values from the label maps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segtool.errors import UsageError
from segtool.json_object import read_json_object

#: Label maps read to find the label values when dataset.json does not name them.
LABEL_FILES_READ = 24


@dataclass
class DataDeclarations:
    ndim: int
    channels: list[str]
    labels: list[str]  # names of values 1..N
    regions: dict[str, list[int]] = field(default_factory=dict)
    photo: bool = False
    description: str = ""
    source: str = ""  # where the declarations came from, for the user


def _name(text: str) -> str:
    """A channel or label name segtool accepts: letters, digits, '_', '-', '.'."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text).strip()).strip("_")
    return cleaned or "unnamed"


def _from_dataset_json(info: dict) -> tuple[list[str] | None, list[str] | None, dict]:
    names = info.get("channel_names") or info.get("modality")
    channels = [_name(names[k]) for k in sorted(names, key=int)] if isinstance(names, dict) and names else None
    labels, regions = None, {}
    raw = info.get("labels")
    if isinstance(raw, dict) and raw:
        if all(str(k).isdigit() for k in raw):  # nnU-Net v1: value -> name
            raw = {v: int(k) for k, v in raw.items()}
        plain = {int(v): _name(k) for k, v in raw.items() if isinstance(v, (int, float)) and int(v) > 0}
        regions = {_name(k): [int(x) for x in v] for k, v in raw.items() if isinstance(v, list)}
        if plain:
            values = sorted(plain)
            if values != list(range(1, len(values) + 1)):
                raise UsageError(f"dataset.json labels use values {values}; a task's labels are 1..N without gaps")
            labels = [plain[v] for v in values]
        elif regions:  # region-based dataset: the label maps hold the values the regions list
            values = sorted({x for members in regions.values() for x in members if x > 0})
            labels = [f"label_{v}" for v in values]
    return channels, labels, regions


def _channel_count(image_files: list[Path]) -> int:
    indices = {m.group(1) for p in image_files for m in [re.search(r"_(\d{4})\.", p.name)] if m}
    return max(1, len(indices))


def read_declarations(data: Path) -> DataDeclarations:
    """The declarations of the training folder ``data`` (either layout)."""
    from segtool.io import read_labels
    from segtool.io.readers import read_volume
    from segtool.training.datasets import LABEL_SUFFIX, split_ending

    data = Path(data)
    if not data.is_dir():
        raise UsageError(f"--from {data}: not a folder")
    info = read_json_object(data / "dataset.json", UsageError) if (data / "dataset.json").is_file() else {}
    channels, labels, regions = _from_dataset_json(info)
    if (data / "imagesTr").is_dir():
        images = sorted(p for p in (data / "imagesTr").iterdir() if split_ending(p.name)[0])
        label_files = sorted(p for p in (data / "labelsTr").iterdir() if split_ending(p.name)[0]) \
            if (data / "labelsTr").is_dir() else []
    else:
        files = sorted(p for p in data.iterdir() if split_ending(p.name)[0])
        label_files = [p for p in files if split_ending(p.name)[0].endswith(LABEL_SUFFIX)]
        images = [p for p in files if p not in label_files]
    if not images or not label_files:
        raise UsageError(f"--from {data}: no images with label maps (imagesTr/ + labelsTr/, or CASE + CASE_seg files)")
    first = read_volume(images[0])
    ndim = 2 if first.ndim == 2 else 3
    photo = ndim == 2 and first.channels == 3
    if channels is None:
        count = _channel_count(images)
        channels = ["red", "green", "blue"] if photo and count == 1 else \
            (["image"] if count == 1 else [f"channel{i}" for i in range(count)])
    if labels is None:
        values: set[int] = set()
        for path in label_files[:LABEL_FILES_READ]:
            values |= {int(v) for v in np.unique(np.asarray(read_labels(path).array)) if v > 0}
        if not values:
            raise UsageError(f"--from {data}: the label maps read hold no label (only 0)")
        ordered = sorted(values)
        if ordered != list(range(1, len(ordered) + 1)):
            if len(ordered) == 1:
                labels = ["foreground"]  # e.g. 0/255 masks: train with --labels-map VALUE:1
            else:
                raise UsageError(f"--from {data}: label values {ordered} are not 1..N; renumber them or name them "
                                 "in a dataset.json")
        else:
            labels = ["foreground"] if len(ordered) == 1 else [f"label_{v}" for v in ordered]
    source = "dataset.json and the files" if info else "the files"
    return DataDeclarations(ndim, channels, labels, regions, photo, str(info.get("description") or ""), source)

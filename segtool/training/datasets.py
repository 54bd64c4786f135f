"""Training data on disk: case discovery, labels maps and the seeded train/validation split.

Two layouts are understood (no torch, no image reading here):

nnU-Net::

    DATA_DIR/dataset.json            (optional: channel_names/modality, labels, file_ending)
    DATA_DIR/imagesTr/CASE_0000.nii.gz, CASE_0001.nii.gz, ...   one file per channel
    DATA_DIR/labelsTr/CASE.nii.gz

simple (one folder)::

    DATA_DIR/CASE.nii.gz   + DATA_DIR/CASE_seg.nii.gz
    DATA_DIR/photo.jpg     + DATA_DIR/photo_seg.png
    DATA_DIR/CASE_0000.nii.gz, CASE_0001.nii.gz (or CASE_t1.nii.gz, CASE_t2.nii.gz, named
    after the task's channels) + DATA_DIR/CASE_seg.nii.gz     several channels

A labels map merges source label values into the task's labels 1..N; source values
it does not name become background (0).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from segtool.errors import UsageError
from segtool.io.formats import TRAINING_SUFFIXES, split_suffix
from segtool.json_object import read_json_object

LABEL_SUFFIX = "_seg"
CHANNEL_INDEX = re.compile(r"^(?P<case>.+)_(?P<index>\d{4})$")


class DataLayoutError(UsageError):
    """The training folder is not in a layout segtool understands, or is inconsistent."""


@dataclass(frozen=True)
class Case:
    """One labelled case: its channel files (in channel order) and its label file."""

    name: str
    images: tuple[Path, ...]
    label: Path


@dataclass(frozen=True)
class Dataset:
    """The cases found in a folder, and what the folder says about itself."""

    root: Path
    layout: str  # "nnunet" | "simple"
    cases: tuple[Case, ...]
    info: Mapping  # dataset.json contents ({} without one)
    ignored: tuple[str, ...] = ()  # image files without a label

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cases]


def split_ending(name: str) -> tuple[str, str]:
    """('case_0000', '.nii.gz') for 'case_0000.nii.gz'; ('', '') when not an image file."""
    stem, ending = split_suffix(name, TRAINING_SUFFIXES)
    return (stem, ending) if ending else ("", "")


def _image_files(folder: Path) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.iterdir()):
        stem, _ = split_ending(path.name)
        if stem and (path.is_file() or path.is_symlink()) and not path.name.startswith("."):
            if stem in files:
                raise DataLayoutError(f"{folder}: two images named {stem!r} ({files[stem].name}, {path.name})")
            files[stem] = path
    return files


def discover(root: str | Path, channels: Sequence[str]) -> Dataset:
    """Find the labelled cases under ``root`` (nnU-Net layout if imagesTr/ exists, else simple)."""
    root = Path(root)
    if not root.is_dir():
        raise DataLayoutError(f"{root}: not a folder")
    info = _read_dataset_json(root)
    if (root / "imagesTr").is_dir():
        dataset = _discover_nnunet(root, info)
    else:
        dataset = _discover_simple(root, channels, info)
    if not dataset.cases:
        raise DataLayoutError(
            f"{root}: no labelled cases found (expected imagesTr/ + labelsTr/, or CASE.nii.gz with CASE_seg.nii.gz)"
        )
    return dataset


def _read_dataset_json(root: Path) -> dict:
    path = root / "dataset.json"
    if not path.is_file():
        return {}
    return read_json_object(path, DataLayoutError)


def _discover_nnunet(root: Path, info: Mapping) -> Dataset:
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if not labels_dir.is_dir():
        raise DataLayoutError(f"{root}: imagesTr/ found but no labelsTr/")
    labels = _image_files(labels_dir)
    channel_files: dict[str, dict[int, Path]] = {}
    for stem, path in _image_files(images_dir).items():
        match = CHANNEL_INDEX.match(stem)
        if not match:
            raise DataLayoutError(f"{path}: nnU-Net images are named CASE_XXXX (XXXX the channel, e.g. _0000)")
        channel_files.setdefault(match["case"], {})[int(match["index"])] = path
    expected = _declared_channel_count(info)
    cases, ignored = [], []
    for name in sorted(channel_files):
        files = channel_files[name]
        indices = sorted(files)
        if indices != list(range(len(indices))):
            raise DataLayoutError(f"{images_dir}: case {name!r} has channels {indices}, expected 0..{len(indices) - 1}")
        if expected is not None and len(indices) != expected:
            raise DataLayoutError(f"{images_dir}: case {name!r} has {len(indices)} channel file(s), dataset.json declares {expected}")
        if name not in labels:
            ignored.append(name)
            continue
        cases.append(Case(name, tuple(files[i] for i in indices), labels[name]))
    orphans = sorted(set(labels) - set(channel_files))
    if orphans:
        raise DataLayoutError(f"{labels_dir}: label(s) without images: {', '.join(orphans[:5])}")
    return Dataset(root, "nnunet", tuple(cases), info, tuple(ignored))


def _declared_channel_count(info: Mapping) -> int | None:
    names = info.get("channel_names", info.get("modality"))
    return len(names) if isinstance(names, dict) and names else None


def _discover_simple(root: Path, channels: Sequence[str], info: Mapping) -> Dataset:
    files = _image_files(root)
    label_stems = {stem[: -len(LABEL_SUFFIX)]: path for stem, path in files.items() if stem.endswith(LABEL_SUFFIX)}
    images = {stem: path for stem, path in files.items() if not stem.endswith(LABEL_SUFFIX)}
    used: set[str] = set()
    cases = []
    for name in sorted(label_stems):
        paths = _simple_channels(name, images, channels)
        if paths is None:
            raise DataLayoutError(
                f"{label_stems[name]}: no image for case {name!r} (expected {name}.EXT, {name}_0000.EXT, ... "
                f"or {name}_{channels[0]}.EXT)"
            )
        used.update(stem for stem, p in images.items() if p in paths)
        cases.append(Case(name, tuple(paths), label_stems[name]))
    ignored = sorted(set(images) - used)
    return Dataset(root, "simple", tuple(cases), info, tuple(ignored))


def _simple_channels(name: str, images: Mapping[str, Path], channels: Sequence[str]) -> list[Path] | None:
    if name in images:
        return [images[name]]
    indexed = []
    while f"{name}_{len(indexed):04d}" in images:
        indexed.append(images[f"{name}_{len(indexed):04d}"])
    if indexed:
        return indexed
    named = [images.get(f"{name}_{channel}") for channel in channels]
    if all(named):
        return named
    return None


def map_from_dataset_json(info: Mapping, target_labels: Mapping[int, str]) -> dict[int, int] | None:
    """Match dataset.json's label names to the task's, when they all match and the values differ.

    Returns None when no renumbering is needed or the names do not all match.
    """
    raw = info.get("labels")
    if not isinstance(raw, dict) or not raw:
        return None
    source: dict[str, int] = {}
    try:
        for key, value in raw.items():
            if isinstance(value, str):  # nnU-Net v1: {"1": "name"}
                source[value] = int(key)
            elif isinstance(value, int):  # nnU-Net v2: {"name": 1}
                source[key] = value
            else:  # v2 regions (lists): no renumbering by name
                return None
    except ValueError:
        return None
    if not all(name in source for name in target_labels.values()):
        return None
    mapping = {source[name]: value for value, name in target_labels.items()}
    if all(src == tgt for src, tgt in mapping.items()):
        return None
    return mapping


def describe_map(mapping: Mapping[int, int]) -> str:
    """The inline form of a labels map (for the model card and the exact command)."""
    return ",".join(f"{s}:{t}" for s, t in sorted(mapping.items()))


# ----------------------------------------------------------------------------- split


def group_key(name: str, pattern: str | None) -> str:
    """The subject/patient a case belongs to: the first group (or whole match) of ``pattern``, else the name."""
    if not pattern:
        return name
    match = re.search(pattern, name)
    if match is None:
        return name
    return match.group(1) if match.groups() else match.group(0)


def split_cases(
    names: Iterable[str],
    seed: int,
    val_fraction: float = 0.2,
    val_cases: Sequence[str] | None = None,
    group_by: str | None = None,
) -> tuple[list[str], list[str]]:
    """Seeded split by case: (train, validation). ``val_cases`` fixes the validation set.

    With ``group_by`` (a regular expression whose first group names the subject,
    e.g. ``'^(sub-[^_]+)'``) the split is by subject: all cases of one subject land
    on the same side, never some slices or sessions in training and others in
    validation. With a fraction, at least one group validates (if there are two or
    more) and at least one trains. The split depends only on the sorted names and the seed.
    """
    names = sorted(names)
    if group_by:
        try:
            re.compile(group_by)
        except re.error as exc:
            raise UsageError(f"--group-by {group_by!r}: not a regular expression ({exc})") from None
    if val_cases:
        unknown = sorted(set(val_cases) - set(names))
        if unknown:
            raise UsageError(f"--val-cases: unknown case(s) {', '.join(unknown)} (cases are e.g. {', '.join(names[:3])})")
        val = sorted(set(val_cases))
        train = [n for n in names if n not in val]
        if not train:
            raise UsageError("--val-cases leaves no case to train on")
        shared = sorted({group_key(n, group_by) for n in train} & {group_key(n, group_by) for n in val})
        if group_by and shared:
            raise UsageError(f"--val-cases splits subject(s) {', '.join(shared[:5])} between training and validation")
        return train, val
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"--val-fraction must lie in [0, 1), got {val_fraction}")
    groups = sorted({group_key(n, group_by) for n in names})
    count = round(val_fraction * len(groups))
    if val_fraction > 0 and len(groups) >= 2:
        count = min(max(count, 1), len(groups) - 1)
    else:
        count = 0
    random.Random(seed).shuffle(groups)
    chosen = set(groups[:count])
    val = [n for n in names if group_key(n, group_by) in chosen]
    return [n for n in names if n not in val], val

"""A map from a label file's own values to a task's labels (`--labels-map` of `segtool train` and
`segtool evaluate`): ``3:1,42:2``, ranges ``4-7:1``, label names as targets, or a JSON file.

Sources the map does not name become background (0). numpy only; no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from segtool.errors import UsageError
from segtool.json_object import read_json_object


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a text no file system takes as a name (a long inline map)."""
    try:
        return path.is_file()
    except OSError:
        return False


def parse_labels_map(text: str, target_labels: Mapping[int, str]) -> dict[int, int]:
    """A source -> task label map from a JSON file or an inline ``3:1,42:2``.

    Inline pairs are ``SOURCE:TARGET``; SOURCE may be a range ``4-7``; TARGET may be a
    task label name. A JSON file holds ``{"3": 1, "42": "csf"}`` (source -> target) or
    ``{"csf": [4, 43], "2": [2, 41]}`` (target -> list of sources).
    """
    path = Path(text)
    if text.strip().endswith(".json") or _is_file(path):
        data = read_json_object(path, UsageError, f"--labels-map {text}")
        pairs: list[tuple[object, object]] = []
        for key, value in data.items():
            if isinstance(value, list):
                pairs.extend((source, key) for source in value)
            else:
                pairs.append((key, value))
    else:
        pairs = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            source, sep, target = item.partition(":")
            if not sep:
                raise UsageError(f"--labels-map: {item!r} is not SOURCE:TARGET (e.g. 3:1,42:2)")
            pairs.append((source.strip(), target.strip()))
    mapping: dict[int, int] = {}
    for source, target in pairs:
        tgt = _target_value(target, target_labels)
        for src in _source_values(source):
            if src in mapping and mapping[src] != tgt:
                raise UsageError(f"--labels-map: source label {src} is mapped twice ({mapping[src]} and {tgt})")
            mapping[src] = tgt
    if not mapping:
        raise UsageError("--labels-map is empty")
    return mapping


def _source_values(source: object) -> list[int]:
    text = str(source).strip()
    lo, sep, hi = text.partition("-")
    try:
        if sep and lo:
            first, last = int(lo), int(hi)
            if last < first:
                raise ValueError
            return list(range(first, last + 1))
        return [int(text)]
    except ValueError:
        raise UsageError(f"--labels-map: source {text!r} is not a label value or range (e.g. 3 or 4-7)") from None


def _target_value(target: object, target_labels: Mapping[int, str]) -> int:
    text = str(target).strip()
    by_name = {name: value for value, name in target_labels.items()}
    if text in by_name:
        return by_name[text]
    try:
        value = int(text)
    except ValueError:
        raise UsageError(
            f"--labels-map: target {text!r} is neither {_known(target_labels)} nor a label name "
            f"({', '.join(target_labels.values())})"
        ) from None
    if value != 0 and value not in target_labels:
        raise UsageError(f"--labels-map: target {value} is outside {_known(target_labels)}")
    return value


def _known(target_labels: Mapping[int, str]) -> str:
    """'0..3' for the labels 1, 2, 3; '0, 1, 2, 4' otherwise."""
    values = sorted(int(v) for v in target_labels)
    if values == list(range(1, len(values) + 1)):
        return f"0..{len(values)}"
    return ", ".join(map(str, [0] + values))


def renumber(array: np.ndarray, labels_map: Mapping[int, int]) -> np.ndarray:
    """An integer label array renumbered by ``labels_map`` (int64; values it does not name become 0)."""
    values, inverse = np.unique(np.asarray(array).astype(np.int64, copy=False), return_inverse=True)
    targets = np.array([labels_map.get(int(v), 0) for v in values], dtype=np.int64)
    return targets[inverse].reshape(np.shape(array))

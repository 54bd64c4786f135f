"""Give a trained model folder logit offsets from its training labels' class frequencies.

``-tau * log(prior)`` per class (Menon et al., ICLR 2021; segtool.networks.logit_offsets),
the prior being each class's share of the labelled pixels/voxels of the model's own
training cases (``training.data.train_cases`` of its config.json), read through the
same label mapping as training. The folder's config.json gets ``logit_offsets`` and a
record of how they were made (``training.logit_adjustment``); the weights are untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from segtool.errors import UsageError
from segtool.io.atomic import write_text_atomic
from segtool.model_config import CONFIG_FILENAME, ModelConfig


def class_fractions(spec, cases: Sequence, labels_map: Mapping[int, int] | None) -> list[float]:
    """Each class's share (background first) of the labelled pixels/voxels of ``cases``."""
    from segtool.io import read_labels
    from segtool.training.prepare import check_label_values, remap_labels

    counts = np.zeros(len(spec.labels) + 1, dtype=np.int64)
    for case in cases:
        values = remap_labels(np.asarray(read_labels(case.label).array), labels_map)
        check_label_values(values, len(spec.labels), case.name, labels_map is not None)
        counts += np.bincount(values.reshape(-1).astype(np.int64), minlength=counts.size)[: counts.size]
    if counts.sum() == 0:
        raise UsageError("the training cases hold no labelled pixels")
    return [float(c) for c in counts / counts.sum()]


def adjust_folder(folder: Path, spec, data_dir: Path, tau: float, reason: str,
                  labels_map: Mapping[int, int] | None = None) -> ModelConfig:
    """Write ``logit_offsets`` for ``tau`` into ``folder``'s config.json; the config as written."""
    from dataclasses import replace

    from segtool.networks.logit_offsets import prior_offsets
    from segtool.labels_map import parse_labels_map
    from segtool.training.datasets import discover

    path = Path(folder) / CONFIG_FILENAME
    config = ModelConfig.read(path)
    config.check_matches(spec)
    wanted = ((config.training or {}).get("data") or {}).get("train_cases")
    if not wanted:
        raise UsageError(f"{path}: records no training cases (training.data.train_cases)")
    dataset = discover(data_dir, spec.channels)
    by_name = {c.name: c for c in dataset.cases}
    missing = [name for name in wanted if name not in by_name]
    if missing:
        raise UsageError(f"{data_dir}: lacks {len(missing)} of the model's training cases (e.g. {missing[0]})")
    if labels_map is None:
        recorded = (config.training or {}).get("labels_map")
        labels_map = parse_labels_map(recorded, spec.labels) if recorded else (dict(spec.labels_map) or None)
    fractions = class_fractions(spec, [by_name[name] for name in wanted], labels_map)
    offsets = prior_offsets(fractions, tau)
    training = dict(config.training or {})
    training["logit_adjustment"] = {
        "tau": tau, "class_fractions": [round(f, 8) for f in fractions], "cases": len(wanted),
        "method": "offset_k = -tau * log(prior_k) + tau * log(prior_0); prior: class shares of the training labels",
        "reason": reason,
    }
    adjusted = replace(config, logit_offsets=offsets, training=training)
    adjusted.validate(str(path))
    write_text_atomic(path, adjusted.to_json())
    return adjusted


def offsets_summary(config: ModelConfig) -> str:
    names = {0: "background", **config.labels}
    return ", ".join(f"{names[k]} {v:+.3f}" for k, v in enumerate(config.logit_offsets or []))

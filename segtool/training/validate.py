"""Validation on whole cases, exactly as `segtool run` would segment them.

Each validation case is read from disk, segmented by `segtool.segmenter.Segmenter`
(preprocess -> sliding window -> back to the input grid -> postprocess) and scored
against its label map on the input grid with `segtool.metrics.evaluate`: Dice and
HD95 (mm) per label. Means over cases skip a label that is empty in both the
prediction and the ground truth (Dice would be 1 for free); HD95 means skip the
infinite values of one-sided empty masks, whose count is reported.

With ``group_by`` (`segtool train --group-by`: cases are slices or sessions of one
subject) the cases of a subject are pooled: its Dice is 2·Σ|P∩G| / (Σ|P| + Σ|G|)
over its cases (the Dice of the stacked volume; HD95 is not defined across separate
slices and is left out), and the means, and the "best" epoch, are over subjects.
A slice without tumour where the model marks a few pixels then costs what those
pixels cost, not a whole Dice of 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from segtool.spec import TaskSpec
from segtool.training.datasets import Case


@dataclass
class ValidationResult:
    per_case: dict[str, dict[str, dict[str, float | None]]]  # case -> label -> {"dice", "hd95"}
    dice: dict[str, float | None]  # label -> mean over cases
    hd95: dict[str, float | None]  # label -> mean of the finite values
    missed: dict[str, int] = field(default_factory=dict)  # label -> cases where one side was empty
    seconds: float = 0.0

    @property
    def mean_dice(self) -> float | None:
        values = [v for v in self.dice.values() if v is not None]
        return float(np.mean(values)) if values else None

    def to_json(self) -> dict:
        return {
            "mean_dice": self.mean_dice,
            "dice": self.dice,
            "hd95": self.hd95,
            "missed": self.missed,
            "cases": len(self.per_case),
            "per_case": self.per_case,
            "seconds": round(self.seconds, 2),
        }


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def score_case(spec: TaskSpec, pred: np.ndarray, gt: np.ndarray, spacing) -> dict[str, dict[str, float | None]]:
    """Dice and HD95 of each label for one case; None where both masks are empty."""
    from segtool.metrics import evaluate

    out = {}
    for row in evaluate(pred, gt, spacing, labels=dict(spec.labels)):
        if row.empty == "both":
            out[row.name] = {"dice": None, "hd95": None}
            continue
        hd95 = row.distance.hd95 if row.distance is not None else None
        out[row.name] = {"dice": float(row.overlap.dice), "hd95": float(hd95) if hd95 is not None else None}
    return out


def pool_by_group(spec: TaskSpec, counts: dict[str, dict[str, tuple[int, int, int]]], group_by: str
                  ) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per subject and label, the Dice of its pooled (|P∩G|, |P|, |G|) counts; None where both are empty."""
    from segtool.training.datasets import group_key

    pooled: dict[str, dict[str, list[int]]] = {}
    for case, per_label in counts.items():
        group = pooled.setdefault(group_key(case, group_by), {})
        for name, values in per_label.items():
            total = group.setdefault(name, [0, 0, 0])
            for i, v in enumerate(values):
                total[i] += v
    return {
        group: {name: {"dice": (2 * i / (p + g)) if p + g else None, "hd95": None}
                for name, (i, p, g) in per_label.items()}
        for group, per_label in sorted(pooled.items())
    }


def overlap_counts(spec: TaskSpec, pred: np.ndarray, gt: np.ndarray) -> dict[str, tuple[int, int, int]]:
    """(|P∩G|, |P|, |G|) of each label."""
    from segtool.metrics import overlap_metrics

    out = {}
    for value, name in spec.labels.items():
        m = overlap_metrics(pred == value, gt == value)
        out[name] = (m.tp, m.tp + m.fp, m.tp + m.fn)
    return out


def summarise(spec: TaskSpec, per_case: dict[str, dict[str, dict[str, float | None]]], seconds: float) -> ValidationResult:
    dice, hd95, missed = {}, {}, {}
    for name in spec.labels.values():
        rows = [scores[name] for scores in per_case.values() if name in scores]
        dice[name] = _mean([r["dice"] for r in rows if r["dice"] is not None])
        finite = [r["hd95"] for r in rows if r["hd95"] is not None and math.isfinite(r["hd95"])]
        hd95[name] = _mean(finite)
        missed[name] = sum(1 for r in rows if r["hd95"] is not None and not math.isfinite(r["hd95"]))
    return ValidationResult(per_case, dice, hd95, missed, seconds)


def validate(
    spec: TaskSpec,
    model,
    cases: Sequence[Case],
    labels_map: Mapping[int, int] | None,
    device: str,
    precision: str = "fp32",
    on_case: Callable[[int, int], None] | None = None,
    group_by: str | None = None,
) -> ValidationResult:
    """Segment each validation case with ``model`` and score it (or its subject, with ``group_by``).

    Leaves the model in eval mode.
    """
    from segtool.segmenter import InferenceOptions, Segmenter
    from segtool.training.prepare import read_case

    start = time.monotonic()
    segmenter = Segmenter(spec, model, InferenceOptions(device=device, precision=precision))
    per_case, counts = {}, {}
    for i, case in enumerate(cases):
        image, label = read_case(spec, case, labels_map)
        prediction = segmenter.predict(image)
        truth = np.asarray(label.array)[0]
        if group_by:
            counts[case.name] = overlap_counts(spec, prediction.labels, truth)
        else:
            per_case[case.name] = score_case(spec, prediction.labels, truth, image.spacing)
        if on_case is not None:
            on_case(i + 1, len(cases))
    if group_by:
        per_case = pool_by_group(spec, counts, group_by)
    return summarise(spec, per_case, time.monotonic() - start)

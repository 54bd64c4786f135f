"""Statistics of every metric over the cases of a folder evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from segtool.evaluation.cases import CaseResult
from segtool.metrics import METRIC_KEYS, LabelMetrics

STATISTICS = ("mean", "std", "median")


def json_number(value):
    """``value``, or None when it is an infinite or NaN float (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Summary:
    """Statistics of each metric of one label or region over the cases."""

    name: str
    labels: tuple[int, ...]
    region: bool
    n_cases: int
    stats: dict[str, dict[str, float | int]]

    def as_dict(self, json_safe: bool = True) -> dict:
        stats = {
            key: {k: (json_number(v) if json_safe else v) for k, v in s.items()} for key, s in self.stats.items()
        }
        return {
            "name": self.name, "labels": list(self.labels), "region": self.region,
            "n_cases": self.n_cases, "stats": stats,
        }


def _stats(values: Sequence[float]) -> dict[str, float | int]:
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    n_inf = int(np.isinf(arr).sum())
    if finite.size:
        mean, std, median = float(finite.mean()), float(finite.std()), float(np.median(finite))
    elif n_inf:
        mean = median = math.inf  # every value infinite (only distances can be)
        std = math.nan
    else:
        mean = std = median = math.nan
    return {"mean": mean, "std": std, "median": median, "n": int(finite.size), "n_inf": n_inf}


def aggregate(cases: Iterable[CaseResult]) -> list[Summary]:
    """Mean, population std and median of every metric per label/region, over finite values.

    Infinite values (one mask empty) are counted in ``n_inf`` and left out of the
    statistics, which are over the ``n`` finite values.
    """
    order: list[tuple[str, tuple[int, ...], bool]] = []
    rows: dict[tuple[str, tuple[int, ...], bool], list[LabelMetrics]] = {}
    for case in cases:
        for m in case.metrics:
            key = (m.name, m.labels, m.region)
            if key not in rows:
                order.append(key)
                rows[key] = []
            rows[key].append(m)
    out = []
    for key in order:
        ms = rows[key]
        flat = [m.as_dict() for m in ms]
        stats = {k: _stats([row[k] for row in flat]) for k in METRIC_KEYS if k in flat[0]}
        out.append(Summary(key[0], key[1], key[2], len(ms), stats))
    return out


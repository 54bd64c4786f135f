"""The documents of an evaluation: JSON reports, the CSV file, and number formatting."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from segtool.evaluation.cases import CaseResult, EvalOptions, FailedCase
from segtool.evaluation.pairing import Pairing
from segtool.evaluation.summary import STATISTICS, Summary
from segtool.metrics import COUNT_KEYS, METRIC_KEYS


def fmt(value) -> str:
    """A metric for a table: 4 significant digits, 'inf', '-' for undefined."""
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4g}"


def pair_report(case: CaseResult, options: EvalOptions) -> dict:
    """The JSON document of `segtool evaluate PRED GT`."""
    return {"mode": "pair", **options.as_dict(), **case.as_dict()}


def folder_report(
    cases: list[CaseResult],
    summary: list[Summary],
    pairing: Pairing,
    options: EvalOptions,
    pred_dir,
    gt_dir,
    failures: Sequence[FailedCase] = (),
) -> dict:
    """The JSON document of `segtool evaluate PRED_DIR GT_DIR`.

    Pairs that could not be scored are under ``failed`` and counted in ``n_failed``;
    the summary is over the ``n_scored`` others only.
    """
    return {
        "mode": "folder",
        "pred_dir": str(pred_dir),
        "gt_dir": str(gt_dir),
        **options.as_dict(),
        "n_pairs": len(pairing.pairs),
        "n_scored": len(cases),
        "n_failed": len(failures),
        "cases": [c.as_dict() for c in cases],
        "summary": [s.as_dict() for s in summary],
        "unmatched": {"pred": [str(p) for p in pairing.unmatched_pred], "gt": [str(p) for p in pairing.unmatched_gt]},
        "failed": [f.as_dict() for f in failures],
    }


CSV_COLUMNS = (
    ("case", "statistic", "name", "labels", "region")
    + METRIC_KEYS
    + ("unit", "tolerance", "surface", "empty", "penalised")
    + COUNT_KEYS
    + ("pred", "gt")
)


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return str(value)


def write_csv(
    path: str | Path,
    cases: Sequence[CaseResult],
    summary: Sequence[Summary] = (),
    options: EvalOptions | None = None,
) -> None:
    """One row per case and label/region, then one row per label/region and statistic.

    Infinite distances are written as ``inf``; undefined statistics are left empty.
    The file is written beside ``path`` under a temporary name, then moved into place.
    """
    from segtool.io.atomic import replacing

    with replacing(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            _write_csv_rows(fh, cases, summary, options)


def _write_csv_rows(
    fh, cases: Sequence[CaseResult], summary: Sequence[Summary], options: EvalOptions | None
) -> None:
    unit = cases[0].unit if cases else ""
    writer = csv.writer(fh)
    writer.writerow(CSV_COLUMNS)
    for case in cases:
        for m in case.metrics:
            row = m.as_dict()
            row.update(case=case.case, statistic="", labels="+".join(map(str, m.labels)), unit=case.unit,
                       pred=str(case.pred), gt=str(case.gt))
            writer.writerow([_csv_value(row.get(col)) for col in CSV_COLUMNS])
    for s in summary:
        for stat in STATISTICS + ("n", "n_inf"):
            row = {key: s.stats[key][stat] for key in s.stats}
            row.update(case="", statistic=stat, name=s.name, labels="+".join(map(str, s.labels)), region=s.region,
                       unit=unit, tolerance=options.tolerance if options else None,
                       surface=options.surface if options else None)
            writer.writerow([_csv_value(row.get(col)) for col in CSV_COLUMNS])


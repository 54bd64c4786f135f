"""Rich tables of an evaluation: one case, every case, and the summary over cases."""

from __future__ import annotations

from typing import Sequence

from segtool.evaluation.cases import CaseResult, EvalOptions
from segtool.evaluation.report import fmt
from segtool.evaluation.summary import STATISTICS, Summary
from segtool.metrics import DISTANCE_KEYS, METRIC_KEYS, LabelMetrics

#: metrics shown in the compact tables (JSON and CSV always carry every metric)
CASE_TABLE_KEYS = ("dice", "hd95", "assd", "nsd")
SUMMARY_TABLE_KEYS = ("dice", "iou", "precision", "recall", "hd", "hd95", "assd", "mhd", "nsd")

HEADERS = {
    "dice": "Dice",
    "iou": "IoU",
    "precision": "Precision",
    "recall": "Recall",
    "specificity": "Specificity",
    "volume_pred": "Vol pred",
    "volume_gt": "Vol GT",
    "volume_difference": "ΔVol",
    "relative_volume_difference": "ΔVol rel",
    "hd": "HD",
    "hd95": "HD95",
    "assd": "ASSD",
    "msd_pred_to_gt": "MSD pred→GT",
    "msd_gt_to_pred": "MSD GT→pred",
    "mhd": "MHD",
    "nsd": "NSD",
}


def _empty_note(m: LabelMetrics) -> str:
    if m.empty is None:
        return ""
    note = {"both": "both", "pred": "pred", "gt": "GT"}[m.empty]
    if m.distance is not None and m.distance.penalised:
        note += f" (= {m.distance.hd:g})"
    return note


def _read_as_note(side: str, mapping: dict[str, int]) -> str:
    whose = {"pred": "prediction's", "gt": "ground truth's"}[side]
    return ", ".join(f"{whose} {value} scored as label {label}" for value, label in mapping.items())


def pair_table(case: CaseResult, options: EvalOptions):
    """A rich table of one case: a row per metric, a column per label/region."""
    from rich.table import Table

    unit = case.unit
    title = f"segtool evaluate: {case.pred.name} vs {case.gt.name}"
    caption = (
        f"distances in {unit}, volumes in {case.volume_unit}; surface={options.surface}; "
        f"NSD tolerance {options.tolerance:g} {unit}"
        + ("; prediction resampled onto the GT grid" if case.resampled else "")
        + "".join(f"; {_read_as_note(side, mapping)}" for side, mapping in case.read_as.items())
        + (f"; ground truth renumbered by --labels-map ({len(options.gt_labels_map)} values; others background)"
           if options.gt_labels_map else "")
    )
    table = Table(title=title, caption=caption)
    table.add_column("metric", style="bold", no_wrap=True)
    for m in case.metrics:
        table.add_column(m.name, justify="right", overflow="fold")
    unit_of = {key: f" {case.volume_unit}" for key in ("volume_pred", "volume_gt", "volume_difference")}
    for key in METRIC_KEYS:
        if key in DISTANCE_KEYS + ("nsd",) and case.metrics and case.metrics[0].distance is None:
            continue
        header = HEADERS[key] + unit_of.get(key, "")
        table.add_row(header, *(fmt(m.as_dict().get(key)) for m in case.metrics))
    notes = [_empty_note(m) for m in case.metrics]
    if any(notes):
        table.add_row("empty mask", *notes)
    return table


def cases_table(cases: Sequence[CaseResult], options: EvalOptions):
    """A compact rich table: a row per case and label/region, a few key metrics."""
    from rich.table import Table

    unit = cases[0].unit if cases else "mm"
    table = Table(title="segtool evaluate: cases", caption=f"distances in {unit}; all metrics in --json / --csv")
    table.add_column("case", no_wrap=True, min_width=max([4] + [len(c.case) for c in cases]))
    table.add_column("label", no_wrap=True, min_width=max([5] + [len(m.name) for c in cases for m in c.metrics]))
    for key in CASE_TABLE_KEYS:
        table.add_column(HEADERS[key], justify="right")
    table.add_column("empty mask")
    for case in cases:
        for i, m in enumerate(case.metrics):
            row = m.as_dict()
            cells = (fmt(row.get(k)) for k in CASE_TABLE_KEYS)
            table.add_row(case.case if i == 0 else "", m.name, *cells, _empty_note(m))
    return table


def summary_table(summary: Sequence[Summary], unit: str = "mm", n_scored: int | None = None, n_failed: int = 0):
    """A rich table of mean / std / median per label/region and key metric.

    With ``n_failed`` cases that could not be scored, the title says the statistics
    are over ``n_scored`` of the ``n_scored + n_failed`` cases.
    """
    from rich.table import Table

    over = "cases" if n_scored is None else f"{n_scored} case{'s' if n_scored != 1 else ''}"
    if n_failed:
        over = f"{n_scored} of {n_scored + n_failed} cases ({n_failed} failed, not in the statistics)"
    table = Table(
        title=f"segtool evaluate: summary over {over}",
        caption=(
            f"distances in {unit}; statistics over the n finite values, n_inf cases with an empty mask "
            "left out; population std; all metrics in --json / --csv"
        ),
    )
    table.add_column("label", no_wrap=True, min_width=max([5] + [len(s.name) for s in summary]))
    table.add_column("metric", no_wrap=True)
    for stat in STATISTICS:
        table.add_column(stat, justify="right")
    table.add_column("n", justify="right")
    table.add_column("n_inf", justify="right")
    for s in summary:
        keys = [k for k in SUMMARY_TABLE_KEYS if k in s.stats]
        for j, key in enumerate(keys):
            st = s.stats[key]
            table.add_row(
                s.name if j == 0 else "", HEADERS[key], *(fmt(st[stat]) for stat in STATISTICS),
                str(st["n"]), str(st["n_inf"]), end_section=j == len(keys) - 1,
            )
    return table

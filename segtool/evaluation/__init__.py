"""Evaluating label files: pairing folders, per-case metrics, aggregation, tables, JSON, CSV.

The metric definitions live in :mod:`segtool.metrics` (numpy only). One module per job:

* :mod:`~segtool.evaluation.pairing`: the files of two folders paired by case name
  (the rule is in that module and in docs/metrics.md).
* :mod:`~segtool.evaluation.loading`: both files read concurrently, grids checked, or
  the prediction resampled onto the ground-truth grid.
* :mod:`~segtool.evaluation.masks`: binary masks in 0/1, 0/255 or bool scored as one label.
* :mod:`~segtool.evaluation.cases`: options, one pair, every pair of two folders.
* :mod:`~segtool.evaluation.summary`: mean / std / median per label over the cases.
* :mod:`~segtool.evaluation.report`: JSON documents, the CSV file, number format.
* :mod:`~segtool.evaluation.tables`: the rich tables.

No click here.
"""

from __future__ import annotations

from segtool.evaluation.cases import (
    CaseResult,
    EvalOptions,
    FailedCase,
    OnCase,
    evaluate_folders,
    evaluate_pair,
    fill_missing_labels,
    qc_writer,
)
from segtool.evaluation.loading import AFFINE_ATOL, load_pair, read_both, resample_nearest
from segtool.evaluation.masks import MASK_VALUES, read_masks_as_one_label
from segtool.evaluation.pairing import IMAGE_SUFFIXES, ROLE_SUFFIXES, Pairing, case_key, pair_folders, split_role
from segtool.evaluation.report import CSV_COLUMNS, fmt, folder_report, pair_report, write_csv
from segtool.evaluation.summary import STATISTICS, Summary, aggregate
from segtool.evaluation.tables import (
    CASE_TABLE_KEYS,
    HEADERS,
    SUMMARY_TABLE_KEYS,
    cases_table,
    pair_table,
    summary_table,
)

__all__ = [
    "AFFINE_ATOL",
    "CASE_TABLE_KEYS",
    "CSV_COLUMNS",
    "HEADERS",
    "IMAGE_SUFFIXES",
    "MASK_VALUES",
    "ROLE_SUFFIXES",
    "STATISTICS",
    "SUMMARY_TABLE_KEYS",
    "CaseResult",
    "EvalOptions",
    "FailedCase",
    "OnCase",
    "Pairing",
    "Summary",
    "aggregate",
    "case_key",
    "cases_table",
    "evaluate_folders",
    "evaluate_pair",
    "fill_missing_labels",
    "fmt",
    "folder_report",
    "load_pair",
    "pair_folders",
    "pair_report",
    "pair_table",
    "qc_writer",
    "read_both",
    "read_masks_as_one_label",
    "resample_nearest",
    "split_role",
    "summary_table",
    "write_csv",
]

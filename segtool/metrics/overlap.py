"""Overlap and volume metrics from voxel counts: Dice, IoU, precision, recall, specificity."""

from __future__ import annotations

import math

import numpy as np

from segtool.metrics.checks import as_spacing, check_binary
from segtool.metrics.results import OverlapMetrics


def _safe_div(num: float, den: float, if_zero: float) -> float:
    return float(num) / float(den) if den else float(if_zero)


def overlap_from_counts(tp: int, fp: int, fn: int, tn: int, voxel_volume: float) -> OverlapMetrics:
    """Overlap and volume metrics from voxel counts (conventions for empty masks included)."""
    n_pred, n_gt = tp + fp, tp + fn
    both_empty = n_pred == 0 and n_gt == 0
    dice_ = 1.0 if both_empty else 2.0 * tp / (n_pred + n_gt)
    iou_ = 1.0 if both_empty else tp / (tp + fp + fn)
    # conventions for 0/0: nothing predicted and nothing to find is perfect; see docs
    precision_ = _safe_div(tp, n_pred, 1.0 if n_gt == 0 else 0.0)
    recall_ = _safe_div(tp, n_gt, 1.0 if n_pred == 0 else 0.0)
    specificity_ = _safe_div(tn, tn + fp, 1.0)
    v_pred, v_gt = n_pred * voxel_volume, n_gt * voxel_volume
    if n_gt:
        rvd = (v_pred - v_gt) / v_gt
    else:
        rvd = 0.0 if n_pred == 0 else math.inf
    return OverlapMetrics(
        tp=int(tp), fp=int(fp), fn=int(fn), tn=int(tn), voxel_volume=voxel_volume,
        dice=dice_, iou=iou_, precision=precision_, recall=recall_, specificity=specificity_,
        volume_pred=v_pred, volume_gt=v_gt, volume_difference=v_pred - v_gt, relative_volume_difference=rvd,
    )


def overlap_metrics(pred, gt, spacing=None) -> OverlapMetrics:
    """Dice, IoU, precision, recall, specificity and volumes of two binary masks."""
    pred, gt = check_binary(pred, gt)
    spacing = as_spacing(spacing, pred.ndim)
    tp = int(np.count_nonzero(pred & gt))
    n_pred, n_gt = int(np.count_nonzero(pred)), int(np.count_nonzero(gt))
    fp, fn = n_pred - tp, n_gt - tp
    tn = pred.size - tp - fp - fn
    return overlap_from_counts(tp, fp, fn, tn, float(np.prod(spacing)))


def dice(pred, gt) -> float:
    """Dice = 2|P∩G| / (|P| + |G|); 1 when both masks are empty."""
    return overlap_metrics(pred, gt).dice


def iou(pred, gt) -> float:
    """IoU (Jaccard) = |P∩G| / |P∪G|; 1 when both masks are empty."""
    return overlap_metrics(pred, gt).iou


def precision(pred, gt) -> float:
    return overlap_metrics(pred, gt).precision


def recall(pred, gt) -> float:
    return overlap_metrics(pred, gt).recall


def specificity(pred, gt) -> float:
    return overlap_metrics(pred, gt).specificity

"""Binary masks written in any foreground value (0/1, 0/255, 0/True) scored as one label.

The rule (also in docs/metrics.md): when the prediction and the ground truth are both
*masks* (each holds at most one non-zero value), a mask whose value is 1 or 255 (bool
files read as 0/1) is scored as one label: label 1, or the one label asked for when
exactly one is (a task with one label, ``--labels 1=tumour``, ``--labels 255=tumour``).
Any other value is a label number and is left alone, so label maps (BraTS 1/2/4, a
case holding only label 2) never merge.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

#: the foreground values of binary masks (1: 0/1 and boolean files; 255: 8-bit masks)
MASK_VALUES = (1, 255)

_MANY = object()  # more than one non-zero value


def _only_value(a: np.ndarray):
    """The one non-zero value of ``a`` (an int), None when it has none, or _MANY."""
    if not a.size:
        return None
    lo, hi = int(a.min()), int(a.max())
    value = hi if hi != 0 else lo
    if value == 0:
        return None
    if lo != 0 and hi != 0 and lo != hi:
        return _MANY
    if lo == hi or np.count_nonzero(a) == np.count_nonzero(a == value):
        return value
    return _MANY


def mask_target(labels: Mapping[int, str] | None) -> int | None:
    """The label a binary mask scores as: 1 with no labels asked for, the one asked for
    when it is a mask value, else None (no mask is read as another label)."""
    if labels is None:
        return 1
    if len(labels) == 1 and int(next(iter(labels))) in MASK_VALUES:
        return int(next(iter(labels)))
    return None


def read_masks_as_one_label(
    pred: np.ndarray, gt: np.ndarray, labels: Mapping[int, str] | None
) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, int]]]:
    """(pred, gt, read_as): the arrays with a mask value rewritten as the label it scores as.

    ``read_as`` says what was read as what, e.g. ``{"gt": {"255": 1}}`` (empty when
    nothing was). A rewritten array is a copy in the same memory order; the inputs
    are never changed.
    """
    target = mask_target(labels)
    if target is None:
        return pred, gt, {}
    values = {"pred": _only_value(pred), "gt": _only_value(gt)}
    if _MANY in values.values():
        return pred, gt, {}
    arrays = {"pred": pred, "gt": gt}
    read_as: dict[str, dict[str, int]] = {}
    for side, value in values.items():
        if value in MASK_VALUES and value != target:
            out = arrays[side].copy(order="K")
            out[out == value] = target
            arrays[side] = out
            read_as[side] = {str(value): target}
    return arrays["pred"], arrays["gt"], read_as

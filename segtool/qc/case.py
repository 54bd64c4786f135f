"""One call per case: render its pictures, complete its row and append it to the report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from segtool.qc.ids import new_case_id, safe_id
from segtool.qc.labels import label_volumes, labels_on
from segtool.qc.render import blank_like, render_case, render_comparison
from segtool.qc.report import QcReport
from segtool.qc.slicing import voxel_spacing

if TYPE_CHECKING:  # pragma: no cover
    from segtool.io import Volume


def _complete_row(
    row: Mapping[str, Any], image: "Volume", labels: Any, label_names: Mapping[int, str] | None
) -> dict:
    out = dict(row)
    out.setdefault("status", "ok")
    names = {int(k): str(v) for k, v in dict(label_names or {}).items()}
    out.setdefault("label_names", names)
    photo = image.kind == "photo"
    out.setdefault("volume_unit", "px" if photo else ("mm²" if image.ndim == 2 else "mm³"))
    if "volumes" not in out:
        arr = labels_on(tuple(image.spatial_shape), labels)
        spacing = (1.0, 1.0) if photo else tuple(voxel_spacing(image.affine, image.ndim))
        out["volumes"] = label_volumes(arr, spacing, names)
    return out


def qc_case(
    qc_dir: str | os.PathLike,
    image: "Volume",
    labels: Any,
    label_names: Mapping[int, str] | None,
    row: Mapping[str, Any],
    *,
    case_id: str | None = None,
    **render_options: Any,
) -> list[Path]:
    """Render one case into ``qc_dir/images`` and append its row to ``qc_dir/index.html``.

    ``render_options``: ``n_slices``, ``size``, ``photo_size``, ``colours``, ``full_fov`` of
    :func:`render_case` (``full_fov=True``: the whole field of view, not a crop around the labels).
    """
    report = QcReport(qc_dir)
    case_id = safe_id(case_id) if case_id else new_case_id(row)
    images = render_case(image, labels, label_names, report.images, case_id, **render_options)
    report.add_case(_complete_row(row, image, labels, label_names), images, case_id=case_id)
    return images


def qc_comparison(
    qc_dir: str | os.PathLike,
    image: "Volume | None",
    pred: Any,
    gt: Any,
    label_names: Mapping[int, str] | None,
    row: Mapping[str, Any],
    *,
    case_id: str | None = None,
    **render_options: Any,
) -> list[Path]:
    """Render prediction vs reference (ground truth) into ``qc_dir/images`` and append the row.

    The row's ``input`` is shown as the prediction's path and ``output`` as the reference's;
    the reference's volumes are added as "reference volumes".
    """
    report = QcReport(qc_dir)
    case_id = safe_id(case_id) if case_id else new_case_id(row)
    if image is None:
        image = blank_like(pred)
    images = render_comparison(image, pred, gt, label_names, report.images, case_id, **render_options)
    full = _complete_row(row, image, pred, label_names)
    if "reference volumes" not in full:
        gt_row = _complete_row({}, image, gt, label_names)
        full["reference volumes"] = {k: f"{v:g} {gt_row['volume_unit']}" for k, v in gt_row["volumes"].items()}
    report.add_case(full, images, case_id=case_id, comparison=True)
    return images


def record_failure(qc_dir: str | os.PathLike, row: Mapping[str, Any], *, case_id: str | None = None) -> None:
    """Append a row without pictures, e.g. for a case that failed (status defaults to 'failed')."""
    out = dict(row)
    out.setdefault("status", "failed")
    QcReport(qc_dir).add_case(out, [], case_id=case_id or new_case_id(row))

"""Headless quality-control pictures and an HTML report that many runs append to.

Pillow + numpy (+ nibabel's orientation helpers) only: no torch, no matplotlib, no
display, no network, no JavaScript.

API FOR COMMANDS (``run``, ``evaluate``, ``qc``)
------------------------------------------------
``qc_case(qc_dir, image, labels, label_names, row, *, case_id=None, **render_options) -> list[Path]``
    Render one segmented case and append it to ``qc_dir/index.html``. ``image`` is the
    input :class:`~segtool.io.Volume`; ``labels`` the integer segmentation, an array of
    shape ``spatial`` or ``(1, *spatial)`` (or a Volume) on the image's grid;
    ``label_names`` maps label value -> name (``TaskSpec.labels``); ``row`` holds the
    report fields below. Volumes per label are computed when ``row`` has none.

``qc_comparison(qc_dir, image, pred, gt, label_names, row, *, case_id=None, **render_options) -> list[Path]``
    The same for ``segtool evaluate``: prediction and ground truth on the same slices
    (3D: prediction above, ground truth below; 2D: side by side). ``image`` may be
    None when ``pred`` is a Volume (its affine is used, on a black background).

``record_failure(qc_dir, row) -> None``
    Append a row without pictures (e.g. ``{"input": ..., "status": "failed", "error": msg}``).

Row fields (all optional, any JSON-able values): ``task``, ``input``, ``output``,
``model``, ``seconds`` (run time), ``volumes`` ({name: mm³} or {label value: mm³}),
``volume_unit`` (default "mm³"; "px" for photos), ``status`` (default "ok"),
``error``. Any other key (e.g. ``dice``: {name: value}) is shown under "details".

Lower level: ``render_case`` / ``render_comparison`` write PNGs and return their paths;
``QcReport(dir).add_case(row, images)`` appends; ``label_volumes`` computes volumes.

MODULES
-------
``case``       the calls above: render, complete the row, append
``render``     the PNGs of a case (layout of the pictures: see its doc)
``slicing``    RAS reorientation, slice choice, upright planes, tile sizes
``windowing``  intensities to grey/RGB pixels (1st-99th percentile window)
``overlay``    label resampling, fill and outline
``mosaic``     tiles side by side / rows one above the other, with gaps
``colours``    the label palette
``labels``     label arrays checked against the image grid; names and volumes
``report``     one JSON record per case, lock, atomic rebuild of index.html (see its doc)
``page``       the HTML of the report page
``ids``        file- and HTML-safe case ids
"""

from __future__ import annotations

from segtool.qc.case import qc_case, qc_comparison, record_failure
from segtool.qc.colours import LABEL_COLOURS, label_colour
from segtool.qc.labels import label_name, label_volumes
from segtool.qc.mosaic import GAP, GAP_COLOUR
from segtool.qc.overlay import FILL_ALPHA
from segtool.qc.page import render_html
from segtool.qc.render import render_case, render_comparison
from segtool.qc.report import QcReport
from segtool.qc.slicing import VIEWS

__all__ = [
    "FILL_ALPHA",
    "GAP",
    "GAP_COLOUR",
    "LABEL_COLOURS",
    "VIEWS",
    "QcReport",
    "label_colour",
    "label_name",
    "label_volumes",
    "qc_case",
    "qc_comparison",
    "record_failure",
    "render_case",
    "render_comparison",
    "render_html",
]

"""Usage errors in a run's outputs, found before any work: formats, collisions, inputs overwritten."""

from __future__ import annotations

import os
from typing import Sequence

from segtool.errors import UsageError
from segtool.spec import TaskSpec


def check_plan(cases: Sequence, plan, spec: TaskSpec) -> None:
    """Usage errors in the outputs, found before any work (exit 2).

    Refuses an output name without a format suffix, JPEG masks, a photo format for a
    3D task, two cases writing one file (same stem, e.g. ``a.nii`` and ``a.nii.gz``)
    and any output that is an input of this call (even through links, even with
    ``--overwrite``).
    """
    from segtool.io.atomic import InputIndex
    from segtool.io.formats import PHOTO_OUT_SUFFIXES, output_format, split_suffix
    from segtool.cases import case_inputs

    protected = InputIndex(p for case in cases for p in case_inputs(case))
    seen: dict[str, object] = {}
    for case in cases:
        targets = plan.targets(case)
        labels = targets[0]
        fmt = output_format(labels)
        suffix = split_suffix(labels.name)[1]
        if plan.format is not None and fmt != plan.format:
            raise UsageError(f"{labels}: --format {plan.format} does not match the output's suffix {suffix}")
        if fmt == "dicom-seg":
            from segtool.io.dicom_seg import check_source, require_highdicom

            check_source(case.inputs[0], labels)
            require_highdicom()
        if spec.ndim == 3 and suffix.lower() in PHOTO_OUT_SUFFIXES:
            raise UsageError(f"{labels}: a 3D mask cannot be written as {suffix}, use .nii.gz")
        for target in targets:
            key = os.path.normcase(os.path.realpath(target))
            if key in seen and seen[key] != case:
                raise UsageError(
                    f"{target}: both {seen[key].name} and {case.name} would be written here; "
                    "rename one input or use --output-dir per batch"
                )
            seen[key] = case
            hit = protected.find(target, key)
            if hit is not None:
                raise UsageError(
                    f"{target}: the output of {case.name} would overwrite an input of this call ({hit}); "
                    "choose another --output-dir"
                )

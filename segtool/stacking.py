"""``segtool run --stack``: the 2D slices of one patient segmented as one batch, postprocessed as one volume.

A 2D task sees one slice at a time; a patient, though, is a volume, and both
postprocessing (largest component, small-object removal) and per-patient Dice
(Buda et al. 2019) are about the volume. With ``--stack``:

- each INPUT folder is one stack: the image files directly in it, in natural
  slice-number order (``x_1.tif, x_2.tif, ..., x_10.tif``), leaving out masks and
  earlier outputs (names ending in ``_mask``, ``_seg`` or the task's output suffix)
  and hidden files; INPUT files are stacked with the other files of their folder;
- every slice is read and preprocessed as on its own (as in training), the slices'
  windows go through the network together (`segtool.inference`, ``slice_axis``),
  the probabilities become labels and are postprocessed in 3D (slice axis last,
  slice thickness taken as one pixel: slices carry no spacing);
- each slice's mask is written as ``segtool run`` writes it for that slice alone:
  its own name, size, format and geometry.

A stack fails as a whole: one unreadable slice fails every slice of its patient.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from segtool.errors import OutputExistsError, UsageError
from segtool.spec import TaskSpec

#: Name endings (before the format suffix) of files a folder stack leaves out: masks and outputs.
MASK_ENDINGS = ("_mask", "_seg")

_DIGITS = re.compile(r"(\d+)")


def natural_key(path: Path) -> tuple:
    """Sort key on a file name with digit runs compared as numbers: x_2 < x_10."""
    parts = _DIGITS.split(path.name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), path.name


@dataclass(frozen=True)
class Stack:
    """One patient: a folder's slices, each a case, in slice order."""

    name: str
    cases: tuple  # tuple[segtool.runner.Case, ...]


def stack_files(folder: Path, output_suffix: str = "_seg") -> list[Path]:
    """The image slices of ``folder`` in natural order, without masks, outputs and hidden files."""
    from segtool.io.formats import _stem, _suffix
    from segtool.io.formats import ANALYZE_SUFFIXES, DICOM_SUFFIXES, NIFTI_SUFFIXES, PHOTO_SUFFIXES, SITK_SUFFIXES

    readable = PHOTO_SUFFIXES + NIFTI_SUFFIXES + SITK_SUFFIXES + DICOM_SUFFIXES + ANALYZE_SUFFIXES[:1]
    skip = tuple(dict.fromkeys(MASK_ENDINGS + (output_suffix,)))
    files = []
    for path in folder.iterdir():
        if path.name.startswith(".") or not path.is_file() or _suffix(path) not in readable:
            continue
        if _stem(path).endswith(skip):
            continue
        files.append(path)
    return sorted(files, key=natural_key)


def plan_stacks(paths: Sequence[Path], spec: TaskSpec, output_suffix: str = "_seg") -> list[Stack]:
    """Stacks from INPUT paths: each folder is one; files join the stack of their folder.

    Usage errors (exit 2): a 3D task, a folder without slices, files that do not make
    whole cases (see :func:`segtool.runner.group_cases`).
    """
    from segtool.runner import group_cases

    if spec.ndim != 2 or spec.slice_axis is not None:
        raise UsageError(f"--stack stacks 2D slices; task {spec.name!r} takes 3D volumes")
    if not paths:
        raise UsageError("no input images given")
    order: list[str] = []
    folders: dict[str, list[Path]] = {}
    files: dict[str, list[Path]] = {}
    for path in paths:
        if path.is_dir():
            key = str(path)
            found = stack_files(path, output_suffix)
            if not found:
                raise UsageError(f"{path}: no image slices to stack")
            folders[key] = found
        else:
            key = str(path.parent)
            files.setdefault(key, []).append(path)
        if key not in order:
            order.append(key)
    stacks = []
    for key in order:
        cases = []
        if key in folders:
            cases.extend(group_cases(folders[key], spec))
        if key in files:
            cases.extend(group_cases(files[key], spec))
        unique = {c.inputs: c for c in cases}.values()  # a file given twice is one slice
        stacks.append(Stack(key, tuple(sorted(unique, key=lambda c: natural_key(c.inputs[0])))))
    return stacks


def predict_stack(segmenter, volumes: Sequence, keep_probabilities: bool = False,
                  on_batch: Callable[[int, int], None] | None = None) -> list:
    """One :class:`segtool.pipeline.Prediction` per slice, the slices segmented and postprocessed as one volume.

    Each slice is preprocessed on its own (as in training); slices whose model-space
    size differs from the first's are resampled onto it for the forward passes and
    the 3D postprocessing, and their labels (nearest) and probabilities (linear)
    resampled back onto their own grid. When every slice has the same size and the
    network's input differs from it (``input_size``), the probabilities go back to that
    size first and labels and postprocessing are made there.
    """
    import torch

    from segtool.geometry import resample
    from segtool.pipeline import Prediction, preprocess
    from segtool.postprocess import apply_postprocess, labels_from_probabilities

    spec, opts = segmenter.spec, segmenter.options
    prepared = [preprocess(spec, v) for v in volumes]
    grid = tuple(prepared[0].array.shape[1:])
    arrays = [p.array if tuple(p.array.shape[1:]) == grid else resample(p.array, grid, mode="linear") for p in prepared]
    image = torch.from_numpy(np.ascontiguousarray(np.stack(arrays, axis=-1)))  # (C, rows, cols, slices)
    probs = segmenter.model_probabilities(image, slice_axis=2, on_batch=on_batch)
    probs = probs.float().cpu().numpy()  # (K, rows, cols, slices)
    pixel = tuple(prepared[0].spacing)
    native = {tuple(v.spatial_shape) for v in volumes}
    if len(native) == 1 and next(iter(native)) != grid:
        # a fixed network input (input_size): probabilities back to the slices' own size (linear)
        # before labels and 3D postprocessing, so masks are as fine as the slices
        shape = next(iter(native))
        pixel = tuple(volumes[0].spacing)
        probs = np.stack([resample(np.ascontiguousarray(probs[..., i]), shape, mode="linear")
                          for i in range(probs.shape[-1])], axis=-1)
    steps = opts.postprocess or spec.postprocess
    labels = labels_from_probabilities(probs, steps.threshold)
    affine = np.diag([*pixel, 1.0, 1.0])  # slice thickness unknown: one pixel
    labels = apply_postprocess(labels, steps, float(np.prod(pixel)), affine=affine, num_labels=len(spec.labels))
    out = []
    for i, volume in enumerate(volumes):
        shape = tuple(volume.spatial_shape)
        slice_labels = labels[..., i]
        if slice_labels.shape != shape:
            slice_labels = resample(slice_labels[None], shape, mode="nearest")[0]
        slice_probs = None
        if keep_probabilities:
            slice_probs = resample(np.ascontiguousarray(probs[..., i]), shape, mode="linear")
        area = float(np.prod(volume.spacing))
        counts = np.bincount(slice_labels.ravel(), minlength=spec.num_classes)
        out.append(Prediction(slice_labels, slice_probs, {int(k): float(counts[k] * area) for k in spec.labels}))
    return out


def _read_stack(stack: Stack, spec: TaskSpec, allow_uneven: bool):
    from segtool.runner import _read

    return [_read(case, spec, allow_uneven) for case in stack.cases]


def _iter_read_ahead(stacks: Sequence[Stack], spec: TaskSpec, allow_uneven: bool) -> Iterator:
    """(stack, future slices), reading the next stack while this one is segmented."""
    from segtool.runner import read_ahead

    yield from read_ahead(stacks, lambda stack: _read_stack(stack, spec, allow_uneven))


def run_stacks(
    spec: TaskSpec,
    segmenter,
    model_name: str,
    stacks: Sequence[Stack],
    plan,
    on_result: Callable,
    on_batch: Callable[[int, int], None] | None = None,
    on_case_start: Callable | None = None,
    qc: Callable[..., None] | None = None,
    allow_uneven: bool = False,
    warn: Callable[[str], None] | None = None,
) -> list:
    """Segment each stack as one volume and write one mask per slice; one result per slice.

    Like :func:`segtool.runner.run_cases`: the plan is checked first, a failing stack
    is recorded (every slice failed, with the one-line reason) and the others go on.
    With ``--skip-existing`` a stack whose masks all exist is skipped; otherwise
    existing masks are only replaced with ``--overwrite``. A slice's ``seconds`` is
    its share of its stack's time.
    """
    from segtool.io import write_labels, write_probabilities
    from segtool.io.atomic import InputIndex
    from segtool.runner import CaseResult, case_inputs, check_plan, failed_case, failure_message, guess_output_kind

    cases = [case for stack in stacks for case in stack.cases]
    check_plan(cases, plan, spec)
    protected = InputIndex(p for case in cases for p in case_inputs(case))
    results = []
    todo = []
    for stack in stacks:
        targets = [plan.labels_path(case, guess_output_kind(case)) for case in stack.cases]
        if plan.skip_existing and all(t.exists() for t in targets):
            for case, target in zip(stack.cases, targets):
                result = CaseResult(case.name, str(target), spec.name, model_name, 0.0, "skipped")
                results.append(result)
                on_result(result)
        else:
            todo.append(stack)
    for stack, future in _iter_read_ahead(todo, spec, allow_uneven):
        start = time.perf_counter()
        if on_case_start is not None:
            on_case_start(stack.cases[0])
        stack_results = []
        try:
            volumes = future.result()
            for message in (m for v in volumes for m in v.meta.get("warnings", [])):
                if warn is not None:
                    warn(message)
            targets = [plan.labels_path(case, v.kind) for case, v in zip(stack.cases, volumes)]
            existing = [t for t in targets if t.exists()]
            if existing and not (plan.overwrite or plan.skip_existing):
                raise OutputExistsError(f"{existing[0]}: output exists (use --overwrite or --skip-existing)")
            predictions = predict_stack(segmenter, volumes, plan.probabilities, on_batch)
            share = (time.perf_counter() - start) / len(stack.cases)
            for case, volume, target, prediction in zip(stack.cases, volumes, targets, predictions):
                if target.exists() and not plan.overwrite:  # --skip-existing: keep what is there
                    stack_results.append(CaseResult(case.name, str(target), spec.name, model_name, 0.0, "skipped"))
                    continue
                t0 = time.perf_counter()
                colours = spec.label_colours() if volume.ndim == 2 else None
                written = write_labels(prediction.labels, volume, target, overwrite=plan.overwrite, protect=protected,
                                       palette=colours)
                if plan.overlay:
                    from segtool.overlays import write_overlay

                    write_overlay(volume, prediction.labels, colours, dict(spec.labels), plan.overlay_path(target),
                                  overwrite=plan.overwrite, protect=protected)
                prob_path = None
                if plan.probabilities:
                    prob_path = str(write_probabilities(
                        prediction.probabilities, volume, plan.probabilities_path(target), overwrite=plan.overwrite,
                        protect=protected,
                    ))
                volumes_mm3 = {spec.labels[k]: v for k, v in prediction.volumes_mm3.items()}
                result = CaseResult(case.name, str(written), spec.name, model_name,
                                    share + time.perf_counter() - t0, "done", None, prob_path, volumes_mm3)
                if qc is not None:
                    qc(volume, prediction.labels, result)
                stack_results.append(result)
        except Exception as exc:  # noqa: BLE001 - one failing stack must not stop the others
            message = failure_message(exc, stack.name)
            seconds = time.perf_counter() - start
            done = {r.input for r in stack_results}
            for case in stack.cases:
                if case.name in done:
                    continue
                stack_results.append(failed_case(
                    spec, model_name, case.name, seconds,
                    f"{message} (stack {stack.name})" if case.name not in message else message, qc))
        for result in stack_results:
            results.append(result)
            on_result(result)
    return results

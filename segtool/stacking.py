"""``segtool run --stack``: the 2D slices of one patient segmented as one batch, postprocessed as one volume.

A 2D task sees one slice at a time; a patient, though, is a volume, and both
postprocessing (largest component, small-object removal) and per-patient Dice
(Buda et al. 2019) are about the volume. With ``--stack``:

- each INPUT folder is one stack: the image files directly in it, in natural
  slice-number order (``x_1.tif, x_2.tif, ..., x_10.tif``), leaving out masks and
  earlier outputs (names ending in ``_mask``, ``_seg`` or the task's output suffix)
  and hidden files; INPUT files are stacked with the other files of their folder;
- every slice is read and preprocessed as on its own (as in training), the slices'
  windows go through the network together (`segtool.sliding_window`, ``slice_axis``),
  the probabilities become labels and are postprocessed in 3D (slice axis last,
  slice thickness taken as one pixel: slices carry no spacing);
- each slice's mask is written as ``segtool run`` writes it for that slice alone:
  its own name, size, format and geometry.

A stack fails as a whole: one unreadable slice fails every slice of its patient.

Existing masks. A slice segmented alone (``segtool run TASK P/x_10.tif``) and the same
slice in a stacked run write the same name, ``x_10_seg.tif``: the stacked mask is the
better one of that slice, and a patient's masks must all come from one stacked run. So a
stacked run whose patient already has some masks is refused before any work, in one line
naming them, unless ``--overwrite`` (replace them with the stacked result); with
``--skip-existing`` a patient is skipped only when every slice has its mask, and a
patient with only some of them is refused too (never a stacked patient with an
unstacked slice inside).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from segtool.errors import OutputExistsError, UsageError
from segtool.spec import TaskSpec

if TYPE_CHECKING:
    from segtool.cases import RunRequest

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
    cases: tuple  # tuple[segtool.cases.Case, ...]


def stack_files(folder: Path, output_suffix: str = "_seg") -> list[Path]:
    """The image slices of ``folder`` in natural order, without masks, outputs and hidden files."""
    from segtool.io.formats import ANALYZE_SUFFIXES, DICOM_SUFFIXES, NIFTI_SUFFIXES, PHOTO_SUFFIXES, SITK_SUFFIXES
    from segtool.io.formats import split_suffix

    readable = PHOTO_SUFFIXES + NIFTI_SUFFIXES + SITK_SUFFIXES + DICOM_SUFFIXES + ANALYZE_SUFFIXES[:1]
    skip = tuple(dict.fromkeys(MASK_ENDINGS + (output_suffix,)))
    files = []
    for path in folder.iterdir():
        stem, suffix = split_suffix(path.name)
        if path.name.startswith(".") or not path.is_file() or suffix.lower() not in readable:
            continue
        if stem.endswith(skip):
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


def stack_outputs(stack: Stack, plan) -> tuple[list[Path], list[Path]]:
    """(each slice's mask path, every output of the stack that exists already: masks and companions)."""
    import os

    from segtool.cases import guess_output_kind

    masks = [plan.labels_path(case, guess_output_kind(case)) for case in stack.cases]
    existing = [t for case in stack.cases for t in plan.targets(case) if os.path.lexists(t)]
    return masks, existing


def existing_masks_message(stack: Stack, existing: Sequence[Path], slices: int, skip_existing: bool) -> str:
    """One line: which outputs of a patient exist, and that only ``--overwrite`` makes the stack whole again."""
    names = ", ".join(p.name for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
    one = len(existing) == 1
    head = f"{stack.name}: {len(existing)} of this patient's outputs already exist{'s' if one else ''} ({names})"
    whole = f"a stacked run writes all {slices} slices from one 3D segmentation"
    if skip_existing:
        return (f"{head}; --skip-existing skips only patients whose masks all exist, never part of one ({whole}), "
                "so pass --overwrite to segment the patient again as a whole")
    return f"{head}; {whole}, so pass --overwrite to replace {'it' if one else 'them'} with the stacked result"


def predict_stack(segmenter, volumes: Sequence, keep_probabilities: bool = False,
                  on_batch: Callable[[int, int], None] | None = None) -> list:
    """One :class:`segtool.segmenter.Prediction` per slice, the slices segmented and postprocessed as one volume.

    Each slice is preprocessed on its own (as in training); slices whose model-space
    size differs from the first's are resampled onto it for the forward passes and
    the 3D postprocessing, and their labels (nearest) and probabilities (linear)
    resampled back onto their own grid. When every slice has the same size and the
    network's input differs from it (``input_size``), the probabilities go back to that
    size first and labels and postprocessing are made there.
    """
    import torch

    from segtool.geometry import resample
    from segtool.preprocess import preprocess
    from segtool.cases import label_volumes
    from segtool.postprocess import apply_postprocess, labels_from_probabilities
    from segtool.segmenter import Prediction

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
        volumes_by_value = label_volumes(slice_labels, spec, float(np.prod(volume.spacing)))
        out.append(Prediction(slice_labels, slice_probs, volumes_by_value))
    return out


def _read_stack(stack: Stack, spec: TaskSpec, allow_uneven: bool):
    from segtool.cases import read_case

    return [read_case(case, spec, allow_uneven) for case in stack.cases]


def _iter_read_ahead(stacks: Sequence[Stack], spec: TaskSpec, allow_uneven: bool) -> Iterator:
    """(stack, future slices), reading the next stack while this one is segmented."""
    from segtool.cases import read_ahead

    yield from read_ahead(stacks, lambda stack: _read_stack(stack, spec, allow_uneven))


def run_stacks(request: "RunRequest", stacks: Sequence[Stack]) -> list:
    """Segment each stack as one volume and write one mask per slice; one result per slice.

    Like :func:`segtool.runner.run_cases`: the plan is checked first, a failing stack
    is recorded (every slice failed, with the one-line reason) and the others go on.
    With ``--skip-existing`` a stack whose masks all exist is skipped; a stack with some
    outputs already there fails as a whole unless ``--overwrite`` (see the module's
    "Existing masks"). A slice's ``seconds`` is its share of its stack's time. Each
    slice's outputs are written as for a slice alone (`segtool.cases.write_case_outputs`).
    """
    from segtool.cases import case_inputs
    from segtool.io.atomic import InputIndex
    from segtool.output_checks import check_plan

    spec, plan = request.spec, request.plan
    cases = [case for stack in stacks for case in stack.cases]
    check_plan(cases, plan, spec)
    protected = InputIndex(p for case in cases for p in case_inputs(case))
    results, todo = _skip_complete(spec, request.model_name, stacks, plan)
    for result in results:
        request.on_result(result)
    for stack, future in _iter_read_ahead(todo, spec, request.allow_uneven):
        if request.on_case_start is not None:
            request.on_case_start(stack.cases[0])
        for result in _segment_stack(request, stack, future, protected):
            results.append(result)
            request.on_result(result)
    return results


def _segment_stack(request: "RunRequest", stack: Stack, future, protected) -> list:
    """One result per slice of ``stack``: done, or (the stack fails as a whole) failed from the first error on."""
    from segtool.cases import failed_case, failure_message, write_case_outputs

    spec, plan = request.spec, request.plan
    start = time.perf_counter()
    results = []
    try:
        volumes = future.result()
        request.pass_on_warnings(volumes)
        existing = stack_outputs(stack, plan)[1]
        if existing and not plan.overwrite:  # never a stacked patient with an unstacked slice inside
            raise OutputExistsError(existing_masks_message(stack, existing, len(stack.cases), plan.skip_existing))
        predictions = predict_stack(request.segmenter, volumes, plan.probabilities, request.on_batch)
        share = (time.perf_counter() - start) / len(stack.cases)
        for case, volume, prediction in zip(stack.cases, volumes, predictions):
            results.append(write_case_outputs(request, case, volume, prediction, time.perf_counter() - share,
                                              protected))
    except Exception as exc:  # noqa: BLE001 - one failing stack must not stop the others
        message = failure_message(exc, stack.name)
        done = {r.input for r in results}
        results += [failed_case(spec, request.model_name, case.name, time.perf_counter() - start,
                                f"{message} (stack {stack.name})" if case.name not in message else message,
                                request.qc) for case in stack.cases if case.name not in done]
    return results


def _skip_complete(spec: TaskSpec, model_name: str, stacks: Sequence[Stack], plan) -> tuple[list, list]:
    """(a "skipped" result per slice of each stack whose masks all exist under --skip-existing, the other stacks)."""
    from segtool.cases import CaseResult, guess_output_kind

    skipped, todo = [], []
    for stack in stacks:
        targets = [plan.labels_path(case, guess_output_kind(case)) for case in stack.cases]
        if plan.skip_existing and all(t.exists() for t in targets):
            skipped += [CaseResult(c.name, str(t), spec.name, model_name, 0.0, "skipped")
                        for c, t in zip(stack.cases, targets)]
        else:
            todo.append(stack)
    return skipped, todo

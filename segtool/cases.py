"""One case of a run: what it reads, where its outputs go, and the one writer of them.

`segtool.runner.run_cases`, `segtool.photo_batch.run_photo_cases` and
`segtool.stacking.run_stacks` differ in how they get a case's prediction (one image,
batches of photos, a patient's slices as one volume); what they do with it is the same
and lives here, once:

- :func:`postprocess_labels`: postprocess a case's labels on its grid and measure each
  label's volume (`segtool.segmenter.Segmenter` and the photo batches; the stacks
  postprocess the patient in 3D and measure each slice with :func:`label_volumes`);
- :func:`write_case_outputs`: every output of a case (mask, overlay, probabilities,
  QC record) from one call, all or none, and its `CaseResult` (the JSON line of
  ``segtool run --json``, which the caller's ``on_result`` prints in input order).

:class:`RunRequest` holds what a run needs besides its cases.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from segtool.errors import DEBUG_ENV, OutputExistsError, SegtoolError, describe_unexpected
from segtool.spec import Postprocess, TaskSpec

if TYPE_CHECKING:
    import numpy as np

    from segtool.io import Volume


@dataclass(frozen=True)
class Case:
    """One segmentation job: the channel files of one image, in the task's channel order."""

    inputs: tuple[Path, ...]

    @property
    def name(self) -> str:
        return str(self.inputs[0])


@dataclass
class CaseResult:
    input: str
    output: str | None
    task: str
    model: str
    seconds: float
    status: str  # done | skipped | failed
    error: str | None = None
    probabilities: str | None = None
    volumes_mm3: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "input": self.input,
            "output": self.output,
            "task": self.task,
            "model": self.model,
            "seconds": round(self.seconds, 3),
            "status": self.status,
            "error": self.error,
            "probabilities": self.probabilities,
            "volumes_mm3": self.volumes_mm3,
        }


@dataclass(frozen=True)
class OutputPlan:
    """Where a case's outputs go."""

    output: Path | None = None  # -o: one case only
    output_dir: Path | None = None
    overwrite: bool = False
    skip_existing: bool = False
    probabilities: bool = False
    suffix: str = "_seg"  # the task's output suffix (TaskSpec.output_suffix)
    format: str | None = None  # --format: "nifti" or "dicom-seg"; None: from -o's suffix, else NIfTI
    overlay: bool = False  # 2D tasks: also write <stem>_overlay.png (the image, classes blended in, a legend)
    regions: bool = False  # --regions: write the task's nested regions as one map (segtool.regions), not its labels
    bids: object | None = None  # --bids: a segtool.bids.BidsLayout that names every mask

    def labels_path(self, case: Case, kind: str) -> Path:
        from segtool.io import default_output_path
        from segtool.io.formats import split_suffix

        if self.output is not None:
            return self.output
        if self.bids is not None:
            return self.bids.labels_path(case.inputs[0], kind)
        path = default_output_path(case.inputs[0], kind, self.output_dir, suffix=self.suffix)
        stem, suffix = split_suffix(path.name)
        if self.format == "dicom-seg" and suffix == ".nii.gz":
            path = path.with_name(stem + ".dcm")
        return path

    def companion_stem(self, labels_path: Path) -> str:
        """The mask's name less its format suffix (`segtool.io.formats.split_suffix`, any case,
        ``.nii.gz`` as one) and less the task's role suffix (``self.suffix``, else ``_seg``):
        ``case_seg.nii.gz`` -> ``case``, ``-o out.mhd`` -> ``out``, ``scan.v2_seg.TIF`` -> ``scan.v2``."""
        from segtool.io.formats import WRITABLE_SUFFIXES, split_suffix

        name = split_suffix(labels_path.name, WRITABLE_SUFFIXES)[0]
        for role in (self.suffix, "_seg"):
            if role and name.endswith(role) and len(name) > len(role):
                return name[: -len(role)]
        return name

    def probabilities_path(self, labels_path: Path) -> Path:
        """``<stem>_prob.nii.gz`` beside the mask, whatever the mask's format: probabilities are
        always a float NIfTI (`segtool.io.write_probabilities`). ``-o out.mhd`` -> ``out_prob.nii.gz``."""
        return labels_path.with_name(f"{self.companion_stem(labels_path)}_prob.nii.gz")

    def overlay_path(self, labels_path: Path) -> Path:
        """``<stem>_overlay.png`` beside the mask (always PNG): ``photo_seg.TIF`` -> ``photo_overlay.png``."""
        return labels_path.with_name(f"{self.companion_stem(labels_path)}_overlay.png")

    def targets(self, case: Case) -> list[Path]:
        """Every file a case may write (labels, Analyze companion, probabilities)."""
        from segtool.io.formats import analyze_companions

        labels = self.labels_path(case, guess_output_kind(case))
        out = [labels] + analyze_companions(labels)
        if self.probabilities:
            out.append(self.probabilities_path(labels))
        if self.overlay:
            out.append(self.overlay_path(labels))
        return out

    def refuse_existing(self, target: Path) -> None:
        """OutputExistsError (in the command's words) when ``target`` exists and the plan does not overwrite."""
        if target.exists() and not self.overwrite:
            raise OutputExistsError(f"{target}: output exists (use --overwrite or --skip-existing)")


def _ignore(result: CaseResult) -> None:
    return None


@dataclass(frozen=True)
class RunRequest:
    """What a run needs besides its cases (`segtool.runner.run_cases`, `segtool.stacking.run_stacks`).

    ``on_result`` is called once per case, in input order, in the calling thread;
    ``on_batch(done, total)`` as windows go through the network; ``on_case_start(case)``
    as a case (a photo batch, a stack) starts; ``qc(volume, labels, result)`` adds a
    case's QC record (``volume`` None for a failed case); ``warn`` takes one message.
    With ``combine`` a case's inputs are one subject's contrasts (``--combine``).
    """

    spec: TaskSpec
    segmenter: object  # segtool.segmenter.Segmenter
    model_name: str
    plan: OutputPlan
    on_result: Callable[[CaseResult], None] = _ignore
    on_batch: Callable[[int, int], None] | None = None
    on_case_start: Callable[[Case], None] | None = None
    qc: Callable[..., None] | None = None
    allow_uneven: bool = False
    warn: Callable[[str], None] | None = None
    combine: bool = False

    def pass_on_warnings(self, volumes: Iterable) -> None:
        """The readers' warnings of ``volumes`` (uneven DICOM spacing, ...) handed to ``warn``."""
        for message in (m for volume in volumes for m in volume.meta.get("warnings", [])):
            if self.warn is not None:
                self.warn(message)


def output_suffix(spec: TaskSpec) -> str:
    """The suffix of a task's default output names (``_seg`` unless the task declares another)."""
    return getattr(spec, "output_suffix", None) or "_seg"


def case_inputs(case: Case) -> list[Path]:
    """The files a case reads, as far as known before reading (Analyze pairs included)."""
    from segtool.io.formats import analyze_companions

    out: list[Path] = []
    for path in case.inputs:
        out.append(path)
        out.extend(analyze_companions(path))
    return out


def guess_output_kind(case: Case) -> str:
    from segtool.io.formats import is_photo_path

    return "photo" if is_photo_path(case.inputs[0]) else "volume"


def read_case(case: Case, spec: TaskSpec, allow_uneven: bool = False) -> "Volume":
    """The case's channel files read as one image with the task's channels."""
    from segtool.io import read_channels

    return read_channels(list(case.inputs), spec.ndim, spec.channels, allow_uneven=allow_uneven,
                         grey_as_rgb=spec.normalization == "rgb")


def read_ahead(items: Sequence, read: Callable, depth: int = 1) -> Iterator[tuple[object, Future]]:
    """Yield (item, future ``read(item)``), reading up to ``depth`` items ahead while the caller works on this one."""
    if not items:
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segtool-read")
    futures: dict[int, Future] = {}  # submitted, not yet handed out
    try:
        submitted = 0
        for i, item in enumerate(items):
            while submitted < len(items) and submitted <= i + depth:
                futures[submitted] = pool.submit(read, items[submitted])
                submitted += 1
            yield item, futures.pop(i)
    finally:
        for future in futures.values():  # read ahead but never handed out: a caller that stops early
            future.cancel()  # leaves no read behind (those handed out still complete)
        pool.shutdown(wait=True)


def failure_message(exc: Exception, name: str) -> str:
    """One line for a failed case (or stack); the traceback goes to stderr under SEGTOOL_DEBUG=1."""
    if isinstance(exc, SegtoolError):
        return exc.one_line()
    message = f"{name}: {describe_unexpected(exc)}"
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return message
    return message + f" (set {DEBUG_ENV}=1 for the traceback)"


def failed_case(spec: TaskSpec, model_name: str, name: str, seconds: float, message: str,
                qc: Callable[..., None] | None = None) -> CaseResult:
    """The result of a case that failed, given its row in the QC report (no pictures) when there is one.

    QC trouble never hides the failure.
    """
    result = CaseResult(name, None, spec.name, model_name, seconds, "failed", message)
    if qc is not None:
        try:
            qc(None, None, result)
        except Exception:  # noqa: BLE001
            pass
    return result


def label_volumes(labels: "np.ndarray", spec: TaskSpec, voxel: float) -> dict[int, float]:
    """Each of the task's labels' volume in ``labels``: its voxel count times ``voxel`` (mm³; px for photos)."""
    from segtool.postprocess import label_counts

    counts = label_counts(labels, spec.num_classes)
    return {int(k): float(counts[k] * voxel) for k in spec.labels}


def postprocess_labels(spec: TaskSpec, steps: Postprocess, volume: "Volume",
                       labels: "np.ndarray") -> tuple["np.ndarray", dict[int, float]]:
    """(``labels`` postprocessed on ``volume``'s grid, each label's volume by value)."""
    import numpy as np

    from segtool.postprocess import apply_postprocess

    voxel = float(np.prod(volume.spacing))
    labels = apply_postprocess(labels, steps, voxel, affine=volume.affine, num_labels=len(spec.labels))
    return labels, label_volumes(labels, spec, voxel)


def write_case_outputs(request: RunRequest, case: Case, volume: "Volume", prediction, start: float,
                       protected=()) -> CaseResult:
    """Write every output of one case and return its "done" result: all of them, or none.

    ``prediction`` (a `segtool.segmenter.Prediction`: postprocessed labels on ``volume``'s
    grid, their volumes, probabilities when the plan writes them) becomes the overlay
    (2D, ``--overlay``), the probabilities (``--prob``), the mask (its label names and
    producer recorded where the format keeps them: DICOM SEG; ``--regions``: the nested
    regions' map) and the case's QC record (``request.qc``), in that order: the mask
    comes after its companions, so a mask on disk means they are complete. If any
    write fails, those made by this call are removed and the error is raised. No file
    is written onto an input of the call (``protected``) or, without ``overwrite``,
    onto an existing one. ``start`` is when the case's work began (``time.perf_counter``).
    """
    from segtool.io import write_labels, write_probabilities

    spec, plan = request.spec, request.plan
    target = plan.labels_path(case, volume.kind)
    plan.refuse_existing(target)
    colours = spec.label_colours() if volume.ndim == 2 else None
    labels, names = prediction.labels, spec.labels
    volumes = {spec.labels[k]: v for k, v in prediction.volumes_by_value.items()}
    if plan.regions:
        from segtool.regions import region_label_map, region_volumes

        labels, names = region_label_map(labels, spec.regions)
        volumes = region_volumes(prediction.volumes_by_value, spec.regions)
        colours = None
    written: list[Path] = []
    try:
        if plan.overlay:
            from segtool.overlays import write_overlay

            written.append(write_overlay(volume, prediction.labels, colours, dict(spec.labels),
                                         plan.overlay_path(target), overwrite=plan.overwrite, protect=protected))
        prob_path = None
        if plan.probabilities:
            written.append(write_probabilities(prediction.probabilities, volume, plan.probabilities_path(target),
                                               overwrite=plan.overwrite, protect=protected))
            prob_path = str(written[-1])
        mask = write_labels(labels, volume, target, overwrite=plan.overwrite, protect=protected,
                            label_names=names, algorithm=f"segtool {spec.name}", palette=colours)
        written.append(mask)
        result = CaseResult(case.name, str(mask), spec.name, request.model_name, time.perf_counter() - start,
                            "done", None, prob_path, volumes)
        if request.qc is not None:
            request.qc(volume, prediction.labels, result)
    except BaseException:
        remove_written(written)
        raise
    return result


def remove_written(paths: Sequence[Path]) -> None:
    """Remove files a call wrote, each with the companions written with it (Analyze ``.img``, the data file
    a ``.mhd``/``.nhdr`` header names); a file already gone is no error."""
    from segtool.io.formats import analyze_companions

    for path in paths:
        for file in _detached_data(path) + analyze_companions(path) + [path]:
            try:
                os.unlink(file)
            except FileNotFoundError:
                pass


def _detached_data(header: Path) -> list[Path]:
    """The data file a detached header we wrote names (``ElementDataFile = out.zraw``), beside it."""
    from segtool.io.formats import split_suffix

    suffix = split_suffix(header.name)[1].lower()
    key = {".mhd": "elementdatafile", ".nhdr": "data file"}.get(suffix)
    if key is None:
        return []
    try:
        lines = header.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        name, sep, value = line.partition("=" if suffix == ".mhd" else ":")
        if sep and name.strip().lower() == key and value.strip() and value.strip().upper() != "LOCAL":
            return [header.parent / Path(value.strip()).name]
    return []

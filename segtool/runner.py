"""Runs a task over many cases: grouping, sharding, prefetching, outputs, per-case results.

The click command (segtool.commands.run) only parses options into `RunRequest`;
everything here is usable from Python too.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from segtool.errors import DEBUG_ENV, OutputExistsError, SegtoolError, UsageError, describe_unexpected
from segtool.output_checks import check_plan  # noqa: F401 - part of the runner's API
from segtool.spec import TaskSpec


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


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' -> (I, N) with 0 <= I < N; every N-th case starting at case I (0-based)."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text}: need 0 <= I < N")
    return index, count


def expand_inputs(raw: Sequence[str], stdin_lines: Callable[[], Iterable[str]]) -> list[Path]:
    """Input paths; '-' stands for paths read from stdin, one per line (blank lines ignored)."""
    paths: list[Path] = []
    for item in raw:
        if item == "-":
            paths.extend(Path(line.strip()) for line in stdin_lines() if line.strip())
        else:
            paths.append(Path(item))
    return paths


def group_cases(
    paths: Sequence[Path], spec: TaskSpec, channels_of: Callable[[Path], int | None] | None = None
) -> list[Case]:
    """Group input paths into cases, in the order given.

    Colour-photo tasks take one file per case. Other multi-channel tasks take, per
    case, one file holding all the task's channels (a 3-channel TIFF slice) or
    consecutive files that add up to them (one file per channel, in the task's
    order): ``channels_of`` (default :func:`segtool.io.channel_count`, header only)
    says how many each file holds. A file it cannot open starts a case of its own,
    so that reading it reports the real problem.
    """
    if not paths:
        raise UsageError("no input images given")
    if spec.files_per_case == 1:
        return [Case((p,)) for p in paths]
    if channels_of is None:
        from segtool.io import channel_count as channels_of
    want = spec.in_channels
    cases: list[Case] = []
    group: list[Path] = []
    held = 0
    for path in paths:
        count = channels_of(path)
        if count is None and not group:
            cases.append(Case((path,)))
            continue
        group.append(path)
        held += 1 if count is None else count
        if held == want:
            cases.append(Case(tuple(group)))
            group, held = [], 0
        elif held > want:
            raise UsageError(_channel_message(spec, group, channels_of))
    if group:
        raise UsageError(_channel_message(spec, group, channels_of))
    return cases


def _channel_message(spec: TaskSpec, group: Sequence[Path], channels_of) -> str:
    """One line: the task's channels, the two ways to give them, and what these files hold."""
    held = ", ".join(f"{p} holds {channels_of(p) or 1}" for p in group)
    return (
        f"task {spec.name!r} expects {spec.in_channels} channels per case ({', '.join(spec.channels)}): one file "
        f"holding all of them, or {spec.in_channels} files per case, one per channel; {held}"
    )


def shard_cases(cases: list[Case], shard: tuple[int, int] | None) -> list[Case]:
    if shard is None:
        return cases
    index, count = shard
    return cases[index::count]


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

    def labels_path(self, case: Case, kind: str) -> Path:
        from segtool.io import default_output_path

        if self.output is not None:
            return self.output
        path = default_output_path(case.inputs[0], kind, self.output_dir, suffix=self.suffix)
        if self.format == "dicom-seg" and path.name.endswith(".nii.gz"):
            path = path.with_name(path.name[: -len(".nii.gz")] + ".dcm")
        return path

    def probabilities_path(self, labels_path: Path) -> Path:
        name = labels_path.name
        for suffix in (".nii.gz", ".nii", ".png", ".tif", ".tiff", ".mha", ".nrrd", ".dcm"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        for role in (self.suffix, "_seg"):
            if role and name.endswith(role) and len(name) > len(role):
                name = name[: -len(role)]
                break
        return labels_path.with_name(f"{name}_prob.nii.gz")

    def overlay_path(self, labels_path: Path) -> Path:
        """``photo_seg.png`` -> ``photo_overlay.png`` (always PNG)."""
        return self.probabilities_path(labels_path).with_name(
            self.probabilities_path(labels_path).name[: -len("_prob.nii.gz")] + "_overlay.png"
        )

    def targets(self, case: Case) -> list[Path]:
        """Every file a case may write (labels, Analyze companion, probabilities)."""
        from segtool.io.atomic import _companions

        labels = self.labels_path(case, guess_output_kind(case))
        out = [labels] + _companions(labels)
        if self.probabilities:
            out.append(self.probabilities_path(labels))
        if self.overlay:
            out.append(self.overlay_path(labels))
        return out


def output_suffix(spec: TaskSpec) -> str:
    """The suffix of a task's default output names (``_seg`` unless the task declares another)."""
    return getattr(spec, "output_suffix", None) or "_seg"


def case_inputs(case: Case) -> list[Path]:
    """The files a case reads, as far as known before reading (Analyze pairs included)."""
    from segtool.io.atomic import _companions

    out: list[Path] = []
    for path in case.inputs:
        out.append(path)
        out.extend(_companions(path))
    return out


def guess_output_kind(case: Case) -> str:
    from segtool.io.formats import PHOTO_SUFFIXES

    suffix = "".join(case.inputs[0].suffixes[-1:]).lower()
    return "photo" if suffix in PHOTO_SUFFIXES else "volume"


def _read(case: Case, spec: TaskSpec, allow_uneven: bool = False):
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


def _read_contrasts(case: Case, spec: TaskSpec, allow_uneven: bool = False) -> list:
    """The case's inputs read one by one, each a single-channel image of the same subject (``--combine``)."""
    return [_read(Case((path,)), spec, allow_uneven) for path in case.inputs]


def iter_read_ahead(
    cases: Sequence[Case], spec: TaskSpec, allow_uneven: bool = False, combine: bool = False
) -> Iterator[tuple[Case, Future]]:
    """Yield (case, future volume), reading the next case while the caller works on this one.

    With ``combine`` the future holds a list of volumes: the case's inputs read one by one.
    """
    read = _read_contrasts if combine else _read
    yield from read_ahead(cases, lambda case: read(case, spec, allow_uneven))


def failure_message(exc: Exception, name: str) -> str:
    """One line for a failed case (or stack); the traceback goes to stderr under SEGTOOL_DEBUG=1."""
    if isinstance(exc, SegtoolError):
        return exc.one_line()
    message = f"{name}: {describe_unexpected(exc)}"
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return message
    return message + f" (set {DEBUG_ENV}=1 for the traceback)"


def run_cases(
    spec: TaskSpec,
    segmenter,
    model_name: str,
    cases: Sequence[Case],
    plan: OutputPlan,
    on_result: Callable[[CaseResult], None],
    on_batch: Callable[[int, int], None] | None = None,
    on_case_start: Callable[[Case], None] | None = None,
    qc: Callable[..., None] | None = None,
    allow_uneven: bool = False,
    warn: Callable[[str], None] | None = None,
    combine: bool = False,
) -> list[CaseResult]:
    """Segment each case; a failing case is recorded and the others go on.

    The plan is checked first (:func:`check_plan`). Every input of the call is
    protected from being overwritten. With ``SEGTOOL_DEBUG`` set, an unexpected
    error's traceback is printed on stderr (the case still fails, the others go on).
    With ``combine`` each case's inputs are images of one subject in different
    contrasts, on one grid, each segmented alone: one mask from their mean
    probabilities (`Segmenter.predict_combined`), named after the first input.
    """
    from segtool.io.atomic import InputIndex

    check_plan(cases, plan, spec)
    protected = InputIndex(p for case in cases for p in case_inputs(case))
    results = []
    todo: list[Case] = []
    for case in cases:
        kind = guess_output_kind(case)
        target = plan.labels_path(case, kind)
        if plan.skip_existing and target.exists():
            result = CaseResult(case.name, str(target), spec.name, model_name, 0.0, "skipped")
            results.append(result)
            on_result(result)
        else:
            todo.append(case)
    from segtool.photo_batch import batchable, run_photo_cases

    if batchable(spec, segmenter) and not combine:  # photos resized to one size: several per forward pass, written behind
        return results + run_photo_cases(spec, segmenter, model_name, todo, plan, on_result, on_batch, on_case_start,
                                         qc, allow_uneven, warn, protected)
    for case, future in iter_read_ahead(todo, spec, allow_uneven, combine):
        start = time.perf_counter()
        if on_case_start is not None:
            on_case_start(case)
        try:
            volumes = future.result() if combine else [future.result()]
            for message in (m for volume in volumes for m in volume.meta.get("warnings", [])):
                if warn is not None:
                    warn(message)
            prediction = None
            if combine:
                prediction = segmenter.predict_combined(volumes, keep_probabilities=plan.probabilities,
                                                        on_batch=on_batch)
            result = _segment_one(spec, segmenter, model_name, case, volumes[0], plan, on_batch, start, qc,
                                  protected, prediction)
        except Exception as exc:  # noqa: BLE001 - one failing case must not stop the others
            result = failed_case(spec, model_name, case.name, time.perf_counter() - start,
                                 failure_message(exc, case.name), qc)
        results.append(result)
        on_result(result)
    return results


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


def _segment_one(spec, segmenter, model_name, case, volume, plan, on_batch, start, qc, protected=(),
                 prediction=None) -> CaseResult:
    from segtool.io import write_labels, write_probabilities

    target = plan.labels_path(case, volume.kind)
    if target.exists() and not plan.overwrite:
        raise OutputExistsError(f"{target}: output exists (use --overwrite or --skip-existing)")
    if prediction is None:
        # Without an overlay or QC page nothing reads the image's values after the prediction.
        consume = not plan.overlay and qc is None
        prediction = segmenter.predict(volume, keep_probabilities=plan.probabilities, on_batch=on_batch,
                                       consume_input=consume)
    colours = spec.label_colours() if volume.ndim == 2 else None
    labels, names = prediction.labels, spec.labels
    volumes = {spec.labels[k]: v for k, v in prediction.volumes_mm3.items()}
    if plan.regions:
        from segtool.regions import region_label_map, region_volumes

        labels, names = region_label_map(labels, spec.regions)
        volumes = region_volumes(prediction.volumes_mm3, spec.regions)
        colours = None
    written = write_labels(
        labels, volume, target, overwrite=plan.overwrite, protect=protected,
        label_names=names, algorithm=f"segtool {spec.name}", palette=colours,
    )
    if plan.overlay:
        from segtool.overlays import write_overlay

        write_overlay(volume, prediction.labels, colours, dict(spec.labels), plan.overlay_path(target),
                      overwrite=plan.overwrite, protect=protected)
    prob_path = None
    if plan.probabilities:
        prob_path = str(
            write_probabilities(
                prediction.probabilities, volume, plan.probabilities_path(target), overwrite=plan.overwrite,
                protect=protected,
            )
        )
    result = CaseResult(
        case.name, str(written), spec.name, model_name, time.perf_counter() - start, "done", None, prob_path, volumes
    )
    if qc is not None:
        qc(volume, prediction.labels, result)
    return result

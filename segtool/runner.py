"""Runs a task over many cases: grouping, sharding, prefetching, per-case results.

The click command (segtool.commands.run) only parses options into a
`segtool.cases.RunRequest` and cases; everything here is usable from Python too:

    run_cases(RunRequest(spec, segmenter, "default", OutputPlan(output_dir=out)), cases)

What a case reads and writes lives in `segtool.cases` (`write_case_outputs`, the one writer).
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from segtool.cases import (
    Case, CaseResult, RunRequest, case_inputs, failed_case, failure_message, guess_output_kind, read_ahead, read_case,
    write_case_outputs,
)
from segtool.errors import OutputExistsError, UsageError
from segtool.output_checks import check_plan
from segtool.spec import TaskSpec


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


def _read_contrasts(case: Case, spec: TaskSpec, allow_uneven: bool = False) -> list:
    """The case's inputs read one by one, each a single-channel image of the same subject (``--combine``)."""
    return [read_case(Case((path,)), spec, allow_uneven) for path in case.inputs]


def iter_read_ahead(
    cases: Sequence[Case], spec: TaskSpec, allow_uneven: bool = False, combine: bool = False
) -> Iterator[tuple[Case, Future]]:
    """Yield (case, future volume), reading the next case while the caller works on this one.

    With ``combine`` the future holds a list of volumes: the case's inputs read one by one.
    """
    read = _read_contrasts if combine else read_case
    yield from read_ahead(cases, lambda case: read(case, spec, allow_uneven))


def run_cases(request: RunRequest, cases: Sequence[Case]) -> list[CaseResult]:
    """Segment each case and write its outputs; a failing case is recorded and the others go on.

    The plan is checked first (:func:`segtool.output_checks.check_plan`). Every input of
    the call is protected from being overwritten. With ``SEGTOOL_DEBUG`` set, an
    unexpected error's traceback is printed on stderr (the case still fails, the others
    go on). With ``request.combine`` each case's inputs are images of one subject in
    different contrasts, on one grid, each segmented alone: one mask from their mean
    probabilities (`Segmenter.predict_combined`), named after the first input. Tasks
    whose photos are all resized to one size go through `segtool.photo_batch`.
    """
    from segtool.io.atomic import InputIndex
    from segtool.photo_batch import batchable, run_photo_cases

    spec, plan = request.spec, request.plan
    check_plan(cases, plan, spec)
    protected = InputIndex(p for case in cases for p in case_inputs(case))
    results = []
    todo: list[Case] = []
    for case in cases:
        target = plan.labels_path(case, guess_output_kind(case))
        if plan.skip_existing and target.exists():
            result = _skipped(request, case, target)
            results.append(result)
            request.on_result(result)
        else:
            todo.append(case)
    if batchable(request.segmenter) and not request.combine:  # several photos per forward pass
        return results + run_photo_cases(request, todo, protected)
    for case, future in iter_read_ahead(todo, spec, request.allow_uneven, request.combine):
        start = time.perf_counter()
        if request.on_case_start is not None:
            request.on_case_start(case)
        try:
            volumes = future.result() if request.combine else [future.result()]
            result = _segment_case(request, case, volumes, start, protected)
        except OutputExistsError as exc:  # another run wrote it meanwhile: with --skip-existing, its mask stands
            result = (_skipped(request, case, plan.labels_path(case, guess_output_kind(case))) if plan.skip_existing
                      else failed_case(spec, request.model_name, case.name, time.perf_counter() - start,
                                       failure_message(exc, case.name), request.qc))
        except Exception as exc:  # noqa: BLE001 - one failing case must not stop the others
            result = failed_case(spec, request.model_name, case.name, time.perf_counter() - start,
                                 failure_message(exc, case.name), request.qc)
        results.append(result)
        request.on_result(result)
    return results


def _skipped(request: RunRequest, case: Case, target: Path) -> CaseResult:
    return CaseResult(case.name, str(target), request.spec.name, request.model_name, 0.0, "skipped")


def _segment_case(request: RunRequest, case: Case, volumes: list, start: float, protected) -> CaseResult:
    """One case's prediction (of its one image, or its contrasts combined) and every output of it."""
    plan, segmenter, volume = request.plan, request.segmenter, volumes[0]
    request.pass_on_warnings(volumes)
    target = plan.labels_path(case, volume.kind)
    if plan.skip_existing and target.exists():  # written by a run beside this one since planning
        return _skipped(request, case, target)
    plan.refuse_existing(target)  # before the work, not after it
    if request.combine:
        prediction = segmenter.predict_combined(volumes, keep_probabilities=plan.probabilities,
                                                on_batch=request.on_batch)
    else:
        # Without an overlay or QC page nothing reads the image's values after the prediction.
        consume = not plan.overlay and request.qc is None
        prediction = segmenter.predict(volume, keep_probabilities=plan.probabilities, on_batch=request.on_batch,
                                       consume_input=consume)
    return write_case_outputs(request, case, volume, prediction, start, protected)

"""Runs a task over many cases: grouping, sharding, prefetching, outputs, per-case results.

The click command (segtool.commands.run) only parses options into `RunRequest`;
everything here is usable from Python too.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from segtool.errors import OutputExistsError, SegtoolError, UsageError, describe_unexpected
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


def group_cases(paths: Sequence[Path], spec: TaskSpec) -> list[Case]:
    """Consecutive groups of len(spec.channels) paths form a case (photos: one file per case)."""
    per_case = spec.files_per_case
    if not paths:
        raise UsageError("no input images given")
    if len(paths) % per_case:
        names = ", ".join(spec.channels)
        raise UsageError(
            f"task {spec.name!r} takes {per_case} files per case ({names}), got {len(paths)} paths"
        )
    return [Case(tuple(paths[i : i + per_case])) for i in range(0, len(paths), per_case)]


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

    def labels_path(self, case: Case, kind: str) -> Path:
        from segtool.io import default_output_path

        if self.output is not None:
            return self.output
        return default_output_path(case.inputs[0], kind, self.output_dir)

    def probabilities_path(self, labels_path: Path) -> Path:
        name = labels_path.name
        for suffix in (".nii.gz", ".nii", ".png", ".tif", ".tiff", ".mha", ".nrrd"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        stem = name[:-4] if name.endswith("_seg") else name
        return labels_path.with_name(f"{stem}_prob.nii.gz")


def guess_output_kind(case: Case) -> str:
    suffix = "".join(case.inputs[0].suffixes[-1:]).lower()
    return "photo" if suffix in {".png", ".jpg", ".jpeg", ".tif", ".tiff"} else "volume"


def _read(case: Case, spec: TaskSpec):
    from segtool.io import read_channels

    return read_channels(list(case.inputs), spec.ndim, spec.channels)


def iter_read_ahead(cases: Sequence[Case], spec: TaskSpec) -> Iterator[tuple[Case, Future]]:
    """Yield (case, future volume), reading the next case while the caller works on this one."""
    if not cases:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="segtool-read") as pool:
        pending = pool.submit(_read, cases[0], spec)
        for i, case in enumerate(cases):
            current = pending
            if i + 1 < len(cases):
                pending = pool.submit(_read, cases[i + 1], spec)
            yield case, current


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
) -> list[CaseResult]:
    """Segment each case; a failing case is recorded and the others go on."""
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
    for case, future in iter_read_ahead(todo, spec):
        start = time.perf_counter()
        if on_case_start is not None:
            on_case_start(case)
        try:
            volume = future.result()
            result = _segment_one(spec, segmenter, model_name, case, volume, plan, on_batch, start, qc)
        except Exception as exc:  # noqa: BLE001 - one failing case must not stop the others
            message = exc.one_line() if isinstance(exc, SegtoolError) else f"{case.name}: {describe_unexpected(exc)}"
            result = CaseResult(case.name, None, spec.name, model_name, time.perf_counter() - start, "failed", message)
        results.append(result)
        on_result(result)
    return results


def _segment_one(spec, segmenter, model_name, case, volume, plan, on_batch, start, qc) -> CaseResult:
    from segtool.io import write_labels, write_probabilities

    target = plan.labels_path(case, volume.kind)
    if target.exists() and not plan.overwrite:
        raise OutputExistsError(f"{target}: output exists (use --overwrite or --skip-existing)")
    prediction = segmenter.predict(volume, keep_probabilities=plan.probabilities, on_batch=on_batch)
    written = write_labels(prediction.labels, volume, target, overwrite=plan.overwrite)
    prob_path = None
    if plan.probabilities:
        prob_path = str(
            write_probabilities(prediction.probabilities, volume, plan.probabilities_path(target), overwrite=plan.overwrite)
        )
    volumes = {spec.labels[k]: v for k, v in prediction.volumes_mm3.items()}
    result = CaseResult(
        case.name, str(written), spec.name, model_name, time.perf_counter() - start, "done", None, prob_path, volumes
    )
    if qc is not None:
        qc(volume, prediction.labels, result)
    return result

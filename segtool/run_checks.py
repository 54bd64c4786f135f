"""What ``segtool run`` checks before the model loads: inputs, existing outputs, writable folders.

Each refusal is one line and exit status 2, like the usage errors of
:func:`segtool.output_checks.check_plan`: it comes before any image is read or any
model is loaded, and nothing has been written. What only reading an image can tell
(a corrupt file, NaN voxels, a 2D NIfTI for a 3D task) still fails its case at run
time (exit 1) while the other cases go on.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from segtool.errors import UsageError

if TYPE_CHECKING:
    from segtool.spec import TaskSpec

#: How many names a one-line refusal lists before "and N more".
SHOWN = 3

#: ``segtool run --help``'s epilog: which refusals are which exit status (docs/usage.md has the table).
EXIT_STATUS = """\b
Exit status:
  0  every case done (or skipped)
  1  the run started and a case failed (unreadable content, NaN voxels, a 2D
     NIfTI for a 3D task...); the other cases were still segmented and written
  2  refused before any work, nothing written: a usage error (an option, -o with
     several cases, an output name), an input missing or not a readable file, a
     photo for a 3D task, an output that exists, a folder that cannot be written
  3  no usable weights"""


def check_outputs(cases: Sequence, plan, stacks: Sequence | None = None, qc_dir: Path | None = None) -> None:
    """Refuse the run (UsageError, exit 2) before any work: an output that exists without ``--overwrite``
    (or, in a ``--stack`` run with ``--skip-existing``, a patient whose masks exist only in part); a
    folder an output goes to where no file can be created. Call it after
    :func:`segtool.output_checks.check_plan`, so that its hints name only runs that the names allow."""
    todo = check_existing(cases, plan, stacks)
    check_writable(todo, plan, qc_dir)


def listed(items: Sequence[str], shown: int = SHOWN) -> str:
    """``a, b, c and 2 more``."""
    head = ", ".join(items[:shown])
    return head + (f" and {len(items) - shown} more" if len(items) > shown else "")


# --------------------------------------------------------------------------- inputs


def check_inputs(cases: Sequence, spec: TaskSpec) -> None:
    """Refuse the run (UsageError, exit 2) before any work unless every file a case reads exists, is a
    regular file (or a folder: a DICOM series) with bytes in it that this process may open, and is not a
    2D photo given to a 3D task. Every problem found is counted in the one line."""
    from segtool.cases import case_inputs

    found = (input_problem(path, spec) for case in cases for path in case_inputs(case))
    problems = list(dict.fromkeys(p for p in found if p))  # a file given twice is named once
    if not problems:
        return
    more = f" (and {len(problems) - 1} more: {listed(problems[1:])})" if len(problems) > 1 else ""
    raise UsageError(problems[0] + more)


def input_problem(path: Path, spec: TaskSpec) -> str | None:
    """One line on why ``path`` cannot be an input of ``spec``, known without reading it; None if none."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        dangling = " (a link to a missing file)" if os.path.islink(path) else ""
        return f"{path}: no such file or directory{dangling}"
    except OSError as exc:
        return f"{path}: cannot access ({exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        return None  # a DICOM series (or a --stack folder): reading it says what it holds
    if not stat.S_ISREG(info.st_mode):
        from segtool.io.dicom_series import describe_mode

        return f"{path}: is {describe_mode(info.st_mode)}, not an image file; refusing to read it"
    if info.st_size == 0:
        return f"{path}: empty file (0 bytes)"
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror or exc})"
    return photo_for_volume_task(path, spec)


def photo_for_volume_task(path: Path, spec: TaskSpec) -> str | None:
    """A photo (PNG, JPEG, TIFF, ...; always one 2D image, multi-page files are refused) given to a 3D task."""
    from segtool.io.formats import PHOTO_SUFFIXES, split_suffix

    suffix = split_suffix(path.name)[1]
    if spec.ndim != 3 or suffix.lower() not in PHOTO_SUFFIXES + (".bmp", ".gif"):
        return None
    return (
        f"{path}: a {suffix} photo is one 2D image, and task {spec.name!r} segments 3D volumes: give it a "
        f"NIfTI (.nii.gz), MHA/NRRD, Analyze or DICOM series volume (`segtool tasks {spec.name}` shows its inputs)"
    )


# --------------------------------------------------------------------------- outputs that exist


def check_existing(cases: Sequence, plan, stacks: Sequence | None = None) -> list:
    """The cases that will run; refuses outputs that exist unless ``--overwrite`` (``--skip-existing``
    drops the cases whose mask exists; in a stack run only whole patients are skipped)."""
    from segtool.cases import guess_output_kind

    if plan.overwrite:
        return list(cases)
    if stacks is not None:
        return _check_existing_stacks(stacks, plan)
    todo, existing = [], []
    for case in cases:
        targets = plan.targets(case)
        if plan.skip_existing and os.path.lexists(plan.labels_path(case, guess_output_kind(case))):
            continue
        todo.append(case)
        existing.extend(str(t) for t in targets if os.path.lexists(t))
    if existing:
        more = f" (and {len(existing) - 1} more outputs: {listed([Path(e).name for e in existing[1:]])})"
        them = "it" if len(existing) == 1 else "them"
        keep = "" if plan.skip_existing else " or --skip-existing to skip those cases"
        raise UsageError(f"{existing[0]}: output exists{more if len(existing) > 1 else ''}; "
                         f"pass --overwrite to replace {them}{keep}")
    return todo


def _check_existing_stacks(stacks: Sequence, plan) -> list:
    from segtool.stacking import existing_masks_message, stack_outputs

    todo, partial = [], []
    for stack in stacks:
        masks, existing = stack_outputs(stack, plan)
        if plan.skip_existing and all(os.path.lexists(m) for m in masks):
            continue
        todo.extend(stack.cases)
        if existing:
            partial.append((stack, existing, len(masks)))
    if partial:
        stack, existing, slices = partial[0]
        others = [str(other.name) for other, _, _ in partial[1:]]
        more = f" (and {len(others)} more patients with outputs: {listed(others)})" if others else ""
        raise UsageError(existing_masks_message(stack, existing, slices, plan.skip_existing) + more)
    return todo


# --------------------------------------------------------------------------- writable folders


def check_writable(cases: Sequence, plan, qc_dir: Path | None = None) -> None:
    """Every folder an output goes to can take a new file (a temporary file is made and removed there,
    or in its nearest existing parent when the folder is still to be made)."""
    folders = {Path(t).parent: None for case in cases for t in plan.targets(case)}
    if qc_dir is not None:
        folders[Path(qc_dir)] = None
    for folder in folders:
        problem = write_problem(folder)
        if problem is not None:
            raise UsageError(f"{problem}; {_elsewhere(plan, folder == qc_dir)}")


def _elsewhere(plan, is_qc: bool) -> str:
    if is_qc:
        return "choose another --qc folder"
    if plan.output is not None:
        return "choose another -o file"
    if getattr(plan, "bids", None) is not None:
        return "choose another --bids folder"
    return "write the masks elsewhere with --output-dir DIR"


def write_problem(folder: Path) -> str | None:
    """One line on why no file can be created in ``folder`` (made if missing, as the writers do); None if one can."""
    probe = Path(folder)
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{folder}: cannot be made, {probe} is not a folder"
    try:
        handle, name = tempfile.mkstemp(prefix=".segtool-write-check-", dir=probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = "cannot write there" if probe == Path(folder) else f"cannot be made in {probe}"
        return f"{folder}: {where} ({reason})"
    os.close(handle)
    os.unlink(name)
    return None

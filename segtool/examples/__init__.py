"""Bundled example inputs, so a newcomer can try a task without an image of their own.

Each example lives in a folder here with its source and licence (``README.md``,
``LICENSE``): only real images whose licence allows redistribution are bundled. A task
without one has no example (`segtool example` says so and exits 2).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from segtool.errors import OutputExistsError, UsageError

FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Example:
    """A task's example input: files in the task's channel order, in one folder here."""

    folder: str
    files: tuple[str, ...]
    about: str  # one line: what it is, where from, under which licence

    def paths(self) -> list[Path]:
        return [FOLDER / self.folder / name for name in self.files]

    @property
    def readme(self) -> Path:
        return FOLDER / self.folder / "README.md"


_SCT_T2S = Example(
    "spinal-gm", ("t2s.nii.gz",),
    "axial T2* of the cervical cord, SCT test subject, cropped (MIT, NeuroPoly; sct_testing_data)",
)

#: task name -> its bundled example.
EXAMPLES: dict[str, Example] = {
    "spinal-gm": _SCT_T2S,
    "spinal-cord": _SCT_T2S,  # the same T2* image: spinal-cord is spinal-gm's localiser
    "clothing": Example(
        "clothing", ("0030.jpg",),
        "street-fashion photo 0030 of Clothing Co-Parsing (Apache-2.0; bearpaw/clothing-co-parsing)",
    ),
}


def example_for(task: str) -> Example:
    """The bundled example of ``task``; UsageError (one line) when it has none."""
    if task not in EXAMPLES:
        raise UsageError(
            f"task {task!r} has no bundled example input; tasks with one: {', '.join(sorted(EXAMPLES))}"
        )
    return EXAMPLES[task]


def write_example(task: str, out_dir: str | os.PathLike, overwrite: bool = False) -> list[Path]:
    """Copy ``task``'s example input into ``out_dir`` (created if missing); returns the paths written.

    An existing file is replaced only with ``overwrite`` (OutputExistsError otherwise),
    checked for every file before any is written.
    """
    from segtool.io.atomic import replacing

    example = example_for(task)
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: not a directory")
    plan = [(source, out / source.name) for source in example.paths()]
    for source, target in plan:
        if target.is_dir():
            raise OutputExistsError(f"{target}: is a directory")
        if target.exists() and not overwrite and not _same_file(source, target):
            raise OutputExistsError(f"{target}: output exists (use --overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    for source, target in plan:
        if not _same_file(source, target):
            with replacing(target) as tmp:  # never a half-copied example
                shutil.copyfile(source, tmp)
    return [target for _, target in plan]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False

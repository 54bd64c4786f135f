"""Atomic writes and their refusals.

Files are written into a hidden temporary directory ``.seg-tmp-XXXX/`` beside the
output, under their final names (so libraries pick the format from the real suffix
and detached headers such as ``.mhd`` keep pointing at the right data file), then
moved into place with :func:`os.replace`; on any failure the temporary directory is
removed.  Inputs of the reference are never overwritten, existing files only with
``overwrite``; callers pass the other inputs of a call as ``protect``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from segtool.errors import OutputExistsError, SegtoolError, UsageError
from segtool.io.formats import ANALYZE_SUFFIXES, _suffix
from segtool.io.messages import _reason
from segtool.io.volume import Volume


def _input_paths(reference: Volume) -> list[Path]:
    inputs = reference.meta.get("input_paths") or ([reference.path] if reference.path else [])
    return [Path(p) for p in inputs]


def _is_same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_target(target: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse inputs always, existing files unless ``overwrite``, directories always."""
    if any(_is_same_file(target, p) for p in inputs):
        raise OutputExistsError(f"{target}: refusing to overwrite an input image")
    if target.is_dir():
        raise OutputExistsError(f"{target}: is a directory")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target}: output exists (use --overwrite)")


def _companions(out: Path) -> list[Path]:
    """Files written alongside ``out`` that are known in advance (.hdr <-> .img)."""
    suffix = _suffix(out)
    if suffix in ANALYZE_SUFFIXES:
        return [out.with_suffix(".img" if suffix == ".hdr" else ".hdr")]
    return []


class _UnsupportedFormat(Exception):
    """Raised by a writer when its library cannot write the requested suffix."""


def _atomic_write(
    out: Path, reference: Volume, overwrite: bool, write: Callable[[Path], None], protect: Sequence[Path] = ()
) -> Path:
    """Write via ``write(tmp_path)`` into a temp dir beside ``out``, then os.replace into place.

    Never onto an input of ``reference`` nor onto any path of ``protect`` (the other
    inputs of the same call), whatever ``overwrite`` says.
    """
    inputs = _input_paths(reference) + [Path(p) for p in protect]
    for target in [out] + _companions(out):
        _check_target(target, inputs, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmpdir = Path(tempfile.mkdtemp(prefix=".seg-tmp-", dir=out.parent))
    except OSError as exc:
        raise SegtoolError(f"{out}: cannot create output directory ({_reason(exc)})") from exc
    try:
        write(tmpdir / out.name)
        _move_into_place(sorted(tmpdir.iterdir()), out.parent, inputs, overwrite)
    except SegtoolError:
        raise
    except _UnsupportedFormat as exc:
        raise UsageError(f"{out}: {exc}") from exc
    except Exception as exc:
        raise SegtoolError(f"{out}: cannot write ({_reason(exc)})") from exc
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out


def _move_into_place(produced: list[Path], directory: Path, inputs: list[Path], overwrite: bool) -> None:
    """Check every produced file's destination first, then os.replace each."""
    for f in produced:
        _check_target(directory / f.name, inputs, overwrite)
    for f in produced:
        os.replace(f, directory / f.name)

"""Atomic writes and their refusals: segtool's one place that writes to a temporary name and renames.

:func:`replacing` (and :func:`write_text_atomic`, :func:`write_bytes_atomic` on top of
it) is for any single file: the caller writes to a hidden temporary path beside the
target, which is moved onto the target with :func:`os.replace` only when the write
succeeds.  Images are written into a hidden temporary directory ``.seg-tmp-XXXX/`` beside the
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
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from segtool.errors import OutputExistsError, SegtoolError, UsageError
from segtool.io.formats import ANALYZE_SUFFIXES, _suffix
from segtool.io.messages import _reason

if TYPE_CHECKING:
    from segtool.io.volume import Volume


@contextmanager
def replacing(path: str | os.PathLike, suffix: str = "", mode: int | None = None) -> Iterator[Path]:
    """A hidden temporary path beside ``path`` to write to, moved onto ``path`` when the block succeeds.

    The temporary file is removed when the block raises, so ``path`` is either the
    old file or the complete new one.  ``suffix`` ends the temporary name (for
    writers that pick a format from it, such as ``np.save`` and ``.npy``); ``mode``
    sets the file's permissions before the move.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def write_text_atomic(path: str | os.PathLike, text: str, fsync: bool = False, mode: int | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`replacing`; ``fsync`` flushes it to disk first."""
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync, mode=mode)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, fsync: bool = False, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` through :func:`replacing`; ``fsync`` flushes it to disk first."""
    with replacing(path, mode=mode) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    return Path(path)


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


class InputIndex:
    """A call's inputs by real path and by (device, inode), found once: links and hard links to them are caught.

    `segtool run` builds one for all its inputs and passes it as ``protect`` to every
    write, so each write costs a lookup, not a `realpath` per input (thousands of photos).
    """

    def __init__(self, paths: Iterable[str | os.PathLike]) -> None:
        self.by_path: dict[str, Path] = {}
        self.by_inode: dict[tuple[int, int], Path] = {}
        for path in map(Path, paths):
            self.by_path.setdefault(os.path.normcase(os.path.realpath(path)), path)
            try:
                st = os.stat(path)
            except OSError:
                continue
            self.by_inode.setdefault((st.st_dev, st.st_ino), path)

    def find(self, target: Path, real: str | None = None) -> Path | None:
        """The input that ``target`` (real path ``real``, found here if not given) is another name of, or None."""
        real = os.path.normcase(os.path.realpath(target)) if real is None else real
        if real in self.by_path:
            return self.by_path[real]
        try:
            st = os.stat(target)
        except OSError:
            return None  # a missing target can be no input's other name
        return self.by_inode.get((st.st_dev, st.st_ino))


def as_input_index(protect: "InputIndex | Iterable[str | os.PathLike]") -> InputIndex:
    return protect if isinstance(protect, InputIndex) else InputIndex(protect)


def _check_target(target: Path, inputs: Sequence[InputIndex], overwrite: bool) -> None:
    """Refuse inputs always (any name of one), existing files unless ``overwrite``, directories always."""
    real = os.path.normcase(os.path.realpath(target))
    if any(index.find(target, real) is not None for index in inputs):
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
    out: Path, reference: Volume, overwrite: bool, write: Callable[[Path], None],
    protect: "InputIndex | Iterable[str | os.PathLike]" = (),
) -> Path:
    """Write via ``write(tmp_path)`` into a temp dir beside ``out``, then os.replace into place.

    Never onto an input of ``reference`` nor onto any path of ``protect`` (the other
    inputs of the same call: paths, or an `InputIndex` built once for the call),
    whatever ``overwrite`` says.
    """
    inputs = (InputIndex(_input_paths(reference)), as_input_index(protect))
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


def _move_into_place(produced: list[Path], directory: Path, inputs: Sequence[InputIndex], overwrite: bool) -> None:
    """Check every produced file's destination first, then os.replace each."""
    for f in produced:
        _check_target(directory / f.name, inputs, overwrite)
    for f in produced:
        os.replace(f, directory / f.name)

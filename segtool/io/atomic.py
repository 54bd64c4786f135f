"""Atomic writes and their refusals: segtool's one place that writes to a temporary name and renames.

:func:`replacing` (and :func:`write_text_atomic`, :func:`write_bytes_atomic` on top of
it) is for any single file: the caller writes to a hidden temporary path beside the
target, which is moved onto the target with :func:`os.replace` only when the write
succeeds.  Images (:func:`atomic_write`) are written into a hidden temporary directory
``.seg-tmp-XXXX/`` beside the output, under their final names (so libraries pick the
format from the real suffix and detached headers such as ``.mhd`` keep pointing at the
right data file), flushed to disk, then moved into place, the file the caller named
last (so its presence means its companions, ``.img`` or ``.raw``, are complete).
Without ``overwrite`` the move is a hard link, which fails when the name exists: of
several processes racing for one output exactly one writes it, the others get
`OutputExistsError`.  On any failure the temporary directory is removed.

A process killed while writing (SIGKILL, power loss) leaves its temporary directory;
each directory is locked (``flock``) while its writer lives, and the first write of a
later process into that folder removes the unlocked ones.  No temporary name is ever an
output name, so ``--skip-existing`` and reruns never take one for an output.

Inputs of the reference are never overwritten, existing files only with ``overwrite``;
callers pass the other inputs of a call as ``protect``.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from segtool.errors import OutputExistsError, SegtoolError, UsageError
from segtool.io.formats import analyze_companions
from segtool.io.messages import exception_text

try:
    import fcntl
except ImportError:  # Windows: no flock; leftovers of killed writers stay (hidden, never taken for outputs)
    fcntl = None

if TYPE_CHECKING:
    from segtool.io.volume import Volume

#: every temporary directory of :func:`atomic_write` is named ``.seg-tmp-*``
TEMP_PREFIX = ".seg-tmp-"
_NEW_PREFIX = ".seg-new-"  # what a temporary directory is called until its lock is held
_swept: set[str] = set()  # folders whose leftovers this process has removed


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


def is_same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (same real path, or the same inode)."""
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
        raise _exists(target)


def _exists(target: Path) -> OutputExistsError:
    # the Python API's words: commands check their outputs first, in their own (flags')
    return OutputExistsError(f"{target}: output exists; pass overwrite=True to replace it")


class UnsupportedFormat(Exception):
    """Raised by a writer when its library cannot write the requested suffix."""


def atomic_write(
    out: Path, reference: Volume, overwrite: bool, write: Callable[[Path], None],
    protect: "InputIndex | Iterable[str | os.PathLike]" = (),
) -> Path:
    """Write via ``write(tmp_path)`` into a temp dir beside ``out``, then move into place (see the module doc).

    Never onto an input of ``reference`` nor onto any path of ``protect`` (the other
    inputs of the same call: paths, or an `InputIndex` built once for the call),
    whatever ``overwrite`` says.
    """
    inputs = (InputIndex(_input_paths(reference)), as_input_index(protect))
    for target in [out] + analyze_companions(out):
        _check_target(target, inputs, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmpdir, lock = _make_temp_dir(out.parent)
    except OSError as exc:
        raise SegtoolError(f"{out}: cannot create output directory ({exception_text(exc)})") from exc
    try:
        write(tmpdir / out.name)
        produced = sorted(tmpdir.iterdir(), key=lambda f: (f.name == out.name, f.name))  # the named file last
        _move_into_place(produced, out.parent, inputs, overwrite)
    except SegtoolError:
        raise
    except UnsupportedFormat as exc:
        raise UsageError(f"{out}: {exc}") from exc
    except Exception as exc:
        raise SegtoolError(f"{out}: cannot write ({_failure_reason(exc, tmpdir, out.parent)})") from exc
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
        if lock is not None:
            os.close(lock)
    return out




def _move_into_place(produced: list[Path], directory: Path, inputs: Sequence[InputIndex], overwrite: bool) -> None:
    """Check every produced file's destination, flush each to disk, then move each (no-clobber unless ``overwrite``)."""
    for f in produced:
        _check_target(directory / f.name, inputs, overwrite)
    for f in produced:
        _flush(f)
    for f in produced:
        _place(f, directory / f.name, overwrite)


def _flush(path: Path) -> None:
    """fsync ``path``, so a crash after the rename never leaves a final name on data still in memory."""
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _place(src: Path, dst: Path, overwrite: bool) -> None:
    """os.replace with ``overwrite``; else a hard link, which fails if ``dst`` appeared meanwhile (another process)."""
    if not overwrite:
        try:
            os.link(src, dst)
            return
        except FileExistsError:
            raise _exists(dst) from None
        except OSError:
            pass  # no hard links on this file system (FAT, some shares): check, then replace
        if os.path.lexists(dst):
            raise _exists(dst)
    os.replace(src, dst)


def _make_temp_dir(folder: Path) -> tuple[Path, int | None]:
    """A new, locked ``.seg-tmp-*`` directory in ``folder`` and its lock's descriptor (None where flock is missing).

    The directory is created under another name and renamed once locked, so no sweep ever
    sees a live writer's directory unlocked.
    """
    _sweep_leftovers(folder)
    fresh = Path(tempfile.mkdtemp(prefix=_NEW_PREFIX, dir=folder))
    lock = _lock(fresh)
    tmpdir = fresh.with_name(TEMP_PREFIX + fresh.name[len(_NEW_PREFIX):])
    try:
        os.rename(fresh, tmpdir)
    except OSError:
        shutil.rmtree(fresh, ignore_errors=True)
        if lock is not None:
            os.close(lock)
        raise
    return tmpdir, lock


def _lock(directory: Path) -> int | None:
    """A descriptor of ``directory`` holding an exclusive flock on it, or None (no flock here, or it is held)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _sweep_leftovers(folder: Path) -> None:
    """Remove the ``.seg-tmp-*`` directories of dead writers in ``folder``: those whose lock nobody holds.

    Once per folder and process; a live writer (this process's other threads included)
    holds its lock, so its directory is never touched.
    """
    key = os.path.normcase(os.path.realpath(folder))
    if fcntl is None or key in _swept:
        return
    _swept.add(key)
    try:
        leftovers = [Path(e.path) for e in os.scandir(folder)
                     if e.name.startswith(TEMP_PREFIX) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for leftover in leftovers:
        lock = _lock(leftover)
        if lock is not None:
            shutil.rmtree(leftover, ignore_errors=True)
            os.close(lock)


def _failure_reason(exc: Exception, tmpdir: Path, folder: Path) -> str:
    """Why a write failed, in one line, naming ``folder`` rather than the temporary directory.

    Some libraries lose the system's reason (ITK's NRRD writer says only "trouble"); then a
    full disk or a file size limit reached by the partial file is named instead.
    """
    if not (isinstance(exc, OSError) and exc.errno):
        trouble = _disk_trouble(tmpdir)
        if trouble:
            return trouble
    return exception_text(exc).replace(str(tmpdir), str(folder))


def _disk_trouble(tmpdir: Path) -> str | None:
    try:
        if os.statvfs(tmpdir).f_bavail == 0:
            return os.strerror(errno.ENOSPC)
    except (OSError, AttributeError):  # no statvfs on Windows
        pass
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and any(f.stat().st_size >= limit for f in tmpdir.iterdir()):
            return os.strerror(errno.EFBIG)
    except (ImportError, OSError, ValueError):
        pass
    return None



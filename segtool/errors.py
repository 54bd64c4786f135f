"""Errors that the CLI turns into one-line messages and exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CASE_FAILED = 1
EXIT_USAGE = 2
EXIT_WEIGHTS_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

#: Set to 1 to see full tracebacks of unexpected errors.
DEBUG_ENV = "SEGTOOL_DEBUG"


class SegtoolError(Exception):
    """Base class: its message is shown as one line; `exit_code` is the process status."""

    exit_code = EXIT_CASE_FAILED

    def one_line(self) -> str:
        return " ".join(str(self).split())


class UsageError(SegtoolError):
    exit_code = EXIT_USAGE


class UnknownTaskError(UsageError):
    pass


class InvalidSpecError(SegtoolError):
    exit_code = EXIT_USAGE


class PluginError(SegtoolError):
    exit_code = EXIT_USAGE


class ImageReadError(SegtoolError):
    """An input could not be read, or is not a usable image."""


class GeometryError(SegtoolError):
    """Channels on different grids, wrong dimensionality, ..."""


class OutputExistsError(SegtoolError):
    pass


class LabelError(SegtoolError):
    """A label image holds values the run was not told about (``evaluate --task``)."""


class WeightsUnavailableError(SegtoolError):
    exit_code = EXIT_WEIGHTS_UNAVAILABLE


class WeightsIntegrityError(WeightsUnavailableError):
    """A file's sha256 does not match the pinned one."""


def describe_unexpected(exc: BaseException) -> str:
    """One line for an exception segtool did not foresee (a bug, or a library's error)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"unexpected {type(exc).__name__}" + (f": {first}" if first else "")

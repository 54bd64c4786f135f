"""Logging and progress on stderr (rich), keeping stdout for data."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import IO, Iterator

from rich.console import Console


def make_console(quiet: bool = False, file: IO[str] | None = None) -> Console:
    """A rich console writing to stderr (or `file`); quiet consoles print nothing."""
    return Console(file=file or sys.stderr, quiet=quiet, highlight=False, soft_wrap=True)


#: Width of tables written to a pipe or file: rich would squeeze them into 80 columns.
PIPED_WIDTH = 200


def stdout_console() -> Console:
    """A rich console on stdout. Piped (not a terminal) and without ``COLUMNS`` set, it lays
    tables out ``PIPED_WIDTH`` columns wide, so ``segtool models list | less`` keeps whole words."""
    import os

    piped = not (hasattr(sys.stdout, "isatty") and sys.stdout.isatty())
    width = PIPED_WIDTH if piped and not os.environ.get("COLUMNS") else None
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width)


#: Loggers of the libraries segtool reads images with; their records become one-line warnings.
LIBRARY_LOGGERS = ("nibabel", "PIL", "pydicom", "segtool")


@contextmanager
def library_output(console: Console, quiet: bool = False) -> Iterator[None]:
    """Route library chatter through segtool's console for the duration of a command.

    Python warnings (numpy RuntimeWarnings, nibabel's...) and the records of the
    image libraries' loggers become one ``warning:`` line each on ``console``.
    With ``quiet`` they are dropped, and so is whatever the C libraries (GDCM,
    openjpeg, libjpeg) write straight to file descriptor 2, unless ``SEGTOOL_DEBUG``
    is set.  Everything is restored on exit, so errors raised out of the block are
    still shown.
    """
    import logging
    import os
    import warnings

    from segtool.errors import DEBUG_ENV

    def show(text: str) -> None:
        if not quiet:
            console.print(f"[yellow]warning:[/yellow] {' '.join(text.split())}", markup=True, highlight=False)

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                show(record.getMessage())
            except Exception:  # noqa: BLE001 - logging must never raise
                pass

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        show(f"{category.__name__}: {message}")

    handler = _Handler(level=logging.WARNING)
    saved_loggers = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved_loggers.append((logger, logger.propagate, logger.level))
        logger.addHandler(handler)
        logger.propagate = False
        if logger.level == logging.NOTSET or logger.level > logging.WARNING:
            logger.setLevel(logging.WARNING)
    saved_showwarning = warnings.showwarning
    warnings.showwarning = showwarning
    saved_fd = None
    if quiet and not os.environ.get(DEBUG_ENV):
        try:
            sys.stderr.flush()
            saved_fd = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            saved_fd = None
    try:
        yield
    finally:
        if saved_fd is not None:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
        warnings.showwarning = saved_showwarning
        for logger, propagate, level in saved_loggers:
            logger.removeHandler(handler)
            logger.propagate = propagate
            logger.setLevel(level)

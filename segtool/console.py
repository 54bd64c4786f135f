"""Logging and progress on stderr (rich), keeping stdout for data."""

from __future__ import annotations

import logging
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


#: Loggers of the libraries segtool reads images with; their records are library messages.
LIBRARY_LOGGERS = ("nibabel", "PIL", "pydicom", "highdicom", "segtool")
#: Their children with a handler of their own (nibabel adds a stream handler to this one when imported).
OWN_HANDLER_LOGGERS = ("nibabel.global",)

#: ``SEGTOOL_VERBOSE=1`` (or ``segtool --verbose``): show every library message as it comes.
VERBOSE_ENV = "SEGTOOL_VERBOSE"
#: ``SEGTOOL_LOG=FILE`` (or ``segtool --log FILE``): append every library message to FILE.
LOG_ENV = "SEGTOOL_LOG"


def _from_command_line(name: str):
    """A root option (``segtool --verbose``, ``--log``) or the running command's own, if it has one."""
    import click

    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get(name):
            return ctx.params[name]
        ctx = ctx.parent
    return None


def verbose_requested() -> bool:
    import os

    return bool(_from_command_line("verbose")) or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def log_path():
    import os

    return _from_command_line("log_file") or os.environ.get(LOG_ENV) or None


@contextmanager
def library_output(console: Console, quiet: bool = False, verbose: bool | None = None) -> Iterator[None]:
    """Route library chatter (`segtool.library_messages`) for the duration of a command.

    Python warnings (numpy RuntimeWarnings, nibabel's, pydicom's...), the image
    libraries' log records and what the C libraries (GDCM, libjpeg, openjpeg) write
    straight to file descriptor 2 are each logged (``segtool --log FILE``) and:
    with ``verbose``, shown as a ``warning:`` line each, as the library wrote them;
    by default, shown only where they mean something for the result, as one segtool
    line saying what (once per meaning), the rest counted in a closing note; with
    ``quiet``, dropped (``SEGTOOL_DEBUG`` keeps fd 2).  Everything is restored on
    exit, so errors raised out of the block are still shown.
    """
    from segtool.library_messages import LOGGER_NAME

    verbose = verbose_requested() if verbose is None else verbose
    state = _Routing(console, quiet, verbose)
    file_handler = _log_file_handler()
    if file_handler is not None:
        logging.getLogger(LOGGER_NAME).addHandler(file_handler)
    loggers = _capture_loggers(state)
    saved_showwarning = _capture_warnings(state)
    capture = _Fd2Capture(state, console)
    failed = False
    try:
        if capture is not None:
            capture.start()
        yield
    except BaseException as exc:
        failed = _exit_status(exc) != 0
        raise
    finally:
        if capture is not None:
            capture.stop()
        _restore_warnings(saved_showwarning)
        _restore_loggers(loggers)
        if file_handler is not None:
            logging.getLogger(LOGGER_NAME).removeHandler(file_handler)
            file_handler.close()
        state.close(note=not failed)  # a failed command ends on its one error line


def _exit_status(exc: BaseException) -> int:
    """The exit status ``exc`` ends the command with: 0 for a clean exit, 1 for any other exception."""
    code = getattr(exc, "exit_code", getattr(exc, "code", 1)) if isinstance(exc, (SystemExit, Exception)) else 1
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


class _Routing:
    """Where one library message goes: the log always; the terminal as ``verbose``/``quiet`` say."""

    def __init__(self, console: Console, quiet: bool, verbose: bool) -> None:
        import threading

        self.console, self.quiet, self.verbose = console, quiet, verbose
        self.shown: set[str] = set()
        self.hidden = 0
        self.lock = threading.Lock()

    def handle(self, text: str) -> None:
        from segtool.library_messages import meaning, record, warning_line

        text = text.strip()
        if not text:
            return
        record(text)
        if self.quiet:
            return
        if self.verbose:
            self._print(f"[yellow]warning:[/yellow] {' '.join(text.split())}")
            return
        what = meaning(text)
        with self.lock:
            if what is None:
                self.hidden += 1
                return
            if what in self.shown:
                return
            self.shown.add(what)
        self._print(f"[yellow]warning:[/yellow] {warning_line(text)}")

    def _print(self, markup: str) -> None:
        from rich.markup import escape

        head, _, rest = markup.partition("[/yellow] ")
        self.console.print(f"{head}[/yellow] {escape(rest)}", markup=True, highlight=False)

    def close(self, note: bool = True) -> None:
        """The closing note counting the messages not shown (``note``: False after a failed command)."""
        if note and self.hidden and not self.quiet and not self.verbose:
            self.console.print(
                f"[dim]note: {self.hidden} library message(s) not shown "
                f"(segtool --verbose shows them, segtool --log FILE keeps them)[/dim]",
                markup=True, highlight=False,
            )


def _log_file_handler():
    path = log_path()
    if not path:
        return None
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    logger = logging.getLogger("segtool.library")
    if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
        logger.setLevel(logging.DEBUG)
    return handler


def _capture_loggers(state: _Routing) -> list:
    """The libraries' records feed ``state``: a handler on each root logger, and on the children with a
    handler of their own (imported later, perhaps) a filter that takes the record before their handler."""
    from segtool.library_messages import LOGGER_NAME

    def take(record: logging.LogRecord) -> bool:
        try:
            if record.levelno >= logging.WARNING and not record.name.startswith(LOGGER_NAME):
                state.handle(record.getMessage())
        except Exception:  # noqa: BLE001 - logging must never raise
            pass
        return False

    handler = logging.Handler(level=logging.WARNING)
    handler.addFilter(take)
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.level, None))
        logger.addHandler(handler)
        logger.propagate = False
        if logger.level == logging.NOTSET or logger.level > logging.WARNING:
            logger.setLevel(logging.WARNING)
    for name in OWN_HANDLER_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.level, take))
        logger.addFilter(take)
    return saved, handler


def _restore_loggers(saved) -> None:
    loggers, handler = saved
    for logger, propagate, level, take in loggers:
        if take is None:
            logger.removeHandler(handler)
        else:
            logger.removeFilter(take)
        logger.propagate = propagate
        logger.setLevel(level)


def _capture_warnings(state: _Routing):
    """Python warnings feed ``state``, every time (the same message about the next file is news too)."""
    import warnings

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        state.handle(f"{category.__name__}: {message}")

    saved = warnings.catch_warnings()  # restores the filters and showwarning on __exit__
    saved.__enter__()
    warnings.showwarning = showwarning
    warnings.simplefilter("always")
    return saved


def _restore_warnings(saved) -> None:
    saved.__exit__(None, None, None)


class _Fd2Capture:
    """File descriptor 2 as a pipe read line by line into ``state`` (the C libraries' messages).

    When ``console`` (or ``sys.stderr``) writes to fd 2 itself, it is moved to a copy of
    the original fd 2 first, so segtool's own output still reaches the terminal.
    Nothing is captured where fd 2 cannot be duplicated.
    """

    def __init__(self, state: _Routing, console: Console) -> None:
        self.state, self.console = state, console
        self.saved_fd = None

    def start(self) -> None:
        import os
        import threading

        try:
            sys.stderr.flush()
            self.saved_fd = os.dup(2)
            read_end, write_end = os.pipe()
            os.dup2(write_end, 2)
            os.close(write_end)
        except (OSError, ValueError, AttributeError):
            self.saved_fd = None
            return
        self.stream = os.fdopen(os.dup(self.saved_fd), "w", buffering=1, encoding="utf-8", errors="replace")
        self.swapped = []
        for owner, attr in ((self.console, "file"), (sys, "stderr")):
            current = getattr(owner, attr)
            if _writes_to_fd2(current):
                self.swapped.append((owner, attr, current))
                setattr(owner, attr, self.stream)
        self.thread = threading.Thread(target=self._pump, args=(read_end,), name="segtool-fd2", daemon=True)
        self.thread.start()

    def _pump(self, read_end: int) -> None:
        import os

        with os.fdopen(read_end, "rb") as pipe:
            for raw in pipe:
                self.state.handle(raw.decode("utf-8", errors="replace"))

    def stop(self) -> None:
        import os

        if self.saved_fd is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.saved_fd, 2)  # closes the pipe's last write end: the pump reads to its end
        os.close(self.saved_fd)
        self.thread.join(timeout=5)
        for owner, attr, original in reversed(self.swapped):
            setattr(owner, attr, original)
        self.stream.close()


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False

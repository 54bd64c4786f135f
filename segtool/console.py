"""Logging and progress on stderr (rich), keeping stdout for data."""

from __future__ import annotations

import sys
from typing import IO

from rich.console import Console


def make_console(quiet: bool = False, file: IO[str] | None = None) -> Console:
    """A rich console writing to stderr (or `file`); quiet consoles print nothing."""
    return Console(file=file or sys.stderr, quiet=quiet, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)

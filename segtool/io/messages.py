"""One-line error texts: a library exception's reason, read errors naming the file, shapes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from segtool.errors import ImageReadError


def exception_text(exc: BaseException) -> str:
    """A library exception as a short single line (ITK's source-location prefix dropped)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r"^.*ERROR:\s*(\w+\(0x[0-9a-fA-F]+\):\s*)?", "", text) or text
    return text if len(text) <= 240 else text[:237] + "..."


def read_error(path: Path, problem: str, exc: BaseException | None = None) -> ImageReadError:
    """An ImageReadError naming the file, with the library's reason appended."""
    message = f"{path}: {problem}"
    if exc is not None:
        message += f" ({exception_text(exc)})"
    return ImageReadError(" ".join(message.split()))


def shape_text(shape: Iterable[int]) -> str:
    return "x".join(str(int(s)) for s in shape)

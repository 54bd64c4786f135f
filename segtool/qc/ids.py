"""Case ids: file- and HTML-safe names for pictures, records and report rows."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any, Mapping

from segtool.io.formats import split_suffix

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_id(text: str) -> str:
    """``text`` with every run of other characters than ``A-Za-z0-9._-`` replaced by ``_``."""
    return _SAFE.sub("_", text).strip("._") or "case"


def new_case_id(row: Mapping[str, Any]) -> str:
    """A fresh id from the row's input file name (without its image suffix) and a random tail."""
    source = split_suffix(Path(str(row.get("input") or "case")).name)[0]
    return f"{safe_id(source)[:60]}-{uuid.uuid4().hex[:8]}"

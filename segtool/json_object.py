"""Reading a JSON file that must hold one object (dataset.json, a labels map): one-line errors."""

from __future__ import annotations

import json
from pathlib import Path


def read_json_object(path: Path, error: type[Exception], name: str | None = None) -> dict:
    """The object in the JSON file ``path``.

    Raises ``error`` (one line that starts with ``name``, else the path) when the file cannot be
    read, is not JSON, or holds something other than an object.
    """
    name = name or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{name}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise error(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{name}: expected a JSON object, got {type(data).__name__}")
    return data

"""The appendable QC report: one JSON record per case, and the page rebuilt from them.

``DIR/index.html`` is regenerated from ``DIR/records/*.json`` (one file per case,
written atomically) under an exclusive lock on ``DIR/.lock`` (``filelock``) and renamed
into place, so concurrent processes never lose rows. Pictures live under
``DIR/images/`` and are referenced by relative paths, as are the rows' input and
output files (``PATH_FIELDS``), so the folder can be moved or copied whole; the page is static HTML with
inline CSS and everything HTML-escaped (see :mod:`segtool.qc.page`).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from filelock import FileLock

from segtool.io.atomic import write_text_atomic
from segtool.qc.ids import safe_id
from segtool.qc.page import render_html
from segtool.qc.slicing import VIEWS

#: Row fields holding file paths: stored relative to the report's folder.
PATH_FIELDS = ("input", "output", "probabilities")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class QcReport:
    """``DIR/index.html`` built from one JSON record per case (see the module doc)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory)
        self.records = self.dir / "records"
        self.images = self.dir / "images"
        self.index = self.dir / "index.html"
        self.records.mkdir(parents=True, exist_ok=True)
        self.images.mkdir(parents=True, exist_ok=True)

    def add_case(
        self,
        row: Mapping[str, Any],
        images: Sequence[str | os.PathLike] = (),
        *,
        case_id: str | None = None,
        comparison: bool = False,
    ) -> Path:
        """Append one case: write its record atomically, then rebuild index.html. Returns the record's path.

        The row's PATH_FIELDS are stored relative to this report's folder (as the
        pictures are), so the page reads the same wherever the folder is moved.
        ``comparison``: the pictures show prediction and reference (``kind`` "comparison").
        """
        now = time.time()
        case_id = safe_id(case_id or f"case-{uuid.uuid4().hex[:10]}")
        pictures = []
        for image in images:
            path = Path(image)
            pictures.append({"src": self._relative(path, uri=True), "caption": _caption(path, comparison)})
        row = dict(row)
        for key in PATH_FIELDS:
            if isinstance(row.get(key), (str, os.PathLike)) and str(row[key]):
                row[key] = self._relative(Path(row[key]))
        record = {
            "version": 1,
            "case_id": case_id,
            "created": now,
            "kind": "comparison" if comparison else "case",
            "row": _jsonable(row),
            "images": pictures,
        }
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}.json"
        path = self.records / name
        write_text_atomic(path, json.dumps(record, indent=1, sort_keys=True), fsync=True, mode=0o644)
        self.rebuild()
        return path

    def _relative(self, path: Path, uri: bool = False) -> str:
        """``path`` (relative to the working directory, or absolute) relative to this folder."""
        try:
            return Path(os.path.relpath(path.resolve(), self.dir.resolve())).as_posix()
        except ValueError:  # another drive: no relative path exists
            return path.resolve().as_uri() if uri else str(path.resolve())

    def read_records(self) -> list[dict]:
        out = []
        for path in sorted(self.records.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # unreadable records are skipped, never fatal
            if isinstance(record, dict) and isinstance(record.get("row"), dict):
                out.append(record)
        out.sort(key=lambda r: (float(r.get("created") or 0), str(r.get("case_id"))))
        return out

    def rebuild(self) -> Path:
        """Regenerate index.html from every record, under the report's lock."""
        with FileLock(self.dir / ".lock"):
            write_text_atomic(self.index, render_html(self.read_records()), fsync=True, mode=0o644)
        return self.index


def _caption(path: Path, comparison: bool = False) -> str:
    stem = path.stem
    tail = stem.rsplit("_", 1)[-1] if "_" in stem else stem
    if tail not in (*VIEWS, "photo"):
        return stem
    if not comparison:
        return tail
    where = "left: prediction, right: reference" if tail == "photo" else "top: prediction, bottom: reference"
    return f"{tail} ({where})"

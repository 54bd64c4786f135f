"""The report page: static HTML (inline CSS, no script, everything escaped) for a list of records."""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from segtool.qc.colours import label_colour
from segtool.qc.ids import safe_id

#: Row fields with a column of their own (label_names feeds "volumes"); the others go under "details".
_KNOWN = ("task", "input", "output", "model", "seconds", "volumes", "volume_unit", "status", "error", "label_names")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt_number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"


def _fmt_value(value: Any) -> str:
    """HTML for a details value: nested mappings become 'key: value' lines."""
    if isinstance(value, Mapping):
        return "<br>".join(f"{_e(k)}: {_fmt_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return _e(", ".join(_fmt_number(v) for v in value))
    return _e(_fmt_number(value))


def _volumes_html(row: Mapping[str, Any]) -> str:
    volumes = row.get("volumes")
    if not isinstance(volumes, Mapping) or not volumes:
        return ""
    unit = str(row.get("volume_unit") or "mm³")
    names = {str(k): str(v) for k, v in dict(row.get("label_names") or {}).items()}
    by_name = {v: k for k, v in names.items()}
    lines = []
    for key, amount in volumes.items():
        key = str(key)
        generic = re.fullmatch(r"label (\d+)", key)
        if key in names:
            value, name = key, names[key]
        elif key in by_name:
            value, name = by_name[key], key
        elif key.isdigit():
            value, name = key, f"label {key}"
        elif generic:
            value, name = generic.group(1), key
        else:
            value, name = None, key
        swatch = ""
        if value is not None and value.isdigit() and int(value) > 0:
            r, g, b = label_colour(int(value))
            swatch = f'<span class="sw" style="background:rgb({r},{g},{b})"></span>'
        lines.append(f"{swatch}{_e(name)}: {_e(_fmt_number(amount))}&nbsp;{_e(unit)}")
    return "<br>".join(lines)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, Mapping, list, tuple)) and not value)


def _shown(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` without empty values (None, "", {}, []), nested mappings included."""
    out = {}
    for key, value in fields.items():
        if isinstance(value, Mapping):
            value = _shown(value)
        if not _empty(value):
            out[key] = value
    return out


def _head(count: int) -> list[str]:
    generated = datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>segtool QC report</title>",
        "<style>",
        "body{font-family:system-ui,sans-serif;margin:1em;background:#fafafa;color:#222}",
        "table{border-collapse:collapse;width:100%}",
        "th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top;font-size:13px}",
        "th{background:#eee;position:sticky;top:0}",
        "tr.case td{background:#fff}",
        "tr.pictures td{background:#1e1e1e;border-bottom:3px solid #888}",
        "figure{display:inline-block;margin:4px;color:#ddd;font-size:13px}",
        "figure img{display:block;max-width:100%;height:auto}",
        ".st-ok{color:#1a7f37;font-weight:bold}.st-failed,.st-error{color:#c00;font-weight:bold}",
        ".sw{display:inline-block;width:.9em;height:.9em;margin-right:4px;vertical-align:middle;border:1px solid #555}",
        ".path{font-family:ui-monospace,monospace;word-break:break-all}",
        ".what{font-family:system-ui,sans-serif;font-weight:bold;margin-right:4px}",
        ".note{color:#666;font-size:12px}",
        "</style></head><body>",
        "<h1>segtool QC report</h1>",
        f'<p class="note">{count} case(s); page regenerated {_e(generated)}. '
        "Pictures show the segmented structure with a margin (or the whole field of view when asked). "
        "3D views are radiological: the patient's right is on the image's left (axial, coronal), "
        "anterior on the left (sagittal), superior at the top. "
        "Evaluations show the prediction above (3D) or left of (2D) the reference, each titled. "
        "File paths are relative to the folder of this page.</p>",
        '<table id="cases"><thead><tr><th>#</th><th>task</th><th>input</th><th>output</th><th>model</th>'
        "<th>when</th><th>seconds</th><th>volumes</th><th>status</th><th>details</th></tr></thead><tbody>",
    ]


def _path_cell(value: Any, what: str) -> str:
    if _empty(value):
        return '<td class="path"></td>'
    label = f'<span class="what">{_e(what)}:</span>' if what else ""
    return f'<td class="path">{label}{_e(value)}</td>'


def _figures(record: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    figures = []
    for picture in record.get("images") or []:
        src = str(picture.get("src", ""))
        url = src if src.startswith("file:") else quote(src)
        caption = str(picture.get("caption", ""))
        figures.append(
            f'<figure><img src="{_e(url)}" alt="{_e(caption)} of {_e(row.get("input"))}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    return "".join(figures)


def _record_html(number: int, record: Mapping[str, Any]) -> list[str]:
    row = _shown(record.get("row") or {})
    case_id = str(record.get("case_id") or number)
    when = datetime.fromtimestamp(float(record.get("created") or 0)).strftime("%Y-%m-%d %H:%M:%S")
    status = str(row.get("status") or "ok")
    details = {k: v for k, v in row.items() if k not in _KNOWN}
    if row.get("error"):
        details = {"error": row["error"], **details}
    seconds = row.get("seconds")
    numeric = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    seconds_text = f"{seconds:.2f}" if numeric else _e(seconds)
    compared = record.get("kind") == "comparison"
    out = [
        f'<tr class="case" id="case-{_e(case_id)}" data-case="{_e(case_id)}">'
        f"<td>{number}</td><td>{_e(row.get('task'))}</td>"
        f"{_path_cell(row.get('input'), 'prediction' if compared else '')}"
        f"{_path_cell(row.get('output'), 'reference' if compared else '')}"
        f"<td>{_e(row.get('model'))}</td><td>{_e(when)}</td><td>{seconds_text}</td>"
        f"<td>{_volumes_html(row)}</td>"
        f'<td class="st-{_e(safe_id(status.lower()))}">{_e(status)}</td>'
        f"<td>{_fmt_value(details) if details else ''}</td></tr>"
    ]
    figures = _figures(record, row)
    if figures:
        out.append(f'<tr class="pictures" data-case="{_e(case_id)}"><td colspan="10">{figures}</td></tr>')
    return out


def render_html(records: Sequence[Mapping[str, Any]]) -> str:
    """The whole report page for ``records`` (as written by QcReport.add_case).

    Empty row fields (None, "", {}, []) are left out; a comparison record's input and
    output are labelled "prediction" and "reference".
    """
    parts = _head(len(records))
    for number, record in enumerate(records, 1):
        parts.extend(_record_html(number, record))
    parts.append("</tbody></table></body></html>")
    return "\n".join(parts) + "\n"

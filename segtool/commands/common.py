"""Pieces shared by several commands: task-name completion, the app object, JSON output."""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

import click
from click.shell_completion import CompletionItem

from segtool.app import App
from segtool.errors import UsageError


def get_app(ctx: click.Context) -> App:
    root = ctx.find_root()
    if root.obj is None:
        root.obj = App()
    return root.obj


def complete_task(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Task names for shell completion (loads plugins, never torch)."""
    app = get_app(ctx)
    return [
        CompletionItem(spec.name, help=spec.description)
        for spec in app.registry
        if spec.name.startswith(incomplete)
    ]


def complete_model(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Model variants for shell completion: those of the task already on the command line
    (``run TASK``, ``models path NAME``, ``models pull NAMES...``), else every task's (never torch).

    The task is read from ``ctx.params``; while completing ``--model``, click leaves the
    positional words unparsed in ``ctx.args`` (the option's value is missing), so those count too."""
    registry = get_app(ctx).registry
    named = [ctx.params.get("task"), ctx.params.get("name"), *(ctx.params.get("names") or ()), *ctx.args]
    tasks = [registry.get(n) for n in named if isinstance(n, str) and n in registry]
    items: dict[str, str] = {}
    for spec in tasks or list(registry):
        for variant, ref in spec.models.items():
            if variant.startswith(incomplete):
                items.setdefault(variant, ref.description)
    return [CompletionItem(variant, help=text) for variant, text in items.items()]


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (JSON has no such numbers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def echo_json(obj: Any) -> None:
    """One line of strict JSON on stdout: undefined numbers (NaN, inf) are written as null."""
    sys.stdout.write(json.dumps(json_safe(obj), default=str, allow_nan=False) + "\n")
    sys.stdout.flush()


_LABEL_ITEM = re.compile(r"([+-]?\d+)\s*[=:]\s*(.*)")
_LABELS_EXAMPLE = "use e.g. 1,2,3 or 1=csf,2=gm"


def parse_labels_option(text: str, bare_names: bool = False) -> dict[int, str]:
    """A ``--labels`` value as {label value: name}: the one parser of every command's ``--labels``.

    Comma-separated items: ``VALUE=NAME`` (or ``VALUE:NAME``), or a bare ``VALUE`` (named
    after itself): ``'1,2,3'``, ``'1=csf,2=gm'``. With ``bare_names`` a bare name is also
    accepted and takes its position as value: ``'gm,wm'`` -> {1: 'gm', 2: 'wm'}.
    Values are whole numbers >= 1 (0 is the background), each named once; anything
    else is a UsageError that starts with ``--labels:``.
    """
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError(f"--labels: no labels given ({_LABELS_EXAMPLE})")
    out: dict[int, str] = {}
    for position, item in enumerate(items, 1):
        match = _LABEL_ITEM.fullmatch(item)
        if match:
            value = int(match.group(1))
            name = match.group(2).strip() or str(value)
        elif re.fullmatch(r"[+-]?\d+", item):
            value = int(item)
            name = str(value)
        elif bare_names and not re.search(r"[=:]", item):
            value, name = position, item
        else:
            raise UsageError(f"--labels: {item!r} is not a label number ({_LABELS_EXAMPLE})")
        if value == 0:
            raise UsageError("--labels: 0 is the background, not a label")
        if value < 0:
            raise UsageError(f"--labels: {value} is negative; labels are positive integers")
        if value in out:
            raise UsageError(f"--labels: label {value} is named twice")
        out[value] = name
    return out

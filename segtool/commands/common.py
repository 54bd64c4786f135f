"""Pieces shared by several commands: task-name completion, the app object, JSON output."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import click
from click.shell_completion import CompletionItem

from segtool.app import App


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

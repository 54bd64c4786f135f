"""Pieces shared by several commands: task-name completion, the app object, JSON output."""

from __future__ import annotations

import json
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


def echo_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()

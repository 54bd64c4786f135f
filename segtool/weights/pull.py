"""Fetching tasks' pinned weights into the Hub cache, with rich download bars.

``pull_models`` resolves each chosen (task, variant) with ``resolve.resolve_model``, so
every file is hashed against its pin (files already cached are only re-hashed; bundled
ones are checked in place), and reports each model as it is done. Torch is never imported.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterable

from segtool.errors import SegtoolError, WeightsUnavailableError
from segtool.weights.inventory import human_size, select_models
from segtool.weights.resolve import resolve_model
from segtool.weights.results import PullResult
from segtool.weights.settings import HubSettings

if TYPE_CHECKING:
    import pluggy
    from rich.console import Console

    from segtool.registry import TaskRegistry


class _RichBar:
    """The tqdm-like object huggingface_hub drives, shown as a rich progress task."""

    def __init__(self, progress, label: str, total: int | None = None, initial: int = 0, desc: str = "", **_: Any):
        name = desc.rsplit("/", 1)[-1] if desc else ""
        self._progress = progress
        self._task = progress.add_task(f"{label} {name}".strip(), total=total, completed=initial)

    def update(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def close(self) -> None:
        self._progress.refresh()

    def __enter__(self) -> "_RichBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _BarFactory:
    def __init__(self, progress) -> None:
        self.progress = progress
        self.label = ""

    def __call__(self, **kwargs: Any) -> _RichBar:
        return _RichBar(self.progress, self.label, **kwargs)


def pull_models(
    registry: "TaskRegistry",
    names: Iterable[str],
    models: Iterable[str],
    all_tasks: bool,
    hub: HubSettings,
    pm: "pluggy.PluginManager",
    console: "Console",
) -> tuple[list[PullResult], list[SegtoolError]]:
    """Fetch and check the models of tasks ``names`` (or ``all_tasks``; ``models``: these variants only).

    Prints one line per model on ``console`` as it is done, under transient download bars;
    returns a result per model and the errors of those that failed (a failure does not
    stop the others). A named task without trained weights is a failure; with
    ``all_tasks`` it is only mentioned.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    pairs, empty = select_models(registry, names, models, all_tasks)
    failures: list[SegtoolError] = []
    for spec in empty:
        if all_tasks:
            console.print(f"[yellow]-[/yellow] {spec.name}: no trained weights yet")
        else:
            failures.append(WeightsUnavailableError(f"task {spec.name!r} has no trained weights yet"))
            console.print(f"[red]✗[/red] {spec.name}: task {spec.name!r} has no trained weights yet, nothing to pull")

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
    )
    bars = _BarFactory(progress)
    results = []
    with progress:
        for spec, variant in pairs:
            bars.label = f"{spec.name}/{variant}"
            started = time.monotonic()
            try:
                resolved = resolve_model(spec, variant, replace(hub, progress=bars), pm)
            except SegtoolError as exc:
                failures.append(exc)
                progress.console.print(f"[red]✗[/red] {spec.name}/{variant}: {exc.one_line()}")
                results.append(PullResult(spec.name, variant, ok=False, error=exc.one_line()))
                continue
            size = os.path.getsize(resolved.weights_path)
            progress.console.print(
                f"[green]✓[/green] {spec.name}/{variant}: {resolved.source}, {human_size(size)}, sha256 ok "
                f"({time.monotonic() - started:.1f} s)"
            )
            results.append(
                PullResult(
                    spec.name, variant, ok=True, source=resolved.source, path=resolved.weights_path,
                    config_path=resolved.config_path, sha256=resolved.weights_sha256, size=size,
                )
            )
    return results, failures

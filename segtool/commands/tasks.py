"""`segtool tasks [NAME]`: list the registered tasks, or show one in full."""

from __future__ import annotations

import click

from segtool.commands.common import complete_task, echo_json, get_app
from segtool.console import stdout_console


@click.command()
@click.argument("name", required=False, shell_complete=complete_task)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def tasks(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """List the tasks that plugins provide, or show task NAME in full."""
    app = get_app(ctx)
    registry = app.registry
    if name is not None:
        spec = registry.get(name)
        if as_json:
            info = spec.to_dict() | {"plugin": registry.owners[name]} | _model_info(spec, app)
            echo_json(info)
        else:
            from segtool.commands.task_card import print_card

            print_card(spec, registry.owners[name], _model_info(spec, app))
        return
    if as_json:
        echo_json([spec.to_dict() | {"plugin": registry.owners[spec.name]} for spec in registry])
        return
    from rich.table import Table

    table = Table(title="segtool tasks")
    specs = list(registry)
    # names are never cut or wrapped, whatever the terminal's width
    table.add_column("task", no_wrap=True, min_width=max([4] + [len(spec.name) for spec in specs]))
    for column in ("dims", "channels", "labels", "spacing (mm)", "weights"):
        table.add_column(column, overflow="fold")
    table.add_column("plugin", no_wrap=True, min_width=max([6] + [len(registry.owners[s.name]) for s in specs]))
    for spec in registry:
        spacing = spec.spacing_text if spec.target_spacing else "-"
        weights = ", ".join(spec.models) if spec.has_weights else "[red]none yet[/red]"
        table.add_row(
            spec.name,
            f"{spec.ndim}D",
            ", ".join(spec.channels),
            ", ".join(spec.labels.values()),
            spacing,
            weights,
            registry.owners[spec.name],
        )
    stdout_console().print(table)


def _model_info(spec, app) -> dict:
    """The network's size, and the model a plain `segtool run` would use, with its card's facts (offline)."""
    from segtool.errors import SegtoolError
    from segtool.networks import parameter_count
    from segtool.weights import HubSettings, resolve_model

    info: dict = {}
    try:
        import torch

        with torch.device("meta"):
            info["parameters"] = parameter_count(spec.build_network())
    except (TypeError, ValueError, RuntimeError) as exc:
        info["parameters"] = f"cannot build ({str(exc).splitlines()[0]})"
    if not spec.has_weights:
        info["model"] = None
        return info
    try:
        resolved = resolve_model(spec, None, HubSettings.from_env(offline_flag=True), app.plugin_manager)
    except SegtoolError as exc:
        info["model"] = {"variant": spec.default_model, "available": False, "why": exc.one_line()}
        return info
    config = resolved.config
    training = config.training or {}
    data = training.get("data") or {}
    validation = training.get("validation")
    if isinstance(validation, dict):  # the summary; per-case scores (hundreds of slices) stay in the card
        validation = {k: v for k, v in validation.items() if k != "per_case"}
    info["model"] = {
        "variant": resolved.variant,
        "available": True,
        "source": resolved.source,
        "network": config.network,
        "architecture": config.architecture,
        "patch_size": config.patch_size,
        "trained_on": data.get("train_cases"),
        "validated_on": data.get("validation_cases"),
        "validation": validation,
        "minutes": training.get("minutes"),
        "command": training.get("command"),
    }
    return info

"""`segtool plugins`: the loaded plugins, their versions and hooks."""

from __future__ import annotations

import click

from segtool.commands.common import echo_json, get_app
from segtool.console import stdout_console
from segtool.plugins import describe_plugins


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List the loaded plugins with their version, hooks and tasks."""
    app = get_app(ctx)
    rows = describe_plugins(app.plugin_manager)
    registry = app.registry
    for row in rows:
        row["tasks"] = sorted(n for n, owner in registry.owners.items() if owner == row["name"])
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table(title="segtool plugins")
    for column in ("plugin", "distribution", "version", "hooks", "tasks"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"], row["distribution"] or "-", row["version"] or "-", ", ".join(row["hooks"]), ", ".join(row["tasks"])
        )
    stdout_console().print(table)

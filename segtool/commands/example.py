"""`segtool example TASK [-o DIR]`: write a task's bundled example input, to try the task on."""

from __future__ import annotations

from pathlib import Path

import click
from click.shell_completion import CompletionItem

from segtool.commands.common import complete_task, get_app


def complete_example_task(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The tasks that have a bundled example (loads plugins, never torch)."""
    from segtool.examples import EXAMPLES

    return [item for item in complete_task(ctx, param, incomplete) if item.value in EXAMPLES]


@click.command(context_settings={"show_default": True})
@click.argument("task", shell_complete=complete_example_task)
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              help="Write the example here (created if missing).")
@click.option("--overwrite", is_flag=True, help="Replace files of the same name in the folder.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the example's source and licence on stderr.")
@click.pass_context
def example(ctx: click.Context, task: str, output_dir: Path, overwrite: bool, quiet: bool) -> None:
    """Write TASK's bundled example input into a folder and print its path(s).

    Real images whose licence allows redistribution, shipped with segtool (source and
    licence: segtool/examples/<folder>/README.md and LICENSE). Tasks without one exit 2.

    \b
    Example:
      segtool example spinal-gm -o demo/
      segtool run spinal-gm demo/t2s.nii.gz --qc demo/qc
    """
    from segtool.examples import example_for, write_example

    spec = get_app(ctx).registry.get(task)  # an unknown task: one line with close matches
    bundled = example_for(spec.name)
    for path in write_example(spec.name, output_dir, overwrite=overwrite):
        click.echo(str(path))
    if not quiet:
        click.echo(f"segtool: {spec.name} example: {bundled.about}; source and licence: {bundled.readme}", err=True)

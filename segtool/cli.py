"""The `segtool` command: a thin click group whose subcommands load on demand.

Nothing here imports torch, so `segtool --help` and shell completion stay fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import click

from segtool.version import __version__
from segtool.app import App
from segtool.errors import DEBUG_ENV, EXIT_CASE_FAILED, EXIT_INTERRUPTED, SegtoolError, describe_unexpected

#: subcommand name -> "module:attribute"; modules are imported only when the command runs.
COMMANDS = {
    "run": "segtool.commands.run:run",
    "evaluate": "segtool.commands.evaluate:evaluate",
    "example": "segtool.commands.example:example",
    "train": "segtool.commands.train:train",
    "tasks": "segtool.commands.tasks:tasks",
    "models": "segtool.commands.models:models",
    "plugins": "segtool.commands.plugins:plugins",
    "plugin": "segtool.commands.plugin_new:plugin",
    "qc": "segtool.commands.qc:qc",
}


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = [name for name in COMMANDS if _module_exists(COMMANDS[name])]
        return sorted(set(names) | set(super().list_commands(ctx)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS and _module_exists(COMMANDS[name]):
            module_name, attr = COMMANDS[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        command = super().get_command(ctx, name)
        if command is None:
            from segtool.commands.common import get_app

            _add_plugin_commands(self, get_app(ctx))
            command = super().get_command(ctx, name)
        return command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SegtoolError as exc:
            click.echo(f"segtool: error: {exc.one_line()}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("segtool: interrupted (finished outputs are complete; none is half-written)", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except click.exceptions.ClickException as exc:
            if _shows_help(exc):
                raise
            click.echo(_click_error_line(exc), err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - one line, not a traceback, unless debugging
            if os.environ.get(DEBUG_ENV):
                raise
            click.echo(f"segtool: error: {describe_unexpected(exc)} (set {DEBUG_ENV}=1 for the traceback)", err=True)
            ctx.exit(EXIT_CASE_FAILED)


    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.ClickException as exc:
            if _shows_help(exc):
                raise
            click.echo(_click_error_line(exc), err=True)
            raise click.exceptions.Exit(exc.exit_code) from None


def _shows_help(exc: click.exceptions.ClickException) -> bool:
    """A group called without its subcommand prints its help (click's NoArgsIsHelpError)."""
    return type(exc).__name__ == "NoArgsIsHelpError"


def _click_error_line(exc: click.exceptions.ClickException) -> str:
    """Click's usage error as one line, naming the --help to read."""
    text = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if isinstance(exc, click.UsageError) and ctx is not None else ""
    return f"segtool: error: {text}{hint}"


def _module_exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


def _add_plugin_commands(group: click.Group, app: App) -> None:
    app.plugin_manager.hook.segtool_register_commands(cli=group)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="segtool")
@click.option("-v", "--verbose", is_flag=True,
              help="Show every message of the image libraries (nibabel, pydicom, GDCM...) as they wrote it; "
                   "by default only those that matter are shown, as one segtool warning each.")
@click.option("--log", "log_file", type=click.Path(dir_okay=False),
              help="Append every library message to this file (also SEGTOOL_LOG=FILE).")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, log_file: str | None) -> None:
    """segtool: segment medical images and photos with task plugins.

    \b
    Examples:
      segtool tasks                          list the tasks and their models
      segtool example spinal-gm              write a bundled example image (t2s.nii.gz)
      segtool run spinal-gm t2s.nii.gz       segment one image
      segtool evaluate pred.nii.gz gt.nii.gz Dice, HD95, ... per label
    """
    if ctx.obj is None:
        ctx.obj = App()


def main() -> None:
    """The `segtool` command. The process ends with it, so what it allocated is frozen out of the
    interpreter's last garbage collection, which would otherwise walk every object torch made
    (about 0.5 s of each `segtool run`; `benchmarks/run_overhead.py`). Exit handlers still run."""
    try:
        cli(prog_name="segtool")
    finally:
        import gc

        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The CLI shell: help on every command, fast torch-free start-up, completion scripts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from segtool.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[1]


def walk(group, prefix=()):
    import click

    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield prefix + (name,)
        if isinstance(command, click.Group):
            yield from walk(command, prefix + (name,))


ALL_COMMANDS = list(walk(cli))


def test_every_builtin_command_is_present():
    names = {path[0] for path in ALL_COMMANDS}
    assert set(COMMANDS) <= names


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_help_on_every_command(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def subprocess_modules(code: str, env_extra=None) -> set[str]:
    env = dict(os.environ, **(env_extra or {}))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


PROBE = """
import json, sys
from click.testing import CliRunner
from segtool.cli import cli
r = CliRunner().invoke(cli, {args!r}, prog_name="segtool")
assert r.exit_code == 0, r.output
print()
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize(
    "args", [["--help"], ["run", "--help"], ["tasks"], ["evaluate", "--help"], ["models", "--help"]], ids=" ".join
)
def test_startup_does_not_import_torch(args):
    modules = subprocess_modules(PROBE.format(args=args))
    assert "torch" not in modules
    assert "segtool.cli" in modules


def test_completion_does_not_import_torch():
    code = """
import json, sys
from click.shell_completion import ShellComplete
from segtool.cli import cli
from segtool.app import App
items = ShellComplete(cli, {}, "segtool", "_SEGTOOL_COMPLETE").get_completions(["run"], "spin")
expected = sorted(spec.name for spec in App().registry if spec.name.startswith("spin"))
assert expected and [i.value for i in items] == expected, items
print(json.dumps(sorted(sys.modules)))
"""
    assert "torch" not in subprocess_modules(code)


def completions(args, incomplete):
    return [i.value for i in ShellComplete(cli, {}, "segtool", "_SEGTOOL_COMPLETE").get_completions(args, incomplete)]


def registered(prefix: str) -> list[str]:
    """Registered task names starting with ``prefix`` (installed plugins included), in registry order."""
    from segtool.app import App

    return [spec.name for spec in App().registry if spec.name.startswith(prefix)]


def test_task_names_complete_dynamically():
    assert {"brain-tumour", "brain-tumour-2d"} <= set(registered("brain-tu"))
    assert completions(["run"], "brain-tu") == registered("brain-tu")
    assert completions(["tasks"], "di") == registered("di") and "disc" in registered("di")
    assert "evaluate" in completions([], "ev")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shipped_completion_scripts_match_the_cli(shell):
    env = dict(os.environ, _SEGTOOL_COMPLETE=f"{shell}_source")
    generated = subprocess.run(
        [sys.executable, "-c", "from segtool.cli import cli; cli(prog_name='segtool')"],
        capture_output=True, text=True, env=env,
    ).stdout
    shipped = (ROOT / "completions" / f"segtool.{shell}").read_text(encoding="utf-8")
    assert generated == shipped, "completions/ drifted: run completions/generate.sh"


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "segtool" in result.output


def test_tasks_json_lists_builtin_specs():
    result = CliRunner().invoke(cli, ["tasks", "--json"])
    assert result.exit_code == 0, result.output
    tasks = {t["name"]: t for t in json.loads(result.output)}
    assert {"spinal-gm", "brain-tissue", "brain-tumour", "brain-tumour-2d", "disc", "clothing"} <= set(tasks)
    tumour = tasks["brain-tumour"]
    assert tumour["channels"] == ["flair", "t1c"]
    assert tumour["regions"]["whole_tumour"] == [1, 2, 3, 4]
    assert tasks["clothing"]["target_spacing"] is None and tasks["clothing"]["ndim"] == 2
    assert tasks["spinal-gm"]["orientation"] == "RAS"


def test_tasks_one_task_and_unknown_task():
    runner = CliRunner()
    one = runner.invoke(cli, ["tasks", "disc", "--json"])
    assert json.loads(one.output)["labels"]["1"] == "L5-S1"
    table = runner.invoke(cli, ["tasks", "disc"])
    assert table.exit_code == 0 and "L5-S1" in table.output
    bad = runner.invoke(cli, ["tasks", "dsic"])
    assert bad.exit_code == 2
    from segtool.app import App

    known = ", ".join(sorted(spec.name for spec in App().registry))
    assert bad.output.strip().splitlines() == [f"segtool: error: unknown task 'dsic'. Did you mean: disc? Known tasks: {known}"]


def test_tasks_card_keeps_long_lists_and_per_case_scores_short():
    result = CliRunner().invoke(cli, ["tasks", "brain-tumour-2d"])  # 1,345 training slices in its config
    assert result.exit_code == 0, result.output
    assert "1345 cases" in result.output and "per_case" not in result.output and "TCGA_" not in result.output

"""`segtool models`: list, fetch, verify, locate, carry and publish task weights.

The model-folder commands (ensemble, logit-adjust, export-checkpoint, bundle) live in
``segtool.commands.models_build`` and are added to this group at the end of the module.

The weights commands take ``--cache-dir`` (default: ``SEGTOOL_CACHE``, ``HF_HUB_CACHE``,
``$HF_HOME/hub``, ``~/.cache/huggingface/hub``); the Hub endpoint is ``HF_ENDPOINT``.
Only ``pull`` and ``push`` use the network, and ``pull --offline`` (or
``HF_HUB_OFFLINE=1``) does not. This module parses options, calls the core
(``segtool.weights.inventory``, ``.pull``, ``.archive``, ``.publish``)
and prints. Torch is never imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from segtool.commands.common import complete_model, complete_task, echo_json, get_app
from segtool.commands.models_build import COMMANDS as BUILD_COMMANDS
from segtool.console import make_console, stdout_console
from segtool.errors import UsageError, WeightsIntegrityError, WeightsUnavailableError
from segtool.weights.archive import export_weights, import_weights
from segtool.weights.inventory import human_size, inventory, local_model_paths, verify_models
from segtool.weights.publish import check_model_folder, push_folder, weights_ref_text
from segtool.weights.pull import pull_models
from segtool.weights.results import FileCheck, ImportResult
from segtool.weights.settings import HubSettings

_cache_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Hub cache folder (default: SEGTOOL_CACHE, HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub).",
)
_offline_option = click.option("--offline", is_flag=True, help="Never touch the network (also: HF_HUB_OFFLINE=1).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of a table.")


def _report(rows: list[Any], as_json: bool, line: Callable[[Any], str], summary: str) -> None:
    """The rows as JSON on stdout, or one line each and a summary on stderr."""
    if as_json:
        echo_json([r.to_json() for r in rows])
        return
    console = make_console()
    for r in rows:
        console.print(line(r))
    console.print(summary)


def _verify_line(r: FileCheck) -> str:
    label = f"{r.task}/{r.variant} {r.filename}"
    if r.status == "ok":
        return f"[green]ok[/green]       {label}"
    if r.status == "missing":
        return f"[dim]missing  {label}[/dim]"
    fate = "removed; pull it again" if r.removed else "reinstall its plugin"
    return f"[red]MISMATCH[/red] {label}: expected {r.expected}, got {r.actual} ({r.path}; {fate})"


def _import_line(r: ImportResult) -> str:
    label = f"{r.repo_id}@{r.revision[:12]} {r.filename}"
    if r.status == "refused":
        return f"[red]refused[/red]  {label}: {r.reason}"
    return f"[green]{r.status:<8}[/green] {label}"


@click.group()
def models() -> None:
    """Task weights: list, pull, verify, path, export/import (air-gapped sites), push;
    and model folders: ensemble, logit-adjust, export-checkpoint, bundle.

    \b
    Examples:
      segtool models list                     what each task offers, and what is cached
      segtool models pull spinal-gm           download (pinned revision, sha256 checked)
      segtool models export weights.tar       carry the cache to an offline machine ...
      segtool models import weights.tar       ... and load it there
      segtool models ensemble ens/ a/ b/      one model folder averaging trained ones
      segtool models bundle ens/ plugins/segtool_x   ship a model folder inside its plugin
    """


@models.command("list")
@click.argument("names", nargs=-1, shell_complete=complete_task)
@_json_option
@_cache_option
@_offline_option
@click.pass_context
def list_models(ctx: click.Context, names: tuple[str, ...], as_json: bool, cache_dir: str | None, offline: bool) -> None:
    """List every task's models: source, size, sha256 and whether they are on this machine.

    Never uses the network. Tasks without trained weights are listed as unavailable.
    """
    app = get_app(ctx)
    hub = HubSettings.from_env(offline_flag=True, cache_dir=cache_dir)
    out = inventory(app.registry, app.plugin_manager, hub, names)
    if as_json:
        echo_json([e.to_json() for e in out])
        return
    from rich.table import Table

    table = Table(title=f"segtool models (cache: {hub.cache_dir})")
    # task and model names are never cut or wrapped, whatever the terminal's width
    table.add_column("task", no_wrap=True, min_width=max([4] + [len(e.task) for e in out]))
    widest = max([5] + [len(v.variant) + 10 for e in out for v in e.variants])
    table.add_column("model", no_wrap=True, min_width=widest)
    for column in ("source", "size", "sha256"):
        table.add_column(column, overflow="fold")
    table.add_column("on this machine", no_wrap=True)
    for entry in out:
        if not entry.variants:
            table.add_row(entry.task, "-", "-", "-", "-", "[red]unavailable: no trained weights yet[/red]")
            continue
        for v in entry.variants:
            name = v.variant + (" (default)" if v.default else "")
            state = "[green]yes[/green]" if v.present else "[yellow]no[/yellow] (segtool models pull)"
            source = f"bundled ({v.package})" if v.package else f"hub {v.repo_id}@{v.revision[:12]}"
            if v.member is not None:
                source += f", ensemble member {v.member}"
            table.add_row(entry.task, name, source, human_size(v.size), v.sha256[:12] + "…", state)
    stdout_console().print(table)


@models.command()
@click.argument("names", nargs=-1, shell_complete=complete_task)
@click.option("--all", "all_tasks", is_flag=True, help="Every task that has weights.")
@click.option("--model", "model_names", multiple=True, shell_complete=complete_model,
              help="Only this model variant (repeatable). Default: all.")
@_json_option
@_cache_option
@_offline_option
@click.pass_context
def pull(
    ctx: click.Context, names: tuple[str, ...], all_tasks: bool, model_names: tuple[str, ...], as_json: bool,
    cache_dir: str | None, offline: bool,
) -> None:
    """Download the weights of TASK... (or --all) into the cache and check their sha256.

    Files already cached are only re-hashed. Bundled weights are checked in place.
    """
    if not names and not all_tasks:
        raise UsageError("name the tasks to pull, or give --all")
    app = get_app(ctx)
    hub = HubSettings.from_env(offline_flag=offline, cache_dir=cache_dir)
    results, failures = pull_models(app.registry, names, model_names, all_tasks, hub, app.plugin_manager, make_console())
    if as_json:
        echo_json([r.to_json() for r in results])
    if failures:
        ctx.exit(max(f.exit_code for f in failures))
    if not results:
        raise WeightsUnavailableError(
            "nothing pulled: no registered task has trained weights"
            + (" matching --model " + ", ".join(model_names) if model_names else "")
        )


@models.command()
@click.argument("names", nargs=-1, shell_complete=complete_task)
@_json_option
@_cache_option
@click.pass_context
def verify(ctx: click.Context, names: tuple[str, ...], as_json: bool, cache_dir: str | None) -> None:
    """Re-hash every weights file present on this machine against its pinned sha256.

    A bad copy in the cache is removed (pull it again); exit status 3 if any file is bad.
    """
    app = get_app(ctx)
    hub = HubSettings.from_env(offline_flag=True, cache_dir=cache_dir)
    rows = verify_models(app.registry, app.plugin_manager, hub, names)
    bad = [r for r in rows if r.status == "mismatch"]
    checked = [r for r in rows if r.status != "missing"]
    summary = f"{len(checked)} file(s) checked, {len(bad)} bad, {len(rows) - len(checked)} not present"
    _report(rows, as_json, _verify_line, summary)
    if bad:
        ctx.exit(WeightsIntegrityError.exit_code)


@models.command()
@click.argument("name", shell_complete=complete_task)
@click.option("--model", "variant", default=None, shell_complete=complete_model,
              help="Model variant (default: the task's default).")
@click.option("--config", "want_config", is_flag=True, help="Print the config.json path instead.")
@_json_option
@_cache_option
@click.pass_context
def path(ctx: click.Context, name: str, variant: str | None, want_config: bool, as_json: bool, cache_dir: str | None) -> None:
    """Print the local path of task NAME's weights file (checked; never downloads).

    The config.json lies beside it, so the path works with `segtool run --weights`.
    """
    app = get_app(ctx)
    spec = app.registry.get(name)
    hub = HubSettings.from_env(offline_flag=True, cache_dir=cache_dir)
    found = local_model_paths(app.plugin_manager, spec, variant, hub)
    if as_json:
        echo_json({"task": spec.name, "variant": found.variant, "weights": found.weights, "config": found.config})
    else:
        click.echo(found.config if want_config else found.weights)


@models.command()
@click.argument("archive", type=click.Path(dir_okay=False))
@click.argument("names", nargs=-1, shell_complete=complete_task)
@click.option("--model", "model_names", multiple=True, help="Only this model variant (repeatable).")
@_json_option
@_cache_option
@click.pass_context
def export(
    ctx: click.Context, archive: str, names: tuple[str, ...], model_names: tuple[str, ...], as_json: bool, cache_dir: str | None
) -> None:
    """Write the cached Hub weights of TASK... (default: all cached) to ARCHIVE (.tar).

    Carry the archive to an offline machine and run `segtool models import ARCHIVE` there.
    Every file is re-hashed on the way in; bundled weights ship with their plugin and are skipped
    (when every model is bundled there is nothing to carry, and no archive is written).
    """
    app = get_app(ctx)
    hub = HubSettings.from_env(offline_flag=True, cache_dir=cache_dir)
    console = make_console()
    skipped: list[str] = []
    written = export_weights(Path(archive), app.registry, names, model_names, app.plugin_manager, hub,
                             lambda spec, variant, why: skipped.append(f"{spec.name}/{variant}: {why}"))
    if not written.files:
        if as_json:
            echo_json({"archive": None, "files": [], "bytes": 0, "bundled": [s.split(":")[0] for s in skipped]})
        console.print(f"nothing to export: the {len(skipped)} model(s) are bundled with their plugins, so an "
                      f"offline machine has them once segtool is installed; {archive} not written")
        return
    for line in skipped:
        console.print(f"[dim]skip {line}[/dim]")
    if as_json:
        echo_json({"archive": str(archive), "files": [e.to_json() for e in written.files], "bytes": written.bytes})
    else:
        for e in written.files:
            console.print(f"[green]+[/green] {e.task}/{e.variant} {e.filename} ({human_size(e.size)})")
        console.print(f"wrote {archive}: {len(written.files)} file(s), {human_size(written.bytes)}")


@models.command("import")
@click.argument("source", type=click.Path(exists=True))
@_json_option
@_cache_option
@click.pass_context
def import_(ctx: click.Context, source: str, as_json: bool, cache_dir: str | None) -> None:
    """Bring weights from SOURCE (an archive from `export`, or a folder) into the cache.

    SOURCE may be a .tar written by `segtool models export`, that archive unpacked, or
    any Hugging Face Hub cache folder. Each file must match the manifest's sha256 and the
    sha256 pinned by the installed plugins, or it is refused.
    """
    app = get_app(ctx)
    hub = HubSettings.from_env(offline_flag=True, cache_dir=cache_dir)
    results = import_weights(source, app.registry, hub)
    refused = [r for r in results if r.status == "refused"]
    _report(results, as_json, _import_line, f"{len(results) - len(refused)} file(s) in {hub.cache_dir}, {len(refused)} refused")
    if refused:
        ctx.exit(WeightsIntegrityError.exit_code)


@models.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--branch", default="main", show_default=True, help="Branch to commit to.")
@click.option("--message", "-m", default=None, help="Commit message.")
@_json_option
@click.pass_context
def push(
    ctx: click.Context, folder: str, repo_id: str, private: bool, branch: str, message: str | None, as_json: bool
) -> None:
    """Upload a trained model FOLDER (model.safetensors, config.json, README.md) to REPO_ID.

    Uses HF_TOKEN (or your `hf auth login`) and HF_ENDPOINT. Prints the pinned
    WeightsRef (commit and sha256s) to paste into the task's plugin.
    """
    hub = HubSettings.from_env()
    src = Path(folder)
    config = check_model_folder(src, repo_id, hub)
    console = make_console()
    if not (src / "README.md").is_file():
        console.print(f"[yellow]warning:[/yellow] {src} has no README.md model card")
    pushed = push_folder(src, repo_id, hub, config, private=private, branch=branch, message=message)
    if as_json:
        echo_json(pushed.to_json())
        return
    console.print(f"[green]pushed[/green] {src} to {repo_id} at revision {pushed.revision}")
    click.echo(weights_ref_text(pushed))


for _command in BUILD_COMMANDS:
    models.add_command(_command)

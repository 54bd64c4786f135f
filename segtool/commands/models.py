"""`segtool models`: list, fetch, verify, locate, carry and publish task weights.

All commands take ``--cache-dir`` (default: ``SEGTOOL_CACHE``, ``HF_HUB_CACHE``,
``$HF_HOME/hub``, ``~/.cache/huggingface/hub``); the Hub endpoint is ``HF_ENDPOINT``.
Only ``pull`` and ``push`` use the network, and ``pull --offline`` (or
``HF_HUB_OFFLINE=1``) does not.

Archive layout (``export`` writes it, ``import`` reads it): a plain tar whose members
are a Hugging Face Hub cache, plus a manifest::

    segtool-weights.json                               manifest: task, model, repo, revision, file, sha256, size
    models--OWNER--NAME/blobs/SHA256                   file contents
    models--OWNER--NAME/snapshots/REVISION/FILENAME -> ../../blobs/SHA256

``segtool models import FILE.tar`` checks every file against the manifest and against
the sha256 pinned by the installed plugins before it enters the cache; ``tar -xf
FILE.tar -C CACHE`` also works (segtool still checks the hashes before use). ``import
DIR`` takes an unpacked archive or any Hub cache folder (e.g. a shared drive copy).

Torch is never imported here.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import click

from segtool import __version__
from segtool.commands.common import complete_task, echo_json, get_app
from segtool.console import make_console, stdout_console
from segtool.errors import SegtoolError, UsageError, WeightsIntegrityError, WeightsUnavailableError
from segtool.weights import (
    HubSettings,
    check_sha256,
    find_local,
    pull_command,
    remove_cached_copy,
    resolve_model,
    sha256_file,
)

MANIFEST = "segtool-weights.json"
ARCHIVE_FORMAT = "segtool-weights"
PUSH_FILES = ("model.safetensors", "config.json", "README.md", "train_log.jsonl")


# ---------------------------------------------------------------------------- shared pieces


def _cache_option(f: Callable) -> Callable:
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Hub cache folder (default: SEGTOOL_CACHE, HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub).",
    )(f)


def _offline_option(f: Callable) -> Callable:
    return click.option(
        "--offline", is_flag=True, help="Never touch the network (also: HF_HUB_OFFLINE=1)."
    )(f)


def _json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of a table.")(f)


def _repo_folder(repo_id: str) -> str:
    return "models--" + repo_id.replace("/", "--")


def _human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def _source_text(ref) -> str:
    if ref.package:
        return f"bundled ({ref.package})"
    return f"hub {ref.repo_id}@{ref.revision[:12]}"


def _pairs(registry, names: Iterable[str], models: Iterable[str], all_tasks: bool) -> tuple[list, list]:
    """(spec, variant) pairs to act on, and the specs that have no weights at all."""
    names = list(names)
    models = list(models)
    if all_tasks and names:
        raise UsageError("give task names or --all, not both")
    specs = list(registry) if all_tasks or not names else [registry.get(n) for n in names]
    pairs, empty = [], []
    for spec in specs:
        if not spec.models:
            empty.append(spec)
            continue
        variants = models or list(spec.models)
        for variant in variants:
            if variant not in spec.models:
                if names:
                    raise UsageError(
                        f"task {spec.name!r} has no model {variant!r}; choose one of: {', '.join(sorted(spec.models))}"
                    )
                continue
            pairs.append((spec, variant))
    return pairs, empty


def _file_rows(pm, spec, variant: str, hub: HubSettings) -> list[dict[str, Any]]:
    ref = spec.models[variant]
    rows = []
    for role, wf in (("weights", ref.weights), ("config", ref.config)):
        path = find_local(pm, spec, variant, wf.filename, hub)
        rows.append(
            {
                "role": role,
                "filename": wf.filename,
                "sha256": wf.sha256,
                "present": path is not None,
                "size": os.path.getsize(path) if path else None,
                "path": path,
            }
        )
    return rows


# ---------------------------------------------------------------------------- group


@click.group()
def models() -> None:
    """Task weights: list, pull, verify, path, export/import (air-gapped sites), push.

    \b
    Examples:
      segtool models list                     what each task offers, and what is cached
      segtool models pull spinal-gm           download (pinned revision, sha256 checked)
      segtool models export weights.tar       carry the cache to an offline machine ...
      segtool models import weights.tar       ... and load it there
    """


# ---------------------------------------------------------------------------- list


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
    registry = app.registry
    specs = [registry.get(n) for n in names] if names else list(registry)
    out = []
    for spec in specs:
        entry: dict[str, Any] = {
            "task": spec.name,
            "plugin": registry.owners.get(spec.name),
            "available": spec.has_weights,
            "default_model": spec.default_model,
            "variants": [],
        }
        if not spec.has_weights:
            entry["note"] = "no trained weights yet"
        for variant, ref in spec.models.items():
            files = _file_rows(app.plugin_manager, spec, variant, hub)
            present = all(f["present"] for f in files)
            entry["variants"].append(
                {
                    "variant": variant,
                    "default": variant == spec.default_model,
                    "source": ref.source,
                    "repo_id": ref.repo_id,
                    "revision": ref.revision,
                    "package": ref.package,
                    "description": ref.description,
                    "sha256": ref.weights.sha256,
                    "size": files[0]["size"],
                    "present": present,
                    "path": files[0]["path"],
                    "files": files,
                }
            )
        out.append(entry)
    if as_json:
        echo_json(out)
        return
    from rich.table import Table

    table = Table(title=f"segtool models (cache: {hub.cache_dir})")
    for column in ("task", "model", "source", "size", "sha256", "on this machine"):
        table.add_column(column)
    for entry in out:
        if not entry["variants"]:
            table.add_row(entry["task"], "-", "-", "-", "-", "[red]unavailable: no trained weights yet[/red]")
            continue
        for v in entry["variants"]:
            ref = registry.get(entry["task"]).models[v["variant"]]
            name = v["variant"] + (" (default)" if v["default"] else "")
            state = "[green]yes[/green]" if v["present"] else "[yellow]no[/yellow] (segtool models pull)"
            table.add_row(entry["task"], name, _source_text(ref), _human(v["size"]), v["sha256"][:12] + "…", state)
    stdout_console().print(table)


# ---------------------------------------------------------------------------- pull


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


@models.command()
@click.argument("names", nargs=-1, shell_complete=complete_task)
@click.option("--all", "all_tasks", is_flag=True, help="Every task that has weights.")
@click.option("--model", "model_names", multiple=True, help="Only this model variant (repeatable). Default: all.")
@_json_option
@_cache_option
@_offline_option
@click.pass_context
def pull(
    ctx: click.Context,
    names: tuple[str, ...],
    all_tasks: bool,
    model_names: tuple[str, ...],
    as_json: bool,
    cache_dir: str | None,
    offline: bool,
) -> None:
    """Download the weights of TASK... (or --all) into the cache and check their sha256.

    Files already cached are only re-hashed. Bundled weights are checked in place.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    if not names and not all_tasks:
        raise UsageError("name the tasks to pull, or give --all")
    app = get_app(ctx)
    pm = app.plugin_manager
    hub = HubSettings.from_env(offline_flag=offline, cache_dir=cache_dir)
    pairs, empty = _pairs(app.registry, names, model_names, all_tasks)
    console = make_console()
    failures: list[SegtoolError] = []
    results = []
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
    with progress:
        for spec, variant in pairs:
            bars.label = f"{spec.name}/{variant}"
            started = time.monotonic()
            try:
                resolved = resolve_model(spec, variant, replace(hub, progress=bars), pm)
            except SegtoolError as exc:
                failures.append(exc)
                progress.console.print(f"[red]✗[/red] {spec.name}/{variant}: {exc.one_line()}")
                results.append({"task": spec.name, "variant": variant, "ok": False, "error": exc.one_line()})
                continue
            size = os.path.getsize(resolved.weights_path)
            progress.console.print(
                f"[green]✓[/green] {spec.name}/{variant}: {resolved.source}, {_human(size)}, sha256 ok "
                f"({time.monotonic() - started:.1f} s)"
            )
            results.append(
                {
                    "task": spec.name,
                    "variant": variant,
                    "ok": True,
                    "source": resolved.source,
                    "path": resolved.weights_path,
                    "config_path": resolved.config_path,
                    "sha256": resolved.weights_sha256,
                    "size": size,
                }
            )
    if as_json:
        echo_json(results)
    if failures:
        ctx.exit(max(f.exit_code for f in failures))


# ---------------------------------------------------------------------------- verify


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
    pm = app.plugin_manager
    hub = HubSettings.from_env(offline_flag=True, cache_dir=cache_dir)
    pairs, _ = _pairs(app.registry, names, (), False)
    rows = []
    for spec, variant in pairs:
        ref = spec.models[variant]
        for wf in (ref.weights, ref.config):
            row: dict[str, Any] = {"task": spec.name, "variant": variant, "filename": wf.filename, "expected": wf.sha256}
            path = find_local(pm, spec, variant, wf.filename, hub)
            if path is None:
                row.update(status="missing", path=None, actual=None)
            else:
                actual = sha256_file(path)
                ok = actual == wf.sha256
                row.update(status="ok" if ok else "mismatch", path=path, actual=actual, size=os.path.getsize(path))
                if not ok:
                    row["removed"] = remove_cached_copy(path, hub)
            rows.append(row)
    bad = [r for r in rows if r["status"] == "mismatch"]
    checked = [r for r in rows if r["status"] != "missing"]
    if as_json:
        echo_json(rows)
    else:
        console = make_console()
        for r in rows:
            label = f"{r['task']}/{r['variant']} {r['filename']}"
            if r["status"] == "ok":
                console.print(f"[green]ok[/green]       {label}")
            elif r["status"] == "missing":
                console.print(f"[dim]missing  {label}[/dim]")
            else:
                fate = "removed; pull it again" if r.get("removed") else "reinstall its plugin"
                console.print(
                    f"[red]MISMATCH[/red] {label}: expected {r['expected']}, got {r['actual']} ({r['path']}; {fate})"
                )
        console.print(f"{len(checked)} file(s) checked, {len(bad)} bad, {len(rows) - len(checked)} not present")
    if bad:
        ctx.exit(WeightsIntegrityError.exit_code)


# ---------------------------------------------------------------------------- path


@models.command()
@click.argument("name", shell_complete=complete_task)
@click.option("--model", "variant", default=None, help="Model variant (default: the task's default).")
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
    if not spec.models:
        raise WeightsUnavailableError(f"task {spec.name!r} has no trained weights yet")
    variant = variant or spec.default_model
    if variant not in spec.models:
        raise UsageError(f"task {spec.name!r} has no model {variant!r}; choose one of: {', '.join(sorted(spec.models))}")
    ref = spec.models[variant]
    found = {}
    for role, wf in (("weights", ref.weights), ("config", ref.config)):
        p = find_local(app.plugin_manager, spec, variant, wf.filename, hub)
        if p is None:
            raise WeightsUnavailableError(
                f"weights for task {spec.name!r} (model {variant!r}) are not on this machine; fetch them with: "
                f"{pull_command(spec.name, variant, spec.default_model, hub)}"
            )
        fix = "reinstall its plugin" if ref.package else f"pull it again: {pull_command(spec.name, variant, spec.default_model, hub)}"
        check_sha256(p, wf.sha256, hub, f"{wf.filename} of task {spec.name!r} (model {variant!r})", fix)
        found[role] = p
    if as_json:
        echo_json({"task": spec.name, "variant": variant, "weights": found["weights"], "config": found["config"]})
    else:
        click.echo(found["config" if want_config else "weights"])


# ---------------------------------------------------------------------------- export


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
    Every file is re-hashed on the way in; bundled weights ship with their plugin and are skipped.
    """
    app = get_app(ctx)
    pm = app.plugin_manager
    hub = HubSettings.from_env(offline_flag=True, cache_dir=cache_dir)
    pairs, _ = _pairs(app.registry, names, model_names, False)
    console = make_console()
    entries: list[dict[str, Any]] = []
    for spec, variant in pairs:
        ref = spec.models[variant]
        if ref.package:
            console.print(f"[dim]skip {spec.name}/{variant}: bundled with its plugin[/dim]")
            continue
        found = []
        for wf in (ref.weights, ref.config):
            p = find_local(pm, spec, variant, wf.filename, hub)
            if p is None:
                break
            found.append((wf, p))
        if len(found) < 2:
            msg = (
                f"weights for task {spec.name!r} (model {variant!r}) are not cached; fetch them first with: "
                f"{pull_command(spec.name, variant, spec.default_model, hub)}"
            )
            if names:
                raise WeightsUnavailableError(msg)
            console.print(f"[dim]skip {spec.name}/{variant}: not cached[/dim]")
            continue
        for wf, p in found:
            check_sha256(p, wf.sha256, hub, f"{wf.filename} of task {spec.name!r} (model {variant!r})", "pull it again")
            folder = _repo_folder(ref.repo_id)
            entries.append(
                {
                    "task": spec.name,
                    "variant": variant,
                    "repo_id": ref.repo_id,
                    "revision": ref.revision,
                    "filename": wf.filename,
                    "sha256": wf.sha256,
                    "size": os.path.getsize(p),
                    "blob": f"{folder}/blobs/{wf.sha256}",
                    "path": f"{folder}/snapshots/{ref.revision}/{wf.filename}",
                    "_local": p,
                }
            )
    if not entries:
        raise WeightsUnavailableError(
            f"no cached Hub weights to export from {hub.cache_dir}; fetch them first with: segtool models pull --all"
        )
    _write_archive(Path(archive), entries)
    total = sum(e["size"] for e in {e["blob"]: e for e in entries}.values())
    summary = [{k: v for k, v in e.items() if not k.startswith("_")} for e in entries]
    if as_json:
        echo_json({"archive": str(archive), "files": summary, "bytes": total})
    else:
        for e in summary:
            console.print(f"[green]+[/green] {e['task']}/{e['variant']} {e['filename']} ({_human(e['size'])})")
        console.print(f"wrote {archive}: {len(summary)} file(s), {_human(total)}")


def _write_archive(archive: Path, entries: list[dict[str, Any]]) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.{os.getpid()}.partial")
    mode = "w:gz" if archive.name.endswith((".tar.gz", ".tgz")) else "w"
    manifest = {
        "format": ARCHIVE_FORMAT,
        "version": 1,
        "created_by": f"segtool {__version__}",
        "files": [{k: v for k, v in e.items() if not k.startswith("_")} for e in entries],
    }
    try:
        with tarfile.open(tmp, mode) as tar:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
            written: set[str] = set()
            for e in entries:
                if e["blob"] not in written:
                    info = tar.gettarinfo(e["_local"], arcname=e["blob"])  # follows the snapshot symlink
                    info = _regular(info, e["size"])
                    with open(e["_local"], "rb") as f:
                        tar.addfile(info, f)
                    written.add(e["blob"])
                if e["path"] not in written:
                    link = tarfile.TarInfo(e["path"])
                    link.type = tarfile.SYMTYPE
                    link.linkname = os.path.relpath(e["blob"], os.path.dirname(e["path"]))
                    link.mtime, link.mode = int(time.time()), 0o777
                    tar.addfile(link)
                    written.add(e["path"])
        os.replace(tmp, archive)
    finally:
        tmp.unlink(missing_ok=True)


def _regular(info: tarfile.TarInfo, size: int) -> tarfile.TarInfo:
    info.type = tarfile.REGTYPE
    info.size = size
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


# ---------------------------------------------------------------------------- import


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
    pins = _pins(app.registry)
    src = Path(source)
    console = make_console()
    results: list[dict[str, Any]] = []
    for item, opener in _import_items(src, pins):
        results.append(_import_one(item, opener, pins, hub))
    if not results:
        raise WeightsUnavailableError(f"{source}: no segtool weights found (no {MANIFEST} and no cached files of known tasks)")
    refused = [r for r in results if r["status"] == "refused"]
    if as_json:
        echo_json(results)
    else:
        for r in results:
            label = f"{r['repo_id']}@{r['revision'][:12]} {r['filename']}"
            if r["status"] == "refused":
                console.print(f"[red]refused[/red]  {label}: {r['reason']}")
            else:
                console.print(f"[green]{r['status']:<8}[/green] {label}")
        console.print(f"{len(results) - len(refused)} file(s) in {hub.cache_dir}, {len(refused)} refused")
    if refused:
        ctx.exit(WeightsIntegrityError.exit_code)


def _pins(registry) -> dict[tuple[str, str, str], tuple[str, str, str]]:
    """(repo_id, revision, filename) -> (sha256, task, variant) for every Hub file the plugins declare."""
    pins = {}
    for spec in registry:
        for variant, ref in spec.models.items():
            if ref.repo_id:
                for wf in (ref.weights, ref.config):
                    pins[(ref.repo_id, ref.revision, wf.filename)] = (wf.sha256, spec.name, variant)
    return pins


Opener = Callable[[], BinaryIO]


def _import_items(src: Path, pins: dict) -> Iterator[tuple[dict[str, Any], Opener]]:
    if src.is_file():
        if not tarfile.is_tarfile(src):
            raise UsageError(f"{src}: not a tar archive (give an archive from `segtool models export`, or a folder)")
        with tarfile.open(src, "r:*") as tar:
            try:
                member = tar.getmember(MANIFEST)
            except KeyError:
                raise UsageError(f"{src}: no {MANIFEST} inside; not an archive from `segtool models export`") from None
            manifest = _read_manifest(tar.extractfile(member).read(), str(src))
            for item in manifest["files"]:
                try:
                    blob = tar.getmember(item["blob"])
                except KeyError:
                    yield item, _missing(f"{item['blob']} is missing from the archive")
                    continue
                if not blob.isreg():
                    yield item, _missing(f"{item['blob']} is not a regular file in the archive")
                    continue
                yield item, (lambda blob=blob: tar.extractfile(blob))
        return
    manifest_path = src / MANIFEST
    if manifest_path.is_file():
        manifest = _read_manifest(manifest_path.read_bytes(), str(manifest_path))
        for item in manifest["files"]:
            yield item, _file_opener(src / item["blob"])
        return
    # A Hub cache folder: look for every pinned file of the installed tasks.
    for (repo_id, revision, filename), (sha, task, variant) in sorted(pins.items()):
        candidate = src / _repo_folder(repo_id) / "snapshots" / revision / filename
        if candidate.is_file():
            item = {"task": task, "variant": variant, "repo_id": repo_id, "revision": revision, "filename": filename, "sha256": sha}
            yield item, _file_opener(candidate)


def _file_opener(p: Path) -> Opener:
    def opener() -> BinaryIO:
        if not p.is_file():
            raise OSError(f"{p} is missing")
        return open(p, "rb")

    return opener


def _missing(message: str) -> Opener:
    def opener() -> BinaryIO:
        raise OSError(message)

    return opener


def _read_manifest(raw: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
        ok = manifest.get("format") == ARCHIVE_FORMAT and isinstance(manifest.get("files"), list)
    except (ValueError, AttributeError):
        ok = False
    if not ok:
        raise UsageError(f"{where}: not a segtool weights manifest")
    from segtool.spec import HEX40, HEX64

    for item in manifest["files"]:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("repo_id"), str)
            and item["repo_id"].count("/") == 1
            and ".." not in item["repo_id"]
            and HEX40.match(str(item.get("revision", "")))
            and HEX64.match(str(item.get("sha256", "")))
            and isinstance(item.get("filename"), str)
            and item["filename"]
            and not item["filename"].startswith("/")
            and ".." not in item["filename"].split("/")
        ):
            raise UsageError(f"{where}: malformed manifest entry {item!r}")
        item["blob"] = f"{_repo_folder(item['repo_id'])}/blobs/{item['sha256']}"  # never a path from outside
    return manifest


def _import_one(item: dict[str, Any], opener: Opener, pins: dict, hub: HubSettings) -> dict[str, Any]:
    repo_id, revision, filename, expected = item["repo_id"], item["revision"], item["filename"], item["sha256"]
    result = {"repo_id": repo_id, "revision": revision, "filename": filename, "sha256": expected}
    pin = pins.get((repo_id, revision, filename))
    if pin is not None:
        result.update(task=pin[1], variant=pin[2])
        if pin[0] != expected:
            return result | {"status": "refused", "reason": f"sha256 {expected} differs from the pinned {pin[0]} (task {pin[1]!r})"}
    storage = Path(hub.cache_dir) / _repo_folder(repo_id)
    pointer = storage / "snapshots" / revision / Path(*filename.split("/"))
    if pointer.is_file() and sha256_file(pointer) == expected:
        return result | {"status": "present", "path": str(pointer)}

    import hashlib

    from huggingface_hub.utils import WeakFileLock

    blob = storage / "blobs" / expected
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(hub.cache_dir) / ".locks" / _repo_folder(repo_id) / f"{expected}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock):
        if not (blob.is_file() and sha256_file(blob) == expected):
            tmp = blob.with_name(f"{blob.name}.{os.getpid()}.incomplete")
            digest = hashlib.sha256()
            try:
                with opener() as src, open(tmp, "wb") as dst:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        digest.update(block)
                        dst.write(block)
                actual = digest.hexdigest()
                if actual != expected:
                    return result | {"status": "refused", "reason": f"content hashes to {actual}, manifest says {expected}"}
                os.replace(tmp, blob)
            except OSError as exc:
                return result | {"status": "refused", "reason": str(exc)}
            finally:
                tmp.unlink(missing_ok=True)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        _link(blob, pointer)
    return result | {"status": "imported", "path": str(pointer)}


def _link(blob: Path, pointer: Path) -> None:
    """Point the snapshot entry at the blob (relative symlink, else a copy), atomically."""
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), tmp)
    except OSError:
        import shutil

        shutil.copyfile(blob, tmp)
    os.replace(tmp, pointer)


# ---------------------------------------------------------------------------- push


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
    from segtool.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME, ModelConfig

    hub = HubSettings.from_env()
    if hub.offline:
        raise UsageError("push needs the network, but HF_HUB_OFFLINE is set")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UsageError(f"REPO_ID must be 'owner/name', got {repo_id!r}")
    src = Path(folder)
    for required in (WEIGHTS_FILENAME, CONFIG_FILENAME):
        if not (src / required).is_file():
            raise UsageError(f"{src}: {required} is missing (a model folder holds {', '.join(PUSH_FILES)})")
    config = ModelConfig.read(src / CONFIG_FILENAME)
    _check_safetensors_header(src / WEIGHTS_FILENAME)
    console = make_console()
    if not (src / "README.md").is_file():
        console.print(f"[yellow]warning:[/yellow] {src} has no README.md model card")
    files = [
        {"filename": name, "sha256": sha256_file(src / name), "size": (src / name).stat().st_size}
        for name in PUSH_FILES
        if (src / name).is_file()
    ]

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=hub.endpoint, token=hub.token)
    try:
        api.create_repo(repo_id, exist_ok=True, private=True if private else None)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(src),
            allow_patterns=list(PUSH_FILES),
            revision=branch,
            commit_message=message or f"segtool: {config.task} model",
        )
    except HfHubHTTPError as exc:
        raise SegtoolError(f"push to {repo_id} on {hub.endpoint} failed: {' '.join(str(exc).split())[:300]}") from None
    except (OSError, ValueError) as exc:
        raise SegtoolError(f"push to {repo_id} on {hub.endpoint} failed: {' '.join(str(exc).split())[:300]}") from None
    revision = info.oid
    sha = {f["filename"]: f["sha256"] for f in files}
    if as_json:
        echo_json(
            {"repo_id": repo_id, "revision": revision, "commit_url": info.commit_url, "task": config.task, "files": files}
        )
        return
    console.print(f"[green]pushed[/green] {src} to {repo_id} at revision {revision}")
    click.echo(
        "WeightsRef(\n"
        f'    repo_id="{repo_id}",\n'
        f'    revision="{revision}",\n'
        f'    weights=WeightsFile("{WEIGHTS_FILENAME}", "{sha[WEIGHTS_FILENAME]}"),\n'
        f'    config=WeightsFile("{CONFIG_FILENAME}", "{sha[CONFIG_FILENAME]}"),\n'
        ")"
    )


def _check_safetensors_header(path: Path) -> None:
    """A safetensors file starts with an 8-byte little-endian length and a JSON header."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a safetensors file ({exc})") from None

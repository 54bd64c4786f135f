"""What each task's weights are, and which of them lie on this machine.

The inventory behind ``segtool models list``, ``verify`` and ``path`` (and the choice of
models that ``pull`` and ``export`` act on). Every lookup goes through
``resolve.find_local``: the plugins' ``segtool_resolve_weights`` hook, offline, so nothing
here touches the network. Torch is never imported.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable

from segtool.errors import UsageError, WeightsUnavailableError
from segtool.weights.integrity import check_sha256, remove_cached_copy, sha256_file
from segtool.weights.resolve import find_local, pull_command
from segtool.weights.results import FileCheck, LocalModel, ModelFile, ModelVariant, TaskModels
from segtool.weights.settings import HubSettings

if TYPE_CHECKING:
    import pluggy

    from segtool.registry import TaskRegistry
    from segtool.spec import TaskSpec


def human_size(size: int | None) -> str:
    """A file size for people: ``-`` (absent), ``512 B``, ``1.5 kB``, ``20.3 MB``, ``1.2 GB`` (rich's decimal units)."""
    from rich.filesize import decimal

    if size is None:
        return "-"
    return f"{size} B" if size < 1000 else decimal(size)


def unknown_model(spec: "TaskSpec", variant: str) -> UsageError:
    """The error for a model variant that ``spec`` does not offer."""
    return UsageError(f"task {spec.name!r} has no model {variant!r}; choose one of: {', '.join(sorted(spec.models))}")


def select_models(
    registry: "TaskRegistry", names: Iterable[str], models: Iterable[str], all_tasks: bool
) -> tuple[list[tuple["TaskSpec", str]], list["TaskSpec"]]:
    """(spec, variant) pairs to act on, and the specs that have no weights at all.

    No ``names`` (or ``all_tasks``) means every task; no ``models`` means every variant.
    A variant that a named task lacks is a UsageError; unnamed tasks just skip it.
    """
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
                    raise unknown_model(spec, variant)
                continue
            pairs.append((spec, variant))
    return pairs, empty


def model_files(pm: "pluggy.PluginManager", spec: "TaskSpec", variant: str, hub: HubSettings) -> list[ModelFile]:
    """The weights file, then the config file, of ``spec.models[variant]``: pin, presence, size, path."""
    ref = spec.models[variant]
    rows = []
    for role, wf in (("weights", ref.weights), ("config", ref.config)):
        path = find_local(pm, spec, variant, wf.filename, hub)
        size = os.path.getsize(path) if path else None
        rows.append(ModelFile(role, wf.filename, wf.sha256, path is not None, size, path))
    return rows


def inventory(
    registry: "TaskRegistry", pm: "pluggy.PluginManager", hub: HubSettings, names: Iterable[str] = ()
) -> list[TaskModels]:
    """Every task's models (or those of ``names``): where they come from and whether they are here.

    Files are located, not hashed. Tasks without trained weights get no ``variants``.
    """
    names = list(names)
    specs = [registry.get(n) for n in names] if names else list(registry)
    out = []
    for spec in specs:
        variants = []
        for variant, ref in spec.models.items():
            files = model_files(pm, spec, variant, hub)
            variants.append(
                ModelVariant(
                    variant=variant,
                    default=variant == spec.default_model,
                    source=ref.source,
                    repo_id=ref.repo_id,
                    revision=ref.revision,
                    package=ref.package,
                    description=ref.description,
                    sha256=ref.weights.sha256,
                    size=files[0].size,
                    present=all(f.present for f in files),
                    path=files[0].path,
                    files=files,
                    member=ref.member,
                )
            )
        out.append(
            TaskModels(
                task=spec.name,
                plugin=registry.owners.get(spec.name),
                available=spec.has_weights,
                default_model=spec.default_model,
                variants=variants,
                note=None if spec.has_weights else "no trained weights yet",
            )
        )
    return out


def verify_models(
    registry: "TaskRegistry", pm: "pluggy.PluginManager", hub: HubSettings, names: Iterable[str] = ()
) -> list[FileCheck]:
    """Re-hash every file present here of the models of ``names`` (default: all tasks) against its pin.

    ``status`` is ``ok``, ``missing`` or ``mismatch``; a mismatching copy in the Hub cache
    is removed (``removed`` says whether it was). One row per file.
    """
    pairs, _ = select_models(registry, names, (), False)
    rows = []
    for spec, variant in pairs:
        ref = spec.models[variant]
        for wf in (ref.weights, ref.config):
            path = find_local(pm, spec, variant, wf.filename, hub)
            if path is None:
                rows.append(FileCheck(spec.name, variant, wf.filename, wf.sha256, "missing", None, None))
                continue
            actual = sha256_file(path)
            ok = actual == wf.sha256
            rows.append(
                FileCheck(
                    spec.name, variant, wf.filename, wf.sha256, "ok" if ok else "mismatch", path, actual,
                    size=os.path.getsize(path), removed=None if ok else remove_cached_copy(path, hub),
                )
            )
    return rows


def local_model_paths(
    pm: "pluggy.PluginManager", spec: "TaskSpec", variant: str | None, hub: HubSettings
) -> LocalModel:
    """The variant (default: the task's) and the checked local paths of its weights and config.

    Never downloads: a file that is not here raises WeightsUnavailableError naming the
    command that fetches it; a bad hash raises WeightsIntegrityError.
    """
    if not spec.models:
        raise WeightsUnavailableError(f"task {spec.name!r} has no trained weights yet")
    variant = variant or spec.default_model
    if variant not in spec.models:
        raise unknown_model(spec, variant)
    ref = spec.models[variant]
    fetch = pull_command(spec.name, variant, spec.default_model, hub)
    found = {}
    for role, wf in (("weights", ref.weights), ("config", ref.config)):
        p = find_local(pm, spec, variant, wf.filename, hub)
        if p is None:
            raise WeightsUnavailableError(
                f"weights for task {spec.name!r} (model {variant!r}) are not on this machine; fetch them with: {fetch}"
            )
        fix = "reinstall its plugin" if ref.package else f"pull it again: {fetch}"
        check_sha256(p, wf.sha256, hub, f"{wf.filename} of task {spec.name!r} (model {variant!r})", fix)
        found[role] = p
    return LocalModel(variant, found["weights"], found["config"])

"""Which files a task's model is, found through the plugins' ``segtool_resolve_weights`` hook and hashed.

``resolve_model`` picks an explicit ``--weights`` / ``--model-dir``, else the task's pinned
reference; every pinned file is hashed before it is first read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from segtool.errors import UsageError, WeightsIntegrityError, WeightsUnavailableError
from segtool.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME, ModelConfig
from segtool.weights.integrity import check_sha256, sha256_file
from segtool.weights.settings import HubSettings
from segtool.weights.sources import HubFileUnavailable

if TYPE_CHECKING:
    import pluggy

    from segtool.spec import TaskSpec, WeightsRef


@dataclass(frozen=True)
class ResolvedModel:
    """A model's two files, both hashed, and its parsed config."""

    weights_path: str
    config_path: str
    config: ModelConfig
    source: str  # e.g. "hub owner/name@0123456789ab", "bundled segtool_x", "--model-dir DIR"
    variant: str | None  # None for --weights / --model-dir
    weights_sha256: str
    config_sha256: str
    pinned: bool  # True when the hashes were checked against a WeightsRef
    member: int | None = None  # the weights file is an ensemble's; load its member ``member`` only


def pull_command(spec_name: str, variant: str | None, default: str | None, hub: HubSettings) -> str:
    """The command that fetches one task's weights into ``hub.cache_dir``."""
    cmd = f"segtool models pull {spec_name}"
    if variant and variant != default:
        cmd += f" --model {variant}"
    if os.path.abspath(hub.cache_dir) != os.path.abspath(HubSettings.from_env().cache_dir):
        cmd += f" --cache-dir {hub.cache_dir}"
    return cmd


def locate_file(
    pm: "pluggy.PluginManager", spec: "TaskSpec", variant: str, filename: str, hub: HubSettings
) -> str:
    """Ask the plugins (then the built-in resolver) for one file of ``spec.models[variant]``.

    Returns a local path, not yet hashed; raises a one-line WeightsUnavailableError that
    names the task, the model and the command that fetches it.
    """
    ref = spec.models[variant]
    label = f"weights for task {spec.name!r} (model {variant!r})"
    fetch = pull_command(spec.name, variant, spec.default_model, hub)
    try:
        path = pm.hook.segtool_resolve_weights(ref=ref, filename=filename, hub=hub)
    except HubFileUnavailable as exc:
        if exc.reason == "offline":
            raise WeightsUnavailableError(
                f"{label} are not in the cache ({hub.cache_dir}) and --offline (or HF_HUB_OFFLINE=1) is set; "
                f"fetch them with: {fetch} (or carry them in with: segtool models import FILE.tar)"
            ) from None
        if exc.reason == "unreachable":
            raise WeightsUnavailableError(
                f"{label} are not in the cache ({hub.cache_dir}) and {hub.endpoint} cannot be reached "
                f"({exc.detail}); fetch them with: {fetch} once online (or carry them in with: "
                f"segtool models import FILE.tar)"
            ) from None
        raise WeightsUnavailableError(f"{label}: {exc.one_line()}") from None
    except WeightsIntegrityError as exc:
        raise WeightsIntegrityError(f"{label}: {exc.one_line()}") from None
    except WeightsUnavailableError as exc:
        raise WeightsUnavailableError(f"{label}: {exc.one_line()}") from None
    if path is None:
        raise WeightsUnavailableError(f"{label}: no plugin could locate {filename}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"{label}: {filename} resolved to {path}, which is not a file")
    return path


def find_local(
    pm: "pluggy.PluginManager", spec: "TaskSpec", variant: str, filename: str, hub: HubSettings
) -> str | None:
    """Where one file already lies on this machine (no network), or None."""
    from dataclasses import replace

    try:
        return locate_file(pm, spec, variant, filename, replace(hub, offline=True))
    except WeightsUnavailableError:
        return None


def _fix_hint(spec: "TaskSpec", variant: str, ref: "WeightsRef", hub: HubSettings) -> str:
    if ref.package:
        return f"reinstall the plugin that provides package {ref.package!r}"
    return f"fetch it again with: {pull_command(spec.name, variant, spec.default_model, hub)}"


def _describe(ref: "WeightsRef") -> str:
    if ref.package:
        return f"bundled {ref.package}"
    return f"hub {ref.repo_id}@{ref.revision[:12]}"


def resolve_model(
    spec: "TaskSpec",
    variant: str | None,
    hub: HubSettings,
    pm: "pluggy.PluginManager",
    weights_path: str | os.PathLike | None = None,
    model_dir: str | os.PathLike | None = None,
) -> ResolvedModel:
    """Find, hash and describe the model to run for ``spec``.

    ``weights_path`` (a .safetensors with ``config.json`` beside it) or ``model_dir``
    (``model.safetensors`` + ``config.json``) win; else ``spec.models[variant or default]``
    through the ``segtool_resolve_weights`` hook, each file checked against its pinned
    sha256 before anything reads it. Raises WeightsUnavailableError (exit 3) with one line,
    WeightsIntegrityError on a hash mismatch, UsageError for an unknown variant.
    """
    if weights_path is not None and model_dir is not None:
        raise UsageError("give either --weights or --model-dir, not both")
    if weights_path is not None or model_dir is not None:
        return _resolve_explicit(spec, weights_path, model_dir)

    if not spec.models:
        raise WeightsUnavailableError(
            f"task {spec.name!r} has no trained weights yet; train a model with `segtool train {spec.name}` "
            f"and run it with --model-dir DIR, or install a plugin version that ships weights"
        )
    name = variant or spec.default_model
    if name not in spec.models:
        raise UsageError(
            f"task {spec.name!r} has no model {name!r}; choose one of: {', '.join(sorted(spec.models))}"
        )
    ref = spec.models[name]
    fix = _fix_hint(spec, name, ref, hub)
    label = f"task {spec.name!r} (model {name!r})"

    w_path = locate_file(pm, spec, name, ref.weights.filename, hub)
    c_path = locate_file(pm, spec, name, ref.config.filename, hub)
    w_sha = check_sha256(w_path, ref.weights.sha256, hub, f"{ref.weights.filename} of {label}", fix)
    c_sha = check_sha256(c_path, ref.config.sha256, hub, f"{ref.config.filename} of {label}", fix)
    config = ModelConfig.read(c_path)
    config.check_matches(spec)
    return ResolvedModel(
        weights_path=w_path,
        config_path=c_path,
        config=config,
        source=_describe(ref),
        variant=name,
        weights_sha256=w_sha,
        config_sha256=c_sha,
        pinned=True,
        member=ref.member,
    )


def _resolve_explicit(
    spec: "TaskSpec", weights_path: str | os.PathLike | None, model_dir: str | os.PathLike | None
) -> ResolvedModel:
    if model_dir is not None:
        folder = Path(model_dir)
        if not folder.is_dir():
            raise WeightsUnavailableError(f"--model-dir {folder}: not a directory")
        w = folder / WEIGHTS_FILENAME
        source = f"--model-dir {folder}"
    else:
        w = Path(weights_path)  # type: ignore[arg-type]
        source = f"--weights {w}"
        if w.suffix != ".safetensors":
            raise WeightsUnavailableError(
                f"--weights {w}: only .safetensors files are loaded (never pickles); convert it first"
            )
    c = w.parent / CONFIG_FILENAME
    for path, what in ((w, "weights"), (c, "model config")):
        if not path.is_file():
            raise WeightsUnavailableError(f"{source}: {what} file {path} not found")
    w_sha = sha256_file(w)
    c_sha = sha256_file(c)
    config = ModelConfig.read(c)
    config.check_matches(spec)
    if config.weights_sha256 is not None and config.weights_sha256 != w_sha:
        raise WeightsIntegrityError(
            f"{source}: {w} does not match the sha256 recorded in {c} "
            f"(expected {config.weights_sha256[:16]}..., got {w_sha[:16]}...); the weights were changed or damaged"
        )
    return ResolvedModel(
        weights_path=str(w),
        config_path=str(c),
        config=config,
        source=source,
        variant=None,
        weights_sha256=w_sha,
        config_sha256=c_sha,
        pinned=False,
    )


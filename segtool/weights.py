"""Where a task's weights come from, and proof that they are the ones pinned.

Resolution order for one model (``resolve_model``):

1. an explicit ``--weights FILE.safetensors`` (``config.json`` beside it) or ``--model-dir DIR``;
2. else the task's pinned reference, asked of the ``segtool_resolve_weights`` hook for each
   of its two files: a plugin (site mirror, shared drive) may answer first; the built-in
   ``trylast`` answer (``resolve_builtin``) reads bundled files from their package, and Hub
   files from the Hub cache or, failing that, downloads them with ``huggingface_hub`` at the
   pinned 40-hex revision, with an explicit ``cache_dir`` and ``endpoint``.

Every pinned file is hashed (sha256) before it is first read; a mismatch refuses to run,
names the file and both hashes, and removes the bad copy when it lies in the Hub cache.
Files given explicitly have no pin: they are hashed anyway, for provenance.

Nothing here imports torch or huggingface_hub at module level, and nothing is ever
unpickled: weights load with ``safetensors.torch.load_file``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from segtool.errors import UsageError, WeightsIntegrityError, WeightsUnavailableError
from segtool.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME, ModelConfig

if TYPE_CHECKING:
    import pluggy

    from segtool.spec import TaskSpec, WeightsRef

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}


def _default_cache_dir(env: os._Environ | dict) -> str:
    cache = env.get("SEGTOOL_CACHE") or env.get("HF_HUB_CACHE")
    if not cache and env.get("HF_HOME"):
        cache = os.path.join(env["HF_HOME"], "hub")
    if not cache:
        cache = os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface", "hub")
    return str(Path(cache).expanduser())


@dataclass(frozen=True)
class HubSettings:
    """The Hub cache, endpoint, offline flag and token in force for one command.

    Built with ``from_env`` when a command runs (never at import), and passed explicitly
    to ``huggingface_hub`` so its import-time globals never decide where files go.
    ``progress`` is an optional tqdm-like factory that ``hf_hub_download`` uses for its
    download bars (``segtool models pull`` passes a rich one); None keeps the library's.
    """

    cache_dir: str
    endpoint: str = DEFAULT_ENDPOINT
    offline: bool = False
    token: str | None = None
    progress: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_env(
        cls,
        offline_flag: bool = False,
        cache_dir: str | os.PathLike | None = None,
        endpoint: str | None = None,
        token: str | None = None,
    ) -> "HubSettings":
        """Settings from the arguments, else the environment as it is now.

        cache: ``cache_dir`` > ``SEGTOOL_CACHE`` > ``HF_HUB_CACHE`` > ``$HF_HOME/hub`` >
        ``~/.cache/huggingface/hub``; endpoint: ``HF_ENDPOINT``; offline: the flag or
        ``HF_HUB_OFFLINE=1``; token: ``HF_TOKEN`` (else huggingface_hub's stored login).
        """
        env = os.environ
        return cls(
            cache_dir=str(Path(cache_dir).expanduser()) if cache_dir else _default_cache_dir(env),
            endpoint=(endpoint or env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            offline=bool(offline_flag) or env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE,
            token=token or env.get("HF_TOKEN") or None,
        )


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


class HubFileUnavailable(WeightsUnavailableError):
    """A Hub file that is not cached and cannot be downloaded now.

    ``reason`` is ``offline`` (offline mode and not cached), ``unreachable`` (no connection,
    not cached), ``not-found`` (unknown repo, revision or file) or ``error``.
    ``resolve_model`` rewrites it into a message that names the task and the command to run.
    """

    def __init__(self, message: str, reason: str, detail: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's content, in lowercase hex (follows symlinks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(Path(folder).resolve())
        return True
    except ValueError:
        try:
            Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(folder)))
            return True
        except ValueError:
            return False


def remove_cached_copy(path: str | os.PathLike, hub: HubSettings) -> bool:
    """Delete a file that lies in the Hub cache: its snapshot entry and the blob it points to.

    Returns False (and deletes nothing) for a file outside ``hub.cache_dir``.
    """
    path = str(path)
    if not _inside(path, hub.cache_dir):
        return False
    target = os.path.realpath(path)
    victims = [path] + ([target] if target != path and _inside(target, hub.cache_dir) else [])
    removed = False
    for victim in victims:
        try:
            os.unlink(victim)
            removed = True
        except OSError:
            pass
    return removed


def check_sha256(path: str, expected: str, hub: HubSettings, what: str, fix: str) -> str:
    """Hash ``path``; on a mismatch remove it if cached and raise WeightsIntegrityError.

    ``what`` names the file for the message, ``fix`` says what to do about it.
    """
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise WeightsUnavailableError(f"{what}: cannot read {path} ({exc.strerror or exc})") from None
    if actual != expected:
        removed = remove_cached_copy(path, hub)
        action = "removed the bad cached copy; " if removed else ""
        raise WeightsIntegrityError(
            f"{what}: sha256 mismatch for {path}: expected {expected}, got {actual}; "
            f"refusing to use it ({action}{fix})"
        )
    return actual


# ---------------------------------------------------------------------------- built-in resolver


def _bundled_path(ref: "WeightsRef", filename: str, hub: HubSettings) -> str:
    import importlib.resources

    try:
        root = importlib.resources.files(ref.package)
    except (ModuleNotFoundError, ImportError, TypeError) as exc:
        raise WeightsUnavailableError(
            f"package {ref.package!r} that bundles {filename} cannot be imported ({exc}); reinstall the plugin"
        ) from None
    entry = root.joinpath(*filename.split("/"))
    if isinstance(entry, Path):
        if entry.is_file():
            return str(entry)
        raise WeightsUnavailableError(
            f"bundled file {filename} is missing from package {ref.package!r} ({entry}); reinstall the plugin"
        )
    # A package inside a zip: copy the file out, next to the Hub cache, once.
    if not entry.is_file():
        raise WeightsUnavailableError(f"bundled file {filename} is missing from package {ref.package!r}")
    out = Path(hub.cache_dir) / "segtool-bundled" / ref.package / filename
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_bytes(entry.read_bytes())
        os.replace(tmp, out)
    return str(out)


def _hub_path(ref: "WeightsRef", filename: str, hub: HubSettings) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{ref.repo_id}@{ref.revision[:12]}/{filename}"
    if not hub.offline:
        _fail_fast_if_unreachable(ref, filename, hub, where)
    try:
        return hf_hub_download(
            ref.repo_id,
            filename,
            revision=ref.revision,
            cache_dir=hub.cache_dir,
            endpoint=hub.endpoint,
            token=hub.token,
            local_files_only=hub.offline,
            tqdm_class=hub.progress,
        )
    except RevisionNotFoundError:
        detail = f"revision {ref.revision} of {ref.repo_id} does not exist on {hub.endpoint}"
        raise HubFileUnavailable(f"{where}: {detail}", "not-found", detail) from None
    except RemoteEntryNotFoundError:
        detail = f"{filename} does not exist in {ref.repo_id} at revision {ref.revision} on {hub.endpoint}"
        raise HubFileUnavailable(f"{where}: {detail}", "not-found", detail) from None
    except GatedRepoError:
        detail = f"{ref.repo_id} on {hub.endpoint} is gated: accept its terms and set HF_TOKEN"
        raise HubFileUnavailable(f"{where}: {detail}", "not-found", detail) from None
    except RepositoryNotFoundError:
        detail = f"repository {ref.repo_id} was not found on {hub.endpoint} (or is private: set HF_TOKEN)"
        raise HubFileUnavailable(f"{where}: {detail}", "not-found", detail) from None
    except LocalEntryNotFoundError as exc:
        if hub.offline:
            raise HubFileUnavailable(f"{where} is not in the cache {hub.cache_dir} and offline mode is on", "offline") from None
        cause = exc.__cause__ or exc.__context__
        detail = _first_line(cause) if cause is not None else "no connection"
        raise HubFileUnavailable(
            f"{where} is not in the cache {hub.cache_dir} and {hub.endpoint} cannot be reached ({detail})",
            "unreachable",
            detail,
        ) from None
    except HfHubHTTPError as exc:
        detail = _first_line(exc)
        raise HubFileUnavailable(f"{where}: download failed: {detail}", "error", detail) from None
    except (OSError, ValueError) as exc:
        # OSError: the size check after a broken download, a full disk, ...
        detail = _first_line(exc)
        if hub.offline:
            raise HubFileUnavailable(f"{where} is not in the cache and offline mode is on", "offline") from None
        raise HubFileUnavailable(f"{where}: download failed: {detail}", "error", detail) from None


def _fail_fast_if_unreachable(ref: "WeightsRef", filename: str, hub: HubSettings, where: str) -> None:
    """One HEAD without retries before a download, so a machine without network fails at once.

    ``hf_hub_download`` retries a refused connection with backoff for about 20 s when the
    file is not cached; behind a firewall that is only a long wait for the same error.
    Nothing is sent when the file is already cached (the client then makes no call either).
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(ref.repo_id, filename, cache_dir=hub.cache_dir, revision=ref.revision), str):
        return
    url = hf_hub_url(ref.repo_id, filename, revision=ref.revision, endpoint=hub.endpoint)
    try:
        get_hf_file_metadata(url, token=hub.token, endpoint=hub.endpoint)
    except _transport_errors() as exc:
        detail = _first_line(exc)
        raise HubFileUnavailable(
            f"{where} is not in the cache {hub.cache_dir} and {hub.endpoint} cannot be reached ({detail})",
            "unreachable",
            detail,
        ) from None
    except Exception:  # noqa: BLE001 - HTTP errors: let hf_hub_download raise its precise exception
        return


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of whichever HTTP library this huggingface_hub uses."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError"), ("requests", "Timeout")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def resolve_builtin(ref: "WeightsRef", filename: str, hub: HubSettings) -> str | None:
    """The built-in answer to ``segtool_resolve_weights``: a local path to ``filename`` of ``ref``.

    Bundled refs: the file inside ``ref.package``. Hub refs: the Hub cache, else a download
    at the pinned revision (never with ``hub.offline``). Failures raise a one-line
    WeightsUnavailableError (``HubFileUnavailable`` for Hub files). The caller checks sha256.
    """
    if ref.package:
        return _bundled_path(ref, filename, hub)
    if ref.repo_id and ref.revision:
        return _hub_path(ref, filename, hub)
    return None


# ---------------------------------------------------------------------------- resolve_model


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


# ---------------------------------------------------------------------------- loading


def load_state_dict(resolved: ResolvedModel, device: str = "cpu") -> dict[str, Any]:
    """The tensors of a resolved model, read with safetensors (never pickle, never torch.load)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(resolved.weights_path, device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsUnavailableError(
            f"{resolved.weights_path}: not a readable safetensors file ({_first_line(exc)})"
        ) from None


#: A model config that asks for more parameters than this is refused before building.
MAX_PARAMETERS = 500_000_000


def build_model(spec: "TaskSpec", resolved: ResolvedModel, device: str = "cpu"):
    """The network the model config describes (the folder wins over the spec), weights loaded strictly, eval mode.

    Every tensor must be finite: NaN or infinite weights are refused (exit 3).
    """
    import torch

    effective = resolved.config.apply_to(spec)
    state = load_state_dict(resolved, device="cpu")
    stored = sum(int(t.numel()) for t in state.values())
    if stored > MAX_PARAMETERS:
        raise WeightsUnavailableError(f"{resolved.weights_path}: {stored:,} values is more than segtool loads")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsUnavailableError(f"{resolved.weights_path}: tensor {key} holds NaN or infinite values")
    try:
        with torch.device("meta"):
            probe = effective.build_network()
        if sum(p.numel() for p in probe.parameters()) > MAX_PARAMETERS:
            raise ValueError("the network would have more than 500 million parameters")
        model = effective.build_network()
    except (TypeError, ValueError, RuntimeError, MemoryError) as exc:
        raise WeightsUnavailableError(
            f"{resolved.config_path}: architecture {resolved.config.architecture} does not build a "
            f"model for task {spec.name!r} ({_first_line(exc)})"
        ) from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} with the wrong shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})"
            )
        raise WeightsUnavailableError(
            f"weights {resolved.weights_path} do not fit the model of task {spec.name!r}: "
            f"{'; '.join(parts)} tensors"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsUnavailableError(
            f"weights {resolved.weights_path} do not fit the model of task {spec.name!r} ({_first_line(exc)})"
        ) from None
    model.to(device)
    model.eval()
    return model

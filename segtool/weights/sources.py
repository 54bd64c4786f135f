"""The built-in answer to ``segtool_resolve_weights``: bundled files from their package, Hub files
from the Hub cache or a download at the pinned revision (``huggingface_hub``, imported when used)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from segtool.errors import WeightsUnavailableError
from segtool.io.atomic import write_bytes_atomic
from segtool.weights.settings import HubSettings

if TYPE_CHECKING:
    from segtool.spec import WeightsRef


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
        write_bytes_atomic(out, entry.read_bytes())
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
    except (RevisionNotFoundError, RemoteEntryNotFoundError, RepositoryNotFoundError) as exc:
        if isinstance(exc, RevisionNotFoundError):
            detail = f"revision {ref.revision} of {ref.repo_id} does not exist on {hub.endpoint}"
        elif isinstance(exc, RemoteEntryNotFoundError):
            detail = f"{filename} does not exist in {ref.repo_id} at revision {ref.revision} on {hub.endpoint}"
        elif isinstance(exc, GatedRepoError):
            detail = f"{ref.repo_id} on {hub.endpoint} is gated: accept its terms and set HF_TOKEN"
        else:
            detail = f"repository {ref.repo_id} was not found on {hub.endpoint} (or is private: set HF_TOKEN)"
        raise HubFileUnavailable(f"{where}: {detail}", "not-found", detail) from None
    except LocalEntryNotFoundError as exc:
        if hub.offline:
            raise HubFileUnavailable(f"{where} is not in the cache {hub.cache_dir} and offline mode is on", "offline") from None
        cause = exc.__cause__ or exc.__context__
        detail = first_line(cause) if cause is not None else "no connection"
        raise HubFileUnavailable(
            f"{where} is not in the cache {hub.cache_dir} and {hub.endpoint} cannot be reached ({detail})",
            "unreachable",
            detail,
        ) from None
    except HfHubHTTPError as exc:
        detail = first_line(exc)
        raise HubFileUnavailable(f"{where}: download failed: {detail}", "error", detail) from None
    except (OSError, ValueError) as exc:
        # OSError: the size check after a broken download, a full disk, ...
        detail = first_line(exc)
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
        detail = first_line(exc)
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


def first_line(exc: BaseException) -> str:
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


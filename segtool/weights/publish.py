"""Publishing a trained model folder to the Hub: ``segtool models push``.

``check_model_folder`` refuses what cannot be pushed before anything is sent;
``push_folder`` hashes the files, uploads them with ``huggingface_hub`` (``HF_TOKEN`` or
the stored login, ``HF_ENDPOINT``) and returns the commit; ``weights_ref_text`` is the
pinned ``WeightsRef`` to paste into the task's plugin. Torch is never imported.
"""

from __future__ import annotations

from pathlib import Path

from segtool.errors import SegtoolError, UsageError
from segtool.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME, ModelConfig
from segtool.weights.integrity import sha256_file
from segtool.weights.results import PushedFile, PushResult
from segtool.weights.settings import HubSettings

PUSH_FILES = ("model.safetensors", "config.json", "README.md", "train_log.jsonl")


def check_model_folder(src: Path, repo_id: str, hub: HubSettings) -> ModelConfig:
    """The config of model folder ``src``, once the push of it to ``repo_id`` can be tried.

    Raises UsageError when offline, for a REPO_ID that is not ``owner/name``, and for a
    folder without its weights and config or whose weights are not safetensors.
    """
    if hub.offline:
        raise UsageError("push needs the network, but HF_HUB_OFFLINE is set")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UsageError(f"REPO_ID must be 'owner/name', got {repo_id!r}")
    for required in (WEIGHTS_FILENAME, CONFIG_FILENAME):
        if not (src / required).is_file():
            raise UsageError(f"{src}: {required} is missing (a model folder holds {', '.join(PUSH_FILES)})")
    config = ModelConfig.read(src / CONFIG_FILENAME)
    _check_safetensors_header(src / WEIGHTS_FILENAME)
    return config


def push_folder(
    src: Path,
    repo_id: str,
    hub: HubSettings,
    config: ModelConfig,
    private: bool = False,
    branch: str = "main",
    message: str | None = None,
) -> PushResult:
    """Upload the model files of ``src`` to ``repo_id`` (created if need be) in one commit.

    Returns the commit (``revision``, ``commit_url``) and the files it holds (filename,
    sha256, size). A failed upload raises a one-line SegtoolError.
    """
    files = [
        PushedFile(name, sha256_file(src / name), (src / name).stat().st_size)
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
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise SegtoolError(f"push to {repo_id} on {hub.endpoint} failed: {' '.join(str(exc).split())[:300]}") from None
    return PushResult(repo_id, info.oid, info.commit_url, config.task, files)


def weights_ref_text(pushed: PushResult) -> str:
    """The ``WeightsRef(...)`` that pins what ``push_folder`` uploaded."""
    sha = {f.filename: f.sha256 for f in pushed.files}
    return (
        "WeightsRef(\n"
        f'    repo_id="{pushed.repo_id}",\n'
        f'    revision="{pushed.revision}",\n'
        f'    weights=WeightsFile("{WEIGHTS_FILENAME}", "{sha[WEIGHTS_FILENAME]}"),\n'
        f'    config=WeightsFile("{CONFIG_FILENAME}", "{sha[CONFIG_FILENAME]}"),\n'
        ")"
    )


def _check_safetensors_header(path: Path) -> None:
    """The file must open as safetensors (``safe_open`` reads and checks its header)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            f.keys()
    except (SafetensorError, OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a safetensors file ({' '.join(str(exc).split())[:200]})") from None

"""Where a task's weights come from, proof that they are the ones pinned, and carrying them around.

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

One job per module:

- ``settings``: ``HubSettings`` (cache folder, endpoint, offline flag, token), read when a command runs.
- ``integrity``: sha256 of a file, the check against a pin, removal of a bad cached copy.
- ``sources``: the built-in resolver: bundled package files and Hub downloads.
- ``resolve``: ``resolve_model`` and ``ResolvedModel``: the hook, explicit folders, the checks.
- ``load``: ``build_model``: safetensors into the network, strictly.
- ``inventory``: which models each task offers and which are here (``segtool models list/verify/path``).
- ``pull``: fetching pinned weights with download bars (``segtool models pull``).
- ``archive``: carrying cached weights to offline machines (``segtool models export/import``).
- ``publish``: pushing a trained model folder to the Hub (``segtool models push``).
"""

from __future__ import annotations

from segtool.weights.integrity import check_sha256, remove_cached_copy, sha256_file
from segtool.weights.load import MAX_PARAMETERS, build_model, load_state_dict
from segtool.weights.resolve import ResolvedModel, find_local, locate_file, pull_command, resolve_model
from segtool.weights.settings import DEFAULT_ENDPOINT, HubSettings
from segtool.weights.sources import HubFileUnavailable, resolve_builtin

__all__ = [
    "DEFAULT_ENDPOINT",
    "MAX_PARAMETERS",
    "HubFileUnavailable",
    "HubSettings",
    "ResolvedModel",
    "build_model",
    "check_sha256",
    "find_local",
    "load_state_dict",
    "locate_file",
    "pull_command",
    "remove_cached_copy",
    "resolve_builtin",
    "resolve_model",
    "sha256_file",
]

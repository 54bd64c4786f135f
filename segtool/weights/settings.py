"""The Hub settings in force for one command: cache folder, endpoint, offline flag, token."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

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


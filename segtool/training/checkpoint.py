"""The local resume checkpoint: model, optimizer, scheduler, scaler and progress.

It is our own file (never published; the published weights are model.safetensors),
written with `torch.save` and read back with ``weights_only=True`` so loading it
cannot run code. Only plain containers, numbers, strings and tensors go in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from segtool.errors import UsageError
from segtool.io.atomic import replacing

STATE_DIRNAME = ".train"
CHECKPOINT_FILENAME = "last.pt"
FORMAT = 1


def state_dir(model_dir: Path) -> Path:
    """Where training keeps its checkpoint and data cache, inside the model folder."""
    return Path(model_dir) / STATE_DIRNAME


def checkpoint_path(model_dir: Path) -> Path:
    return state_dir(model_dir) / CHECKPOINT_FILENAME


def save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint at {path} (was the run started with this -o folder?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one message
        raise UsageError(f"--resume: cannot read checkpoint {path} ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"--resume: {path} is not a segtool training checkpoint")
    return state

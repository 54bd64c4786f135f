"""A model folder from the last resume checkpoint of a `segtool train` run: its final weights.

`segtool train` saves the weights of its best validation epoch as MODEL_DIR's model;
MODEL_DIR/.train/last.pt holds the state after the last step. When the validation score
that picked "best" is not the one that matters (brain-tumour-2d validates slice by
slice, while its goal is per-patient Dice of the stacked volume, where empty slices
predicted empty count), the final weights are the honest choice. :func:`export_final_weights`
(`segtool models export-checkpoint MODEL_DIR OUT_DIR`) writes OUT_DIR: MODEL_DIR's files
with those weights, config.json's ``weights_sha256`` updated and ``training.selected``
set to "final step N" (train_log.jsonl and the card are copied). ``training.validation``
becomes the final step's validation when the run validated it (train_log.jsonl), and
``training.validation_of`` says which weights it scored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from segtool.errors import UsageError
from segtool.io.atomic import write_bytes_atomic
from segtool.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME, ModelConfig
from segtool.training.checkpoint import checkpoint_path
from segtool.training.model_folder import LOG_FILENAME, README_FILENAME, read_log, write_config, write_weights


@dataclass(frozen=True)
class ExportedCheckpoint:
    """What :func:`export_final_weights` wrote."""

    out_dir: Path
    step: int
    weights_sha256: str
    validation_of: str | None  # which weights training.validation scores (None: no validation recorded)

    def to_json(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "step": self.step, "weights_sha256": self.weights_sha256,
                "validation_of": self.validation_of}


def read_checkpoint(model_dir: Path) -> dict[str, Any]:
    """The resume checkpoint of ``model_dir`` (read with ``weights_only=True``: no code runs)."""
    import torch

    path = checkpoint_path(model_dir)
    if not path.is_file():
        raise UsageError(f"{path}: no resume checkpoint (deleted, or the folder was not written by segtool train)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is one message
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UsageError(f"{path}: cannot read the checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or "global_step" not in state:
        raise UsageError(f"{path}: not a segtool training checkpoint (no model state and step)")
    return state


def final_validation(model_dir: Path, step: int) -> dict | None:
    """The validation record of ``step`` in the run's train_log.jsonl, or None."""
    for record in reversed(read_log(model_dir)):
        if record.get("step") == step and record.get("validation"):
            return record["validation"]
    return None


def check_fits(config: ModelConfig, spec, state: dict[str, Any], source: Path) -> None:
    """Refuse tensors that do not load strictly into the network ``config`` describes for ``spec``."""
    network = config.apply_to(spec).build_network()
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise UsageError(f"{source}: the checkpoint's tensors do not fit the network of its config.json ({first})") from None


def _selected_record(config: ModelConfig, model_dir: Path, step: int) -> dict[str, Any]:
    training = dict(config.training or {})
    training["selected"] = f"final step {step}"
    final = final_validation(model_dir, step)
    if final is not None:
        training["validation"], training["validation_of"] = final, training["selected"]
    elif training.get("validation"):
        training["validation_of"] = f"best epoch {training.get('best_epoch')} (the final step was not validated)"
    return training


def export_final_weights(model_dir: Path, out_dir: Path, spec=None) -> ExportedCheckpoint:
    """Write ``out_dir``, a model folder with the final-step weights of ``model_dir``'s training run.

    With ``spec`` (the task), the weights must first load strictly into the network the
    config describes. Refuses ``out_dir`` == ``model_dir`` and an ``out_dir`` that holds a
    model; nothing is written before every check passed.
    """
    from segtool.weights.integrity import sha256_file

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / CONFIG_FILENAME).is_file():
        raise UsageError(f"{model_dir}: not a model folder (no {CONFIG_FILENAME})")
    if out_dir.resolve() == model_dir.resolve():
        raise UsageError(f"{out_dir}: is the training folder itself; write the final weights elsewhere")
    if (out_dir / WEIGHTS_FILENAME).exists():
        raise UsageError(f"{out_dir}: holds a model already")
    config = ModelConfig.read(model_dir / CONFIG_FILENAME)
    state = read_checkpoint(model_dir)
    step = int(state["global_step"])
    weights = {key.removeprefix("module."): value for key, value in state["model"].items()}
    if spec is not None:
        check_fits(config, spec, weights, checkpoint_path(model_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (README_FILENAME, LOG_FILENAME):
        if (model_dir / name).is_file():
            write_bytes_atomic(out_dir / name, (model_dir / name).read_bytes())
    sha = sha256_file(write_weights(out_dir, weights, producer="segtool train (final step)"))
    training = _selected_record(config, model_dir, step)
    write_config(out_dir, replace(config, weights_sha256=sha, training=training))
    return ExportedCheckpoint(out_dir, step, sha, training.get("validation_of"))

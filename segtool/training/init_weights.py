"""Fine-tuning: start a training run from the weights of a trained model folder (`segtool train --init-weights`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segtool.errors import UsageError, WeightsUnavailableError


def load_initial_weights(model, spec, folder: str | Path) -> dict[str, Any]:
    """Copy the weights of model folder ``folder`` into ``model`` (strictly); returns what to record.

    The folder must be a model of the same task whose network and architecture match the
    run's (the same tensors, the same shapes); anything else is a one-line UsageError.
    Logit offsets in its config are not carried over: they are set after training.
    """
    from segtool.weights.load import load_state_dict, state_mismatch
    from segtool.weights.resolve import resolve_model
    from segtool.weights.settings import HubSettings

    try:
        resolved = resolve_model(spec, None, HubSettings.from_env(offline_flag=True), None, model_dir=folder)
        state = load_state_dict(resolved)
    except (UsageError, WeightsUnavailableError) as exc:
        raise UsageError(f"--init-weights {folder}: {exc.one_line()}") from None
    missing, unexpected, wrong = state_mismatch(model.state_dict(), state)
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise UsageError(
            f"--init-weights {folder}: its {resolved.config.network} weights do not fit this run's "
            f"{spec.network} network ({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} of another "
            f"shape, e.g. {example}); give --network/--network-args as that model was trained"
        )
    model.load_state_dict(state, strict=True)
    return {"folder": str(folder), "weights_sha256": resolved.weights_sha256,
            "network": resolved.config.network, "steps": (resolved.config.training or {}).get("steps")}

"""Loading a resolved model: safetensors tensors (never a pickle) into the network its config describes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from segtool.errors import WeightsUnavailableError
from segtool.weights.sources import first_line

if TYPE_CHECKING:
    from segtool.spec import TaskSpec
    from segtool.weights.resolve import ResolvedModel


def load_state_dict(resolved: ResolvedModel, device: str = "cpu") -> dict[str, Any]:
    """The tensors of a resolved model, read with safetensors (never pickle, never torch.load).

    For an ensemble's member (``resolved.member``), only that member's tensors, without their
    ``members.<i>.`` prefix: the state dict of the member's network alone.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    prefix = f"members.{resolved.member}." if resolved.member is not None else None
    try:
        if prefix is None:
            return load_file(resolved.weights_path, device=device)
        # a member: read its tensors only, not the whole ensemble's
        with safe_open(resolved.weights_path, framework="pt", device=device) as stored:
            state = {key[len(prefix):]: stored.get_tensor(key) for key in stored.keys() if key.startswith(prefix)}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsUnavailableError(
            f"{resolved.weights_path}: not a readable safetensors file ({first_line(exc)})"
        ) from None
    if not state:
        raise WeightsUnavailableError(f"{resolved.weights_path}: holds no ensemble member {resolved.member}")
    return state


def state_mismatch(expected: dict[str, Any], state: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """The tensor names a state dict lacks, has in excess, and has with another shape than ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    return missing, unexpected, wrong


#: A model config that asks for more parameters than this is refused before building.
MAX_PARAMETERS = 500_000_000


def build_model(spec: "TaskSpec", resolved: ResolvedModel, device: str = "cpu"):
    """The network the model config describes (the folder wins over the spec), weights loaded strictly, eval mode.

    A config with ``logit_offsets`` gets them added to the network's output (logit adjustment).

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
            f"model for task {spec.name!r} ({first_line(exc)})"
        ) from None
    expected = model.state_dict()
    missing, unexpected, wrong = state_mismatch(expected, state)
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
            f"weights {resolved.weights_path} do not fit the model of task {spec.name!r} ({first_line(exc)})"
        ) from None
    if resolved.config.logit_offsets is not None:
        from segtool.networks.logit_offsets import LogitOffsets

        model = LogitOffsets(model, resolved.config.logit_offsets)
    model.to(device)
    model.eval()
    return model

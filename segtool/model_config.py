"""The JSON config that travels with every model's safetensors file.

A model folder (what `segtool train` writes, what `--model-dir` reads, what
`segtool models push` uploads) holds ``model.safetensors``, ``config.json`` (this),
``README.md`` (a Hugging Face model card) and optionally ``train_log.jsonl``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from segtool.errors import InvalidSpecError, WeightsUnavailableError

CONFIG_FILENAME = "config.json"
WEIGHTS_FILENAME = "model.safetensors"
FORMAT_VERSION = 2
CORE_NETWORK_ARGUMENTS = ("spatial_dims", "in_channels", "out_channels")
GRID_KEYS = ("target_spacing", "input_size")  # where the network sees the image: resampled, resized or native


@dataclass(frozen=True)
class ModelConfig:
    """Everything that affects a model's predictions; `segtool run` takes these over the spec's defaults."""

    task: str
    architecture: dict[str, Any]  # the network family's own keyword arguments
    labels: dict[int, str]
    channels: list[str]
    patch_size: list[int]
    normalization: str
    network: str | None = None  # family in segtool.networks; None: the task's custom model_factory
    slice_axis: int | None = None
    slice_context: int = 0  # 2.5D: neighbouring slices on each side as extra input channels
    target_spacing: list[float | None] | None = None
    input_size: list[int] | None = None  # 2D: fixed (rows, cols) the image is resized to for the network
    orientation: str | None = None
    postprocess: dict[str, Any] | None = None
    weights_sha256: str | None = None  # of model.safetensors, checked before loading
    normalization_stats: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    segtool_version: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # data, command, scores, epochs...
    # Added to the network's logits, one per class, background first (segtool.networks.logit_offsets).
    logit_offsets: list[float] | None = None
    tta: bool = False  # run with test-time flips unless the user says --no-tta
    format_version: int = FORMAT_VERSION
    # GRID_KEYS the file this config was read from lacks (older folders): only those the task fills in.
    # A grid key the file has wins, null included (null: the image's own grid, no resize). Not written.
    absent_grid_keys: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_json(self) -> str:
        data = asdict(self)
        del data["absent_grid_keys"]
        data["labels"] = {str(k): v for k, v in self.labels.items()}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "ModelConfig":
        try:
            data = dict(data)
            data["labels"] = {int(k): str(v) for k, v in data["labels"].items()}
            architecture = dict(data.get("architecture") or {})
            if int(data.get("format_version", 1)) < 2:  # v1 stored the core's arguments too
                architecture = {k: v for k, v in architecture.items() if k not in CORE_NETWORK_ARGUMENTS}
            data["architecture"] = architecture
            known = {f for f in cls.__dataclass_fields__} - {"absent_grid_keys"}
            config = cls(**{k: v for k, v in data.items() if k in known},
                         absent_grid_keys=tuple(k for k in GRID_KEYS if k not in data))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WeightsUnavailableError(f"{source}: not a valid segtool model config ({exc})") from None
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        """Every value checked, with a one-line error naming the file and key."""
        checks = (self._identity_problem, self._network_problem, self._grid_problem, self._extras_problem)
        for check in checks:
            found = check()
            if found is not None:
                key, problem = found
                raise WeightsUnavailableError(f"{source}: {key}: {problem}")

    def _identity_problem(self) -> tuple[str, str] | None:
        """(key, problem) of the task, labels, channels, patch size or normalisation, or None."""
        from segtool.spec import NORMALIZATIONS

        if not isinstance(self.task, str) or not self.task:
            return "task", "must name a task"
        if sorted(self.labels) != list(range(1, len(self.labels) + 1)):
            return "labels", f"must be 1..N without gaps, got {sorted(self.labels)}"
        if not isinstance(self.channels, list) or not self.channels or not all(isinstance(c, str) for c in self.channels):
            return "channels", "must be a non-empty list of names"
        if not isinstance(self.patch_size, list) or not self.patch_size or not all(
            isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 4096 for p in self.patch_size
        ):
            return "patch_size", f"must be whole numbers from 1 to 4096, got {self.patch_size!r}"
        if self.normalization not in NORMALIZATIONS:
            return "normalization", f"must be one of {', '.join(NORMALIZATIONS)}, got {self.normalization!r}"
        return None

    def _network_problem(self) -> tuple[str, str] | None:
        """(key, problem) of the network family, its arguments, the slice axis or context, or None."""
        from segtool.networks import FAMILIES
        from segtool.spec import slice_context_problem

        if self.network is not None and self.network not in FAMILIES:
            return "network", f"unknown family {self.network!r} (known: {', '.join(FAMILIES)})"
        if not isinstance(self.architecture, dict):
            return "architecture", "must be an object of the network's arguments"
        repeated = [k for k in CORE_NETWORK_ARGUMENTS if k in self.architecture]
        if repeated:
            return "architecture", f"must not set {', '.join(repeated)} (taken from channels and labels)"
        if self.slice_axis is not None and self.slice_axis not in (0, 1, 2):
            return "slice_axis", f"must be 0, 1, 2 or null, got {self.slice_axis!r}"
        problem = slice_context_problem(self.slice_context, self.slice_axis)
        if problem:
            return "slice_context", problem
        return None

    def _grid_problem(self) -> tuple[str, str] | None:
        """(key, problem) of the target spacing, input size or orientation, or None."""
        from segtool.spec import ORIENTATION

        if self.target_spacing is not None:
            if not isinstance(self.target_spacing, list) or not all(
                s is None or (isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and 0 < s <= 1000)
                for s in self.target_spacing
            ):
                return "target_spacing", f"must be positive finite spacings in mm (or null), got {self.target_spacing!r}"
        if self.input_size is not None and not (
            isinstance(self.input_size, list) and len(self.input_size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384 for v in self.input_size)
        ):
            return "input_size", f"must be two whole numbers (rows, cols), got {self.input_size!r}"
        if self.orientation is not None and not (isinstance(self.orientation, str) and ORIENTATION.match(self.orientation)):
            return "orientation", f"must be three axis codes such as 'RAS', got {self.orientation!r}"
        return None

    def _extras_problem(self) -> tuple[str, str] | None:
        """(key, problem) of the weights' sha256, tta, logit offsets or postprocessing, or None."""
        if self.weights_sha256 is not None and not (
            isinstance(self.weights_sha256, str) and len(self.weights_sha256) == 64
            and all(c in "0123456789abcdef" for c in self.weights_sha256)
        ):
            return "weights_sha256", "must be 64 lowercase hex digits"
        if not isinstance(self.tta, bool):
            return "tta", f"must be true or false, got {self.tta!r}"
        if self.logit_offsets is not None and not (
            isinstance(self.logit_offsets, list) and len(self.logit_offsets) == len(self.labels) + 1
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) <= 100
                    for v in self.logit_offsets)
        ):
            return "logit_offsets", (f"must be {len(self.labels) + 1} finite numbers within ±100 (background and "
                                     f"each label), got {self.logit_offsets!r}")
        if self.postprocess is not None:
            from segtool.spec import Postprocess

            try:
                Postprocess(**self.postprocess)
            except (TypeError, ValueError, InvalidSpecError) as exc:
                return "postprocess", str(exc).splitlines()[0]
        return None

    def apply_to(self, spec):
        """``spec`` with this model's settings: the folder wins, the spec fills in what it lacks."""
        from segtool.spec import Postprocess

        changes: dict[str, Any] = dict(
            patch_size=tuple(self.patch_size),
            normalization=self.normalization,
            model_kwargs=dict(self.architecture),
            slice_axis=self.slice_axis,
            slice_context=self.slice_context,
        )
        if self.network is not None:
            changes.update(network=self.network, model_factory=None)
        for key in GRID_KEYS:  # a model trained on the native grid must not be run on the task's declared one
            value = getattr(self, key)
            if value is not None or key not in self.absent_grid_keys:
                changes[key] = None if value is None else tuple(value)
        if self.orientation is not None:
            changes["orientation"] = self.orientation
        if self.postprocess is not None:
            changes["postprocess"] = Postprocess(**self.postprocess)
        try:
            return replace(spec, **changes)
        except InvalidSpecError as exc:
            raise WeightsUnavailableError(f"model config does not fit task {spec.name!r}: {exc}") from None

    @classmethod
    def read(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise WeightsUnavailableError(f"{path}: cannot read model config ({exc})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def for_spec(cls, spec, **overrides: Any) -> "ModelConfig":
        """The config a fresh model of ``spec`` would carry."""
        values: dict[str, Any] = dict(
            task=spec.name,
            network=spec.network,
            architecture=_plain(dict(spec.model_kwargs)),
            labels=dict(spec.labels),
            channels=list(spec.channels),
            patch_size=list(spec.patch_size),
            normalization=spec.normalization,
            slice_axis=spec.slice_axis,
            slice_context=spec.slice_context,
            target_spacing=list(spec.target_spacing) if spec.target_spacing else None,
            input_size=list(spec.input_size) if getattr(spec, "input_size", None) else None,
            orientation=spec.orientation,
            postprocess={f.name: getattr(spec.postprocess, f.name) for f in fields(spec.postprocess)},
        )
        values.update(overrides)
        return cls(**values)

    def check_matches(self, spec) -> None:
        """Refuse a model made for another task or label set."""
        if self.task != spec.name:
            raise WeightsUnavailableError(f"model was trained for task {self.task!r}, not {spec.name!r}")
        if dict(self.labels) != dict(spec.labels) or len(self.channels) != len(spec.channels):
            raise WeightsUnavailableError(
                f"model labels/channels {self.labels}/{self.channels} do not match task {spec.name!r}"
            )


def _plain(value: Any) -> Any:
    """Tuples (nested) as lists, so the config is JSON as written and as read back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

"""The JSON config that travels with every model's safetensors file.

A model folder (what `segtool train` writes, what `--model-dir` reads, what
`segtool models push` uploads) holds ``model.safetensors``, ``config.json`` (this),
``README.md`` (a Hugging Face model card) and optionally ``train_log.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segtool.errors import WeightsUnavailableError

CONFIG_FILENAME = "config.json"
WEIGHTS_FILENAME = "model.safetensors"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    task: str
    architecture: dict[str, Any]  # keyword arguments for the task's model_factory
    labels: dict[int, str]
    channels: list[str]
    patch_size: list[int]
    normalization: str
    target_spacing: list[float] | None = None
    orientation: str | None = None
    normalization_stats: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    segtool_version: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # data, command, scores, epochs...
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        data = asdict(self)
        data["labels"] = {str(k): v for k, v in self.labels.items()}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "ModelConfig":
        try:
            data = dict(data)
            data["labels"] = {int(k): str(v) for k, v in data["labels"].items()}
            known = {f for f in cls.__dataclass_fields__}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise WeightsUnavailableError(f"{source}: not a valid segtool model config ({exc})") from None

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
            architecture={k: list(v) if isinstance(v, tuple) else v for k, v in spec.model_kwargs.items()},
            labels=dict(spec.labels),
            channels=list(spec.channels),
            patch_size=list(spec.patch_size),
            normalization=spec.normalization,
            target_spacing=list(spec.target_spacing) if spec.target_spacing else None,
            orientation=spec.orientation,
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

"""A trained model folder copied into a task plugin as a bundled model (`segtool models bundle`).

PLUGIN_DIR/ (or PLUGIN_DIR/VARIANT/, one of several bundled models of a task, e.g. disc's
three networks) gets model.safetensors, config.json, train_log.jsonl (when the folder has
one; an ensemble folder was not trained as one) and model_card.md (the folder's README.md,
plus an optional extra section such as a per-case table). ``KEY.PATH=JSON`` overrides set
one config.json value measured better than the training run's default, each recorded in
``training.bundle_overrides``. The plugin then declares the model with the sha256 of the
two pinned files: ``WeightsRef.bundled(PACKAGE, WEIGHTS_SHA, CONFIG_SHA, description)``.
Everything is checked before the first file is written; each file is written atomically.
Torch is never imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from segtool.errors import UsageError, WeightsIntegrityError, WeightsUnavailableError
from segtool.io.atomic import write_bytes_atomic
from segtool.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME, ModelConfig
from segtool.weights.integrity import sha256_file

CARD_FILENAME = "model_card.md"
SOURCE_CARD = "README.md"
LOG_FILENAME = "train_log.jsonl"


@dataclass(frozen=True)
class BundleResult:
    """Where a model was bundled and the sha256 of its two pinned files."""

    target: Path
    package: str
    variant: str | None
    weights_sha256: str
    config_sha256: str

    def declaration(self) -> str:
        """The ``WeightsRef.bundled(...)`` line to paste into the plugin."""
        folder = f', folder="{self.variant}"' if self.variant else ""
        return (f'WeightsRef.bundled("{self.package}", "{self.weights_sha256}", '
                f'"{self.config_sha256}", "DESCRIPTION"{folder})')

    def to_json(self) -> dict[str, Any]:
        return {"target": str(self.target), "package": self.package, "variant": self.variant,
                "weights_sha256": self.weights_sha256, "config_sha256": self.config_sha256,
                "declaration": self.declaration()}


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``config`` with each ``KEY.PATH=JSON`` set (the key must exist), recorded in training.bundle_overrides."""
    config = json.loads(json.dumps(config))  # a deep copy
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected KEY.PATH=JSON, e.g. postprocess.keep_largest=true")
        try:
            value = json.loads(text)
        except ValueError:
            raise UsageError(f"--set {item!r}: {text!r} is not JSON (a string needs quotes: KEY='\"text\"')") from None
        *parents, leaf = key.split(".")
        node: Any = config
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            raise UsageError(f"--set {item!r}: config.json has no {key}")
        node[leaf] = value
        training = config.get("training") if isinstance(config.get("training"), dict) else {}
        config["training"] = training
        training.setdefault("bundle_overrides", []).append(item)
    return config


def _check_source(model_dir: Path) -> None:
    for name in (WEIGHTS_FILENAME, CONFIG_FILENAME, SOURCE_CARD):
        if not (model_dir / name).is_file():
            raise UsageError(f"{model_dir}: not a model folder to bundle ({name} missing)")
    recorded = ModelConfig.read(model_dir / CONFIG_FILENAME).weights_sha256
    actual = sha256_file(model_dir / WEIGHTS_FILENAME)
    if recorded != actual:
        raise WeightsIntegrityError(
            f"{model_dir / CONFIG_FILENAME}: weights_sha256 {recorded!r} does not match "
            f"{model_dir / WEIGHTS_FILENAME} ({actual[:16]}...)"
        )


def _check_target(plugin_dir: Path, variant: str | None) -> Path:
    if not (plugin_dir / "__init__.py").is_file():
        raise UsageError(f"{plugin_dir}: not a plugin package (no __init__.py)")
    if variant is not None and (not variant or variant.startswith(".") or "/" in variant or "\\" in variant):
        raise UsageError(f"--variant {variant!r}: a plain folder name is expected, e.g. unet")
    return plugin_dir / variant if variant else plugin_dir


def bundle_model(model_dir: Path, plugin_dir: Path, variant: str | None = None,
                 card_extra: str | None = None, overrides: Sequence[str] = ()) -> BundleResult:
    """Copy ``model_dir`` into ``plugin_dir`` (``/variant``); returns the sha256 pins to declare."""
    model_dir, plugin_dir = Path(model_dir), Path(plugin_dir)
    _check_source(model_dir)
    target = _check_target(plugin_dir, variant)
    config_bytes = (model_dir / CONFIG_FILENAME).read_bytes()
    if overrides:
        changed = apply_overrides(json.loads(config_bytes), overrides)
        try:
            ModelConfig.from_dict(changed, source=f"{CONFIG_FILENAME} after --set")
        except WeightsUnavailableError as exc:
            raise UsageError(exc.one_line()) from None
        config_bytes = (json.dumps(changed, indent=2, sort_keys=True) + "\n").encode("utf-8")
    card = (model_dir / SOURCE_CARD).read_text(encoding="utf-8")
    if card_extra:
        card = card.rstrip("\n") + "\n\n" + card_extra
    target.mkdir(exist_ok=True)
    write_bytes_atomic(target / WEIGHTS_FILENAME, (model_dir / WEIGHTS_FILENAME).read_bytes())
    write_bytes_atomic(target / CONFIG_FILENAME, config_bytes)
    if (model_dir / LOG_FILENAME).is_file():
        write_bytes_atomic(target / LOG_FILENAME, (model_dir / LOG_FILENAME).read_bytes())
    write_bytes_atomic(target / CARD_FILENAME, card.encode("utf-8"))
    return BundleResult(target, plugin_dir.name, variant, sha256_file(target / WEIGHTS_FILENAME),
                        sha256_file(target / CONFIG_FILENAME))

"""Copy a trained model folder into a task plugin as its bundled default model.

    python scripts/bundle_model.py MODEL_DIR plugins/segtool_spinal_gm [--card-extra FILE.md] [--variant NAME]

Copies model.safetensors, config.json and train_log.jsonl, writes the model card
(README.md of the folder, plus an optional extra section such as a per-case table)
as model_card.md, and prints the plugin's declaration with the sha256 of the two pinned
files: ``WeightsRef.bundled(PACKAGE, WEIGHTS_SHA, CONFIG_SHA, description)``. With
``--variant NAME`` the files go to PLUGIN_DIR/NAME/ (one of several bundled models of a
task, e.g. disc's three networks) and the declaration carries ``folder="NAME"``. ``--set postprocess.keep_largest=true`` (repeatable) sets one
config.json value (JSON) measured better than the training run's default, recorded in
``training.bundle_overrides``. Refuses a folder whose config.json does not
record the sha256 of its weights, or records another one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_values(config_path: Path, overrides: list[str]) -> None:
    """Apply KEY.PATH=JSON overrides to config.json; each is recorded in training.bundle_overrides."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY.PATH=JSON")
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            node = node[name]
        if leaf not in node:
            raise SystemExit(f"--set {item!r}: config.json has no {key}")
        node[leaf] = json.loads(text)
        config.setdefault("training", {}).setdefault("bundle_overrides", []).append(item)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("plugin_dir", type=Path)
    parser.add_argument("--card-extra", type=Path, help="markdown appended to the model card")
    parser.add_argument("--variant", help="bundle into PLUGIN_DIR/VARIANT/ (a task with several bundled models)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=JSON",
                        help="set a config.json value, e.g. postprocess.keep_largest=true (repeatable)")
    args = parser.parse_args()
    weights, config = args.model_dir / "model.safetensors", args.model_dir / "config.json"
    recorded = json.loads(config.read_text(encoding="utf-8")).get("weights_sha256")
    if recorded != sha256(weights):
        print(f"{config}: weights_sha256 {recorded!r} does not match {weights}", file=sys.stderr)
        return 1
    target = args.plugin_dir / args.variant if args.variant else args.plugin_dir
    target.mkdir(exist_ok=True)
    for name in ("model.safetensors", "config.json", "train_log.jsonl"):
        if name == "train_log.jsonl" and not (args.model_dir / name).is_file():
            continue  # an ensemble folder (scripts/ensemble_models.py) was not trained as one
        shutil.copyfile(args.model_dir / name, target / name)
    if args.overrides:
        set_values(target / "config.json", args.overrides)
    card = (args.model_dir / "README.md").read_text(encoding="utf-8")
    if args.card_extra:
        card = card.rstrip("\n") + "\n\n" + args.card_extra.read_text(encoding="utf-8")
    (target / "model_card.md").write_text(card, encoding="utf-8")
    folder = f', folder="{args.variant}"' if args.variant else ""
    print(f'WeightsRef.bundled("{args.plugin_dir.name}", "{sha256(target / "model.safetensors")}", '
          f'"{sha256(target / "config.json")}", "DESCRIPTION"{folder})')
    return 0


if __name__ == "__main__":
    sys.exit(main())

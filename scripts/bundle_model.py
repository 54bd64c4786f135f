"""Copy a trained model folder into a task plugin as its bundled default model.

    python scripts/bundle_model.py MODEL_DIR plugins/segtool_spinal_gm [--card-extra FILE.md]

Copies model.safetensors, config.json and train_log.jsonl, writes the model card
(README.md of the folder, plus an optional extra section such as a per-case table)
as model_card.md, and prints the sha256 of the two pinned files for the plugin's
``WeightsRef(package=..., weights=WeightsFile("model.safetensors", SHA),
config=WeightsFile("config.json", SHA))``. Refuses a folder whose config.json does not
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("plugin_dir", type=Path)
    parser.add_argument("--card-extra", type=Path, help="markdown appended to the model card")
    args = parser.parse_args()
    weights, config = args.model_dir / "model.safetensors", args.model_dir / "config.json"
    recorded = json.loads(config.read_text(encoding="utf-8")).get("weights_sha256")
    if recorded != sha256(weights):
        print(f"{config}: weights_sha256 {recorded!r} does not match {weights}", file=sys.stderr)
        return 1
    for name in ("model.safetensors", "config.json", "train_log.jsonl"):
        shutil.copyfile(args.model_dir / name, args.plugin_dir / name)
    card = (args.model_dir / "README.md").read_text(encoding="utf-8")
    if args.card_extra:
        card = card.rstrip("\n") + "\n\n" + args.card_extra.read_text(encoding="utf-8")
    (args.plugin_dir / "model_card.md").write_text(card, encoding="utf-8")
    for name in ("model.safetensors", "config.json"):
        print(f'WeightsFile("{name}", "{sha256(args.plugin_dir / name)}")')
    return 0


if __name__ == "__main__":
    sys.exit(main())

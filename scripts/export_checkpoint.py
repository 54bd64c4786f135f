"""Write a model folder from the last resume checkpoint of a `segtool train` run (its final weights).

    python scripts/export_checkpoint.py MODEL_DIR OUT_DIR

`segtool train` saves the weights of its best validation epoch as MODEL_DIR's model;
MODEL_DIR/.train/last.pt holds the state after the last step. When the validation
score that picked "best" is not the one that matters (brain-tumour-2d validates slice by
slice, while its goal is per-patient Dice of the stacked volume, where empty slices
predicted empty count), the final weights are the honest choice: OUT_DIR gets a copy of
MODEL_DIR with those weights, config.json's weights_sha256 updated and
``training.selected`` set to "final step N" (train_log.jsonl and the card are copied).
``training.validation`` becomes the final step's validation when the run validated it
(train_log.jsonl), and ``training.validation_of`` says which weights it scored.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def final_validation(model_dir: Path, step: int) -> dict | None:
    """The validation record of ``step`` in the run's train_log.jsonl, or None."""
    from segtool.training.model_folder import read_log

    for record in reversed(read_log(model_dir)):
        if record.get("step") == step and record.get("validation"):
            return record["validation"]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    checkpoint = args.model_dir / ".train" / "last.pt"
    if not checkpoint.is_file():
        print(f"{checkpoint}: no resume checkpoint (deleted, or the run was not made by segtool train)", file=sys.stderr)
        return 1
    import torch

    from segtool.training.model_folder import write_weights
    from segtool.weights.integrity import sha256_file

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "README.md", "train_log.jsonl"):
        if (args.model_dir / name).is_file():
            shutil.copyfile(args.model_dir / name, args.out_dir / name)
    weights = write_weights(args.out_dir, {k.removeprefix("module."): v for k, v in state["model"].items()},
                            producer="segtool train (final step)")
    config_path = args.out_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["weights_sha256"] = sha256_file(weights)
    training = config.setdefault("training", {})
    training["selected"] = f"final step {state['global_step']}"
    final = final_validation(args.model_dir, state["global_step"])
    if final is not None:
        training["validation"], training["validation_of"] = final, training["selected"]
    elif training.get("validation"):
        training["validation_of"] = f"best epoch {training.get('best_epoch')} (the final step was not validated)"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{args.out_dir}: weights of step {state['global_step']} (sha256 {config['weights_sha256']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Give a trained model folder logit offsets from its training labels' class frequencies.

    python scripts/logit_adjust.py MODEL_DIR DATA_DIR --tau 0.1 --reason "chosen on ..."

DATA_DIR is the folder the model was trained from (`segtool train TASK DATA_DIR`); its
training cases (recorded in MODEL_DIR/config.json) give the class prior. The folder's
config.json gets ``logit_offsets`` = -tau * log(prior) and a record of them; `segtool run`
then adds them to the network's logits (segtool/training/logit_adjustment.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--tau", type=float, required=True, help="strength: 0 changes nothing, 1 divides by the prior")
    parser.add_argument("--reason", required=True, help="how tau was chosen (recorded in config.json)")
    args = parser.parse_args()
    from segtool.app import App
    from segtool.errors import SegtoolError
    from segtool.model_config import ModelConfig
    from segtool.training.logit_adjustment import adjust_folder, offsets_summary

    try:
        task = ModelConfig.read(args.model_dir / "config.json").task
        spec = App().registry.get(task)
        config = adjust_folder(args.model_dir, spec, args.data_dir, args.tau, args.reason)
    except (SegtoolError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.model_dir}: logit offsets (tau {args.tau}): {offsets_summary(config)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write one model folder whose network averages the probabilities of several trained ones.

    python scripts/ensemble_models.py OUT_DIR MODEL_DIR MODEL_DIR [...] [--float16]

The members (folders written by `segtool train`, or scripts/export_checkpoint.py) must
share the task and its preprocessing; see segtool/training/ensemble_folder.py. Use the
result as any model folder: ``segtool run TASK --model-dir OUT_DIR``, or bundle it with
scripts/bundle_model.py.
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
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("members", type=Path, nargs="+")
    parser.add_argument("--float16", action="store_true", help="store the tensors in float16 (half the size)")
    args = parser.parse_args()
    from segtool.errors import SegtoolError
    from segtool.training.ensemble_folder import write_ensemble

    try:
        config = write_ensemble(args.members, args.out_dir, float16=args.float16)
    except SegtoolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    families = ", ".join(m["network"] for m in config.architecture["members"])
    print(f"{args.out_dir}: ensemble of {len(args.members)} ({families}), weights sha256 {config.weights_sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

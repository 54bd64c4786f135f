"""The split both sides of the race train on, in each side's form.

segtool's folds (``segtool.training.cross_validation.assign_folds(names, K, seed=0, group_by)``, what
``segtool train --folds K`` uses) or the ``--val-cases`` as one fold; as nnU-Net's ``splits_final.json``, as
``segtool train``'s options, and as the report's rows and description.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def make_splits(names: Sequence[str], folds: int | None = None, group_by: str | None = None,
                val_cases: Sequence[str] | None = None, seed: int = 0) -> list[dict]:
    """nnU-Net's splits_final.json entries ({"train", "val"} per fold): segtool's folds, or one --val-cases fold."""
    names = sorted(names)
    if val_cases:
        unknown = sorted(set(val_cases) - set(names))
        if unknown:
            raise SystemExit(f"--val-cases: no case named {', '.join(unknown)} (cases: {', '.join(names)})")
        held = [n for n in names if n in set(val_cases)]
        return [{"train": [n for n in names if n not in set(held)], "val": held}]
    from segtool.training.cross_validation import assign_folds

    return [{"train": [n for n in names if n not in set(held)], "val": list(held)}
            for held in assign_folds(names, folds, seed, group_by)]


def write_splits(preprocessed_dataset: Path, splits: list[dict]) -> Path:
    """The split as nnU-Net reads it: ``splits_final.json`` in the preprocessed dataset's folder; its path."""
    path = Path(preprocessed_dataset) / "splits_final.json"
    path.write_text(json.dumps(splits, indent=1) + "\n", encoding="utf-8")
    return path


def fold_of(splits: list[dict]) -> dict[str, int]:
    """Held-out case -> the fold that held it out."""
    return {name: i for i, split in enumerate(splits) for name in split["val"]}


def row_fold(splits: list[dict], group_by: str | None) -> dict[str, int]:
    """The table's rows (held-out cases, or subjects with --group-by) -> their fold."""
    from segtool.training.datasets import group_key

    return {group_key(name, group_by): i for name, i in fold_of(splits).items()}


def split_options(args) -> list[str]:
    """The split as ``segtool train`` options: ``--val-cases A,B`` or ``--folds K``, and ``--group-by R``."""
    opts = ["--val-cases", ",".join(args.val_cases)] if args.val_cases else ["--folds", str(args.folds)]
    return opts + (["--group-by", args.group_by] if args.group_by else [])


def split_description(args, splits: list[dict], case_count: int) -> str:
    """How the split was made, for the report: ``--val-cases ...`` or ``--folds K over N cases``, and ``--group-by``."""
    held = sorted(fold_of(splits))
    description = (f"--val-cases {','.join(held)} (1 fold: {len(splits[0]['train'])} training, {len(held)} held out)"
                   if args.val_cases else f"--folds {args.folds} over {case_count} cases, seed 0")
    if args.group_by:
        description += f", --group-by {args.group_by!r}"
    return description

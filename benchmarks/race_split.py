"""The split both sides of the race train on, in each side's form.

segtool's folds (``segtool.training.cross_validation.assign_folds(names, K, seed, group_by)``, what
``segtool train --folds K`` uses), the ``--val-cases`` as one fold, or ``--val-fraction F`` as one fold
(``segtool.training.datasets.split_cases(names, seed, F, group_by=...)``, what ``segtool train --val-fraction F``
uses: the same held-out subjects on both sides by construction); as nnU-Net's ``splits_final.json``, as
``segtool train``'s options, and as the report's rows and description.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def make_splits(names: Sequence[str], folds: int | None = None, group_by: str | None = None,
                val_cases: Sequence[str] | None = None, seed: int = 0,
                val_fraction: float | None = None) -> list[dict]:
    """nnU-Net's splits_final.json entries ({"train", "val"} per fold): segtool's folds, or one --val-cases or
    --val-fraction fold."""
    names = sorted(names)
    if val_fraction is not None:
        from segtool.training.datasets import split_cases

        train, held = split_cases(names, seed, val_fraction, group_by=group_by)
        if not held:
            raise SystemExit(f"--val-fraction {val_fraction}: no case held out")
        return [{"train": train, "val": held}]
    if val_cases:
        unknown = sorted(set(val_cases) - set(names))
        if unknown:
            raise SystemExit(f"--val-cases: no case named {', '.join(unknown)} (cases: {', '.join(names)})")
        held = [n for n in names if n in set(val_cases)]
        return [{"train": [n for n in names if n not in set(held)], "val": held}]
    from segtool.training.cross_validation import assign_folds

    return [{"train": [n for n in names if n not in set(held)], "val": list(held)}
            for held in assign_folds(names, folds, seed, group_by)]


def check_same_split(config_path: Path, split: dict) -> None:
    """Stop unless the model segtool trained held out exactly the race's cases (its config.json's record)."""
    data = json.loads(Path(config_path).read_text(encoding="utf-8"))["training"]["data"]
    held = sorted(data.get("validation_cases") or [])
    if held != sorted(split["val"]):
        raise RuntimeError(f"segtool held out {len(held)} case(s), the race's split {len(split['val'])}: "
                           f"not the same split ({sorted(set(held) ^ set(split['val']))[:5]} differ)")


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
    """The split as ``segtool train`` options: ``--val-cases A,B``, ``--val-fraction F`` or ``--folds K``, then
    ``--seed S`` and ``--group-by R``."""
    if args.val_cases:
        opts = ["--val-cases", ",".join(args.val_cases)]
    elif args.val_fraction is not None:
        opts = ["--val-fraction", str(args.val_fraction)]
    else:
        opts = ["--folds", str(args.folds)]
    opts += ["--seed", str(args.seed)]
    return opts + (["--group-by", args.group_by] if args.group_by else [])


def split_description(args, splits: list[dict], case_count: int) -> str:
    """How the split was made, for the report: ``--val-cases ...`` or ``--folds K over N cases``, and ``--group-by``."""
    held = sorted(fold_of(splits))
    one_fold = f"(1 fold: {len(splits[0]['train'])} training, {len(held)} held out)"
    if args.val_cases:
        description = f"--val-cases {','.join(held)} {one_fold}"
    elif args.val_fraction is not None:
        description = f"--val-fraction {args.val_fraction} --seed {args.seed} {one_fold}"
    else:
        description = f"--folds {args.folds} over {case_count} cases, seed {args.seed}"
    if args.group_by:
        description += f", --group-by {args.group_by!r}"
    return description

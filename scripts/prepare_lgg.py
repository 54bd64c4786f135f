"""Lay out the LGG slices (../shared/data/brain-tumour/lgg_kaggle_3m) as a `segtool train` folder, and print a patient split.

    python scripts/prepare_lgg.py OUT_DIR [--data DIR] [--val-patients 9] [--seed 0]

writes, for every slice of every patient folder TCGA_<inst>_<id>_<date>/,
    OUT_DIR/TCGA_<inst>_<id>_<date>_<n>.tif       a symlink to the 3-channel slice (pre-contrast, FLAIR,
                                                  post-contrast), never a copy
    OUT_DIR/TCGA_<inst>_<id>_<date>_<n>_seg.png   its mask as labels 0/1 (the dataset's masks are 0/255)
    OUT_DIR/split.json                            the recommended patient split (seed, regex, patients)

and prints the seeded split by patient (never by slice) and the `segtool train` command
that reproduces it: `--group-by` keeps every slice of a patient on one side, and
`--val-fraction` is chosen so that exactly --val-patients patients validate (segtool's
split is a pure function of the sorted case names, the regex, the fraction and the
seed; this script calls the same function). OUT_DIR must lie outside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from segtool.training.datasets import group_key, split_cases

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "brain-tumour" / "lgg_kaggle_3m"
#: A case is TCGA_<institution>_<patient>_<date>_<slice>; the first group is the patient's folder.
GROUP_BY = r"^(TCGA_[A-Z0-9]+_[A-Z0-9]+_\d+)_\d+$"
SLICE = re.compile(r"^(?P<patient>TCGA_[A-Z0-9]+_[A-Z0-9]+_\d+)_(?P<n>\d+)\.tif$")


def patients(data: Path) -> dict[str, list[tuple[Path, Path]]]:
    """patient folder name -> [(slice, mask)] in slice order; every slice must have its mask."""
    found: dict[str, list[tuple[Path, Path]]] = {}
    for folder in sorted(p for p in data.iterdir() if p.is_dir() and p.name.startswith("TCGA_")):
        slices = []
        for path in folder.iterdir():
            match = SLICE.match(path.name)
            if match is None:
                continue
            if match["patient"] != folder.name:
                raise SystemExit(f"{path}: slice name does not start with its folder's name {folder.name}")
            mask = path.with_name(f"{path.stem}_mask.tif")
            if not mask.is_file():
                raise SystemExit(f"{path}: no mask {mask.name}")
            slices.append((int(match["n"]), path, mask))
        if slices:
            found[folder.name] = [(p, m) for _, p, m in sorted(slices)]
    return found


def write_slice(image: Path, mask: Path, out: Path) -> str:
    """Symlink the slice, write its 0/1 mask; returns the case name."""
    from PIL import Image

    name = image.stem
    link = out / image.name
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(image.resolve(), link)
    with Image.open(mask) as im:
        labels = (np.asarray(im) > 0).astype(np.uint8)
    if labels.ndim == 3:
        labels = labels.max(axis=-1)
    Image.fromarray(labels).save(out / f"{name}_seg.png")
    return name


def choose_split(names: list[str], val_patients: int, seed: int) -> tuple[float, list[str], list[str]]:
    """(val_fraction, train patients, validation patients) for exactly ``val_patients`` validation patients."""
    groups = sorted({group_key(n, GROUP_BY) for n in names})
    fraction = round(val_patients / len(groups), 6)
    _, val = split_cases(names, seed, fraction, group_by=GROUP_BY)
    val_groups = sorted({group_key(n, GROUP_BY) for n in val})
    if len(val_groups) != val_patients:
        raise SystemExit(f"internal: fraction {fraction} gives {len(val_groups)} validation patients, not {val_patients}")
    return fraction, [g for g in groups if g not in val_groups], val_groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write (outside the repository)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"the lgg_kaggle_3m folder (default: {DEFAULT_DATA})")
    parser.add_argument("--val-patients", type=int, default=9, help="patients held out for validation (>= 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (give the same --seed to segtool train)")
    args = parser.parse_args(argv)

    out = args.out_dir.expanduser().resolve()
    if out == ROOT or ROOT in out.parents:
        parser.error(f"{out}: inside the repository; the data must stay outside it (use e.g. /tmp/lgg)")
    if not args.data.is_dir():
        parser.error(f"{args.data}: no such folder (the LGG data, see ../shared/data/brain-tumour/SOURCE.md)")
    found = patients(args.data)
    if not found:
        parser.error(f"{args.data}: no TCGA_* patient folders with slices")
    if not 8 <= args.val_patients < len(found):
        parser.error(f"--val-patients must lie in 8..{len(found) - 1}, got {args.val_patients}")
    out.mkdir(parents=True, exist_ok=True)
    names = [write_slice(image, mask, out) for slices in found.values() for image, mask in slices]
    fraction, train, val = choose_split(names, args.val_patients, args.seed)
    slices_of = {p: len(s) for p, s in found.items()}
    split = {
        "data": str(args.data.resolve()),
        "seed": args.seed,
        "group_by": GROUP_BY,
        "val_fraction": fraction,
        "train_patients": train,
        "val_patients": val,
        "train_slices": sum(slices_of[p] for p in train),
        "val_slices": sum(slices_of[p] for p in val),
    }
    (out / "split.json").write_text(json.dumps(split, indent=2) + "\n", encoding="utf-8")
    print(f"{out}: {len(names)} slices of {len(found)} patients (symlinked slices, 0/1 masks as PNG)")
    print(f"validation patients ({len(val)}, {split['val_slices']} slices, seed {args.seed}):")
    for p in val:
        print(f"  {p}  ({slices_of[p]} slices)")
    print(f"training patients: {len(train)} ({split['train_slices']} slices); split written to {out / 'split.json'}")
    print("train with:")
    print(f"  segtool train brain-tumour-2d {out} -o MODEL_DIR --group-by '{GROUP_BY}' "
          f"--val-fraction {fraction} --seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

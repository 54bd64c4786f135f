"""Lay out the Clothing Co-Parsing photos (../shared/data/clothing) as a `segtool train` folder, with a fixed split.

    python scripts/prepare_clothing.py OUT_DIR [--data DIR] [--val 100] [--seed 0]

writes, for every photo NNNN with a pixel-level annotation (0001-0900),
    OUT_DIR/NNNN.jpg        a symlink to the photo, never a copy
    OUT_DIR/NNNN_seg.png    its annotation (annotations/pixel-level/NNNN.mat, variable `groundtruth`,
                            uint8, the photo's size) as CCP *tag values* 0-58, unmerged
    OUT_DIR/val_cases.txt   the validation photos, one per line: `segtool train --val-cases @OUT_DIR/val_cases.txt`
    OUT_DIR/split.json      the split (seed, count, validation and training photos)

The masks keep CCP's 59 tags; `segtool train clothing` merges them into the task's 14
classes with the task's own labels map (plugins/segtool_clothing, used when no
--labels-map is given), so the table lives in one place. The validation photos are a
seeded shuffle (`random.Random(seed).shuffle` of the sorted photo names, the first
--val taken). OUT_DIR must lie outside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "clothing"


def photo_names(data: Path) -> list[str]:
    """Photos (stems) that have a pixel-level annotation, sorted."""
    annotations = data / "annotations" / "pixel-level"
    return sorted(p.stem for p in annotations.glob("*.mat") if (data / "photos" / f"{p.stem}.jpg").is_file())


def read_annotation(path: Path) -> np.ndarray:
    """The CCP tag map (uint8, rows x cols) of one annotation .mat."""
    from scipy.io import loadmat

    groundtruth = np.asarray(loadmat(str(path))["groundtruth"])
    if groundtruth.ndim != 2 or groundtruth.max(initial=0) > 58:
        raise ValueError(f"{path}: expected a 2D map of CCP tags 0-58, got shape {groundtruth.shape}")
    return groundtruth.astype(np.uint8)


def split(names: list[str], val: int, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation): the first ``val`` of a seeded shuffle of the sorted names, each side sorted."""
    if not 0 < val < len(names):
        raise SystemExit(f"--val must lie in 1..{len(names) - 1}, got {val}")
    order = sorted(names)
    random.Random(seed).shuffle(order)
    chosen = set(order[:val])
    return [n for n in sorted(names) if n not in chosen], sorted(chosen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the clothing data folder (default: %(default)s)")
    parser.add_argument("--val", type=int, default=100, help="photos held out for validation (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default: 0)")
    args = parser.parse_args(argv)
    from PIL import Image

    data, out = args.data.resolve(), args.out_dir.resolve()
    if out == ROOT or ROOT in out.parents:
        raise SystemExit(f"{out}: write the training folder outside the repository")
    names = photo_names(data)
    if not names:
        raise SystemExit(f"{data}: no photos with annotations (expected photos/NNNN.jpg and annotations/pixel-level/NNNN.mat)")
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names, 1):
        photo, link = data / "photos" / f"{name}.jpg", out / f"{name}.jpg"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(photo, link)
        tags = read_annotation(data / "annotations" / "pixel-level" / f"{name}.mat")
        with Image.open(photo) as im:
            if im.size != (tags.shape[1], tags.shape[0]):
                raise SystemExit(f"{name}: photo {im.size[0]}x{im.size[1]} and annotation {tags.shape[1]}x{tags.shape[0]} differ")
        Image.fromarray(tags).save(out / f"{name}_seg.png")
        if i % 100 == 0:
            print(f"{i}/{len(names)} photos", file=sys.stderr, flush=True)
    train, val = split(names, args.val, args.seed)
    (out / "val_cases.txt").write_text(
        f"# {len(val)} validation photos: seeded shuffle (seed {args.seed}) of {len(names)} CCP photos\n"
        + "\n".join(val) + "\n", encoding="utf-8")
    (out / "split.json").write_text(json.dumps(
        {"seed": args.seed, "method": "random.Random(seed).shuffle(sorted names)[:val]", "validation": val,
         "train": train, "masks": "CCP tag values 0-58 (merged by the clothing task's labels map)"}, indent=1) + "\n",
        encoding="utf-8")
    print(f"{len(names)} photos in {out}: {len(train)} train, {len(val)} validation (seed {args.seed})", file=sys.stderr)
    print(f"segtool train clothing {out} -o MODEL_DIR --val-cases @{out / 'val_cases.txt'} --seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

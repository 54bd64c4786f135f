"""brain-tumour: per case, Dice and HD95 (mm) of the BraTS regions, cross-validated.

    python benchmarks/accuracy.py brain-tumour --cv unet=F1,F2,F3,F4 [--model-dir DIR ...] [--data DIR]

For each case of ../shared/data/brain-tumour/brats2015_deepmedic (FLAIR + T1c, 1 mm), the
regions whole tumour {1,2,3,4}, tumour core {1,3,4} and enhancing tumour {4} of
``segtool run brain-tumour FLAIR T1C`` against the expert labels, on the input grid
(`segtool.metrics`, voxel surfaces). ``--cv NAME=DIR,...``: the folds of a cross-validation;
each folder scores the cases its config.json did not train on (a held-out case per fold).
``--model-dir DIR``: one model on every case, with whether the case was in its training
set (none given and no --cv: the task's default model). A mean row per column.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from accuracy_common import NO_MODEL, SHARED_DATA, log, run_segtool, training_cases, write_json

BRATS_DATA = SHARED_DATA / "brain-tumour" / "brats2015_deepmedic"
REGIONS = {"WT": (1, 2, 3, 4), "TC": (1, 3, 4), "ET": (4,)}
CHANNEL_FILES = ("Flair_subtrMeanDivStd.nii.gz", "T1c_subtrMeanDivStd.nii.gz")
TRUTH_FILE = "OTMultiClass.nii.gz"


def add_brain_tumour_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=BRATS_DATA, help="folder of case folders (SOURCE.md layout)")
    parser.add_argument("--model-dir", type=Path, action="append", default=[],
                        help="a model folder scored on every case (repeatable)")
    parser.add_argument("--cv", action="append", default=[], metavar="NAME=DIR,DIR,...",
                        help="cross-validation folds: each folder scores the cases it did not train on")
    parser.add_argument("--run-args", default="",
                        help="extra `segtool run` arguments, e.g. --run-args=--tta (a lone option needs the '=')")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the rows as JSON here")


def region_scores(pred, truth, spacing) -> dict[str, dict[str, float | None]]:
    """Dice and HD95 (mm; None when infinite: one side empty) of each BraTS region."""
    import numpy as np

    from segtool.metrics import distance_metrics, overlap_metrics

    out = {}
    for name, members in REGIONS.items():
        p, g = np.isin(pred, members), np.isin(truth, members)
        hd95 = distance_metrics(p, g, spacing).hd95
        out[name] = {"dice": overlap_metrics(p, g, spacing).dice, "hd95": None if math.isinf(hd95) else hd95}
    return out


def _plan(args: argparse.Namespace) -> list[tuple[str, list[Path | None], bool]]:
    plan: list[tuple[str, list[Path | None], bool]] = []
    for item in args.cv:
        name, _, folds = item.partition("=")
        if not name or not folds:
            raise SystemExit(f"--cv {item!r}: expected NAME=DIR,DIR,...")
        plan.append((f"{name} (CV)", [Path(f) for f in folds.split(",")], True))
    dirs: list[Path | None] = list(args.model_dir) or ([] if plan else [None])
    plan += [(d.name if d is not None else "default", [d], False) for d in dirs]
    return plan


def _table(rows: dict[str, dict[str, Any]], columns: list[str]) -> str:
    head = ["case"] + [f"{c} {r} Dice" for c in columns for r in REGIONS]
    head += [f"{c} {r} HD95" for c in columns for r in REGIONS] + ["in training set"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(value, region, metric):
        if not isinstance(value, dict):
            return value or "—"
        v = value[region][metric]
        return "inf" if v is None else f"{v:.3f}" if metric == "dice" else f"{v:.1f}"

    for case, row in rows.items():
        cells = [case] + [cell(row["models"].get(c), r, "dice") for c in columns for r in REGIONS]
        cells += [cell(row["models"].get(c), r, "hd95") for c in columns for r in REGIONS]
        cells.append(" / ".join(row["in_training_set"].get(c, "—") for c in columns))
        lines.append("| " + " | ".join(cells) + " |")
    means = ["**mean**"]
    for metric in ("dice", "hd95"):
        for c in columns:
            for r in REGIONS:
                values = [row["models"].get(c) for row in rows.values()]
                if not all(isinstance(v, dict) for v in values):
                    means.append("incomplete")
                    continue
                finite = [v[r][metric] for v in values]
                means.append("inf" if None in finite else f"{sum(finite) / len(finite):.3f}" if metric == "dice"
                             else f"{sum(finite) / len(finite):.1f}")
    lines.append("| " + " | ".join(means + [""]) + " |")
    return "\n".join(lines)


def brain_tumour(args: argparse.Namespace) -> int:
    """brain-tumour: per case WT/TC/ET Dice and HD95 (mm), cross-validated folds and whole models."""
    import nibabel as nib
    import numpy as np

    data: Path = args.data
    cases = sorted(p.name for p in data.glob("*") if (p / TRUTH_FILE).is_file()) if data.is_dir() else []
    if not cases:
        log(f"brain-tumour: no cases at {data} (the shared data folder is absent); nothing to do")
        return 0
    plan = _plan(args)
    columns = [name for name, _, _ in plan]
    rows = {c: {"models": {}, "in_training_set": {}} for c in cases}
    extra = args.run_args.split()
    with tempfile.TemporaryDirectory(prefix="segtool-accuracy-brain-tumour-") as tmp:
        for k, (column, model_dir, cv) in enumerate((c, d, cv) for c, dirs, cv in plan for d in dirs):
            train = training_cases(model_dir, task="brain-tumour")
            if cv and train is None:
                raise SystemExit(f"--cv: {model_dir}/config.json records no training cases")
            scored = [c for c in cases if not (cv and c in train)]
            t0 = time.perf_counter()
            for case in scored:  # one call per case: every case's files have the same names
                status, outputs, message = run_segtool([data / case / f for f in CHANNEL_FILES],
                                                       Path(tmp) / f"out{k}" / case, model_dir, task="brain-tumour",
                                                       extra=extra)
                if status != "ok":
                    log(f"brain-tumour {column} {case}: {status} ({message})")
                rows[case]["in_training_set"][column] = "—" if train is None else "yes" if case in train else "no"
                out = outputs.get(str((data / case / CHANNEL_FILES[0]).resolve())) if status == "ok" else None
                if out is None:
                    rows[case]["models"][column] = NO_MODEL if status == NO_MODEL else "failed"
                    continue
                truth_image = nib.load(str(data / case / TRUTH_FILE))
                truth = np.rint(np.asanyarray(truth_image.dataobj)).astype(np.uint8)
                pred = np.asanyarray(nib.load(out).dataobj)
                spacing = tuple(float(z) for z in truth_image.header.get_zooms()[:3])
                rows[case]["models"][column] = region_scores(pred, truth, spacing)
            log(f"brain-tumour {column} ({model_dir}): {len(scored)} case(s) in {time.perf_counter() - t0:.0f} s")
    print(_table(rows, columns))
    print("\nDice and HD95 (mm, segtool.metrics, voxel surfaces, the 1 mm input grid) of the BraTS regions "
          "WT {1,2,3,4}, TC {1,3,4}, ET {4}; (CV) columns score each case with the fold that held it out.")
    write_json(args.json_out, {"task": "brain-tumour", "data": str(data), "columns": columns, "rows": rows,
                               "note": "hd95 null = infinite"})
    return 0

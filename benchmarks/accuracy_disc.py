"""disc: per subject and per disc, Dice and HD95 (mm) of ``segtool run disc`` for each model.

    python benchmarks/accuracy.py disc [--data ../shared/data/disc] [--model-dir DIR ...]
                                       [--loso NAME=DIR,DIR,DIR ...] [--partial-fov] [--run-args=...] [--json out.json]

Per subject (ivd_11, ivd_20, ivd_25 of ../shared/data/disc, converted as
scripts/prepare_disc.py does) and per disc, Dice and HD95 (mm, `segtool.metrics`, voxel
surfaces, the 1 mm grid of SOURCE.md) of ``segtool run disc`` for each ``--model-dir``
(repeat it to compare networks in one table; none: the task's default model) and each
``--loso`` cross-validation (each subject scored by the fold that did not train on it);
"no model" when ``segtool run`` exits 3:
``python benchmarks/accuracy.py disc --model-dir m/unet --model-dir m/res_se_unet --model-dir m/deeplabv3plus``
``--partial-fov`` also scores crops that hold only some of the discs: are the discs seen named right?
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accuracy_common import NO_MODEL, SHARED_DATA, column_names, log, run_segtool, training_cases, write_json
from repo_scripts import script_module

if TYPE_CHECKING:
    import numpy as np

DISC_LABELS = {1: "L5-S1", 2: "L4-L5", 3: "L3-L4", 4: "L2-L3", 5: "L1-L2"}
#: The disc data's grid (SOURCE.md): 1 mm isotropic
SPACING = (1.0, 1.0, 1.0)


def add_disc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "disc",
                        help="the disc data folder with ivd_11.mat, ivd_20.mat, ivd_25.mat (default: ../shared/data/disc)")
    parser.add_argument("--model-dir", type=Path, action="append", default=None,
                        help="segtool model folder to score; repeat to compare networks (default: the task's default model)")
    parser.add_argument("--loso", action="append", default=[], metavar="NAME=DIR,DIR,DIR",
                        help="leave-one-subject-out column NAME: each subject is scored by the fold (model folder) "
                             "whose config.json does not list it among its training cases; repeatable")
    parser.add_argument("--partial-fov", action="store_true",
                        help="also score crops of each scored subject that hold only some discs (the column cut "
                             "between two discs): are the discs it sees named right?")
    parser.add_argument("--run-args", default="",
                        help="extra `segtool run` arguments, e.g. --run-args=--tta (a lone option needs the '=')")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write all numbers here")


#: Partial fields of view: (name, the two disc values between which the column is cut, which side is kept).
DISC_CROPS = (("L3-L4 and above", (2, 3), "upper"), ("L2-L3 and above", (3, 4), "upper"),
              ("L3-L4 and below", (3, 4), "lower"))


def disc_crops(image: Path, truth: "np.ndarray", folder: Path) -> list[tuple[str, Path, "np.ndarray"]]:
    """(crop name, cropped image file, cropped truth) for each of DISC_CROPS: the volume cut along its
    superior-inferior axis midway between the centroids of two discs; the affine moves with the crop."""
    import nibabel as nib
    import numpy as np
    from scipy import ndimage

    img = nib.load(str(image))
    axis = [code in "SI" for code in nib.aff2axcodes(img.affine)].index(True)
    centre = {v: ndimage.center_of_mass(truth == v)[axis] for v in DISC_LABELS}
    upward = np.sign(img.affine[2, axis])  # index step along the axis goes toward S (+1) or I (-1)
    out = []
    for name, (low, high), side in DISC_CROPS:
        cut = int(round((centre[low] + centre[high]) / 2))
        keep_high_index = (side == "upper") == (upward > 0)
        index = [slice(None)] * 3
        index[axis] = slice(cut, None) if keep_high_index else slice(0, cut)
        path = folder / f"{image.name.split('.')[0]}_{side}_{low}{high}.nii.gz"
        nib.save(img.slicer[tuple(index)], str(path))
        out.append((name, path.resolve(), truth[tuple(index)]))
    return out


def score_crop(pred: "np.ndarray", truth: "np.ndarray") -> dict[str, Any]:
    """Discs whose true value the crop holds: mean Dice; named right when Dice > 0.5; labels predicted
    that the crop does not hold (wrong names)."""
    import numpy as np

    from segtool.metrics import overlap_metrics

    seen = [int(v) for v in np.unique(truth) if v in DISC_LABELS and (truth == v).sum() > 0]
    dice = {DISC_LABELS[v]: overlap_metrics(pred == v, truth == v, SPACING).dice for v in seen}
    extra = [DISC_LABELS[int(v)] for v in np.unique(pred) if v in DISC_LABELS and int(v) not in seen
             and (pred == v).sum() >= 50]
    return {"discs": list(dice), "dice": float(np.mean(list(dice.values()))) if dice else None,
            "named_right": sum(d > 0.5 for d in dice.values()), "wrong_names": extra}


def disc_partial_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| subject | field of view | " + " | ".join(f"{c}: Dice, named right, wrong names" for c in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for c in columns:
            r = row["models"].get(c)
            if not isinstance(r, dict):
                cells.append(r or "—")
                continue
            dice = "—" if r["dice"] is None else f"{r['dice']:.3f}"
            cells.append(f"{dice}, {r['named_right']}/{len(r['discs'])}, {', '.join(r['wrong_names']) or 'none'}")
        lines.append(f"| {row['subject']} | {row['crop']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def disc_columns(args: argparse.Namespace) -> list[tuple[str, list[Path | None], bool]]:
    """(column name, model folders, whether LOSO) for every --model-dir (one folder) and --loso (its folds)."""
    columns: list[tuple[str, list[Path | None], bool]] = []
    if args.model_dir or not args.loso:
        dirs = list(args.model_dir or [None])
        columns += [(n, [d], False) for n, d in zip(column_names(dirs), dirs)]
    for item in args.loso:
        name, _, folds = item.partition("=")
        if not name or not folds:
            raise SystemExit(f"--loso {item!r}: expected NAME=DIR,DIR,...")
        columns.append((f"{name} (LOSO)", [Path(f) for f in folds.split(",")], True))
    return columns


def disc_fold_subjects(model_dir: Path | None, subjects: list[str], loso: bool) -> tuple[list[str], list[str] | None]:
    """The subjects a folder scores (a LOSO fold: those it did not train on) and its training cases."""
    train = training_cases(model_dir, task="disc")
    if not loso:
        return subjects, train
    if train is None:
        raise SystemExit(f"--loso: {model_dir}/config.json records no training cases")
    return [s for s in subjects if s not in train], train


def disc_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A markdown table: one row per subject and disc (and the subject's mean), Dice / HD95 per model."""
    head = ["subject", "disc"]
    for c in columns:
        head += [f"{c} Dice", f"{c} HD95 (mm)"]
    head.append("in training set")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["subject"], row["disc"]]
        for c in columns:
            value = row["models"].get(c)
            if isinstance(value, str) or value is None:  # "no model", "failed"
                cells += [value or "—", ""]
            else:
                hd95 = value["hd95"]
                cells += [f"{value['dice']:.3f}", "inf" if hd95 is None or math.isinf(hd95) else f"{hd95:.2f}"]
        cells.append(" / ".join(row["in_training_set"].get(c, "—") for c in columns))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def disc_summary(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Mean over subjects of each column's five-disc mean Dice (and of every disc's Dice)."""
    lines = ["| model | mean Dice over subjects (five discs) | per subject |", "|---|---|---|"]
    for c in columns:
        values = {r["subject"]: r["models"].get(c) for r in rows if r["disc"] == "mean"}
        dice = {s: v["dice"] for s, v in values.items() if isinstance(v, dict)}
        if len(dice) != len(values):
            lines.append(f"| {c} | incomplete | {', '.join(sorted(set(values) - set(dice)))} missing |")
            continue
        per = ", ".join(f"{s} {d:.3f}" for s, d in dice.items())
        lines.append(f"| {c} | {sum(dice.values()) / len(dice):.3f} | {per} |")
    return "\n".join(lines)


def subject_scores(pred: "np.ndarray", truth: "np.ndarray") -> dict[str, dict[str, float]]:
    """{disc name: {dice, hd95}} of each of the five discs, and "mean": their means (HD95 inf when one is missed)."""
    import numpy as np

    from segtool.metrics import distance_metrics, overlap_metrics

    scores = {}
    for value, name in DISC_LABELS.items():
        p, g = pred == value, truth == value
        scores[name] = {"dice": overlap_metrics(p, g, SPACING).dice, "hd95": distance_metrics(p, g, SPACING).hd95}
    per_disc = list(scores.values())
    scores["mean"] = {"dice": float(np.mean([r["dice"] for r in per_disc])),
                      "hd95": float(np.mean([r["hd95"] for r in per_disc]))}
    return scores


def convert_subjects(data: Path, subjects: list[str], folder: Path) -> tuple[dict[str, Path], dict[str, "np.ndarray"]]:
    """Each subject's .mat image as NIfTI in ``folder`` (as scripts/prepare_disc.py converts the training data),
    and its label array: ({subject: image file}, {subject: truth})."""
    import numpy as np
    from scipy.io import loadmat

    prepare_disc = script_module("prepare_disc")  # the same conversion (affine, orientation) as the training data
    images, truths = {}, {}
    for s in subjects:
        mat = loadmat(str(data / f"{s}.mat"))
        prepare_disc.save(np.asarray(mat["I"]), folder / f"{s}.nii.gz")
        images[s] = (folder / f"{s}.nii.gz").resolve()
        truths[s] = np.asarray(mat["GT"])
    return images, truths


def score_run(column: str, outputs: dict, status: str, scored: list[str], train: list[str] | None,
              image_of: dict[str, Path], truths: dict, rows: dict) -> None:
    """Fill ``rows[(subject, disc)]`` of one model folder's run: its scores, "no model" or "failed", and whether
    each subject was in its training set."""
    import nibabel as nib
    import numpy as np

    discs = [*DISC_LABELS.values(), "mean"]
    for s in scored:
        in_train = "—" if status != "ok" else ("?" if train is None else ("yes" if s in train else "no"))
        out = outputs.get(str(image_of[s])) if status == "ok" else None
        for d in discs:
            rows[(s, d)]["in_training_set"][column] = in_train
            if out is None:
                rows[(s, d)]["models"][column] = NO_MODEL if status == NO_MODEL else "failed"
        if out is None:
            continue
        pred = np.asanyarray(nib.load(out).dataobj)
        if pred.shape != truths[s].shape:
            log(f"disc {column} {s}: output shape {pred.shape} != {truths[s].shape}")
            for d in discs:
                rows[(s, d)]["models"][column] = "failed"
            continue
        for d, r in subject_scores(pred, truths[s]).items():
            rows[(s, d)]["models"][column] = r


def score_partial(column: str, model_dir: Path | None, scored: list[str], image_of: dict[str, Path], truths: dict,
                  folder: Path, run_args: list[str], partial: dict) -> None:
    """Fill ``partial[(subject, crop)]`` with one model folder's scores on the crops of DISC_CROPS."""
    import nibabel as nib
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    crops = [(s, *c) for s in scored for c in disc_crops(image_of[s], truths[s], folder)]
    status, outputs, _ = run_segtool([c[2] for c in crops], folder / "out", model_dir, task="disc", extra=run_args)
    for s, name, path, truth in crops:
        row = partial.setdefault((s, name), {"subject": s, "crop": name, "models": {}})
        out = outputs.get(str(path)) if status == "ok" else None
        row["models"][column] = "failed" if out is None else score_crop(np.asanyarray(nib.load(out).dataobj), truth)


def print_disc_report(rows: list[dict[str, Any]], partial: list[dict[str, Any]] | None, columns: list[str]) -> None:
    """The tables: per subject and disc, the summary, and (None: not asked for) the partial fields of view."""
    print(disc_table(rows, columns))
    print("\n" + disc_summary(rows, columns))
    if partial is not None:
        print("\nPartial fields of view (the column cut midway between two discs; Dice of the discs the crop "
              "holds, how many of them are named right (Dice > 0.5), labels given that the crop does not hold):\n")
        print(disc_partial_table(partial, columns))
    print("\nPer disc Dice and HD95 (mm, segtool.metrics, voxel surfaces, the 1 mm grid of SOURCE.md); "
          "mean = over the five discs (HD95 inf when a disc is missed).")


def disc(args: argparse.Namespace) -> int:
    """disc: per subject and per disc, Dice and HD95 (mm) of each --model-dir."""
    data: Path = args.data
    subjects = [s for s in script_module("prepare_disc").SUBJECTS if (data / f"{s}.mat").is_file()]
    if not subjects:
        log(f"disc: no data at {data} (the shared data folder ../shared/data/disc is absent); nothing to do")
        return 0
    plan = disc_columns(args)
    columns = [name for name, _, _ in plan]
    rows = {(s, d): {"subject": s, "disc": d, "models": {}, "in_training_set": {}}
            for s in subjects for d in [*DISC_LABELS.values(), "mean"]}
    partial: dict[tuple[str, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="segtool-accuracy-disc-") as tmp:
        image_of, truths = convert_subjects(data, subjects, Path(tmp))
        runs = [(column, model_dir, loso) for column, dirs, loso in plan for model_dir in dirs]
        for k, (column, model_dir, loso) in enumerate(runs):
            t0 = time.perf_counter()
            scored, train = disc_fold_subjects(model_dir, subjects, loso)
            if not scored:
                continue
            status, outputs, message = run_segtool([image_of[s] for s in scored], Path(tmp) / f"out{k}", model_dir,
                                                   task="disc", extra=args.run_args.split())
            if status != "ok":
                log(f"disc {column}: {status} ({message})")
            score_run(column, outputs, status, scored, train, image_of, truths, rows)
            if status == "ok":
                log(f"disc {column} ({model_dir}): {len(scored)} subject(s) in {time.perf_counter() - t0:.0f} s")
            if args.partial_fov:
                score_partial(column, model_dir, scored, image_of, truths, Path(tmp) / f"crop{k}",
                              args.run_args.split(), partial)
    table = list(rows.values())
    print_disc_report(table, list(partial.values()) if args.partial_fov else None, columns)
    write_json(args.json_out, {"task": "disc", "data": str(data), "columns": columns,
                               "model_dirs": {c: [str(d) if d is not None else None for d in dirs] for c, dirs, _ in plan},
                               "rows": table, "partial_fov": list(partial.values()),
                               "note": "distances in mm; null = infinite (a missed disc)"})
    return 0

"""Accuracy of segtool's models on real data, next to published reference models.

    python benchmarks/accuracy.py spinal-gm [--data ../shared/data/spinal-gm] [--model-dir DIR] [--json out.json]
    python benchmarks/accuracy.py brain-tumour-2d [--data DIR] [--model-dir DIR ...] [--patients A,B] [--run-args '...']
    python benchmarks/accuracy.py brain-tissue [--data ../shared/data/brain-tissue] [--model NAME | --model-dir DIR ...] [--json out.json] (accuracy_brain_tissue.py)
    python benchmarks/accuracy.py brain-tumour [--cv NAME=DIR,DIR,DIR,DIR] [--model-dir DIR ...] (accuracy_brain_tumour.py)

One subcommand per task; `TASKS` maps a task name to the function that benchmarks it
(and `ARGUMENTS` to the function adding its options), so another task is one more
entry in each.

spinal-gm: for every real case of the spinal-gm data (the SCT test subject's t2s,
t2s_uncropped and mt1 images, and the five labelled sessions of the Spinal Cord Gray
Matter Imaging Challenge; see the data folder's SOURCE.md), a markdown table of GM
Dice, HD95 and ASSD (mm, `segtool.metrics`, voxel surfaces, on the native grid) for

(a) segtool's own model, run as ``segtool run spinal-gm`` in a subprocess (the task's
    default model, or ``--model-dir DIR``); "no model" when ``segtool run`` exits 3
    (no weights: the model may not be trained yet);
(b) the published ``challenge`` and (c) ``large`` gmseg models (Perone et al. 2018),
    converted from Keras by `segtool.networks.keras_h5` and run the way SCT's
    ``sct_deepseg_gm`` runs them (benchmarks/gmseg_reference.py: 0.25 mm in-plane,
    200 x 200 slices, per-volume standardisation, p > 0.999);

plus whether the case was in our model's training set (``training.data.train_cases``
of the model folder's config.json; "?" when it cannot be read).

sub-9604 is scored on slices 0-13 only: its cord and GM are labelled on those slices
alone, slices 14-19 show the cord but carry no labels (and one stray GM voxel), so any
correct GM found there would count as false positives. The models still see the
whole volume (SCT standardises with the whole volume's statistics).

brain-tumour-2d: per-patient Dice of the stacked volume through ``segtool run --stack``
(Buda et al. 2019 measure it so), mean and median over the validation patients recorded
in the model's config.json; one column per ``--model-dir`` (attention U-Net beside a
plain U-Net trained the same way); "no model" when ``segtool run`` exits 3.

disc: per subject (ivd_11, ivd_20, ivd_25 of ../shared/data/disc, converted as
scripts/prepare_disc.py does) and per disc, Dice and HD95 (mm) of ``segtool run disc``
for each ``--model-dir`` (repeat it to compare networks in one table; none: the task's
default model); "no model" when ``segtool run`` exits 3:
``python benchmarks/accuracy.py disc --model-dir m/unet --model-dir m/res_se_unet --model-dir m/deeplabv3plus``

clothing: on the validation photos recorded in the first model's config.json (or
``--photos``), per class of the task's 14 (plugins/segtool_clothing), IoU and precision
with the seed's definition (for each class, the IoU = TP/(TP+FP+FN) and precision =
TP/(TP+FP) of each photo whose ground truth contains the class, averaged over those
photos), their 14-class means, and the dataset-level IoU (counts pooled over the
photos), one column group per ``--model-dir``; "no model" when ``segtool run`` exits 3.

brain-tissue (accuracy_brain_tissue.py): DSC per tissue on the vxm T1, its T2-like
inversion and the two combined, plus the seed's MHD and ASSD.

Exits with a message (status 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
for _p in (ROOT, BENCH):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import gmseg_reference as ref  # noqa: E402

from accuracy_brain_tissue import add_brain_tissue_arguments, brain_tissue  # noqa: E402
from accuracy_brain_tumour import add_brain_tumour_arguments, brain_tumour  # noqa: E402
from accuracy_common import (  # noqa: E402
    EXIT_NO_WEIGHTS, NO_MODEL, log, run_segtool, segtool_records, training_cases,
)


# --------------------------------------------------------------------------- segtool's own model


def gm_label(model_dir: Path | None) -> int:
    """The label value of gray matter in the model's outputs (1 unless its config says otherwise)."""
    if model_dir is None:
        return 1
    try:
        labels = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))["labels"]
        for value, name in labels.items():
            if str(name).lower() in ("gray_matter", "grey_matter", "gm"):
                return int(value)
    except Exception:
        pass
    return 1


# --------------------------------------------------------------------------- spinal-gm


def add_spinal_gm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=ref.DEFAULT_DATA,
                        help="the spinal-gm data folder (default: ../shared/data/spinal-gm)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="segtool model folder to score (default: the task's default model)")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write all numbers here")
    parser.add_argument("--published", default=",".join(ref.PUBLISHED),
                        help="published models to run in SCT mode (comma-separated; '' for none)")


def _cell(r: dict | None) -> tuple[str, str, str]:
    if r is None:
        return ("—", "—", "—")
    f = lambda x: "inf" if math.isinf(x) else f"{x:.2f}"  # noqa: E731
    return (f"{r['dice']:.3f}", f(r["hd95"]), f(r["assd"]))


def spinal_gm_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A markdown table: one row per case, Dice / HD95 / ASSD per model column."""
    head = ["case"]
    for c in columns:
        head += [f"{c} Dice", f"{c} HD95 (mm)", f"{c} ASSD (mm)"]
    head.append("in our training set")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["case"] + (f" ({row['note']})" if row.get("note") else "")]
        for c in columns:
            value = row["models"].get(c)
            if isinstance(value, str):  # "no model", "failed", ...
                cells += [value, "", ""]
            else:
                cells += list(_cell(value))
        cells.append(row["in_training_set"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spinal_gm(args: argparse.Namespace) -> int:
    data: Path = args.data
    if not (data / "weights").is_dir() or not (data / "t2s").is_dir():
        log(f"spinal-gm: no data at {data} (the shared data folder ../shared/data/spinal-gm is absent); nothing to do")
        return 0
    published = [m for m in (args.published or "").split(",") if m]
    unknown = sorted(set(published) - set(ref.PUBLISHED))
    if unknown:
        log(f"spinal-gm: unknown published model(s) {', '.join(unknown)}; choose from {', '.join(ref.PUBLISHED)}")
        return 2

    cases = list(ref.CASES)
    arrays = {c.name: ref.case_arrays(data, c) for c in cases}
    ours_name = f"segtool ({args.model_dir.name})" if args.model_dir else "segtool"
    scores: dict[str, dict[str, Any]] = {c.name: {} for c in cases}

    # (a) segtool's own model, through the CLI
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="segtool-accuracy-") as tmp:
        images = [(data / c.image).resolve() for c in cases]
        status, outputs, message = run_segtool(images, Path(tmp), args.model_dir)
        if status == NO_MODEL:
            log(f"{ours_name}: no model ({message})")
        elif status == "error":
            log(f"{ours_name}: {message}")
        import nibabel as nib
        import numpy as np

        label = gm_label(args.model_dir)
        for case, image in zip(cases, images):
            if status == NO_MODEL:
                scores[case.name][ours_name] = NO_MODEL
                continue
            out = outputs.get(str(image))
            if out is None:
                scores[case.name][ours_name] = "failed"
                continue
            img, gt, spacing = arrays[case.name]
            pred = np.asanyarray(nib.load(out).dataobj)
            if pred.shape != gt.shape:
                scores[case.name][ours_name] = "failed"
                log(f"{ours_name} {case.name}: output shape {pred.shape} != {gt.shape}")
                continue
            scores[case.name][ours_name] = ref.score(pred == label, gt, spacing, case.slices)
    if status == "ok":
        log(f"{ours_name}: {len(cases)} cases in {time.perf_counter() - t0:.0f} s")

    # (b), (c) the published models in SCT mode
    def progress(model, case, r, seconds):
        log(f"{model:9s} {case:14s} Dice {r['dice']:.3f}  ({seconds:.1f} s)")

    results = ref.run_published(data, published, cases, on_case=progress) if published else {}
    for model, per_case in results.items():
        for case_name, r in per_case.items():
            scores[case_name][f"{model} (SCT mode)"] = r

    train = training_cases(args.model_dir)
    columns = [ours_name] + [f"{m} (SCT mode)" for m in published]
    rows = []
    for case in cases:
        if status == NO_MODEL:
            in_train = "—"
        else:
            in_train = "?" if train is None else ("yes" if case.name in train else "no")
        rows.append({"case": case.name, "note": case.note, "models": scores[case.name], "in_training_set": in_train,
                     "sct_dice": dict(zip(ref.PUBLISHED, ref.SCT_DICE[case.name]))})
    print(spinal_gm_table(rows, columns))
    print("\nGM Dice, HD95 and ASSD (mm) on the native grid; SCT mode = the published Keras models run as "
          "sct_deepseg_gm runs them (benchmarks/gmseg_reference.py). 9604: labelled slices 0-13 only.")
    if args.json_out is not None:
        def clean(value):
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return None if isinstance(value, float) and math.isinf(value) else value

        payload = {"task": "spinal-gm", "data": str(data), "model_dir": str(args.model_dir) if args.model_dir else None,
                   "columns": columns, "rows": clean(rows),
                   "note": "distances in mm; null = infinite (an empty prediction)"}
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


# --------------------------------------------------------------------------- brain-tumour-2d

LGG_DATA = ROOT.parent / "shared" / "data" / "brain-tumour" / "lgg_kaggle_3m"
#: The patient of an LGG case (slice) name: its folder, TCGA_<institution>_<patient>_<date> (scripts/prepare_lgg.py).
LGG_PATIENT = r"^(TCGA_[A-Z0-9]+_[A-Z0-9]+_\d+)_\d+$"


def add_brain_tumour_2d_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=LGG_DATA,
                        help="the lgg_kaggle_3m folder of patient folders (default: ../shared/data/brain-tumour/lgg_kaggle_3m)")
    parser.add_argument("--model-dir", type=Path, action="append", default=None,
                        help="segtool model folder to score; repeat to compare (e.g. attention U-Net and plain U-Net); "
                             "default: the task's default model")
    parser.add_argument("--patients", default=None,
                        help="comma-separated patient folders to score (default: the validation patients recorded "
                             "in the first model's config.json)")
    parser.add_argument("--run-args", default="",
                        help="extra `segtool run` options, e.g. --run-args='--keep-largest --min-size 50'")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write all numbers here")


def validation_patients(model_dir: Path | None) -> list[str] | None:
    """The patients of ``training.data.validation_cases`` in the model's config.json, or None when unknown."""
    import re

    if model_dir is None:
        return None
    try:
        training = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")).get("training") or {}
        cases = (training.get("data") or {}).get("validation_cases")
    except Exception:
        return None
    if not cases:
        return None
    patients = set()
    for case in cases:
        match = re.match(LGG_PATIENT, str(case))
        patients.add(match.group(1) if match else str(case))
    return sorted(patients)


def stack_dice(pred: "np.ndarray", truth: "np.ndarray") -> float:
    """Dice of two binary volumes; both empty counts as 1 (nothing to find, nothing found)."""
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def run_stacks(folders: list[Path], out_dir: Path, model_dir: Path | None, extra: list[str], timeout: float = 3600):
    """``segtool run brain-tumour-2d --stack FOLDERS --output-dir OUT --json``: (status, records, message, seconds)."""
    t0 = time.perf_counter()
    status, records, last = segtool_records(
        "brain-tumour-2d", ["--stack", *map(str, folders), "--output-dir", str(out_dir), *extra], model_dir, timeout)
    seconds = time.perf_counter() - t0
    if status == EXIT_NO_WEIGHTS:
        return NO_MODEL, [], last, seconds
    if status not in (0, 1) or not records:
        return "error", records, f"segtool run exited {status}: {last}", seconds
    return "ok", records, last, seconds


def score_patient(folder: Path, records: dict[str, dict]) -> dict[str, Any] | str:
    """Dice of one patient's stacked prediction against its stacked masks, or "failed"."""
    import numpy as np
    from PIL import Image

    slices = stack_files_of(folder)
    preds, truths, seconds = [], [], 0.0
    for image in slices:
        record = records.get(str(image.resolve()))
        if record is None or record.get("status") != "done":
            return "failed"
        seconds += float(record.get("seconds") or 0.0)
        with Image.open(record["output"]) as im:
            preds.append(np.asarray(im) > 0)
        with Image.open(image.with_name(f"{image.stem}_mask.tif")) as im:
            truths.append(np.asarray(im) > 0)
    pred, truth = np.stack(preds, -1), np.stack(truths, -1)
    if pred.shape != truth.shape:
        return "failed"
    return {"dice": stack_dice(pred, truth), "slices": len(slices), "tumour_pixels": int(truth.sum()),
            "predicted_pixels": int(pred.sum()), "seconds": seconds}


def brain_tumour_2d(args: argparse.Namespace) -> int:
    """brain-tumour-2d: per-patient Dice of the stacked volume (segtool run --stack), mean and median.

    Each patient folder of the LGG data is segmented with ``segtool run brain-tumour-2d
    --stack`` (one call per model, in a subprocess; slices in slice-number order, postprocessed
    in 3D) and its slices' masks stacked likewise; Dice per patient (both empty: 1), then the
    mean and median over the patients: by default the validation patients recorded in the
    first model's config.json. "no model" when `segtool run` exits 3.
    """
    import shlex
    import statistics

    data: Path = args.data
    if not data.is_dir():
        log(f"brain-tumour-2d: no data at {data} (see ../shared/data/brain-tumour/SOURCE.md); nothing to do")
        return 0
    model_dirs: list[Path | None] = list(args.model_dir or [None])
    names = {m: (f"segtool ({m.name})" if m is not None else "segtool") for m in model_dirs}
    if args.patients:
        patients = [p.strip() for p in args.patients.split(",") if p.strip()]
        source = "--patients"
    else:
        patients = validation_patients(model_dirs[0])
        source = "validation patients of the model"
        if patients is None:
            patients = sorted(p.name for p in data.iterdir() if p.is_dir() and p.name.startswith("TCGA_"))
            source = "all patients (no validation split recorded)"
    missing = [p for p in patients if not (data / p).is_dir()]
    if missing:
        log(f"brain-tumour-2d: patient folder(s) not in {data}: {', '.join(missing[:5])}")
        return 2
    folders = [data / p for p in patients]
    extra = shlex.split(args.run_args or "")
    scores: dict[str, dict[str, Any]] = {p: {} for p in patients}
    summary: dict[str, Any] = {}
    for model_dir in model_dirs:
        name = names[model_dir]
        with tempfile.TemporaryDirectory(prefix="segtool-accuracy-") as tmp:
            status, records, message, seconds = run_stacks(folders, Path(tmp), model_dir, extra)
            if status == NO_MODEL:
                log(f"{name}: no model ({message})")
                summary[name] = NO_MODEL
                for p in patients:
                    scores[p][name] = NO_MODEL
                continue
            if status == "error":
                log(f"{name}: {message}")
            by_input = {str(Path(r["input"]).resolve()): r for r in records}
            for folder in folders:
                scores[folder.name][name] = score_patient(folder, by_input)
        dice = [s[name]["dice"] for s in scores.values() if isinstance(s.get(name), dict)]
        summary[name] = {"patients": len(dice), "failed": len(patients) - len(dice), "seconds": round(seconds, 1),
                         "mean_dice": statistics.fmean(dice) if dice else None,
                         "median_dice": statistics.median(dice) if dice else None}
        log(f"{name}: {len(patients)} patients in {seconds:.0f} s")

    columns = [names[m] for m in model_dirs]
    if all(summary[c] == NO_MODEL for c in columns):
        print(f"brain-tumour-2d: no model ({', '.join(columns)}): train one with `segtool train brain-tumour-2d` "
              "(scripts/prepare_lgg.py lays out the data), then pass --model-dir")
        return 0
    head = ["patient", "slices"] + [f"{c} Dice" for c in columns] + [f"{c} s" for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in patients:
        cells = [p, str(len(stack_files_of(data / p)))]
        cells += [c if isinstance(c := scores[p].get(col), str) else f"{c['dice']:.3f}" for col in columns]
        cells += ["" if isinstance(c := scores[p].get(col), str) else f"{c['seconds']:.1f}" for col in columns]
        lines.append("| " + " | ".join(cells) + " |")
    for label, key in (("mean", "mean_dice"), ("median", "median_dice")):
        cells = [f"**{label}**", ""]
        for col in columns:
            s = summary[col]
            cells.append(s if isinstance(s, str) else ("—" if s[key] is None else f"**{s[key]:.3f}**"))
        lines.append("| " + " | ".join(cells + [""] * len(columns)) + " |")
    print("\n".join(lines))
    print(f"\nPer-patient Dice of the stacked volume (segtool run --stack{' ' + args.run_args if args.run_args else ''}); "
          f"patients: {source} ({len(patients)}). Seconds: segtool run's time per patient (model loaded once).")
    if args.json_out is not None:
        payload = {"task": "brain-tumour-2d", "data": str(data), "patients": patients, "patients_from": source,
                   "model_dirs": [str(m) if m else None for m in model_dirs], "run_args": args.run_args,
                   "summary": summary, "per_patient": scores}
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


def stack_files_of(folder: Path) -> list[Path]:
    from segtool.stacking import stack_files

    return stack_files(folder)


# --------------------------------------------------------------------------- disc

DISC_LABELS = {1: "L5-S1", 2: "L4-L5", 3: "L3-L4", 4: "L2-L3", 5: "L1-L2"}


def add_disc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "disc",
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

    from segtool import metrics as M

    seen = [int(v) for v in np.unique(truth) if v in DISC_LABELS and (truth == v).sum() > 0]
    dice = {DISC_LABELS[v]: M.overlap_metrics(pred == v, truth == v, (1.0, 1.0, 1.0)).dice for v in seen}
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
        names = [d.name if d is not None else "default" for d in dirs]
        if len(set(names)) != len(names):
            names = [str(d) if d is not None else "default" for d in dirs]
        columns += [(n, [d], False) for n, d in zip(names, dirs)]
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


def disc(args: argparse.Namespace) -> int:
    """disc: per subject and per disc, Dice and HD95 (mm) of each --model-dir."""
    import nibabel as nib
    import numpy as np
    from scipy.io import loadmat

    from segtool import metrics as M

    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    import prepare_disc  # the same conversion (affine, orientation) as the training data

    data: Path = args.data
    subjects = [s for s in prepare_disc.SUBJECTS if (data / f"{s}.mat").is_file()]
    if not subjects:
        log(f"disc: no data at {data} (the shared data folder ../shared/data/disc is absent); nothing to do")
        return 0
    plan = disc_columns(args)
    columns = [name for name, _, _ in plan]
    discs = list(DISC_LABELS.values()) + ["mean"]
    rows = {(s, d): {"subject": s, "disc": d, "models": {}, "in_training_set": {}} for s in subjects for d in discs}
    spacing = (1.0, 1.0, 1.0)
    partial: dict[tuple[str, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="segtool-accuracy-disc-") as tmp:
        images, truths = [], {}
        for s in subjects:
            mat = loadmat(str(data / f"{s}.mat"))
            prepare_disc.save(np.asarray(mat["I"]), Path(tmp) / f"{s}.nii.gz")
            images.append((Path(tmp) / f"{s}.nii.gz").resolve())
            truths[s] = np.asarray(mat["GT"])
        image_of = dict(zip(subjects, images))
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
            for s in scored:
                image = image_of[s]
                in_train = "—" if status != "ok" else ("?" if train is None else ("yes" if s in train else "no"))
                out = outputs.get(str(image)) if status == "ok" else None
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
                scores = []
                for value, name in DISC_LABELS.items():
                    p, g = pred == value, truths[s] == value
                    r = {"dice": M.overlap_metrics(p, g, spacing).dice, "hd95": M.distance_metrics(p, g, spacing).hd95}
                    rows[(s, name)]["models"][column] = r
                    scores.append(r)
                rows[(s, "mean")]["models"][column] = {"dice": float(np.mean([r["dice"] for r in scores])),
                                                       "hd95": float(np.mean([r["hd95"] for r in scores]))}
            if status == "ok":
                log(f"disc {column} ({model_dir}): {len(scored)} subject(s) in {time.perf_counter() - t0:.0f} s")
            if args.partial_fov:
                crops = [(s, *c) for s in scored for c in disc_crops(image_of[s], truths[s], Path(tmp))]
                status, outputs, message = run_segtool([c[2] for c in crops], Path(tmp) / f"crop{k}", model_dir,
                                                       task="disc", extra=args.run_args.split())
                for s, name, path, truth in crops:
                    row = partial.setdefault((s, name), {"subject": s, "crop": name, "models": {}})
                    out = outputs.get(str(path)) if status == "ok" else None
                    row["models"][column] = "failed" if out is None else score_crop(
                        np.asanyarray(nib.load(out).dataobj), truth)
    table = list(rows.values())
    print(disc_table(table, columns))
    print("\n" + disc_summary(table, columns))
    if args.partial_fov:
        print("\nPartial fields of view (the column cut midway between two discs; Dice of the discs the crop "
              "holds, how many of them are named right (Dice > 0.5), labels given that the crop does not hold):\n")
        print(disc_partial_table(list(partial.values()), columns))
    print("\nPer disc Dice and HD95 (mm, segtool.metrics, voxel surfaces, the 1 mm grid of SOURCE.md); "
          "mean = over the five discs (HD95 inf when a disc is missed).")
    if args.json_out is not None:
        def clean(value):
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return None if isinstance(value, float) and math.isinf(value) else value

        payload = {"task": "disc", "data": str(data), "columns": columns,
                   "model_dirs": {c: [str(d) if d is not None else None for d in dirs] for c, dirs, _ in plan},
                   "rows": clean(table), "partial_fov": list(partial.values()),
                   "note": "distances in mm; null = infinite (a missed disc)"}
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


# --------------------------------------------------------------------------- clothing

CLOTHING_DATA = ROOT.parent / "shared" / "data" / "clothing"


def add_clothing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=CLOTHING_DATA,
                        help="the clothing data folder (photos/, annotations/pixel-level/; default: ../shared/data/clothing)")
    parser.add_argument("--model-dir", type=Path, action="append", default=None,
                        help="segtool model folder to score; repeat to compare (e.g. deeplabv3plus and a plain U-Net); "
                             "default: the task's default model")
    parser.add_argument("--photos", default=None,
                        help="comma-separated photo names or @FILE (default: the validation photos recorded in the "
                             "first model's config.json)")
    parser.add_argument("--run-args", default="",
                        help="extra `segtool run` arguments, e.g. --run-args=--tta (a lone option needs the '=')")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write all numbers here")


def clothing_classes() -> tuple[dict[int, str], dict[int, int]]:
    """({value: class} for 0..13, {CCP tag: class}) from the task's one table (plugins/segtool_clothing)."""
    plugins = ROOT / "plugins"
    if str(plugins) not in sys.path:
        sys.path.insert(0, str(plugins))
    from segtool_clothing import CLASSES, ccp_labels_map

    return {value: name for value, name, _, _ in CLASSES}, ccp_labels_map()


def clothing_counts(pred: "np.ndarray", truth: "np.ndarray", classes: int) -> "np.ndarray":
    """(classes, 3) TP, FP, FN per class value 0..classes-1 of one photo."""
    import numpy as np

    k = classes
    confusion = np.bincount(truth.astype(np.int64).ravel() * k + pred.astype(np.int64).ravel(),
                            minlength=k * k).reshape(k, k)  # rows: truth, columns: prediction
    tp = np.diag(confusion)
    return np.stack([tp, confusion.sum(0) - tp, confusion.sum(1) - tp], axis=1)


def seed_scores(per_photo: "list[np.ndarray]") -> dict[str, Any]:
    """The seed's per-class IoU and precision, and the dataset-level (pooled) IoU and precision.

    ``per_photo``: (classes, 3) TP/FP/FN of each photo. Seed's definition: for each class,
    the IoU = TP/(TP+FP+FN) (precision = TP/(TP+FP)) of each photo whose ground truth
    contains the class, averaged over those photos (None when no photo contains it; a
    photo with no predicted pixel of the class has precision 0). Dataset level: the
    counts pooled over all photos, then the same ratios. Means are over the classes
    with a value (all 14 when each occurs).
    """
    import numpy as np

    counts = np.stack(per_photo)  # (photos, classes, 3)
    classes = counts.shape[1]
    iou, precision, photos = [], [], []
    for c in range(classes):
        tp, fp, fn = counts[:, c, 0].astype(float), counts[:, c, 1].astype(float), counts[:, c, 2].astype(float)
        present = (tp + fn) > 0
        photos.append(int(present.sum()))
        if not present.any():
            iou.append(None)
            precision.append(None)
            continue
        iou.append(float(np.mean(tp[present] / (tp + fp + fn)[present])))
        predicted = tp[present] + fp[present]
        precision.append(float(np.mean(np.where(predicted > 0, tp[present] / np.maximum(predicted, 1), 0.0))))
    pooled = counts.sum(0).astype(float)
    tp, fp, fn = pooled[:, 0], pooled[:, 1], pooled[:, 2]
    ds_iou = [float(t / (t + p + n)) if t + p + n > 0 else None for t, p, n in zip(tp, fp, fn)]
    ds_precision = [float(t / (t + p)) if t + p > 0 else None for t, p in zip(tp, fp)]

    def mean(values):
        kept = [v for v in values if v is not None]
        return float(np.mean(kept)) if kept else None

    return {"iou": iou, "precision": precision, "photos": photos, "mean_iou": mean(iou),
            "mean_precision": mean(precision), "dataset_iou": ds_iou, "dataset_precision": ds_precision,
            "mean_dataset_iou": mean(ds_iou), "mean_dataset_precision": mean(ds_precision)}


def clothing_photos(args: argparse.Namespace, model_dirs: list[Path | None], data: Path) -> tuple[list[str], str]:
    if args.photos:
        text = args.photos
        if text.startswith("@"):
            lines = Path(text[1:]).read_text(encoding="utf-8").splitlines()
            text = ",".join(line.split("#", 1)[0] for line in lines)
        return [p.strip() for p in text.split(",") if p.strip()], "--photos"
    folder = model_dirs[0] if model_dirs[0] is not None else ROOT / "plugins" / "segtool_clothing"  # the bundled model
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
        cases = (config.get("training") or {}).get("data", {}).get("validation_cases")
        if cases:
            return [str(c) for c in cases], "validation photos of the model"
    except Exception:  # no model folder, no config: fall back
        pass
    return sorted(p.stem for p in (data / "annotations" / "pixel-level").glob("*.mat")), \
        "all annotated photos (no validation split recorded)"


def clothing_table(names: dict[int, str], summary: dict[str, Any], columns: list[str]) -> str:
    """The seed's table: one row per class, IoU and precision per model column, then the 14-class means."""
    def f(v):
        return "—" if v is None else f"{v:.3f}"

    head = ["value", "class", "photos"]
    for c in columns:
        head += [f"{c} IoU", f"{c} precision", f"{c} dataset IoU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    first = next((summary[c] for c in columns if isinstance(summary[c], dict)), None)
    for value, name in names.items():
        cells = [str(value), name, str(first["photos"][value]) if first else ""]
        for c in columns:
            s = summary[c]
            cells += [s, "", ""] if isinstance(s, str) else [f(s["iou"][value]), f(s["precision"][value]),
                                                             f(s["dataset_iou"][value])]
        lines.append("| " + " | ".join(cells) + " |")
    scored = sum(1 for v in (first or {}).get("iou", []) if v is not None)
    cells = ["", f"**mean ({scored} of {len(names)} classes present)**", ""]
    for c in columns:
        s = summary[c]
        cells += [s, "", ""] if isinstance(s, str) else [f"**{f(s['mean_iou'])}**", f"**{f(s['mean_precision'])}**",
                                                         f"**{f(s['mean_dataset_iou'])}**"]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def clothing(args: argparse.Namespace) -> int:
    """clothing: per-class IoU and precision (the seed's definition) and dataset-level IoU, per --model-dir."""
    import numpy as np
    from PIL import Image
    from scipy.io import loadmat

    data: Path = args.data
    if not (data / "annotations" / "pixel-level").is_dir():
        log(f"clothing: no data at {data} (see ../shared/data/clothing/SOURCE.md); nothing to do")
        return 0
    names, tag_map = clothing_classes()
    lookup = np.zeros(256, np.int64)
    for tag, value in tag_map.items():
        lookup[tag] = value
    model_dirs: list[Path | None] = list(args.model_dir or [None])
    columns = [d.name if d is not None else "default" for d in model_dirs]
    if len(set(columns)) != len(columns):
        columns = [str(d) if d is not None else "default" for d in model_dirs]
    photos, source = clothing_photos(args, model_dirs, data)
    missing = [p for p in photos if not (data / "photos" / f"{p}.jpg").is_file()]
    if missing:
        log(f"clothing: photo(s) not in {data / 'photos'}: {', '.join(missing[:5])}")
        return 2
    images = [(data / "photos" / f"{p}.jpg").resolve() for p in photos]
    summary: dict[str, Any] = {}
    for k, (model_dir, column) in enumerate(zip(model_dirs, columns)):
        with tempfile.TemporaryDirectory(prefix="segtool-accuracy-clothing-") as tmp:
            t0 = time.perf_counter()
            status, outputs, message = run_segtool(images, Path(tmp), model_dir, task="clothing", timeout=7200,
                                                   extra=args.run_args.split())
            seconds = time.perf_counter() - t0
            if status == NO_MODEL:
                log(f"clothing {column}: no model ({message})")
                summary[column] = NO_MODEL
                continue
            if status == "error":
                log(f"clothing {column}: {message}")
            counts, failed = [], []
            for name, image in zip(photos, images):
                out = outputs.get(str(image))
                if out is None:
                    failed.append(name)
                    continue
                with Image.open(out) as im:
                    pred = np.asarray(im).astype(np.int64)
                truth = lookup[np.asarray(loadmat(str(data / "annotations" / "pixel-level" / f"{name}.mat"))["groundtruth"])]
                if pred.shape != truth.shape:
                    log(f"clothing {column} {name}: output shape {pred.shape} != {truth.shape}")
                    failed.append(name)
                    continue
                counts.append(clothing_counts(np.clip(pred, 0, len(names) - 1), truth, len(names)))
            if not counts:
                summary[column] = "failed"
                continue
            summary[column] = dict(seed_scores(counts), scored=len(counts), failed=failed, seconds=round(seconds, 1))
            log(f"clothing {column}: {len(counts)} photos in {seconds:.0f} s")
    if all(summary[c] == NO_MODEL for c in columns):
        print(f"clothing: no model ({', '.join(columns)}): train one with `segtool train clothing` "
              "(scripts/prepare_clothing.py lays out the data), then pass --model-dir")
        return 0
    print(clothing_table(names, summary, columns))
    print(f"\nPhotos: {source} ({len(photos)}). IoU and precision: the seed's definition (per class, averaged over "
          "the photos whose ground truth contains the class); dataset IoU: counts pooled over all photos. "
          "Ground truth: CCP tags merged by the clothing task's table.")
    if args.json_out is not None:
        payload = {"task": "clothing", "data": str(data), "photos": photos, "photos_from": source,
                   "classes": {str(k): v for k, v in names.items()}, "columns": columns,
                   "model_dirs": [str(d) if d is not None else None for d in model_dirs], "summary": summary}
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


# --------------------------------------------------------------------------- registry and CLI

#: task -> the function that benchmarks it (takes the parsed arguments, returns the exit status)
TASKS: dict[str, Callable[[argparse.Namespace], int]] = {
    "spinal-gm": spinal_gm, "brain-tumour-2d": brain_tumour_2d, "disc": disc, "clothing": clothing,
    "brain-tissue": brain_tissue, "brain-tumour": brain_tumour,
}
#: task -> the function that adds its options to its subcommand
ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "spinal-gm": add_spinal_gm_arguments,
    "brain-tumour-2d": add_brain_tumour_2d_arguments,
    "disc": add_disc_arguments,
    "clothing": add_clothing_arguments,
    "brain-tissue": add_brain_tissue_arguments,
    "brain-tumour": add_brain_tumour_arguments,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    for name, run in TASKS.items():
        doc = (sys.modules[run.__module__].__doc__ or "") if run.__doc__ is None else run.__doc__
        p = sub.add_parser(name, help=f"benchmark {name}", description=doc.split("\n\n")[0])
        ARGUMENTS.get(name, lambda _p: None)(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return TASKS[args.task](args)


if __name__ == "__main__":
    sys.exit(main())

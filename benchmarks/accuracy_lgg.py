"""brain-tumour-2d: per-patient Dice of the stacked LGG volume through ``segtool run --stack``, mean and median.

    python benchmarks/accuracy.py brain-tumour-2d [--data DIR] [--model-dir DIR ...] [--patients A,B]
                                                  [--run-args '...'] [--per-slice] [--json out.json]

Each patient folder of the LGG data (lgg_kaggle_3m) is segmented with ``segtool run
brain-tumour-2d --stack`` (one call per model, in a subprocess; slices in slice-number
order, postprocessed in 3D) and its slices' masks stacked likewise; Dice per patient
(`segtool.metrics`; both empty: 1), as Buda et al. 2019 measure it, then the mean and
median over the patients: by default the validation patients recorded in the first
model's config.json. One column per ``--model-dir`` (attention U-Net beside a plain
U-Net trained the same way); "no model" when ``segtool run`` exits 3. ``--per-slice`` runs
every slice alone instead (no --stack, the largest component kept per slice) and stacks the
masks the same way: what a user who segments slices one by one gets.
"""

from __future__ import annotations

import argparse
import re
import shlex
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from accuracy_common import (
    EXIT_NO_WEIGHTS, NO_MODEL, SHARED_DATA, log, segtool_records, validation_cases, write_json,
)

LGG_DATA = SHARED_DATA / "brain-tumour" / "lgg_kaggle_3m"
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
    parser.add_argument("--per-slice", action="store_true",
                        help="run each slice alone (segtool run SLICE..., no --stack: the largest component per "
                             "slice), then stack the masks for the per-patient Dice")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write all numbers here")


def validation_patients(model_dir: Path | None) -> list[str] | None:
    """The patients of ``training.data.validation_cases`` in the model's config.json, or None when unknown."""
    cases = validation_cases(model_dir)
    if not cases:
        return None
    patients = set()
    for case in cases:
        match = re.match(LGG_PATIENT, case)
        patients.add(match.group(1) if match else case)
    return sorted(patients)


def stack_files_of(folder: Path) -> list[Path]:
    from segtool.stacking import stack_files

    return stack_files(folder)


def run_stacks(folders: list[Path], out_dir: Path, model_dir: Path | None, extra: list[str], timeout: float = 3600,
               per_slice: bool = False):
    """``segtool run brain-tumour-2d --stack FOLDERS --output-dir OUT --json`` (with ``per_slice``: every slice
    file of the folders, no --stack): (status, records, message, seconds)."""
    inputs = [str(f) for folder in folders for f in stack_files_of(folder)] if per_slice \
        else ["--stack", *map(str, folders)]
    t0 = time.perf_counter()
    status, records, last = segtool_records(
        "brain-tumour-2d", [*inputs, "--output-dir", str(out_dir), *extra], model_dir, timeout)
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

    from segtool.metrics import overlap_metrics

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
    return {"dice": overlap_metrics(pred, truth).dice, "slices": len(slices), "tumour_pixels": int(truth.sum()),
            "predicted_pixels": int(pred.sum()), "seconds": seconds}


def patients_to_score(args: argparse.Namespace, first_model: Path | None) -> tuple[list[str], str]:
    """(patient folders, where the list came from): --patients, the model's validation patients, or all."""
    if args.patients:
        return [p.strip() for p in args.patients.split(",") if p.strip()], "--patients"
    patients = validation_patients(first_model)
    if patients is not None:
        return patients, "validation patients of the model"
    return (sorted(p.name for p in args.data.iterdir() if p.is_dir() and p.name.startswith("TCGA_")),
            "all patients (the model records no validation split; the bundled one trained on all 45: "
            "not a held-out figure)")


def lgg_table(data: Path, patients: list[str], scores: dict, summary: dict, columns: list[str]) -> str:
    """Markdown: one row per patient (Dice and seconds per column), then the mean and median rows."""
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
    return "\n".join(lines)


def score_model(folders: list[Path], model_dir: Path | None, extra: list[str], name: str,
                scores: dict[str, dict[str, Any]], per_slice: bool = False) -> dict[str, Any] | str:
    """Score one model on every patient folder into ``scores[patient][name]``; its summary (or "no model")."""
    with tempfile.TemporaryDirectory(prefix="segtool-accuracy-") as tmp:
        status, records, message, seconds = run_stacks(folders, Path(tmp), model_dir, extra, per_slice=per_slice)
        if status == NO_MODEL:
            log(f"{name}: no model ({message})")
            for folder in folders:
                scores[folder.name][name] = NO_MODEL
            return NO_MODEL
        if status == "error":
            log(f"{name}: {message}")
        by_input = {str(Path(r["input"]).resolve()): r for r in records}
        for folder in folders:
            scores[folder.name][name] = score_patient(folder, by_input)
    dice = [s[name]["dice"] for s in scores.values() if isinstance(s.get(name), dict)]
    log(f"{name}: {len(folders)} patients in {seconds:.0f} s")
    return {"patients": len(dice), "failed": len(folders) - len(dice), "seconds": round(seconds, 1),
            "mean_dice": statistics.fmean(dice) if dice else None,
            "median_dice": statistics.median(dice) if dice else None}


def brain_tumour_2d(args: argparse.Namespace) -> int:
    """brain-tumour-2d: per-patient Dice of the stacked volume (segtool run --stack), mean and median."""
    data: Path = args.data
    if not data.is_dir():
        log(f"brain-tumour-2d: no data at {data} (see ../shared/data/brain-tumour/SOURCE.md); nothing to do")
        return 0
    model_dirs: list[Path | None] = list(args.model_dir or [None])
    names = {m: (f"segtool ({m.name})" if m is not None else "segtool") for m in model_dirs}
    patients, source = patients_to_score(args, model_dirs[0])
    missing = [p for p in patients if not (data / p).is_dir()]
    if missing:
        log(f"brain-tumour-2d: patient folder(s) not in {data}: {', '.join(missing[:5])}")
        return 2
    folders = [data / p for p in patients]
    extra = shlex.split(args.run_args or "")
    scores: dict[str, dict[str, Any]] = {p: {} for p in patients}
    per_slice = args.per_slice
    summary = {names[m]: score_model(folders, m, extra, names[m], scores, per_slice) for m in model_dirs}
    columns = [names[m] for m in model_dirs]
    if all(summary[c] == NO_MODEL for c in columns):
        print(f"brain-tumour-2d: no model ({', '.join(columns)}): train one with `segtool train brain-tumour-2d` "
              "(scripts/prepare_lgg.py lays out the data), then pass --model-dir")
        return 0
    print(lgg_table(data, patients, scores, summary, columns))
    how = "each slice run alone (segtool run SLICE...)" if per_slice else "segtool run --stack"
    print(f"\nPer-patient Dice of the stacked volume ({how}{' ' + args.run_args if args.run_args else ''}); "
          f"patients: {source} ({len(patients)}). Seconds: segtool run's time per patient (model loaded once).")
    write_json(args.json_out, {"task": "brain-tumour-2d", "data": str(data), "patients": patients,
                               "patients_from": source, "model_dirs": [str(m) if m else None for m in model_dirs],
                               "run_args": args.run_args, "per_slice": per_slice, "summary": summary,
                               "per_patient": scores})
    return 0

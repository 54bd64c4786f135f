"""spinal-gm: GM Dice, HD95 and ASSD of segtool's model and of the published gmseg models, per real case.

    python benchmarks/accuracy.py spinal-gm [--data ../shared/data/spinal-gm] [--model-dir DIR] [--json out.json]
                                            [--published challenge,large]

For every real case of the spinal-gm data (the SCT test subject's t2s, t2s_uncropped and
mt1 images, and the five labelled sessions of the Spinal Cord Gray Matter Imaging
Challenge; see the data folder's SOURCE.md), a markdown table of GM Dice, HD95 and ASSD
(mm, `segtool.metrics`, voxel surfaces, on the native grid) for

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
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import gmseg_reference as ref
from accuracy_common import NO_MODEL, log, run_segtool, training_cases, write_json

#: Label names that mean gray matter in a model's config.json
GM_NAMES = ("gray_matter", "grey_matter", "gm")


def gm_label(model_dir: Path | None) -> int:
    """The label value of gray matter in the model's outputs (1 unless its config says otherwise)."""
    if model_dir is None:
        return 1
    config = Path(model_dir) / "config.json"
    try:
        labels = json.loads(config.read_text(encoding="utf-8"))["labels"]
        for value, name in labels.items():
            if str(name).lower() in GM_NAMES:
                return int(value)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        # no or unreadable config.json, no "labels" table, or a malformed one: say so and score label 1
        log(f"spinal-gm: no gray-matter label read from {config} ({type(err).__name__}: {err}); scoring label 1")
    return 1


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


def score_ours(data: Path, cases: list, arrays: dict, model_dir: Path | None, column: str) -> tuple[str, dict]:
    """``segtool run spinal-gm`` on every case (one subprocess): (status, {case: score, "no model" or "failed"})."""
    import nibabel as nib
    import numpy as np

    t0 = time.perf_counter()
    scores: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="segtool-accuracy-") as tmp:
        images = [(data / c.image).resolve() for c in cases]
        status, outputs, message = run_segtool(images, Path(tmp), model_dir)
        if status != "ok":
            log(f"{column}: {'no model (' + message + ')' if status == NO_MODEL else message}")
        label = gm_label(model_dir)
        for case, image in zip(cases, images):
            out = outputs.get(str(image))
            if status == NO_MODEL or out is None:
                scores[case.name] = NO_MODEL if status == NO_MODEL else "failed"
                continue
            _, gt, spacing = arrays[case.name]
            pred = np.asanyarray(nib.load(out).dataobj)
            if pred.shape != gt.shape:
                scores[case.name] = "failed"
                log(f"{column} {case.name}: output shape {pred.shape} != {gt.shape}")
                continue
            scores[case.name] = ref.score(pred == label, gt, spacing, case.slices)
    if status == "ok":
        log(f"{column}: {len(cases)} cases in {time.perf_counter() - t0:.0f} s")
    return status, scores


def spinal_gm(args: argparse.Namespace) -> int:
    """spinal-gm: GM Dice, HD95 and ASSD of segtool's model and the published gmseg models (SCT mode), per case."""
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
    status, ours = score_ours(data, cases, arrays, args.model_dir, ours_name)
    scores: dict[str, dict[str, Any]] = {c.name: {ours_name: ours[c.name]} for c in cases}

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
    write_json(args.json_out, {"task": "spinal-gm", "data": str(data),
                               "model_dir": str(args.model_dir) if args.model_dir else None,
                               "columns": columns, "rows": rows,
                               "note": "distances in mm; null = infinite (an empty prediction)"})
    return 0

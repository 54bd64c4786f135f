"""Accuracy of segtool's models on real data, next to published reference models.

    python benchmarks/accuracy.py spinal-gm [--data ../shared/data/spinal-gm] [--model-dir DIR] [--json out.json]

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

Exits with a message (status 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
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

#: segtool run's exit status when no weights are available (segtool.errors.EXIT_WEIGHTS_UNAVAILABLE)
EXIT_NO_WEIGHTS = 3
NO_MODEL = "no model"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- segtool's own model


def training_cases(model_dir: Path | None) -> list[str] | None:
    """``training.data.train_cases`` of the model's config.json, or None when unknown."""
    try:
        if model_dir is not None:
            training = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")).get("training") or {}
        else:  # the task's default model, resolved offline as `segtool run` would
            from segtool.app import App
            from segtool.weights import HubSettings, resolve_model

            app = App(warn=lambda message: None)
            spec = app.registry.get("spinal-gm")
            resolved = resolve_model(spec, None, HubSettings.from_env(offline_flag=True), app.plugin_manager)
            training = resolved.config.training or {}
        cases = (training.get("data") or {}).get("train_cases")
        return [str(c) for c in cases] if cases is not None else None
    except Exception:  # no model, no config, an unreadable file: the column says "?"
        return None


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


def run_segtool(images: list[Path], out_dir: Path, model_dir: Path | None, timeout: float = 1800):
    """``segtool run spinal-gm IMAGES --output-dir OUT --json``.

    Returns (status, {input path: output path or None}, message); status is "ok",
    "no model" (exit 3) or "error".
    """
    cmd = [sys.executable, "-m", "segtool", "run", "spinal-gm", *map(str, images),
           "--output-dir", str(out_dir), "--json", "--quiet", "--overwrite"]
    if model_dir is not None:
        cmd += ["--model-dir", str(model_dir)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    if proc.returncode == EXIT_NO_WEIGHTS:
        return NO_MODEL, {}, last
    outputs: dict[str, str | None] = {}
    for line in proc.stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "input" in record:
            outputs[str(Path(record["input"]).resolve())] = record["output"] if record.get("status") == "done" else None
    if proc.returncode not in (0, 1) or not outputs:
        return "error", outputs, f"segtool run exited {proc.returncode}: {last}"
    return "ok", outputs, last


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


# --------------------------------------------------------------------------- registry and CLI

#: task -> the function that benchmarks it (takes the parsed arguments, returns the exit status)
TASKS: dict[str, Callable[[argparse.Namespace], int]] = {"spinal-gm": spinal_gm}
#: task -> the function that adds its options to its subcommand
ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {"spinal-gm": add_spinal_gm_arguments}


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

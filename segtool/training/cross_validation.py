"""`segtool train --folds K`: K fold models, every case scored by the fold that held it out, then the final model.

Folds split by subject (``--group-by``) or by case: the subjects are shuffled by the seed and dealt
round-robin, so fold sizes differ by at most one subject. Fold ``i`` trains into
``MODEL_DIR/folds/fold_i`` with the same recipe (the plan, or the task's own) and validates on its
held-out cases once at the end, through the same pipeline as `segtool run` (the scores `segtool
evaluate` computes: Dice and HD95 on the input grid; per subject, pooled, with ``--group-by``).
``MODEL_DIR/cross_validation.json`` holds every held-out case's scores and the means; the card
gets the table. The runnable model in MODEL_DIR is the fold models' ensemble or a model trained on
all cases (``--final``), and the card says which.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from segtool.errors import UsageError
from segtool.io.atomic import write_text_atomic
from segtool.training.datasets import discover, group_key

CV_FILENAME = "cross_validation.json"


def assign_folds(names: Sequence[str], folds: int, seed: int, group_by: str | None = None) -> list[list[str]]:
    """``folds`` lists of case names; a subject's cases all in one fold; a pure function of names and seed."""
    names = sorted(names)
    groups = sorted({group_key(n, group_by) for n in names})
    if folds > len(groups):
        raise UsageError(f"--folds {folds}: only {len(groups)} {'subject' if group_by else 'case'}(s) to split")
    random.Random(seed).shuffle(groups)
    fold_of = {g: i % folds for i, g in enumerate(groups)}
    return [[n for n in names if fold_of[group_key(n, group_by)] == i] for i in range(folds)]


def _means(per_case: dict) -> dict:
    """Per label: mean (and median) Dice over the held-out cases, mean HD95 over the finite ones."""
    labels = sorted({label for scores in per_case.values() for label in scores})
    out = {}
    for label in labels:
        dice = [s[label]["dice"] for s in per_case.values() if label in s and s[label].get("dice") is not None]
        hd95 = [s[label]["hd95"] for s in per_case.values()
                if label in s and s[label].get("hd95") is not None and np.isfinite(s[label]["hd95"])]
        out[label] = {"dice": float(np.mean(dice)) if dice else None,
                      "dice_median": float(np.median(dice)) if dice else None,
                      "hd95": float(np.mean(hd95)) if hd95 else None, "cases": len(dice)}
    return out


def cv_markdown(summary: dict) -> str:
    """The cross-validation section of the model card."""
    labels = list(summary["mean"])
    lines = [
        "## Cross-validation",
        "",
        f"{summary['folds']} folds over {summary['cases']} case(s)"
        + (f" of {summary['subjects']} subjects (`--group-by {summary['group_by']}`, scored per subject, "
           "its cases pooled)" if summary.get("group_by") else "")
        + ". Each row was scored by the fold model that did not train on it, through the same pipeline as "
          "`segtool run` (Dice / HD95 mm on the input grid).",
        "",
        "| held out | fold | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for name, scores in sorted(summary["per_case"].items()):
        cells = []
        for label in labels:
            s = scores.get(label) or {}
            dice = "-" if s.get("dice") is None else f"{s['dice']:.3f}"
            hd = "" if s.get("hd95") is None else f" / {s['hd95']:.1f}"
            cells.append(dice + hd)
        lines.append(f"| {name} | {summary['fold_of'][name]} | " + " | ".join(cells) + " |")
    means = summary["mean"]
    lines.append("| **mean** | | " + " | ".join(
        "-" if means[label]["dice"] is None else f"**{means[label]['dice']:.3f}**" for label in labels) + " |")
    lines.append("| median | | " + " | ".join(
        "-" if means[label]["dice_median"] is None else f"{means[label]['dice_median']:.3f}" for label in labels) + " |")
    final = ("the ensemble of the fold models (each held-out figure above is one member's)"
             if summary["final"] == "ensemble" else "one model trained on all cases with the same recipe "
             "(the figures above estimate it)")
    lines += ["", f"The runnable model in this folder is {final}.", ""]
    return "\n".join(lines)


def run_folds(spec, data_dir: Path, model_dir: Path, options, folds: int, final: str, console, plugin_manager,
              train: Callable) -> dict:
    """Train the folds and the final model; returns the summary written to cross_validation.json."""
    from segtool.model_config import WEIGHTS_FILENAME
    from segtool.training.model_folder import README_FILENAME, plan_section

    model_dir = Path(model_dir)
    names = discover(data_dir, spec.channels).names
    assignment = assign_folds(names, folds, options.seed, options.group_by)
    fold_dirs, per_case, fold_of, fold_results = [], {}, {}, []
    for i, held_out in enumerate(assignment):
        fold_dir = model_dir / "folds" / f"fold_{i}"
        console.print(f"[bold]fold {i + 1}/{folds}[/bold]: {len(held_out)} held-out case(s) -> {fold_dir}")
        result = train(spec, data_dir, fold_dir, replace(options, val_cases=tuple(held_out), val_fraction=0.0),
                       console, plugin_manager)
        if result.rank != 0:
            continue
        validation = result.validation or {}
        for name, scores in (validation.get("per_case") or {}).items():
            per_case[name] = scores
            fold_of[name] = i
        fold_dirs.append(fold_dir)
        fold_results.append({"fold": i, "held_out": held_out, "model_dir": str(fold_dir),
                             "mean_dice": validation.get("mean_dice"), "steps": result.global_step})
    summary = {
        "folds": folds, "cases": len(names), "group_by": options.group_by,
        "subjects": len({group_key(n, options.group_by) for n in names}),
        "seed": options.seed, "final": final, "fold_results": fold_results,
        "per_case": per_case, "fold_of": fold_of, "mean": _means(per_case),
    }
    if final == "ensemble":
        from segtool.training.ensemble_folder import write_ensemble

        for name in (WEIGHTS_FILENAME, "config.json", README_FILENAME):
            (model_dir / name).unlink(missing_ok=True)
        write_ensemble(fold_dirs, model_dir)
    else:
        train(spec, data_dir, model_dir, replace(options, val_cases=(), val_fraction=0.0), console, plugin_manager)
    write_text_atomic(model_dir / CV_FILENAME, json.dumps(summary, indent=1, default=float) + "\n")
    card = model_dir / README_FILENAME
    sections = [card.read_text(encoding="utf-8").rstrip("\n"), cv_markdown(summary)]
    if final == "ensemble" and options.plan:  # the members' cards hold it; the ensemble's says it once
        sections.append("\n".join(plan_section(options.plan)))
    write_text_atomic(card, "\n\n".join(sections))
    means = ", ".join(f"{label} {m['dice']:.3f}" for label, m in summary["mean"].items() if m["dice"] is not None)
    console.print(f"cross-validated Dice over {len(per_case)} held-out case(s): {means or 'none'}")
    return summary

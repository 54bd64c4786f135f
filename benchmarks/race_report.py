"""The race's report: the markdown table of scores, time and memory per side, and the JSON of every number.

It renders the result ``benchmarks/nnunet_race.py`` records (task, budget, CPU, split, trainer, and per side its
steps, scores and means); it runs and reads nothing.
"""

from __future__ import annotations

import math

SIDES = ("segtool", "nnunet")
SIDE_TITLES = {"segtool": "segtool", "nnunet": "nnU-Net"}


def _f(value, digits: int) -> str:
    if value is None:
        return "-"
    if value == "inf" or (isinstance(value, float) and math.isinf(value)):
        return "∞"
    return f"{value:.{digits}f}"


def _deadline(over) -> str:
    if over is None:
        return "-"
    return f"{over:.0f} s after its deadline" if over > 0 else f"{-over:.0f} s before its deadline"


def _mb(value) -> str:
    return "-" if value is None else (f"{value / 1024:.2f} GB" if value >= 1024 else f"{value:.0f} MB")


def race_table(result: dict) -> str:
    """The markdown report: scores per held-out case and name, the means, then time and memory per side."""
    sides = [s for s in SIDES if s in result["sides"]]
    split = result["split"]
    lines = [f"## segtool vs nnU-Net: {result['task']}, budget {result['budget']} ({result['budget_s']:.0f} s) per fold model",
             "",
             f"CPU: {result['cpu']}; device {result.get('device', 'cpu')}. Split: {split['description']}.",
             ]
    nn = result["sides"].get("nnunet") or {}
    if nn.get("configuration"):
        lines.append(f"nnU-Net configuration: {nn['configuration']} ({nn['configuration_reason']}); "
                     f"trainer {result['trainer']}: " + "; ".join(result["trainer_changes"]) + ".")
    if result.get("rescored_from"):
        lines.append(f"Scored again (`--rescore {result['rescored_from']}`): the same trained models' held-out "
                     "predictions made (segtool) or read (nnU-Net) anew; training, times and memory as first run.")
    for side in sides:
        record = result["sides"][side]
        if record.get("error"):
            lines.append(f"**{SIDE_TITLES[side]} failed**: {record['error']}")
        elif record.get("folds_not_run"):
            lines.append(f"**{SIDE_TITLES[side]} not run yet in fold(s) {', '.join(map(str, record['folds_not_run']))}**: "
                         "its means, wall time and budget are over its other folds only.")
    lines += _score_lines(result, sides) + _time_lines(result, sides)
    notes = _notes(result)
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def _score_lines(result: dict, sides: list[str]) -> list[str]:
    """The scores table: Dice (and HD95 unless pooled per subject) per row and name, then each name's means."""
    pooled = result["split"].get("group_by")
    unit = "Dice" + ("" if pooled else " | HD95")
    header = "| held out | fold | label | " + " | ".join(f"{SIDE_TITLES[s]} Dice" for s in sides)
    if not pooled:
        header += " | " + " | ".join(f"{SIDE_TITLES[s]} HD95 mm" for s in sides)
    lines = ["", f"Scored by `segtool evaluate` ({unit}{'; Dice pooled per subject' if pooled else ''}):",
             "", header + " |", "|---|---|---|" + "---|" * (len(sides) * (1 if pooled else 2))]
    row_fold = result.get("row_fold") or result.get("fold_of") or {}
    rows = sorted(set(row_fold) | {case for s in sides for case in (result["sides"][s].get("per_case") or {})})
    for entry in result["names"]:
        name = entry["name"] + (" (region)" if entry.get("region") else "")
        for case in rows:
            cells = [(result["sides"][s].get("per_case") or {}).get(case, {}).get(entry["name"], {}) for s in sides]
            line = f"| {case} | {row_fold.get(case, '')} | {name} | " + " | ".join(_f(c.get("dice"), 3) for c in cells)
            if not pooled:
                line += " | " + " | ".join(_f(c.get("hd95"), 2) for c in cells)
            lines.append(line + " |")
        mean_cells = [(result["sides"][s].get("mean") or {}).get(entry["name"], {}) for s in sides]
        line = f"| **mean** | | {name} | " + " | ".join(
            "-" if m.get("dice") is None else f"**{m['dice']:.3f}** ({m['cases']})" for m in mean_cells)
        if not pooled:
            line += " | " + " | ".join(
                _f(m.get("hd95"), 2) + (f" ({m['missed']} ∞)" if m.get("missed") else "") for m in mean_cells)
        lines.append(line + " |")
    return lines


def _time_lines(result: dict, sides: list[str]) -> list[str]:
    """The time and memory table: per side its wall time, its steps, its peak memory and its budget."""
    lines = ["", "| side | wall time | of which | peak RSS, largest process | peak PSS, process tree | budget |",
             "|---|---|---|---|---|---|"]
    for side in sides:
        s = result["sides"][side]
        steps = s.get("steps") or []
        parts = "; ".join(f"{st['step']} {st['wall_s']:.0f} s" for st in steps)
        if s.get("prediction_s"):  # nnUNetv2_train's step includes its final validation, which is not counted
            parts += f"; less its final validation {s['prediction_s']:.0f} s (not counted)"
        rss = max((st["max_rss_mb"] for st in steps if st.get("max_rss_mb") is not None), default=None)
        pss = max((st["peak_pss_mb"] for st in steps if st.get("peak_pss_mb") is not None), default=None)
        allowed = result["budget_s"] * (len(result["split"]["folds"]) - len(s.get("folds_not_run") or []))
        wall = s.get("wall_s")
        over = "-" if wall is None else f"{allowed:.0f} s allowed: " + (
            f"{wall - allowed:.0f} s over" if wall > allowed else f"{allowed - wall:.0f} s unused")
        lines.append(f"| {SIDE_TITLES[side]} | {_f(wall, 0)} s | {parts or '-'} | {_mb(rss)} | {_mb(pss)} | {over} |")
    return lines


def _notes(result: dict) -> list[str]:
    """The notes under the tables: segtool's own held-out Dice and scoring time, each nnU-Net fold's trainer record."""
    notes = []
    seg = result["sides"].get("segtool") or {}
    if seg.get("own_mean"):
        # the names its training validation scored (labels; the regions a task scores are the race's own)
        own = ", ".join(f"{k} {_f(v['dice'], 3)}" for k, v in seg["own_mean"].items() if v.get("dice") is not None)
        notes.append(f"segtool's own held-out Dice (its training run's validation): {own}.")
    if seg.get("scoring_s") is not None:
        notes.append(f"segtool's re-prediction of the held-out cases for scoring: {seg['scoring_s']:.0f} s (not counted).")
    for fold in (result["sides"].get("nnunet") or {}).get("folds") or []:
        rec = fold.get("trainer") or {}
        ended, validation = _deadline(fold.get("over_deadline_s")), _f(fold.get("final_validation_s"), 0)
        if "validation_reserve_s" in rec:  # the rule before 2026-12-07 evening
            timing = (f"final validation reserved {rec['validation_reserve_s']} s inside the budget (the rule before "
                      f"2026-12-07 evening), took {validation} s; ended {ended}")
        else:
            timing = f"training ended {ended}; final validation (the held-out prediction, not counted) {validation} s"
        notes.append(
            f"nnU-Net fold {fold['fold']}: {rec.get('epochs', '?')} epoch(s) of {rec.get('iterations_per_epoch', '?')} "
            f"iteration(s) (+{rec.get('val_iterations_per_epoch', '?')} validation); {timing}; nnU-Net's own "
            f"validation Dice (summary.json, foreground mean) {_f(fold.get('own_foreground_dice'), 3)}"
            + (f"; no prediction for {', '.join(fold['missing'])}" if fold.get("missing") else "") + ".")
    return notes


def from_json_safe(obj):
    """``json_safe`` undone: the string "inf" back to an infinite float (a record read again, e.g. to merge)."""
    if obj == "inf":
        return math.inf
    if isinstance(obj, dict):
        return {k: from_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json_safe(v) for v in obj]
    return obj


def json_safe(obj):
    """An infinite distance (one mask empty) as the string "inf", NaN as None: JSON has neither."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else ("inf" if obj > 0 else None)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj

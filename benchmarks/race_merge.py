"""Merge one-fold races (each ``nnunet_race.py ... --val-cases FOLD_CASES --json`` record) into one K-fold table.

A K-fold race takes 2 x K x the budget of one machine: at 30 minutes a side, disc's three folds are
three hours, brain-tumour's four are four; at 90 minutes, three times that. So it can be run one
fold at a time (one a session), each with ``--val-cases`` set to that fold's held-out cases (e.g.
from ``segtool train --folds K``'s cross_validation.json, or ``race_split.make_splits``), and merged:

    python benchmarks/race_merge.py fold0.json fold1.json fold2.json [--json merged.json] > merged.md

The runs must share the task, the budget, the names scored and the subject grouping, and hold out
different cases; fold i is the i-th file. Per side: the per-case scores are joined and the means
computed again (``race_scoring.means``), the steps listed per fold and their wall times summed,
nnU-Net's fold records renumbered. A side that failed in any run is reported as failed; one not run yet in
some runs (a fold's other side run alone so far) is merged over the runs it has, and the table says so. Each one-fold
run paid nnU-Net's conversion, fingerprint, planning and preprocessing again, inside that fold's
budget (about a minute at 2 cores), where one K-fold run pays them once.

At 90 minutes a side one fold of both sides (over three hours) does not fit a 180-minute session,
so a fold's two sides can be run apart too (``--sides segtool`` in one run, ``--sides nnunet`` in
another, same split and budget) and given to this script together: runs that hold out the same
cases and ran different sides are first joined into one run of both sides (a side run twice for one
split is refused; two CPUs are named in the table), then the folds merged as above. Fold i is then
the i-th distinct split, in the order of the files.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent


def _load_sibling(name: str):
    loaded = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


race_report = _load_sibling("race_report")
race_scoring = _load_sibling("race_scoring")

#: what every merged run must agree on
SAME = ("task", "budget_s")


def _check(results: Sequence[dict]) -> None:
    _check_alike(results)
    _check_each_case_once(results)


def _check_alike(results: Sequence[dict]) -> None:
    """The runs share task, budget, scored names and grouping (SAME and the rest)."""
    first = results[0]
    for i, result in enumerate(results[1:], start=1):
        for key in SAME:
            if result.get(key) != first.get(key):
                raise ValueError(f"run {i} has {key} {result.get(key)!r}, run 0 {first.get(key)!r}")
        if result["names"] != first["names"]:
            raise ValueError(f"run {i} scores other names than run 0")
        if result["split"].get("group_by") != first["split"].get("group_by"):
            raise ValueError(f"run {i} groups subjects otherwise than run 0")


def _check_each_case_once(results: Sequence[dict]) -> None:
    seen: dict[str, int] = {}
    for i, result in enumerate(results):
        for case in result.get("fold_of") or {}:
            if case in seen:
                raise ValueError(f"case {case} is held out by run {seen[case]} and run {i}")
            seen[case] = i


def _merged_side(side: str, results: Sequence[dict], names: Sequence[str]) -> dict:
    """One side's record over the folds: scores joined, means again, times summed. A fold where the side is still to
    run (its record absent: e.g. the other side's run alone so far) is left out and named in ``folds_not_run``; a
    fold where it failed fails the side."""
    ran = {i: r["sides"][side] for i, r in enumerate(results) if side in r["sides"]}  # fold -> this side's record
    records = list(ran.values())
    not_run = [i for i in range(len(results)) if i not in ran]
    failed = [f"run {i}: {rec['error']}" for i, rec in ran.items() if "error" in rec]
    if failed:
        return {"error": "; ".join(failed)}
    per_case = {case: row for rec in records for case, row in (rec.get("per_case") or {}).items()}
    out = {"per_case": per_case, "mean": race_scoring.means(per_case, names),
           "steps": [dict(step, step=f"fold {i}: {step['step']}") for i, rec in ran.items()
                     for step in rec.get("steps") or []],
           "wall_s": round(sum(rec.get("wall_s") or 0.0 for rec in records), 2)}
    if not_run:
        out["folds_not_run"] = not_run
    if side == "segtool":
        own = {case: row for rec in records for case, row in (rec.get("own_per_case") or {}).items()}
        out["own_per_case"] = own
        out["own_mean"] = race_scoring.means(own, names) if own else {}
        out["scoring_s"] = round(sum(rec.get("scoring_s") or 0.0 for rec in records), 1)
    else:
        out["folds"] = [dict(fold, fold=i) for i, rec in ran.items() for fold in rec.get("folds") or []]
        out["prediction_s"] = round(sum(rec.get("prediction_s") or 0.0 for rec in records), 1)
        configurations = sorted({rec.get("configuration") for rec in records if rec.get("configuration")})
        out["configuration"] = ", ".join(configurations)
        out["configuration_reason"] = "; ".join(sorted({rec.get("configuration_reason") or "" for rec in records}))
    return out


def _same_split(a: dict, b: dict) -> bool:
    return sorted(a.get("fold_of") or {}) == sorted(b.get("fold_of") or {}) and a["split"]["folds"] == b["split"]["folds"]


def join_sides(results: Sequence[dict]) -> list[dict]:
    """Runs of one split that ran different sides joined into one run of both (in the order given); the rest
    as they are."""
    joined: list[dict] = []
    for i, result in enumerate(results):
        partner = next((j for j, run in enumerate(joined) if _same_split(run, result)), None)
        if partner is None:
            joined.append(result)
            continue
        base = joined[partner]
        _check_alike([base, result])  # the same held-out cases, by design
        twice = sorted(set(base["sides"]) & set(result["sides"]))
        if twice:
            raise ValueError(f"run {i} runs {', '.join(twice)} again on an earlier run's split (the same held-out cases)")
        joined[partner] = dict(base, sides={**base["sides"], **result["sides"]})
    return joined


def merge(results: Sequence[dict], sources: Sequence[str] = ()) -> dict:
    """One K-fold race record from one-fold records (fold i = the i-th distinct split; runs of one split that
    ran different sides joined first, ``join_sides``)."""
    if not results:
        raise ValueError("nothing to merge")
    cpus = sorted({str(r.get("cpu")) for r in results})
    results = join_sides(results)
    _check(results)
    first = results[0]
    names = [n["name"] for n in first["names"]]
    folds = [fold for r in results for fold in r["split"]["folds"]]
    sides = [s for s in race_report.SIDES if any(s in r["sides"] for r in results)]
    split = {"description": f"{len(results)} one-fold runs merged: "
                            + "; ".join(r["split"]["description"] for r in results),
             "folds": folds, "group_by": first["split"].get("group_by"), "seed": first["split"].get("seed")}
    merged = {key: first.get(key) for key in ("task", "data_dir", "budget", "budget_s", "cpu", "device", "trainer",
                                              "trainer_changes", "names")}
    merged.update(order=sides, split=split, merged_from=list(sources),
                  fold_of={case: i for i, r in enumerate(results) for case in r.get("fold_of") or {}},
                  row_fold={row: i for i, r in enumerate(results) for row in r.get("row_fold") or {}},
                  sides={side: _merged_side(side, results, names) for side in sides})
    if len(cpus) > 1:
        merged["cpu"] = " / ".join(cpus) + " (the runs differ)"
    return merged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="one-fold race records (--json), fold 0 first")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the merged record to OUT")
    args = parser.parse_args(argv)
    try:
        results = [race_report.from_json_safe(json.loads(path.read_text(encoding="utf-8"))) for path in args.runs]
        merged = merge(results, [str(p) for p in args.runs])
    except (OSError, ValueError, KeyError) as exc:
        print(f"race_merge: {exc}", file=sys.stderr)
        return 2
    text = race_report.race_table(merged)
    print(text)
    if args.json:
        merged["table"] = text
        args.json.write_text(json.dumps(race_report.json_safe(merged), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""segtool against nnU-Net v2 at equal compute (issue 40): the same cases, split and wall-clock budget.

    python benchmarks/nnunet_race.py DATA_DIR --task TASK --budget 30m
        (--folds K | --val-cases A,B,... | --val-fraction F) [--seed S] [--group-by REGEX]
        [--venv build/nnunet-venv] [--work DIR] [--sides segtool,nnunet]
        [--order segtool-first|nnunet-first] [--device auto|cpu|cuda] [-np 2] [--json OUT]

The two sides run one after the other (never at once), each with ``--budget`` of wall time per fold
model, on the same split: ``segtool.training.cross_validation.assign_folds(names, K, seed,
group_by)`` (what ``segtool train --folds K`` uses), the ``--val-cases`` as one fold, or ``--val-fraction F``
as one fold (``split_cases(names, seed, F, group_by=...)``, what ``segtool train --val-fraction F`` uses;
e.g. brain-tumour-2d's card split, 36 training and 9 held-out patients: ``--val-fraction 0.2 --seed 0
--group-by ...``). ``--seed`` (default 0) goes to both.

segtool: ``segtool train TASK DATA_DIR -o WORK/segtool --plan auto --budget B --json`` with
``--folds K``, ``--val-cases A,B`` or ``--val-fraction F``, and ``--seed S [--group-by R]``. Its own held-out scores (``per_case`` of
``cross_validation.json``, or of the run's validation) are kept as a cross-check; the scores in the
table come from its fold models' predictions of their held-out cases (``segtool run TASK
--model-dir FOLD_MODEL --output-dir ... --json IMAGES``; not counted in its wall time, reported).

nnU-Net (in its own venv, `benchmarks/plans_vs_nnunet.py` makes it): DATA_DIR is converted as
plans_vs_nnunet converts it (``WORK/nnunet/nnUNet_raw/Dataset990_TASK``), then what
``nnUNetv2_plan_and_preprocess -d 990 -np 2 -c CONFIG`` does, in its three steps so that CONFIG can be
read from the plans before preprocessing: ``nnUNetv2_extract_fingerprint -d 990 -np 2 --no_pbar``,
``nnUNetv2_plan_experiment -d 990``, ``nnUNetv2_preprocess -d 990 -c CONFIG -np 2``. CONFIG is
3d_fullres when the plans have it and the data is 3D, else 2d. Our split is written to
``nnUNet_preprocessed/Dataset990_TASK/splits_final.json``, then per fold ``nnUNetv2_train 990 CONFIG
FOLD -tr nnUNetTrainer_segtoolBudget -device cpu`` (cuda when the venv's torch sees a GPU). Its
final validation (nnU-Net's default inference: step 0.5, Gaussian weighting, mirroring) writes the
held-out predictions to ``fold_FOLD/validation/CASE.nii.gz``, in the case's own grid: those are
the predictions scored (no separate ``nnUNetv2_predict``, which would predict them again with the
same checkpoint and settings). Environment: ``nnUNet_def_n_proc=2`` (export workers; nnU-Net's
default 8 is for big machines); ``nnUNet_n_proc_DA`` is left at nnU-Net's default
(``min(12, cpu_count)``). Conversion, fingerprint, planning and preprocessing count against
nnU-Net's budget: fold ``i``'s training must end by ``start + (i + 1) x budget``. Its final validation
(the held-out predictions) runs after that deadline and is not counted (``prediction_s``, reported), as
segtool's prediction of its held-out cases is not. (Runs before 2026-12-07 evening reserved time for it
inside the budget: 47 s of 30 minutes on spinal-gm, about 770 s on disc, 26 of 30 minutes on brain-tumour.)

The trainer ``nnUNetTrainer_segtoolBudget`` (``benchmarks/nnunet_budget_trainer.py``, which says why it is
written into the venv beside nnUNetTrainer.py) is nnU-Net's default trainer with these changes only
(``TRAINER_CHANGES``):

- the first epoch runs nnU-Net's 250 iterations, or fewer: it stops once a tenth of the time left
  before the deadline is used; the count it reached becomes ``num_iterations_per_epoch`` of every
  epoch, and ``num_val_iterations_per_epoch`` = that x 50/250 (at least 1);
- after each epoch ``num_epochs`` (and the poly learning-rate schedule's length, so the rate still
  decays towards 0) is set to the epochs that fit before the deadline at the mean epoch time
  (epochs after the first, once there are any); and one
  last, shorter epoch where at least a quarter of one fits in what the whole epochs leave over (its
  training and validation iterations cut to 0.9 x that share; at 30 minutes on spinal-gm the whole
  epochs alone left 174 s unused);
- the deadline (Unix time) comes from the environment variable ``SEGTOOL_NNUNET_DEADLINE``; the final
  validation runs after it.

Scoring: both sides' held-out predictions are scored by ``segtool evaluate PRED_DIR GT_DIR --task
TASK --json`` against the cases' label files (renumbered by the task's labels map where it has one,
as ``segtool train`` reads them): Dice and HD95 per label, and per region for tasks with regions.
With ``--group-by``, Dice is pooled per subject (2·ΣTP / (2·ΣTP + ΣFP + ΣFN), no HD95), as
segtool's cross-validation scores subjects. Means skip a label empty in both masks; HD95 means skip
infinite values (one mask empty) and count them.

Time and memory: each side's wall time is the sum of its commands' (conversion included for
nnU-Net); for each command the peak RSS of its largest process (``wait4`` rusage, as
``/usr/bin/time -v`` reports it) and the peak of its process tree's summed PSS, sampled once a
second from /proc. The CPU is ``lscpu``'s model name. Prints a markdown table; ``--json OUT``
writes every number.

Modules, one job each: this file is the command line and runs the two sides; ``race_split.py`` the split in
each side's form; ``nnunet_budget_trainer.py`` nnU-Net's budget trainer and its install; ``race_measure.py``
running a command and measuring it; ``race_scoring.py`` the scores from ``segtool evaluate``;
``race_report.py`` the markdown table and the JSON. benchmarks/ is not a package: this file loads them (and
``plans_vs_nnunet.py``) by path with ``_load_sibling``; they load nothing from benchmarks/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]


def _load_sibling(name: str):
    loaded = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


pvn = _load_sibling("plans_vs_nnunet")
nnunet_budget_trainer = _load_sibling("nnunet_budget_trainer")
race_split = _load_sibling("race_split")
race_measure = _load_sibling("race_measure")
race_scoring = _load_sibling("race_scoring")
race_report = _load_sibling("race_report")
log = pvn.log
run_measured, checked = race_measure.run_measured, race_measure.checked

DATASET_ID = pvn.DATASET_ID
TRAINER_NAME, DEADLINE_ENV = nnunet_budget_trainer.TRAINER_NAME, nnunet_budget_trainer.DEADLINE_ENV
SIDES, SIDE_TITLES = race_report.SIDES, race_report.SIDE_TITLES


# ----------------------------------------------------------------------------- the two sides


def run_segtool_side(args, spec, dataset, splits, work: Path) -> dict:
    """segtool train with --plan auto --budget, then its fold models' predictions of their held-out cases."""
    model_dir = work / "segtool"
    shutil.rmtree(model_dir, ignore_errors=True)
    device = [] if args.device == "auto" else ["--device", args.device]
    cmd = [sys.executable, "-m", "segtool", "train", args.task, str(args.data_dir), "-o", str(model_dir),
           "--plan", "auto", "--budget", args.budget, *race_split.split_options(args), *device, "--json"]
    log(f"segtool: {' '.join(['segtool', *cmd[3:]])}")
    train = checked(run_measured(cmd, work / "logs" / "segtool_train.log",
                                 stdout_path=work / "logs" / "segtool_train.json", step="segtool train"))
    summary = _json_from((work / "logs" / "segtool_train.json").read_text(encoding="utf-8")) or {}
    if args.folds:
        own = summary.get("per_case") or {}
    else:
        own = ((summary.get("validation") or {}).get("per_case")) or {}
        race_split.check_same_split(model_dir / "config.json", splits[0])
    predictions, predict_runs = predict_segtool(args, dataset, splits, work)
    return {"steps": [train], "wall_s": train["wall_s"], "own_per_case": own, "predictions": predictions,
            "scoring_runs": predict_runs}


def predict_segtool(args, dataset, splits, work: Path) -> tuple[dict, list]:
    """segtool's fold models' predictions of their held-out cases (``segtool run``, measured): ({case: file}, runs)."""
    model_dir = work / "segtool"
    fold_models = [model_dir / "folds" / f"fold_{i}" for i in range(len(splits))] if args.folds else [model_dir]
    shutil.rmtree(work / "segtool_pred", ignore_errors=True)
    device = [] if args.device == "auto" else ["--device", args.device]
    by_name = {c.name: c for c in dataset.cases}
    predictions, predict_runs = {}, []
    for i, (split, fold_model) in enumerate(zip(splits, fold_models)):
        out_dir = work / "segtool_pred" / f"fold_{i}"
        inputs = [str(p.resolve()) for name in split["val"] for p in by_name[name].images]
        first = {str(by_name[name].images[0].resolve()): name for name in split["val"]}
        out_dir.mkdir(parents=True)
        run = [sys.executable, "-m", "segtool", "run", args.task, "--model-dir", str(fold_model), "--output-dir",
               str(out_dir), "--overwrite", "--json", *device, *inputs]
        predict_runs.append(checked(run_measured(run, work / "logs" / f"segtool_run_fold_{i}.log",
                                                 stdout_path=work / "logs" / f"segtool_run_fold_{i}.jsonl",
                                                 step=f"segtool run, fold {i}")))
        for line in (work / "logs" / f"segtool_run_fold_{i}.jsonl").read_text(encoding="utf-8").splitlines():
            row = _json_from(line) or {}
            if row.get("status") == "done" and row.get("input") in first:
                predictions[first[row["input"]]] = Path(row["output"])
    return predictions, predict_runs


def rescored_side(side: str, old: dict, args, dataset, splits, work: Path) -> dict:
    """A side of an earlier run (its ``--json`` record) with its models' held-out predictions made again
    (segtool) or read again (nnU-Net's files): its training, times and memory as they were."""
    kept = {k: v for k, v in old.items() if k in ("steps", "wall_s", "configuration", "configuration_reason", "device",
                                                    "folds", "plans_configurations", "nnunet_dir", "own_per_case")}
    if side == "segtool":
        kept["predictions"], kept["scoring_runs"] = predict_segtool(args, dataset, splits, work)
    else:
        kept["predictions"] = {name: Path(path) for name, path in old["predictions"].items()}
    return kept


def run_nnunet_side(args, spec, dataset, splits, work: Path, bin_dir: Path, budget_s: float) -> dict:
    """Convert, fingerprint, plan, preprocess, then train every fold within its deadline."""
    start = time.time()
    deadlines = [start + (i + 1) * budget_s for i in range(len(splits))]
    nn_work = work / "nnunet"
    shutil.rmtree(nn_work, ignore_errors=True)
    nn_work.mkdir(parents=True)
    steps = []
    t = time.perf_counter()
    conversion = pvn.convert(spec, args.data_dir, nn_work / "nnUNet_raw", DATASET_ID)
    steps.append({"step": "conversion", "command": "plans_vs_nnunet.convert", "rc": 0,
                  "wall_s": round(time.perf_counter() - t, 2), "max_rss_mb": None, "peak_pss_mb": None})
    env = pvn.nnunet_env(bin_dir, nn_work)
    env["nnUNet_def_n_proc"] = str(args.processes)
    logs = work / "logs"
    for cmd in pvn.planning_commands(DATASET_ID, args.processes):
        steps.append(checked(run_measured([bin_dir / cmd[0], *cmd[1:]], logs / f"{cmd[0]}.log", env, step=cmd[0])))
    folder = pvn.preprocessed_folder(nn_work, DATASET_ID)
    plans = json.loads((folder / "nnUNetPlans.json").read_text(encoding="utf-8"))
    config, why = choose_configuration(plans, spec.ndim)
    log(f"nnU-Net: configuration {config} ({why})")
    steps.append(checked(run_measured([bin_dir / "nnUNetv2_preprocess", "-d", DATASET_ID, "-c", config,
                                       "-np", args.processes], logs / "nnUNetv2_preprocess.log", env)))
    race_split.write_splits(folder, splits)
    device = args.device if args.device != "auto" else ("cuda" if venv_has_cuda(bin_dir) else "cpu")
    file_ending = json.loads((Path(conversion["folder"]) / "dataset.json").read_text(encoding="utf-8"))["file_ending"]
    results = nn_work / "nnUNet_results" / folder.name / f"{TRAINER_NAME}__nnUNetPlans__{config}"
    predictions, folds = {}, []
    for i, split in enumerate(splits):
        env[DEADLINE_ENV] = repr(deadlines[i])
        left = deadlines[i] - time.time()
        log(f"nnU-Net: fold {i}, {left:.0f} s to its deadline")
        cmd = [bin_dir / "nnUNetv2_train", DATASET_ID, config, i, "-tr", TRAINER_NAME, "-device", device]
        run = checked(run_measured(cmd, logs / f"nnUNetv2_train_fold_{i}.log", env, step=f"nnUNetv2_train fold {i}"))
        ended = time.time()
        steps.append(run)
        fold_dir = results / f"fold_{i}"
        record_file = fold_dir / "segtool_budget.json"
        record = json.loads(record_file.read_text(encoding="utf-8")) if record_file.is_file() else {}
        summary_file = fold_dir / "validation" / "summary.json"
        own = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else {}
        found, missing = race_scoring.prediction_files(fold_dir / "validation", split["val"], file_ending)
        predictions.update(found)
        training_end = record.get("training_end", ended)
        validation_s = round(ended - training_end, 1) if "training_end" in record else None
        folds.append({"fold": i, "seconds_to_deadline_at_start": round(left, 1), "final_validation_s": validation_s,
                      "over_deadline_s": round(training_end - deadlines[i], 1), "trainer": record,
                      "own_foreground_dice": (own.get("foreground_mean") or {}).get("Dice"), "missing": missing})
    prediction_s = round(sum(f["final_validation_s"] or 0.0 for f in folds), 1)
    wall = round(sum(s["wall_s"] for s in steps) - prediction_s, 2)
    return {"steps": steps, "wall_s": wall, "prediction_s": prediction_s, "configuration": config,
            "configuration_reason": why, "device": device,
            "predictions": predictions, "folds": folds, "plans_configurations": sorted(plans.get("configurations", {})),
            "nnunet_dir": str(nn_work)}


def choose_configuration(plans: dict, ndim: int) -> tuple[str, str]:
    """3d_fullres when the plans have it and the data is 3D, else 2d; with the reason."""
    configs = plans.get("configurations") or {}
    if ndim == 3 and "3d_fullres" in configs:
        return "3d_fullres", "nnU-Net planned 3d_fullres and the data is 3D"
    if "2d" not in configs:
        raise RuntimeError(f"nnU-Net planned neither a usable 3d_fullres nor 2d: {sorted(configs)}")
    return "2d", "the data is 2D" if ndim == 2 else "nnU-Net planned no 3d_fullres"


def venv_has_cuda(bin_dir: Path) -> bool:
    """Whether the torch in nnU-Net's venv sees a GPU."""
    proc = subprocess.run([str(bin_dir / "python"), "-c", "import torch; print(torch.cuda.is_available())"],
                          capture_output=True, text=True)
    return proc.stdout.strip() == "True"


def _json_from(text: str):
    """The JSON in a command's output: all of it, or its last line that parses; else None."""
    for candidate in [text, *reversed(text.splitlines())]:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


# ----------------------------------------------------------------------------- scoring a side


def evaluate_folder(pred_dir: Path, gt_dir: Path, task: str, log_path: Path) -> dict:
    """`segtool evaluate PRED_DIR GT_DIR --task TASK --json`, measured; its report."""
    out = log_path.with_suffix(".json")
    checked(run_measured([sys.executable, "-m", "segtool", "evaluate", pred_dir, gt_dir, "--task", task, "--json"],
                         log_path, stdout_path=out, step="segtool evaluate"))
    return json.loads(out.read_text(encoding="utf-8"))


def score_side(side: str, result: dict, spec, dataset, gt_dir: Path, suffixes: Mapping[str, str], work: Path,
               group_by: str | None, names: Sequence[str]) -> dict:
    """Both sides' predictions as ``CASE + suffix`` in one folder, scored by `segtool evaluate` against GT_DIR."""
    pred_dir = work / "eval" / side
    shutil.rmtree(pred_dir, ignore_errors=True)
    race_scoring.predictions_to_folder(side, spec, dataset, result["predictions"], pred_dir, suffixes)
    report = evaluate_folder(pred_dir, gt_dir, spec.name, work / "logs" / f"evaluate_{side}.log")
    return race_scoring.side_scores(report, suffixes, group_by, names)


def side_record(side: str, out: dict, scored: dict, label_names: Sequence[str]) -> dict:
    """A side's record in the result: what it ran and predicted, its scores, and (segtool) its own held-out scores."""
    out["predictions"] = {k: str(v) for k, v in out["predictions"].items()}
    out.update(scored)
    if side == "segtool":
        own = out.pop("own_per_case")
        out["own_per_case"] = own
        out["own_mean"] = race_scoring.means(own, label_names) if own else {}
        out["scoring_s"] = round(sum(r["wall_s"] for r in out["scoring_runs"]), 1)
    out["load_average_after"] = os.getloadavg()[0]
    return out


# ----------------------------------------------------------------------------- the command line


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    """The command line (see the module docstring), and the sides to run, in their order."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--task", required=True)
    parser.add_argument("--budget", default="30m", help="wall time per fold model, each side (default 30m)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--folds", type=int, help="K-fold cross-validation (segtool's assign_folds, --seed)")
    how.add_argument("--val-cases", type=lambda s: [c for c in s.split(",") if c], help="one split: these held out")
    how.add_argument("--val-fraction", type=float, help="one split: this share of subjects held out (segtool's split)")
    parser.add_argument("--seed", type=int, default=0, help="the split's seed (default 0), as segtool train --seed")
    parser.add_argument("--group-by", help="regex whose first group names a case's subject (as segtool train)")
    parser.add_argument("--venv", type=Path, default=ROOT / "build" / "nnunet-venv")
    parser.add_argument("--work", type=Path, help="work folder (default build/nnunet_race/TASK)")
    parser.add_argument("--sides", default="segtool,nnunet", help="which sides to run (default both)")
    parser.add_argument("--order", choices=("segtool-first", "nnunet-first"), default="segtool-first")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (both sides)")
    parser.add_argument("-np", "--processes", type=int, default=2, help="nnU-Net preprocessing/export workers")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every number to OUT")
    parser.add_argument("--rescore", type=Path, metavar="EARLIER_JSON",
                        help="train nothing: predict and score again the models of the earlier run that wrote "
                             "EARLIER_JSON (same --work), keeping its times and memory (e.g. after a fix in segtool run)")
    args = parser.parse_args(argv)
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not sides or set(sides) - set(SIDES):
        parser.error(f"--sides: choose from {', '.join(SIDES)}")
    if args.folds is not None and args.folds < 2:
        parser.error("--folds: at least 2")
    if args.order == "nnunet-first":
        sides.sort(key=lambda s: s != "nnunet")
    else:
        sides.sort(key=lambda s: s != "segtool")
    return args, sides


def main(argv=None) -> int:
    args, sides = parse_args(argv)

    from segtool.training.datasets import discover
    from segtool.training.planning import parse_budget

    budget_s = parse_budget(args.budget)
    spec = pvn.task_spec(args.task)
    dataset = discover(args.data_dir, spec.channels)
    labels_map = pvn.default_labels_map(spec, dataset.info)
    splits = race_split.make_splits(dataset.names, args.folds, args.group_by, args.val_cases, args.seed,
                                    args.val_fraction)
    work = (args.work or ROOT / "build" / "nnunet_race" / spec.name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    names = [{"name": n, "region": False} for n in spec.labels.values()]
    names += [{"name": n, "region": True} for n, members in spec.regions.items() if set(members) <= set(spec.labels)]
    bin_dir = None
    earlier = json.loads(args.rescore.read_text(encoding="utf-8")) if args.rescore else None
    if "nnunet" in sides and earlier is None:
        bin_dir = pvn.ensure_venv(args.venv.resolve())
        log(f"trainer: {nnunet_budget_trainer.install_trainer(bin_dir)}")
    result = {"task": spec.name, "data_dir": str(args.data_dir), "budget": args.budget, "budget_s": budget_s,
              "cpu": race_measure.cpu_model(), "device": args.device, "order": sides, "trainer": TRAINER_NAME,
              "trainer_changes": list(nnunet_budget_trainer.TRAINER_CHANGES), "names": names,
              "fold_of": race_split.fold_of(splits), "row_fold": race_split.row_fold(splits, args.group_by),
              "split": {"description": race_split.split_description(args, splits, len(dataset.names)),
                        "folds": splits, "group_by": args.group_by, "val_cases": args.val_cases,
                        "val_fraction": args.val_fraction, "seed": args.seed},
              "work": str(work), "sides": {}}
    gt_dir = work / "eval" / "gt"
    shutil.rmtree(gt_dir, ignore_errors=True)
    suffixes = race_scoring.write_gt_folder(dataset, sorted(race_split.fold_of(splits)), labels_map, gt_dir)
    label_names = [n["name"] for n in names]
    for side in sides:
        log(f"--- {SIDE_TITLES[side]} (load average {os.getloadavg()[0]:.1f})")
        try:
            if earlier is not None:
                out = rescored_side(side, earlier["sides"][side], args, dataset, splits, work)
                result.update(rescored_from=str(args.rescore), device=earlier.get("device", result["device"]))
            elif side == "segtool":
                out = run_segtool_side(args, spec, dataset, splits, work)
            else:
                out = run_nnunet_side(args, spec, dataset, splits, work, bin_dir, budget_s)
                result["device"] = out["device"]
            scored = score_side(side, out, spec, dataset, gt_dir, suffixes, work, args.group_by, label_names)
        except Exception as exc:  # noqa: BLE001 - one side failing still reports the other
            log(f"{SIDE_TITLES[side]} failed: {exc}")
            result["sides"][side] = {"error": str(exc)}
            continue
        result["sides"][side] = side_record(side, out, scored, label_names)
    text = race_report.race_table(result)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result["table"] = text
        args.json.write_text(json.dumps(race_report.json_safe(result), indent=1, default=str) + "\n", encoding="utf-8")
    return 0 if all("error" not in result["sides"][s] for s in sides) else 1


if __name__ == "__main__":
    sys.exit(main())

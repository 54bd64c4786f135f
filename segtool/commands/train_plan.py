"""`segtool train`'s planning options: --plan, --budget, --plan-only (the command body stays in commands/train.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click
from click.core import ParameterSource

from segtool.commands.common import echo_json
from segtool.errors import UsageError

#: Planning without --budget: a budget a laptop or a 2-core server finishes over a coffee break.
DEFAULT_BUDGET = "30m"

#: `segtool train` options that replace a plan value when given by hand: option name -> plan field.
OPTION_TO_PLAN = {
    "patch_size": "patch_size", "batch_size": "batch_size", "epochs": "epochs", "steps_per_epoch": "steps_per_epoch",
    "lr": "lr", "foreground_fraction": "foreground_fraction", "region_dice": "region_dice", "precision": "precision",
    "max_minutes": "max_minutes", "network_family": "network", "network_args": "network_args",
    "num_workers": "num_workers",
}


@dataclass
class Planned:
    plan: object  # segtool.training.plan.TrainingPlan
    fingerprint: dict
    stop: bool  # --plan-only: printed, nothing to train


def _by_hand(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)


def hand_set_values(ctx: click.Context, opts: dict) -> dict:
    """Plan field -> value for every recipe option the user gave."""
    out = {}
    for option, field_name in OPTION_TO_PLAN.items():
        if not _by_hand(ctx, option):
            continue
        value = opts.get(option)
        if option == "region_dice" and not value:
            continue
        if option == "network_args":
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise UsageError(f"--network-args: not JSON ({exc})") from None
        out[field_name] = value
    if opts.get("no_amp"):
        out["precision"] = "fp32"
    if _by_hand(ctx, "augment") and not opts.get("augment"):
        out["augmentation"] = "none"
    return out


def plan_if_asked(ctx: click.Context, spec, data_dir: Path, model_dir: Path, opts: dict, console) -> Planned | None:
    """Plan when --plan auto (or the task's recipe is 'planned'); None when the task's own recipe trains."""
    planning = opts.pop("planning") or ("auto" if spec.recipe == "planned" else "off")
    budget, plan_only = opts.pop("budget"), opts.pop("plan_only")
    if opts["folds"] and (opts["val_cases"] or _by_hand(ctx, "val_fraction")):
        raise UsageError("--folds chooses the validation cases of each fold: leave out --val-cases and --val-fraction")
    if planning == "off":
        if plan_only:
            raise UsageError(f"--plan-only: task {spec.name!r} trains its declared recipe; add --plan auto to plan")
        if budget is not None:
            from segtool.training.planning import parse_budget

            if opts["max_minutes"] is None:
                opts["max_minutes"] = parse_budget(budget) / 60.0
            console.print(f"[yellow]note:[/yellow] task {spec.name!r} trains its declared recipe, so --budget only "
                          "limits the time (--max-minutes); --plan auto plans the recipe for the budget")
        return None
    if opts["resume"]:
        return _resumed_plan(model_dir)
    from segtool.training.planning import PlanRequest, make_training_plan, parse_budget

    request = PlanRequest(
        budget_seconds=parse_budget(budget or DEFAULT_BUDGET),
        device=opts["device"],
        precision="fp32" if opts["no_amp"] else opts["precision"],
        labels_map=opts["labels_map"],
        group_by=opts["group_by"],
        val_fraction=(1.0 / opts["folds"]) if opts["folds"] else opts["val_fraction"],
        val_cases=tuple(opts["val_cases"]),
        overrides=hand_set_values(ctx, opts),
    )
    fingerprint, plan = make_training_plan(spec, data_dir, model_dir, request, console)
    if plan_only:
        if opts["as_json"]:
            echo_json({"fingerprint": {k: v for k, v in fingerprint.items() if k != "per_case"},
                       "plan": plan.to_json()})
        else:
            from segtool.console import stdout_console

            out = stdout_console()
            print_fingerprint(fingerprint, out)
            print_plan(plan, out)
        return Planned(plan, fingerprint, stop=True)
    print_plan(plan, console)
    return Planned(plan, fingerprint, stop=False)


def _resumed_plan(model_dir: Path) -> Planned:
    """--resume of a planned run: the plan recorded in its model folder, never a new one."""
    from segtool.model_config import CONFIG_FILENAME, ModelConfig
    from segtool.training.plan import TrainingPlan

    path = Path(model_dir) / CONFIG_FILENAME
    if not path.is_file():
        raise UsageError(f"--resume: {model_dir} holds no config.json with the plan of the run to continue")
    recorded = (ModelConfig.read(path).training or {}).get("plan")
    if not recorded:
        raise UsageError(f"--resume: {model_dir} was not trained from a plan; resume it with --plan off")
    return Planned(TrainingPlan.from_json(recorded), {}, stop=False)


def print_fingerprint(fp: dict, console) -> None:
    """The fingerprint's main facts, a line each (--plan-only)."""
    def sizes(values, unit=""):
        return "x".join(f"{v:.3g}" for v in values) + unit

    console.print(f"[bold]fingerprint[/bold] ({fp['cases']} case(s), {fp['cases_read']} read): median shape "
                  f"{sizes(fp['median_shape'])}, spacing {sizes(fp['median_spacing'], ' mm')} "
                  f"(anisotropy {fp['anisotropy']:.1f}), labelled extent "
                  f"{sizes(fp['median_foreground_extent_mm'] or [], ' mm')}, foreground thickness "
                  f"{fp['foreground_thickness_mm'] or 0:.3g} mm, {fp['empty_case_share']:.0%} of cases unlabelled")
    for ch in fp["channels"]:
        stats = ch.get("foreground") or {}
        outside = (f"constant outside {', '.join(f'{v:g}' for v in ch['outside_values'][:3])} over "
                   f"{ch['median_outside_share']:.0%}" if ch["constant_outside_cases"] else "no constant outside")
        console.print(f"  channel {ch['name']}: range {ch['min']:.4g}..{ch['max']:.4g}, foreground mean "
                      f"{stats.get('mean', float('nan')):.4g} sd {stats.get('std', float('nan')):.4g}; {outside} "
                      f"({ch['constant_outside_cases']} case(s))")
    for value, label in fp["labels"].items():
        console.print(f"  label {value} {label['name']}: {label['voxel_share']:.2%} of the voxels, in "
                      f"{label['cases_with']} case(s), {label['median_components']:g} piece(s) per case")


def print_plan(plan, console) -> None:
    from rich.table import Table

    table = Table(title=f"plan for a budget of {(plan.budget_seconds or 0) / 60:.1f} min "
                        f"(planned in {plan.planning_seconds:.0f} s)", show_lines=False)
    table.add_column("what", style="bold")
    table.add_column("planned")
    table.add_column("why")
    for what, value, why in plan.table():
        table.add_row(what, value, why)
    console.print(table)

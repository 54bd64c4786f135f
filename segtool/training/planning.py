"""`segtool train`'s planning step: data folder + task + budget -> fingerprint and `TrainingPlan`.

Reads the cases (`training.datasets`), fingerprints them (`training.fingerprint`, cached in the
model folder), measures candidate networks on the device (`training.plan_measure`), plans
(`training.planner`), then fits the budget: the data reading, the final validation and the
writing are estimated and kept out of the training time, so that the whole run ends within
the budget. Values the user set by hand replace the plan's and are recorded as such.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segtool.errors import UsageError
from segtool.training.plan import TrainingPlan

#: Planned steps over what the measured rate buys in the training time (the clock stops the run first).
STEP_CEILING = 1.5
#: What the final write of a model folder and the process start cost, besides validation (seconds).
WRITE_SECONDS = 10.0
_BUDGET = re.compile(r"^\s*(?:(?P<h>\d+(?:\.\d+)?)h)?\s*(?:(?P<m>\d+(?:\.\d+)?)m(?:in)?)?\s*(?:(?P<s>\d+(?:\.\d+)?)s)?\s*$")


def parse_budget(text: str) -> float:
    """Seconds in '30m', '1h', '1h30m', '90s', '1.5h' or a bare number of minutes."""
    value = str(text).strip().lower()
    try:
        minutes = float(value)
    except ValueError:
        match = _BUDGET.match(value)
        if not value or not match or not any(match.groupdict().values()):
            raise UsageError(f"--budget {text!r}: give a time such as 30m, 1h, 1h30m or 90s") from None
        seconds = (float(match["h"] or 0) * 3600 + float(match["m"] or 0) * 60 + float(match["s"] or 0))
    else:
        seconds = minutes * 60
    if not seconds > 0:
        raise UsageError(f"--budget {text!r}: must be more than nothing")
    return seconds


@dataclass
class PlanRequest:
    budget_seconds: float
    device: str = "auto"
    precision: str = "auto"
    labels_map: str | None = None
    group_by: str | None = None
    val_fraction: float = 0.2  # the run's validation share, or
    val_cases: tuple[str, ...] = ()  # its validation cases (for the time validating costs)
    overrides: dict[str, Any] = field(default_factory=dict)  # plan field -> value set by hand
    started: float = field(default_factory=time.monotonic)


def _validation_seconds(fp: dict, plan: TrainingPlan, forward_seconds: float, cases: int) -> float:
    """An estimate of the final validation: sliding windows at 50 % overlap over the median case."""
    if cases <= 0:
        return 0.0
    shape = list(fp["median_shape"])
    spacing = fp["median_spacing"]
    if plan.target_spacing is not None:
        shape = [n * s / t if t else n for n, s, t in zip(shape, spacing, plan.target_spacing)]
    if plan.input_size is not None:
        shape = list(plan.input_size)
    slices = 1
    if plan.slice_axis is not None:
        slices = shape.pop(plan.slice_axis)
    windows = slices
    for size, patch in zip(shape, plan.patch_size):
        windows *= max(1, math.ceil((size - patch) / (patch / 2)) + 1)
    per_case = windows / plan.batch_size * forward_seconds + fp.get("seconds_per_case", 0.5) * 2
    return cases * per_case * 1.3


def make_training_plan(spec, data_dir: Path, model_dir: Path, request: PlanRequest, console) -> tuple[dict, TrainingPlan]:
    """(fingerprint, plan) for training ``spec`` on ``data_dir`` within the request's budget."""
    from segtool.training.datasets import discover, group_key
    from segtool.training.fingerprint import load_or_compute
    from segtool.training.plan_measure import StepTimer, usable_cores
    from segtool.training.planner import STEP_TIME_MARGIN, TaskFacts, candidates_of, cost, make_plan, plan_augmentation
    from segtool.training.trainer_data import resolve_labels_map

    dataset = discover(data_dir, spec.channels)
    labels_map = resolve_labels_map(spec, dataset, request.labels_map, console)
    fp, cached = load_or_compute(spec, dataset.cases, labels_map, model_dir)
    console.print(f"fingerprint of {fp['cases']} case(s){' (cached)' if cached else ''}: median shape "
                  f"{'x'.join(f'{v:g}' for v in fp['median_shape'])}, spacing "
                  f"{'x'.join(f'{v:.3g}' for v in fp['median_spacing'])} mm")
    timer = StepTimer(request.device, request.precision)
    facts = TaskFacts.of(spec)
    subjects = len({group_key(name, request.group_by) for name in dataset.names})
    augmentation, _ = plan_augmentation(fp, facts, subjects)
    probe = min((c for _, c in candidates_of(fp, facts, augmentation)[0]), key=cost)
    threads = timer.pick_threads(probe)
    reading = fp.get("seconds_per_case", 0.5) * fp["cases"] * 1.5
    # a first guess of validation, refined once the plan is known
    reserve = reading + WRITE_SECONDS + (time.monotonic() - request.started)
    plan = make_plan(fp, facts, request.budget_seconds, timer, subjects, reserve, timer.precision)
    plan.threads = threads
    cores = usable_cores()
    if plan.augmentation != "none" and (threads is None or (threads < cores)):
        plan.num_workers = 1
        plan.reasons["num_workers"] = ("one worker process cuts and augments the next batches while the network "
                                       "trains" + (f" (training takes {threads} of {cores} cores)" if threads else ""))
    else:
        plan.reasons["num_workers"] = "no core left for a worker: batches are made between steps"
    if threads is not None:
        shown = ", ".join(f"{n} thread{'s' if n > 1 else ''} {s:.2f} s" for n, s in sorted(timer.thread_timings.items()))
        plan.reasons["threads"] = (f"a step of the cheapest candidate measured: {shown}" if shown
                                   else "one CPU core")
    chosen = next(c for c in timer.cache if list(c.patch_size) == plan.patch_size
                  and list(c.features) == plan.network_args["features"])
    validating = len(request.val_cases) or int(round(request.val_fraction * len(dataset.cases)))
    validation = _validation_seconds(fp, plan, timer.forward_seconds.get(chosen, 0.0), validating)
    elapsed = time.monotonic() - request.started
    # the trainer's clock starts before it reads the data: its limit covers reading and training
    train_limit = request.budget_seconds * 0.97 - elapsed - validation - WRITE_SECONDS
    training = max(5.0, train_limit - reading)
    # a ceiling half again above the measured rate: the clock ends the run and the cosine with it, so
    # steps faster than measured (a busy machine gone quiet) still use the whole budget
    steps = max(1, int(STEP_CEILING * training / plan.seconds_per_step))
    plan.steps_per_epoch = min(plan.steps_per_epoch, steps)
    plan.epochs = max(1, steps // plan.steps_per_epoch)
    plan.steps = plan.epochs * plan.steps_per_epoch
    plan.val_every = plan.epochs
    plan.max_minutes = round(max(5.0, train_limit) / 60.0, 3)
    plan.reasons["steps"] = (f"{training / 60:.1f} min of training, {int(training / plan.seconds_per_step)} steps at "
                             f"{plan.seconds_per_step:.3f} s a step (the measured x{STEP_TIME_MARGIN:g}), planned up to {STEP_CEILING:g}x that: "
                             f"the clock ends the run and the cosine with it; reading the data ~{reading:.0f} s, "
                             f"the final validation ~{validation:.0f} s and planning are kept out of the budget")
    plan.planning_seconds = round(elapsed, 1)
    apply_overrides(plan, request.overrides)
    return fp, plan


#: Plan fields a hand-set `segtool train` option replaces (option name -> plan field).
OVERRIDABLE = ("patch_size", "batch_size", "epochs", "steps_per_epoch", "lr", "foreground_fraction",
               "region_dice", "precision", "max_minutes", "network", "network_args", "augmentation", "num_workers")


def apply_overrides(plan: TrainingPlan, overrides: dict[str, Any]) -> None:
    """Hand-set values win over the plan's; each is listed in ``plan.overridden``."""
    for name, value in overrides.items():
        if name not in OVERRIDABLE:
            raise ValueError(f"not a plan value: {name}")
        if name in ("epochs", "steps_per_epoch"):
            setattr(plan, name, int(value))
            plan.steps = plan.epochs * plan.steps_per_epoch
            plan.val_every = plan.epochs
        elif name == "patch_size":
            if len(value) != plan.network_dims:
                raise UsageError(f"--patch-size {'x'.join(map(str, value))}: the plan trains a {plan.network_dims}D "
                                 f"network ({plan.network_dims} sizes); --plan off trains the task's own recipe")
            plan.patch_size = list(value)
            if plan.input_size is not None:
                plan.input_size = list(value)
        elif name == "region_dice":
            plan.region_dice = bool(value)
            plan.loss = "region-dice+ce" if value else "dice+ce"
        else:
            setattr(plan, name, value)
        if name not in plan.overridden:
            plan.overridden.append(name)


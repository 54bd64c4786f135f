"""The planner: from a fingerprint, the task's declarations and a time budget to a `TrainingPlan`.

The rules, nnU-Net's where they fit and ours where the compute differs (each choice's reason
goes into the plan):

- Grid: `plan_grid` (median spacing; slices for anisotropic data; finer in-plane for thin
  structures; 3D when a patch holding the context and the thinnest solid label is affordable).
- Size. Candidates (input scale or patch, then base width 32 or 16) are tried in that order
  of preference and the first whose **measured** speed buys ``MIN_STEPS`` steps in the
  budget is taken: resolution first, then width; the budget buys steps, never a larger
  network that cannot be trained in it.
- Normalisation: RGB statistics for photos; CT-like ranges (below -500) percentile clipping;
  a constant outside (≥ 20 % of the image in most cases) z-scores the foreground only
  (``zscore-foreground``: it handles a raw 0 and a z-scored copy's -mean/std alike);
  else a plain z-score.
- Augmentation: photos their own; fewer than 50 subjects TorchIO's strong MRI recipe
  (left-right flips only, which also keeps position-named labels right); else the
  default recipe (flips on every axis) unless labels are named by position.
- Loss: Dice over the regions when the task declares two or more (nested BraTS regions),
  else per label, plus cross-entropy. Half the patches centred on foreground when it is rare.
- Schedule: AdamW 1e-3, cosine with warm-up over exactly the steps the budget buys; one
  validation at the end (validating costs training time).
- Postprocessing: keep each label's largest component when the training labels are one
  piece (≥ 98 % of a label's voxels in its largest component in 90 % of the cases); keep the
  largest piece of the foreground when only the union is one piece.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from segtool.training.plan import TrainingPlan
from segtool.training.plan_grid import TaskFacts, plan_grid

#: Steps a candidate must afford within the budget to be taken (2D, 3D networks), in the trainer's steps:
#: 1,200 and 600 of the step timer's until 2026-12-07, which the trainer ran at 1/STEP_TIME_MARGIN of.
MIN_STEPS = {2: 1000, 3: 500}
#: The trainer's step against the step timer's (segtool.training.plan_measure): on an idle machine (2 Xeon
#: cores, 2026-12-07) training ran 0.81 (BraTS 3D), 0.875 (spinal-gm 2D) and 0.79 (LGG 2D) of the steps the
#: measured rate bought: the timer keeps the faster of two steps and misses the loader's sampling and
#: hand-over and the augmentation's dear draws (elastic). Measured seconds a step are multiplied by this.
STEP_TIME_MARGIN = 1.2
# A 3D U-Net step's cost per unit of `cost` against the 2D one's, to tell whether measuring 3D is worth it:
# measured on 2 EPYC cores, bf16, per patch voxel, the 3D U-Net (4 levels, 128-320 deep) was no dearer
# than the 2D one (5 levels, to 512): 1.9e-6 s against 2.6e-6 s; 1.5 keeps a margin. (3x ruled 3D out
# for BraTS on one thread, where the bundled 3D recipe trains 650 steps in 22 minutes.)
CONV3D_COST_FACTOR = 1.5
#: Steps per epoch (the log's and checkpoint's unit).
STEPS_PER_EPOCH = {2: 100, 3: 50}
#: Base widths tried, widest first; feature maps double per level up to the cap.
WIDTHS = (32, 16)
FEATURE_CAP = {2: 512, 3: 320}
#: Share of the budget kept for reading the data, the final validation and writing (besides estimates).
SAFETY_SHARE = 0.05
FEW_SUBJECTS = 50


@dataclass(frozen=True)
class Candidate:
    """One network configuration whose speed is measured: what `plan_measure` needs."""

    network_dims: int
    patch_size: tuple[int, ...]
    features: tuple[int, ...]
    batch_size: int
    in_channels: int
    out_channels: int
    label: str = ""
    augmentation: str = "none"  # the recipe each batch goes through (its CPU time counts: it runs between steps)


def divisor_levels(patch: Sequence[int], most: int) -> int:
    """Poolings a patch allows: while every side stays at least 6 voxels (nnU-Net stops at 4-8)."""
    levels = 0
    while levels < most and min(p / 2 ** (levels + 1) for p in patch) >= 6:
        levels += 1
    return levels


def round_patch(sizes: Sequence[float], levels_most: int) -> tuple[list[int], int]:
    """Sizes rounded up to a multiple of 2**levels (the levels they allow), and the levels."""
    levels = divisor_levels([max(8, s) for s in sizes], levels_most)
    step = 2 ** levels
    return [int(max(step, math.ceil(s / step) * step)) for s in sizes], levels


def features_for(width: int, levels: int, dims: int) -> tuple[int, ...]:
    return tuple(min(FEATURE_CAP[dims], width * 2 ** i) for i in range(levels + 1))


def plan_normalization(fp: dict, facts: TaskFacts) -> tuple[str, str]:
    if facts.photo:
        return "rgb", "photos: ImageNet statistics per colour channel"
    channels = fp["channels"]
    if all(c["min"] <= -500 and (c["image"] or {}).get("percentile_00_5", 0) <= -900 for c in channels):
        return "percentile", "a CT-like range (air near -1000): intensities clipped to the 0.5-99.5 percentiles, then z-scored"
    constant = [c for c in channels if c["constant_outside_cases"] >= 0.5 * fp["cases_read"]
                and c.get("median_outside_share", 0) >= 0.2]
    if constant:
        values = sorted({v for c in constant for v in c["outside_values"]})
        shown = ", ".join(f"{v:g}" for v in values[:4])
        return "zscore-foreground", (f"the outside of the image is one constant value ({shown}) over "
                                     f"{constant[0]['median_outside_share']:.0%} of it in most cases: z-score inside")
    return "zscore", "no constant outside: z-score over the whole image"


def plan_augmentation(fp: dict, facts: TaskFacts, subjects: int) -> tuple[str, str]:
    if facts.photo:
        return "photo", "photos: flips, rotation, scaling, brightness and contrast"
    if subjects < FEW_SUBJECTS:
        return "mri-strong", (f"{subjects} subjects: affine, elastic, low resolution, bias field, gamma, noise, blur; "
                              "flips left-right only")
    if facts.relabel_by_position:
        return "mri-strong", "labels named by their position: never flipped along the column"
    return "default", f"{subjects} subjects: the milder recipe, flips on every axis"


def plan_postprocess(fp: dict, facts: TaskFacts) -> tuple[bool, list[int], str]:
    per_case = fp.get("per_case") or []
    if not per_case:
        return False, [], "no per-case objects recorded"
    whole = []
    for value in map(str, facts.labels):
        shares = [c["objects"]["labels"][value]["largest_share"] for c in per_case if value in c["objects"]["labels"]]
        whole.append(bool(shares) and sum(s >= 0.98 for s in shares) >= 0.9 * len(shares))
    if all(whole):
        return True, [], "every label is one piece in the training labels: its largest component is kept"
    unions = [c["objects"]["union_largest_share"] for c in per_case if c["objects"]["union_components"]]
    if len(facts.labels) > 1 and unions and sum(s >= 0.95 for s in unions) >= 0.9 * len(unions):
        return False, sorted(facts.labels), "the labels together form one piece: its largest component is kept"
    return False, [], "labelled structures come in several pieces: every component is kept"


def cost(candidate: Candidate) -> float:
    """A U-Net step's relative cost: patch voxels x batch x (base width)² (the first levels dominate)."""
    return math.prod(candidate.patch_size) * candidate.batch_size * (candidate.features[0] / 16) ** 2 \
        * (candidate.in_channels + 8) / 9


def candidates_of(fp: dict, facts: TaskFacts, augmentation: str = "none") -> tuple[list[tuple[dict, Candidate]], dict]:
    """Every (grid option, network) to consider, most preferred first, and the grid's reasons."""
    grid = plan_grid(fp, facts)
    out = []
    for option in grid["options"]:
        dims = option["dims"]
        patch, levels = round_patch(option["patch"], 5 if dims == 2 else 4)
        batch = 2 if dims == 3 else (8 if math.prod(patch) <= 256 * 256 else 4)
        for width in WIDTHS:
            out.append((option, Candidate(dims, tuple(patch), features_for(width, levels, dims), batch,
                                          len(facts.channels), len(facts.labels) + 1,
                                          f"{option['label']}, width {width}", augmentation)))
    return out, dict(grid.get("reasons", {}))


def choose(candidates: list[tuple[dict, Candidate]], measure: Callable[[Candidate], float], train_seconds: float,
           measure_seconds: float) -> tuple[tuple[dict, Candidate, float, int] | None, list[dict]]:
    """The first candidate whose measured speed affords MIN_STEPS in ``train_seconds``.

    Seconds a step are the measurement times STEP_TIME_MARGIN: what the trainer will take.

    The cheapest candidate of each dimensionality is measured first and calibrates a cost model
    (seconds per unit of `cost`); a more preferred candidate is measured only when the model
    predicts it affordable, so a few measurements decide, and slow ones are never run.
    """
    import time

    started = time.monotonic()
    measured: dict[Candidate, float] = {}
    log: list[dict] = []

    def run(candidate: Candidate) -> float:
        if candidate not in measured:
            timed = measure(candidate)
            measured[candidate] = timed * STEP_TIME_MARGIN
            log.append({"candidate": candidate.label, "patch": list(candidate.patch_size),
                        "features": list(candidate.features), "batch": candidate.batch_size,
                        "measured_seconds": round(timed, 4), "seconds_per_step": round(measured[candidate], 4),
                        "steps_in_budget": int(train_seconds / measured[candidate])})
        return measured[candidate]

    rate: dict[int, float] = {}
    for dims in sorted({c.network_dims for _, c in candidates}):  # 2D first: cheaper to measure
        cheapest = min((c for _, c in candidates if c.network_dims == dims), key=cost)
        if dims == 3 and 2 in rate and train_seconds / (CONV3D_COST_FACTOR * rate[2] * cost(cheapest)) < 0.5 * MIN_STEPS[3]:
            rate[3] = CONV3D_COST_FACTOR * rate[2]  # predicted hopeless: not measured
            continue
        rate[dims] = run(cheapest) / cost(cheapest)
    for option, candidate in candidates:
        dims = candidate.network_dims
        if train_seconds / (rate[dims] * cost(candidate)) < 0.7 * MIN_STEPS[dims]:
            continue  # predicted too slow: not worth measuring
        if candidate not in measured and time.monotonic() - started > measure_seconds:
            continue
        seconds = run(candidate)
        rate[dims] = max(rate[dims], seconds / cost(candidate))
        steps = int(train_seconds / seconds)
        if steps >= MIN_STEPS[dims]:
            return (option, candidate, seconds, steps), log
    return None, log


def _most_steps(candidates: list, measurements: list[dict], reasons: dict[str, str]) -> tuple:
    """(option, candidate, seconds a step, steps) of the measured candidate that trains the most steps."""
    best = max(measurements, key=lambda m: m["steps_in_budget"])
    option, candidate = next((o, c) for o, c in candidates if c.label == best["candidate"])
    reasons["network"] = (f"no candidate affords {MIN_STEPS[candidate.network_dims]} steps in the budget: "
                          "the measured one that trains the most steps")
    return option, candidate, best["seconds_per_step"], best["steps_in_budget"]


def _explain_choice(reasons: dict[str, str], option: dict, dims: int, seconds: float) -> None:
    """The reasons for the chosen candidate's dimensions, spacing, patch and network."""
    if dims == 2 and reasons.get("network_dims", "").startswith("isotropic, and"):
        reasons["network_dims"] = (f"no 3D patch that covers the context affords {MIN_STEPS[3]} steps in the budget "
                                   f"(measured): 2D slices along axis {option['slice_axis']}")
    reasons.setdefault("network_dims", option["why"])
    reasons["target_spacing"] = option["why"]
    reasons["patch_size"] = option["why"]
    reasons.setdefault("network", f"the first candidate (resolution first, then width) that affords "
                                  f"{MIN_STEPS[dims]} steps: {seconds:.3f} s a step ({STEP_TIME_MARGIN:g}x the measured)")


def make_plan(fp: dict, facts: TaskFacts, budget_seconds: float, measure: Callable[[Candidate], float],
              subjects: int, reserve_seconds: float = 0.0, precision: str = "auto",
              measure_seconds: float = 30.0) -> TrainingPlan:
    """The plan for ``fp`` within ``budget_seconds`` (``measure`` gives a candidate's seconds per step).

    ``reserve_seconds``: the caller's estimate of what is not training (reading, validation, writing).
    """
    import time

    started = time.monotonic()
    augmentation, why_augmentation = plan_augmentation(fp, facts, subjects)
    candidates, reasons = candidates_of(fp, facts, augmentation)
    train_seconds = max(5.0, budget_seconds * (1 - SAFETY_SHARE) - reserve_seconds)
    chosen, measurements = choose(candidates, measure, train_seconds, measure_seconds)
    if chosen is None:  # nothing affords the minimum: the measured candidate that trains the most steps
        chosen = _most_steps(candidates, measurements, reasons)
    option, candidate, seconds, steps = chosen
    dims = candidate.network_dims
    _explain_choice(reasons, option, dims, seconds)
    reasons["batch_size"] = "3D: 2 patches (nnU-Net's)" if dims == 3 else "2D: 8 patches (4 above 256x256)"
    normalization, reasons["normalization"] = plan_normalization(fp, facts)
    reasons["augmentation"] = why_augmentation
    region_dice = len(facts.regions) >= 2
    reasons["loss"] = ("Dice over the task's regions (it declares several) + cross-entropy" if region_dice
                       else "Dice per label + cross-entropy")
    rare = fp["foreground_share"] < 0.05 or fp["empty_case_share"] > 0.3
    reasons["foreground_fraction"] = (f"foreground is {fp['foreground_share']:.1%} of the voxels: half the patches "
                                      "centred on it" if rare else "a third of the patches centred on foreground")
    spe = STEPS_PER_EPOCH[dims]
    epochs = max(1, steps // spe)
    reasons["steps"] = (f"{train_seconds / 60:.1f} min of training at {seconds:.3f} s a step ({STEP_TIME_MARGIN:g}x the "
                        "measured); the rest of "
                        f"the budget reads the data, validates and writes")
    reasons["lr"] = "AdamW 1e-3, a cosine decay that ends with the budget (by steps or by the clock, whichever is ahead)"
    reasons["precision"] = "bfloat16 autocast where the CPU has native bfloat16, float16 on CUDA, else float32"
    threshold = 0.5 if len(facts.labels) == 1 else None
    reasons["threshold"] = ("one label: probability 0.5" if threshold is not None else "several labels: the most "
                            "probable label")
    keep_largest, keep_union, reasons["postprocess"] = plan_postprocess(fp, facts)
    return TrainingPlan(
        network_dims=dims, slice_axis=option["slice_axis"], target_spacing=option["spacing"],
        input_size=option["input_size"] and list(candidate.patch_size),
        patch_size=list(candidate.patch_size), network="unet", network_args={"features": list(candidate.features)},
        batch_size=candidate.batch_size, normalization=normalization, augmentation=augmentation,
        loss="region-dice+ce" if region_dice else "dice+ce", region_dice=region_dice,
        foreground_fraction=0.5 if rare else 0.33, steps=epochs * spe, epochs=epochs, steps_per_epoch=spe,
        val_every=epochs, lr=1e-3, precision=precision, threshold=threshold, keep_largest=keep_largest,
        keep_largest_union=keep_union, budget_seconds=budget_seconds,
        max_minutes=round(train_seconds / 60.0, 2), seconds_per_step=round(seconds, 4), reasons=reasons,
        measurements=measurements, planning_seconds=round(time.monotonic() - started, 2),
    )

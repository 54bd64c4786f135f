"""A training plan: the recipe `segtool train` chose from the data and the budget, with its reasons.

`segtool.training.planner` makes a `TrainingPlan` from a fingerprint; this module holds the
plan itself, its JSON form (config.json's ``training.plan``, the model card, ``--plan-only
--json``) and how it is applied: to the task spec (grid, network, normalisation,
augmentation, postprocessing) and to the trainer's options (patch, batch, steps, loss).
A value the user set by hand wins over the plan's and is recorded as such (``overridden``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

#: Plan fields that map onto TrainOptions (the rest change the task spec).
OPTION_FIELDS = ("patch_size", "batch_size", "epochs", "steps_per_epoch", "val_every", "lr",
                 "foreground_fraction", "region_dice", "precision", "max_minutes", "threads", "num_workers")


@dataclass
class TrainingPlan:
    """Every planned value; ``reasons`` says why each was chosen."""

    network_dims: int
    slice_axis: int | None
    target_spacing: list[float | None] | None
    input_size: list[int] | None
    patch_size: list[int]
    network: str
    network_args: dict[str, Any]
    batch_size: int
    normalization: str
    augmentation: str
    loss: str  # "dice+ce" | "region-dice+ce"
    region_dice: bool
    foreground_fraction: float
    steps: int
    epochs: int
    steps_per_epoch: int
    val_every: int
    lr: float
    precision: str
    threshold: float | None
    keep_largest: bool
    keep_largest_union: list[int]
    budget_seconds: float | None
    max_minutes: float | None
    seconds_per_step: float | None
    reasons: dict[str, str] = field(default_factory=dict)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    overridden: list[str] = field(default_factory=list)
    planning_seconds: float = 0.0
    threads: int | None = None  # CPU threads for training (measured: one thread wins on a shared CPU)
    num_workers: int = 0  # processes that cut and augment batches beside the training process

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainingPlan":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def apply_to_spec(self, spec):
        """``spec`` with the plan's grid, network, normalisation, augmentation and postprocessing.

        What a new plugin declares stays: channels, labels, regions, 2D/3D, orientation, the
        localiser, output names, and the postprocessing rules that are about the task's meaning
        (``relabel_by_position``). Everything the plan chose replaces the task's recipe.
        """
        post = replace(spec.postprocess, threshold=self.threshold, keep_largest=self.keep_largest,
                       keep_largest_union=tuple(self.keep_largest_union), fill_holes=False, min_size_mm3=0.0)
        return replace(
            spec,
            slice_axis=self.slice_axis,
            slice_context=0,
            target_spacing=None if self.target_spacing is None else tuple(self.target_spacing),
            input_size=None if self.input_size is None else tuple(self.input_size),
            patch_size=tuple(self.patch_size),
            network=self.network,
            model_factory=None,
            model_kwargs=dict(self.network_args),
            batch_size=self.batch_size,
            inference_batch_size=None,
            normalization=self.normalization,
            augmentation=self.augmentation,
            postprocess=post,
        )

    def apply_to_options(self, options):
        """``options`` (TrainOptions) with the plan's patch, batch, schedule and loss."""
        changes = {name: getattr(self, name) for name in OPTION_FIELDS}
        changes["patch_size"] = tuple(self.patch_size)
        changes["elastic"] = False  # the planned recipes that want elastic deformation hold it already
        changes["augment"] = self.augmentation != "none"
        return replace(options, **changes)

    def table(self) -> list[tuple[str, str, str]]:
        """(what, value, why) rows for people: the CLI's --plan-only and the model card."""
        def spacing() -> str:
            from segtool.spec import describe_spacing

            return describe_spacing(self.target_spacing)

        dims = f"{self.network_dims}D" + (f" slices along axis {self.slice_axis}" if self.slice_axis is not None else "")
        features = self.network_args.get("features")
        rows = [
            ("network input", dims, self.reasons.get("network_dims", "")),
            ("target spacing", spacing(), self.reasons.get("target_spacing", "")),
            ("input size", "x".join(map(str, self.input_size)) if self.input_size else "as the grid gives",
             self.reasons.get("input_size", "")),
            ("patch", "x".join(map(str, self.patch_size)), self.reasons.get("patch_size", "")),
            ("network", f"{self.network} {'-'.join(map(str, features)) if features else ''}".strip(),
             self.reasons.get("network", "")),
            ("batch", str(self.batch_size), self.reasons.get("batch_size", "")),
            ("normalisation", self.normalization, self.reasons.get("normalization", "")),
            ("augmentation", self.augmentation, self.reasons.get("augmentation", "")),
            ("loss", self.loss, self.reasons.get("loss", "")),
            ("foreground patches", f"{self.foreground_fraction:g}", self.reasons.get("foreground_fraction", "")),
            ("steps", f"{self.steps} ({self.epochs} x {self.steps_per_epoch})", self.reasons.get("steps", "")),
            ("schedule", f"AdamW lr {self.lr:g}, cosine with warm-up", self.reasons.get("lr", "")),
            ("precision", self.precision, self.reasons.get("precision", "")),
            ("CPU threads", "-" if self.threads is None else str(self.threads), self.reasons.get("threads", "")),
            ("batch workers", str(self.num_workers), self.reasons.get("num_workers", "")),
            ("threshold", "argmax" if self.threshold is None else f"{self.threshold:g}", self.reasons.get("threshold", "")),
            ("keep largest", _postprocess_text(self), self.reasons.get("postprocess", "")),
        ]
        return [(what, value + (" (by hand)" if _key(what) in self.overridden else ""), why)
                for what, value, why in rows]


def _key(row: str) -> str:
    return {"patch": "patch_size", "batch": "batch_size", "normalisation": "normalization",
            "steps": "steps", "network": "network"}.get(row, row)


def _postprocess_text(plan: TrainingPlan) -> str:
    if plan.keep_largest:
        return "each label's largest component"
    if plan.keep_largest_union:
        return "the largest component of labels " + ",".join(map(str, plan.keep_largest_union))
    return "no"


def markdown(plan: TrainingPlan) -> str:
    """The plan as a markdown table (model card)."""
    lines = ["| what | planned | why |", "|---|---|---|"]
    lines += [f"| {what} | {value} | {why} |" for what, value, why in plan.table()]
    return "\n".join(lines)

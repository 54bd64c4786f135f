"""What `segtool train` is asked to do (`TrainOptions`) and what it did (`TrainResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainOptions:
    epochs: int = 100
    steps_per_epoch: int = 250
    batch_size: int | None = None  # per process; None: the task's
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.02  # of all steps, linear warm-up before the cosine
    grad_clip: float = 12.0
    val_fraction: float = 0.2
    val_cases: tuple[str, ...] = ()
    val_every: int = 1
    labels_map: str | None = None
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    max_minutes: float | None = None
    device: str = "auto"
    patch_size: tuple[int, ...] | None = None  # None: the task's
    num_workers: int = 0
    foreground_fraction: float = 0.33
    augment: bool = True
    elastic: bool = False
    region_dice: bool = False  # the Dice term over the task's regions (sums of label probabilities)
    precision: str = "auto"  # segtool.precision: auto | fp32 | bf16 | fp16
    checkpoint_minutes: float = 5.0  # save .train/last.pt at least this often (and at every validation)
    group_by: str | None = None  # regex: cases whose first group matches stay on one side of the split
    licence: str | None = None
    datasets: tuple[str, ...] = ()
    init_weights: str | None = None  # a model folder whose weights start the run (fine-tuning)
    command: str = ""
    # The plan `segtool train` made (segtool.training.plan.TrainingPlan.to_json()), recorded in config.json and the
    # card; None: the task's declared recipe.
    plan: dict | None = None
    # The cosine schedule follows the clock as well as the step count: the learning rate reaches its end when
    # max_minutes runs out even if steps were slower than measured (planned runs; a run is then not bit-reproducible).
    schedule_by_time: bool = False
    threads: int | None = None  # CPU threads for torch (None: its default, every core)


@dataclass
class TrainResult:
    model_dir: Path
    epochs_trained: int
    global_step: int
    best_epoch: int | None
    validation: dict | None
    stopped: str | None  # "max-minutes" or None
    rank: int = 0
    state_dict: dict = field(default_factory=dict, repr=False)  # this process's final weights (CPU)

    def to_json(self) -> dict:
        return {
            "model_dir": str(self.model_dir),
            "epochs_trained": self.epochs_trained,
            "steps": self.global_step,
            "best_epoch": self.best_epoch,
            "validation": self.validation,
            "stopped": self.stopped,
        }

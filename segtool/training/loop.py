"""The trainer: data -> patches -> Dice+CE with AdamW and a cosine schedule -> model folder.

Reproducibility: the model is initialised from ``seed``; the batch of optimiser
step ``s`` on rank ``r`` is a pure function of ``(seed, r, s)`` (its own numpy
and torch generators), whichever DataLoader worker makes it. So on the CPU two
runs with one seed give the same weights, and a resumed run continues exactly
where the checkpoint stopped (model, optimiser, scheduler, scaler and step are
restored; no generator state needs saving).

Each epoch ends with validation on whole cases (`training.validate`), a line in
train_log.jsonl, the best weights in model.safetensors (with config.json and
README.md) and a checkpoint in .train/last.pt. Under torchrun every process
trains and only rank 0 validates and writes.

This module holds the model, the optimiser and the loop; the trainer's data set-up is
in `training.trainer_data`, its bookkeeping (validation, log, checkpoints, model files)
in `training.trainer_records`, the batches and augmentation in `training.batches`.
"""


from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch

from segtool.errors import UsageError
from segtool.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME
from segtool.spec import TaskSpec
from segtool.training import checkpoint, distributed
from segtool.training.batches import StepBatches, choose_augmentation, choose_field_of_view, iterate_batches
from segtool.training.channel_stand_ins import ChannelStandIns
from segtool.training.distributed import unwrap
from segtool.training.loss import DiceCELoss
from segtool.training.model_folder import LOG_FILENAME, truncate_log
from segtool.training.options import TrainOptions, TrainResult
from segtool.training.sampling import PatchSampler
from segtool.training.trainer_data import TrainerData
from segtool.training.trainer_records import TrainerRecords

__all__ = ["Trainer", "TrainOptions", "TrainResult", "train"]


def cosine_with_warmup(total_steps: int, warmup_steps: int, clock=None):
    """The learning-rate factor of a step: linear warm-up, then a cosine to 0 at ``total_steps``.

    ``clock`` (optional): a function giving the share of the time budget spent (0..1); the cosine then
    advances by whichever of steps and time is further along, so it ends when the budget does.
    """
    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if clock is not None:
            progress = max(progress, clock())
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@contextlib.contextmanager
def deterministic_cpu(device: torch.device):
    """Deterministic algorithms while training on the CPU (restored afterwards)."""
    if device.type != "cpu":
        yield
        return
    was, was_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)


def _check_model(spec: TaskSpec, model: torch.nn.Module, patch: tuple[int, ...], device: torch.device) -> None:
    """A forward pass (eval mode) on zeros of the patch size must give (1, num_classes, *patch)."""
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((1, spec.network_in_channels, *patch), device=device))
    except RuntimeError as exc:
        raise UsageError(
            f"task {spec.name!r}: the model fails on a {'x'.join(map(str, patch))} patch "
            f"({str(exc).splitlines()[0]}); the patch size must suit the network's downsampling"
        ) from None
    expected = (1, spec.num_classes, *patch)
    if tuple(out.shape) != expected:
        raise UsageError(f"task {spec.name!r}: model output {tuple(out.shape)} for a patch, expected {expected}")
    model.train()


class Trainer(TrainerData, TrainerRecords):
    """One training run (one process of it under torchrun)."""

    def __init__(self, spec: TaskSpec, data_dir: Path, model_dir: Path, options: TrainOptions, console=None,
                 plugin_manager=None):
        from segtool.console import make_console

        self.spec = spec
        self.data_dir = Path(data_dir)
        self.model_dir = Path(model_dir)
        self.opts = options
        self.plugin_manager = plugin_manager  # asked for a task's own training sampler
        self.dist = distributed.from_env()
        self.console = console if console is not None and self.dist.is_main else make_console(quiet=not self.dist.is_main)
        self.patch = tuple(options.patch_size) if options.patch_size else tuple(spec.patch_size)
        if len(self.patch) != spec.network_dims or min(self.patch) < 1:
            raise UsageError(f"--patch-size needs {spec.network_dims} positive sizes, got {options.patch_size}")
        from dataclasses import replace

        self.spec = spec = replace(spec, patch_size=self.patch)  # validation and the model folder use it
        self.batch_size = options.batch_size or spec.batch_size
        if options.region_dice and not spec.regions:
            raise UsageError(f"--region-dice: task {spec.name!r} declares no regions")
        self.start_time = time.monotonic()
        self.last_checkpoint = self.start_time
        self.previous_seconds = 0.0

    # ------------------------------------------------------------------ setup

    # ------------------------------------------------------------------ model

    def _build(self, ckpt: dict | None):
        spec, opts = self.spec, self.opts
        self.device = distributed.device_for(self.dist, opts.device)
        distributed.setup(self.dist, self.device)
        if opts.threads and self.device.type == "cpu":
            torch.set_num_threads(opts.threads)
        torch.manual_seed(opts.seed if ckpt is None else int(ckpt["seed"]))
        from segtool.precision import memory_format, resolve_precision

        self.precision = resolve_precision(opts.precision, self.device)
        self.layout = memory_format(self.device, self.precision, spec.network_dims)
        model = spec.build_network()
        self.init_record = ckpt.get("init_weights") if ckpt is not None else None
        if ckpt is None and opts.init_weights:
            from segtool.training.init_weights import load_initial_weights

            self.init_record = load_initial_weights(model, spec, opts.init_weights)
        model = model.to(self.device).to(memory_format=self.layout)
        _check_model(spec, model, self.patch, self.device)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        self.model = model
        self.use_amp = self.precision == "fp16"  # a gradient scaler only for float16
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
        self.total_steps = opts.epochs * opts.steps_per_epoch
        warmup = int(opts.warmup_fraction * self.total_steps)
        clock = self._budget_share if opts.schedule_by_time and opts.max_minutes else None
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           cosine_with_warmup(self.total_steps, warmup, clock))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        # a resumed run keeps the loss it started with
        self.region_dice = bool(ckpt.get("region_dice", False)) if ckpt is not None else opts.region_dice
        if ckpt is not None and self.region_dice != opts.region_dice:
            self.console.print(f"[yellow]note:[/yellow] the run {'took' if self.region_dice else 'did not take'} "
                               "the Dice over regions when it started, and goes on so")
        self.loss_fn = DiceCELoss(regions=list(spec.regions.values()) if self.region_dice else None,
                                  num_classes=spec.num_classes)
        self.global_step, self.best_score, self.best_epoch, self.best_validation = 0, None, None, None
        self.seed = opts.seed
        if ckpt is not None:
            unwrap(model).load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler") and self.use_amp:
                self.scaler.load_state_dict(ckpt["scaler"])
            self.global_step = int(ckpt["global_step"])
            self.best_score, self.best_epoch = ckpt["best_score"], ckpt["best_epoch"]
            self.best_validation = ckpt["best_validation"]
            self.seed = int(ckpt["seed"])
            self.previous_seconds = float(ckpt.get("seconds", 0.0))
            if int(ckpt.get("world_size", 1)) != self.dist.world_size or int(ckpt["batch_size"]) != self.batch_size:
                self.console.print("[yellow]note:[/yellow] world size or batch size changed since the checkpoint")

    # ------------------------------------------------------------------ loop

    def _budget_share(self) -> float:
        """The share of the training time (max_minutes, less what preceded the first step) spent so far."""
        first = getattr(self, "train_start", None)
        if first is None:
            return 0.0
        available = self.opts.max_minutes * 60.0 - (first - self.start_time)
        return (time.monotonic() - first) / max(1.0, available)

    def _time_up(self) -> bool:
        if self.opts.max_minutes is None:
            return False
        return time.monotonic() - self.start_time >= self.opts.max_minutes * 60.0

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        from segtool.training.step import optimisation_step

        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.layout)
        labels = labels.to(self.device, non_blocking=True)
        loss = optimisation_step(self.model, self.optimizer, self.loss_fn, images, labels, self.device, self.precision,
                                 self.scaler, self.opts.grad_clip)
        self.scheduler.step()
        self.global_step += 1
        return float(loss.detach())

    def run(self) -> TrainResult:
        ckpt = self._check_output()
        try:
            self._build(ckpt)
            with deterministic_cpu(self.device):
                return self._run(ckpt)
        finally:
            distributed.cleanup(self.dist)

    def _run(self, ckpt: dict | None) -> TrainResult:
        self._clear_output(ckpt)
        distributed.barrier(self.dist)
        self._prepare_data(ckpt)
        batches = self._step_batches()
        stopped = self._train_epochs(batches, ckpt)
        epochs_trained = self.global_step // self.opts.steps_per_epoch
        if self.dist.is_main:
            self._write_model_files(final=True, epochs_trained=epochs_trained, stopped=stopped)
            state = checkpoint.state_dir(self.model_dir)
            megabytes = sum(p.stat().st_size for p in state.rglob("*") if p.is_file()) / 1e6
            self.console.print(
                f"model folder {self.model_dir} written; {state} ({megabytes:.0f} MB) holds the checkpoint "
                "for --resume and the data cache: delete it when done"
            )
        distributed.barrier(self.dist)
        state = {k: v.detach().cpu().clone() for k, v in unwrap(self.model).state_dict().items()}
        return TrainResult(
            self.model_dir, epochs_trained, self.global_step, self.best_epoch, self.best_validation,
            stopped, self.dist.rank, state,
        )

    def _clear_output(self, ckpt: dict | None) -> None:
        """Main process: make the model folder; a fresh --overwrite run removes the old model, a resumed run
        cuts the log back to its checkpoint."""
        if not self.dist.is_main:
            return
        self.model_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is None and self.opts.overwrite:  # the data cache stays: it is checked against the data
            for name in (WEIGHTS_FILENAME, CONFIG_FILENAME, LOG_FILENAME):
                (self.model_dir / name).unlink(missing_ok=True)
            checkpoint.checkpoint_path(self.model_dir).unlink(missing_ok=True)
        if ckpt is not None:
            truncate_log(self.model_dir, self.global_step)

    def _step_batches(self) -> StepBatches:
        """The training batches: the task's own sampler (a plugin's) or patches, then augmentation;
        sets ``augment_description`` for the model card."""
        opts, spec = self.opts, self.spec
        sample_patch, overhang = list(self.patch), None
        if spec.slice_axis is not None:  # slabs of one slice (and its slice_context neighbours) from the volumes
            sample_patch.insert(spec.slice_axis, 2 * spec.slice_context + 1)
            overhang = [0] * len(sample_patch)
            overhang[spec.slice_axis] = spec.slice_context
        sampler = None
        if self.plugin_manager is not None:
            sampler = self.plugin_manager.hook.segtool_training_sampler(
                spec=spec, cases=list(self.prepared), patch_size=tuple(sample_patch), batch_size=self.batch_size,
                labels_map=dict(self.labels_map) if self.labels_map else None,
            )
        if sampler is None:
            sampler = PatchSampler(self.prepared, sample_patch, self.batch_size, opts.foreground_fraction, overhang)
        augment, self.augment_description = choose_augmentation(spec, opts.augment, opts.elastic)
        field_of_view = choose_field_of_view(spec, opts.augment)
        if field_of_view is not None:
            self.augment_description = f"{self.augment_description}; {field_of_view.describe()}"
        stand_ins = ChannelStandIns.from_declaration(spec.channel_stand_ins, spec.channels) if opts.augment else None
        if stand_ins is not None:
            self.augment_description = _first_then(stand_ins.describe(), self.augment_description)
        batches = StepBatches(sampler, augment, self.seed, self.dist.rank, spec.slice_axis, field_of_view,
                              spec.slice_context, stand_ins)
        own = getattr(sampler, "description", None)  # a task's own sampler says what it does (model card)
        if own:
            self.augment_description = _first_then(own, self.augment_description)
        return batches

    def _train_epochs(self, batches: StepBatches, ckpt: dict | None) -> str | None:
        """Train from the current step to the last epoch, validating as it goes; returns why it stopped early
        ("max-minutes") or None."""
        opts, spe = self.opts, self.opts.steps_per_epoch
        stopped = None
        start_epoch = self.global_step // spe
        if start_epoch >= opts.epochs:
            self.console.print(f"already trained {start_epoch} epoch(s); give a larger --epochs to continue")
        self.console.print(
            f"training on {self.device} x {self.dist.world_size}: {opts.epochs} epochs x {spe} steps, "
            f"batch {self.batch_size}, patch {'x'.join(map(str, self.patch))}"
            + (f", resuming at step {self.global_step}" if ckpt is not None else "")
        )
        self.model.train()
        self.train_start = time.monotonic()
        for epoch in range(start_epoch, opts.epochs):
            first = max(epoch * spe, self.global_step)
            steps = range(first, (epoch + 1) * spe)
            losses = []
            with self._progress(f"epoch {epoch + 1}/{opts.epochs}", len(steps)) as advance:
                for images, labels in iterate_batches(batches, steps, opts.num_workers, self.device.type == "cuda"):
                    losses.append(self._train_step(images, labels))
                    advance(f"loss {losses[-1]:.4f}")
                    if self.dist.is_main and time.monotonic() - self.last_checkpoint >= opts.checkpoint_minutes * 60:
                        self._save_checkpoint()
                    if opts.max_minutes is not None and distributed.any_true(self.dist, self._time_up(), self.device):
                        stopped = "max-minutes"
                        break
            partial = self.global_step < (epoch + 1) * spe
            self._end_epoch(epoch + 1, losses, partial, stopped)
            if stopped:
                break
        return stopped


def train(spec: TaskSpec, data_dir: Path, model_dir: Path, options: TrainOptions, console=None,
          plugin_manager=None) -> TrainResult:
    """Train ``spec`` on the cases in ``data_dir`` and write the model folder ``model_dir``."""
    return Trainer(spec, data_dir, model_dir, options, console, plugin_manager).run()


def _first_then(first: str, then: str) -> str:
    """The model card's augmentation line: ``first``, then what follows unless that is "none"."""
    return first if then == "none" else f"{first}; then {then}"

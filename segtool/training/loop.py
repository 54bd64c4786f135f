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
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segtool import __version__
from segtool.errors import OutputExistsError, SegtoolError, UsageError
from segtool.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME, ModelConfig
from segtool.spec import TaskSpec
from segtool.training import checkpoint, distributed
from segtool.training.augment import AugmentSettings, augment_batch
from segtool.training.augment_recipes import TORCHIO_RECIPES, apply_recipe, build_recipe, describe_recipe
from segtool.training.datasets import Dataset, describe_map, discover, map_from_dataset_json, parse_labels_map, split_cases
from segtool.training.loss import DiceCELoss
from segtool.training.model_folder import (
    LOG_FILENAME,
    append_log,
    render_card,
    truncate_log,
    write_card,
    write_config,
    write_weights,
)
from segtool.training.prepare import build_cache, open_cache
from segtool.training.sampling import PatchSampler
from segtool.training.validate import ValidationResult, validate


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
    precision: str = "auto"  # segtool.precision: auto | fp32 | bf16 | fp16
    checkpoint_minutes: float = 5.0  # save .train/last.pt at least this often (and at every validation)
    group_by: str | None = None  # regex: cases whose first group matches stay on one side of the split
    licence: str | None = None
    datasets: tuple[str, ...] = ()
    command: str = ""


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


class StepBatches(torch.utils.data.Dataset):
    """Item ``s`` is the (augmented) batch of optimiser step ``s``: seeded by (seed, rank, s).

    ``augment`` is either `AugmentSettings` (the torch augmentation of photos) or a
    TorchIO Compose (`augment_recipes`). With ``slice_axis`` the sampler cuts
    one-slice patches from the volumes and they leave here as 2D patches.
    """

    def __init__(self, sampler: PatchSampler, augment, seed: int, rank: int, slice_axis: int | None = None):
        self.sampler = sampler
        self.augment = augment
        self.seed = seed
        self.rank = rank
        self.slice_axis = slice_axis

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        seq = np.random.SeedSequence([self.seed, self.rank, int(step)])
        images, labels = self.sampler.sample(np.random.default_rng(seq))
        x, y = torch.from_numpy(images), torch.from_numpy(labels)
        if self.slice_axis is not None:
            x, y = x.squeeze(self.slice_axis + 2), y.squeeze(self.slice_axis + 1)
        seed = int(seq.generate_state(1, np.uint64)[0] >> 1)
        if isinstance(self.augment, AugmentSettings):
            x, y = augment_batch(x, y, self.augment, torch.Generator().manual_seed(seed))
        elif self.augment is not None:
            x, y = apply_recipe(self.augment, x, y, seed)
        return x, y


def iterate_batches(dataset: StepBatches, steps: range, num_workers: int, pin: bool):
    if num_workers <= 0:
        return (dataset[s] for s in steps)
    return iter(
        torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=list(steps), num_workers=num_workers, pin_memory=pin
        )
    )


def cosine_with_warmup(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
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


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _check_model(spec: TaskSpec, model: torch.nn.Module, patch: tuple[int, ...], device: torch.device) -> None:
    """A forward pass (eval mode) on zeros of the patch size must give (1, num_classes, *patch)."""
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((1, spec.in_channels, *patch), device=device))
    except RuntimeError as exc:
        raise UsageError(
            f"task {spec.name!r}: the model fails on a {'x'.join(map(str, patch))} patch "
            f"({str(exc).splitlines()[0]}); the patch size must suit the network's downsampling"
        ) from None
    expected = (1, spec.num_classes, *patch)
    if tuple(out.shape) != expected:
        raise UsageError(f"task {spec.name!r}: model output {tuple(out.shape)} for a patch, expected {expected}")
    model.train()


class Trainer:
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
        self.start_time = time.monotonic()
        self.last_checkpoint = self.start_time
        self.previous_seconds = 0.0

    # ------------------------------------------------------------------ setup

    def _check_output(self) -> dict | None:
        """Refuse to overwrite a model folder by accident; load the checkpoint when resuming."""
        if self.opts.resume:
            return checkpoint.load(checkpoint.checkpoint_path(self.model_dir))
        if self.model_dir.exists() and not self.model_dir.is_dir():
            raise OutputExistsError(f"-o {self.model_dir}: exists and is not a folder")
        existing = [n for n in (WEIGHTS_FILENAME, CONFIG_FILENAME, LOG_FILENAME, checkpoint.STATE_DIRNAME)
                    if (self.model_dir / n).exists()]
        if existing and not self.opts.overwrite:
            raise OutputExistsError(
                f"-o {self.model_dir} already holds a model ({', '.join(existing)}); "
                "use --resume to continue it or --overwrite to start again"
            )
        return None

    def _resolve_labels_map(self, dataset: Dataset, saved: dict | None) -> dict[int, int] | None:
        if saved is not None:
            return {int(k): int(v) for k, v in saved.items()} if saved else None
        if self.opts.labels_map and self.opts.labels_map.strip().lower() == "none":
            return None  # the data already holds the task's values: no map, not even the task's default
        if self.opts.labels_map:
            return parse_labels_map(self.opts.labels_map, self.spec.labels)
        if self.spec.labels_map:
            self.console.print(f"labels merged by the task's default labels map ({len(self.spec.labels_map)} source "
                               "values; --labels-map none turns it off)")
            return dict(self.spec.labels_map)
        auto = map_from_dataset_json(dataset.info, self.spec.labels)
        if auto:
            self.console.print(f"labels renumbered by name from dataset.json: {describe_map(auto)}")
        return auto

    def _prepare_data(self, ckpt: dict | None):
        spec, opts = self.spec, self.opts
        dataset = discover(self.data_dir, spec.channels)
        if ckpt is not None:
            train_names, val_names = list(ckpt["split"]["train"]), list(ckpt["split"]["validation"])
            missing = sorted(set(train_names + val_names) - set(dataset.names))
            if missing:
                raise UsageError(f"--resume: case(s) {', '.join(missing[:5])} of the checkpoint are gone from {self.data_dir}")
            labels_map = self._resolve_labels_map(dataset, ckpt["labels_map"])
        else:
            train_names, val_names = split_cases(
                dataset.names, opts.seed, opts.val_fraction, opts.val_cases, group_by=opts.group_by
            )
            labels_map = self._resolve_labels_map(dataset, None)
        by_name = {c.name: c for c in dataset.cases}
        train_cases = [by_name[n] for n in train_names]
        val_cases = [by_name[n] for n in val_names]
        if dataset.ignored:
            self.console.print(f"[yellow]note:[/yellow] {len(dataset.ignored)} image(s) without a label ignored")
        self.console.print(
            f"[bold]{spec.name}[/bold]: {len(dataset.cases)} case(s) in {self.data_dir} ({dataset.layout} layout): "
            f"{len(train_cases)} train, {len(val_cases)} validation"
        )
        cache_dir = checkpoint.state_dir(self.model_dir) / "cache"
        failure: SegtoolError | None = None
        if self.dist.is_main:
            try:
                with self._progress("preprocessing", len(train_cases)) as advance:
                    build_cache(spec, train_cases, labels_map, cache_dir, on_case=lambda done, total: advance())
            except SegtoolError as exc:
                failure = exc
        shared = distributed.broadcast_object(
            self.dist, (failure.one_line(), failure.exit_code) if failure is not None else None
        )
        if failure is not None:
            raise failure
        if shared is not None:  # rank 0 failed: fail the same way here
            error = SegtoolError(shared[0])
            error.exit_code = shared[1]
            raise error
        prepared, manifest = open_cache(cache_dir)
        self.dataset, self.labels_map = dataset, labels_map
        self.train_cases, self.val_cases = train_cases, val_cases
        self.prepared, self.manifest = prepared, manifest

    @contextlib.contextmanager
    def _progress(self, description: str, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=self.console, transient=True,
            disable=not self.console.is_terminal,
        ) as progress:
            task = progress.add_task(description, total=total, info="")

            def advance(info: str = "") -> None:
                progress.update(task, advance=1, info=info)

            yield advance

    def _build(self, ckpt: dict | None):
        spec, opts = self.spec, self.opts
        self.device = distributed.device_for(self.dist, opts.device)
        distributed.setup(self.dist, self.device)
        torch.manual_seed(opts.seed if ckpt is None else int(ckpt["seed"]))
        from segtool.precision import memory_format, resolve_precision

        self.precision = resolve_precision(opts.precision, self.device)
        self.layout = memory_format(self.device, self.precision, spec.network_dims)
        model = spec.build_network().to(self.device).to(memory_format=self.layout)
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
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_with_warmup(self.total_steps, warmup))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.loss_fn = DiceCELoss()
        self.global_step, self.best_score, self.best_epoch, self.best_validation = 0, None, None, None
        self.seed = opts.seed
        if ckpt is not None:
            _unwrap(model).load_state_dict(ckpt["model"])
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

    def _time_up(self) -> bool:
        if self.opts.max_minutes is None:
            return False
        return time.monotonic() - self.start_time >= self.opts.max_minutes * 60.0

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        from segtool.precision import autocast

        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.layout)
        labels = labels.to(self.device, non_blocking=True)
        with autocast(self.device, self.precision):
            logits = self.model(images)
        loss = self.loss_fn(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.opts.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
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
        opts, spe = self.opts, self.opts.steps_per_epoch
        if self.dist.is_main:
            self.model_dir.mkdir(parents=True, exist_ok=True)
            if ckpt is None and opts.overwrite:  # the data cache stays: it is checked against the data
                for name in (WEIGHTS_FILENAME, CONFIG_FILENAME, LOG_FILENAME):
                    (self.model_dir / name).unlink(missing_ok=True)
                checkpoint.checkpoint_path(self.model_dir).unlink(missing_ok=True)
            if ckpt is not None:
                truncate_log(self.model_dir, self.global_step)
        distributed.barrier(self.dist)
        self._prepare_data(ckpt)
        spec = self.spec
        sample_patch = list(self.patch)
        if spec.slice_axis is not None:  # one-slice patches of the volumes
            sample_patch.insert(spec.slice_axis, 1)
        sampler = None
        if self.plugin_manager is not None:
            sampler = self.plugin_manager.hook.segtool_training_sampler(
                spec=spec, cases=list(self.prepared), patch_size=tuple(sample_patch), batch_size=self.batch_size
            )
        if sampler is None:
            sampler = PatchSampler(self.prepared, sample_patch, self.batch_size, opts.foreground_fraction)
        batches = StepBatches(sampler, self._augmentation(), self.seed, self.dist.rank, spec.slice_axis)
        own = getattr(sampler, "description", None)  # a task's own sampler says what it does (model card)
        if own:
            self.augment_description = own if self.augment_description == "none" else f"{own}; then {self.augment_description}"
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
        epochs_trained = self.global_step // spe
        if self.dist.is_main:
            self._write_model_files(final=True, epochs_trained=epochs_trained, stopped=stopped)
            state = checkpoint.state_dir(self.model_dir)
            megabytes = sum(p.stat().st_size for p in state.rglob("*") if p.is_file()) / 1e6
            self.console.print(
                f"model folder {self.model_dir} written; {state} ({megabytes:.0f} MB) holds the checkpoint "
                "for --resume and the data cache: delete it when done"
            )
        distributed.barrier(self.dist)
        state = {k: v.detach().cpu().clone() for k, v in _unwrap(self.model).state_dict().items()}
        return TrainResult(
            self.model_dir, epochs_trained, self.global_step, self.best_epoch, self.best_validation,
            stopped, self.dist.rank, state,
        )

    def _augmentation(self):
        """The TorchIO recipe, the photo settings, or None; remembered for the model card."""
        spec, opts = self.spec, self.opts
        photo = spec.normalization == "rgb" or "photo" in spec.modality.lower()
        recipe = spec.augmentation
        if not opts.augment or recipe == "none":
            self.augment_description = "none"
            return None
        if photo or recipe == "photo" or recipe not in TORCHIO_RECIPES:
            settings = AugmentSettings.for_task(spec.network_dims, photo, opts.elastic)
            self.augment_description = (
                f"flips on axes {list(settings.flip_axes)}, rotation ±{settings.max_rotation_deg:g}°, scaling "
                f"{settings.scale_range[0]:g}-{settings.scale_range[1]:g}, brightness, contrast, noise, blur"
                + (", elastic" if settings.p_elastic else "")
            )
            return settings
        flips = (0,) if recipe == "mri-strong" else tuple(range(spec.network_dims))  # mri-strong: left-right only
        self.augment_description = describe_recipe(recipe, flips)
        return build_recipe(recipe, spec.network_dims, flips)

    def _end_epoch(self, epoch: int, losses: list[float], partial: bool, stopped: str | None) -> None:
        opts = self.opts
        loss = distributed.mean(self.dist, float(np.mean(losses)) if losses else float("nan"), self.device)
        last = epoch >= opts.epochs or stopped is not None
        validation: ValidationResult | None = None
        if self.dist.is_main and self.val_cases and (epoch % opts.val_every == 0 or last):
            validation = self._validate()
        improved = False
        if self.dist.is_main:
            score = validation.mean_dice if validation is not None else None
            if not self.val_cases or (validation is not None and score is None):
                improved = True  # nothing to compare: keep the latest weights
            elif score is not None and (self.best_score is None or score > self.best_score):
                improved = True
            if improved:
                self.best_score, self.best_epoch = score, epoch
                self.best_validation = validation.to_json() if validation is not None else None
                write_weights(self.model_dir, _unwrap(self.model).state_dict())
                self._write_model_files(final=False, epochs_trained=epoch, stopped=stopped)
            record = {
                "epoch": epoch,
                "step": self.global_step,
                "train_loss": loss,
                "lr": self.scheduler.get_last_lr()[0],
                "seconds": round(self._seconds(), 2),
                "partial": partial,
                "best": improved,
            }
            if validation is not None:
                record["validation"] = validation.to_json()
            if stopped:
                record["stopped"] = stopped
            append_log(self.model_dir, record)
            self._save_checkpoint()
            summary = f"epoch {epoch}/{opts.epochs}: loss {loss:.4f}"
            if validation is not None and validation.mean_dice is not None:
                summary += f", val Dice {validation.mean_dice:.4f}"
            self.console.print(summary + (" [green](best)[/green]" if improved and self.val_cases else ""))
        distributed.barrier(self.dist)

    def _validate(self) -> ValidationResult:
        model = _unwrap(self.model)
        try:
            with self._progress("validation", len(self.val_cases)) as advance:
                return validate(
                    self.spec, model, self.val_cases, self.labels_map, str(self.device), self.precision,
                    on_case=lambda done, total: advance(),
                )
        finally:
            model.train()

    def _seconds(self) -> float:
        return self.previous_seconds + time.monotonic() - self.start_time

    def _save_checkpoint(self) -> None:
        self.last_checkpoint = time.monotonic()
        checkpoint.save(
            checkpoint.checkpoint_path(self.model_dir),
            {
                "task": self.spec.name,
                "seed": self.seed,
                "split": {"train": [c.name for c in self.train_cases], "validation": [c.name for c in self.val_cases]},
                "labels_map": dict(self.labels_map or {}),
                "model": _unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.use_amp else None,
                "global_step": self.global_step,
                "best_score": self.best_score,
                "best_epoch": self.best_epoch,
                "best_validation": self.best_validation,
                "world_size": self.dist.world_size,
                "batch_size": self.batch_size,
                "seconds": self._seconds(),
            },
        )

    # ------------------------------------------------------------------ model folder

    def _training_record(self, epochs_trained: int, stopped: str | None) -> dict[str, Any]:
        opts, info = self.opts, self.dataset.info
        augmentation = self.augment_description
        return {
            "command": opts.command,
            "data": {
                "path": str(self.data_dir),
                "layout": self.dataset.layout,
                "cases": len(self.dataset.cases),
                "train_cases": [c.name for c in self.train_cases],
                "validation_cases": [c.name for c in self.val_cases],
                "name": info.get("name"),
                "description": info.get("description"),
                "reference": info.get("reference"),
                "licence": info.get("licence") or info.get("license"),
            },
            "labels_map": describe_map(self.labels_map) if self.labels_map else None,
            "epochs": opts.epochs,
            "epochs_trained": epochs_trained,
            "steps_per_epoch": opts.steps_per_epoch,
            "steps": self.global_step,
            "batch_size": self.batch_size,
            "world_size": self.dist.world_size,
            "lr": opts.lr,
            "weight_decay": opts.weight_decay,
            "grad_clip": opts.grad_clip,
            "foreground_fraction": opts.foreground_fraction,
            "augmentation": augmentation,
            "amp": self.precision != "fp32",
            "precision": self.precision,
            "device": self.device.type,
            "best_epoch": self.best_epoch,
            "validation": self.best_validation,
            "stopped": stopped,
            "minutes": round(self._seconds() / 60.0, 2),
        }

    def _write_model_files(self, final: bool, epochs_trained: int, stopped: str | None) -> None:
        from segtool.weights import sha256_file

        if final and not (self.model_dir / WEIGHTS_FILENAME).exists():
            write_weights(self.model_dir, _unwrap(self.model).state_dict())
        config = ModelConfig.for_spec(
            self.spec,
            weights_sha256=sha256_file(self.model_dir / WEIGHTS_FILENAME),
            patch_size=list(self.patch),
            normalization_stats=self.manifest.get("intensity", {}),
            seed=self.seed,
            segtool_version=__version__,
            training=self._training_record(epochs_trained, stopped),
        )
        write_config(self.model_dir, config)
        write_card(self.model_dir, render_card(self.spec, config, self.opts.licence, self.opts.datasets))


def train(spec: TaskSpec, data_dir: Path, model_dir: Path, options: TrainOptions, console=None,
          plugin_manager=None) -> TrainResult:
    """Train ``spec`` on the cases in ``data_dir`` and write the model folder ``model_dir``."""
    return Trainer(spec, data_dir, model_dir, options, console, plugin_manager).run()

"""The trainer's bookkeeping: end-of-epoch validation, the log, the best weights, checkpoints, model files."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from segtool.version import __version__
from segtool.model_config import WEIGHTS_FILENAME, ModelConfig
from segtool.training import checkpoint, distributed
from segtool.training.datasets import describe_map
from segtool.training.distributed import unwrap
from segtool.training.model_folder import append_log, render_card, write_card, write_config, write_weights
from segtool.training.validate import ValidationResult, validate


class TrainerRecords:
    """`Trainer`'s records of its progress (a mixin: it uses the trainer's model, optimiser and state)."""

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
                write_weights(self.model_dir, unwrap(self.model).state_dict())
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
        model = unwrap(self.model)
        try:
            with self._progress("validation", len(self.val_cases)) as advance:
                return validate(
                    self.spec, model, self.val_cases, self.labels_map, str(self.device), self.precision,
                    on_case=lambda done, total: advance(), group_by=self.opts.group_by,
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
                "region_dice": self.region_dice,
                "init_weights": self.init_record,
                "model": unwrap(self.model).state_dict(),
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
            "init_weights": self.init_record,
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
            "region_dice": self.region_dice,
            "augmentation": augmentation,
            "amp": self.precision != "fp32",
            "precision": self.precision,
            "device": self.device.type,
            "best_epoch": self.best_epoch,
            "validation": self.best_validation,
            "stopped": stopped,
            "minutes": round(self._seconds() / 60.0, 2),
            "plan": opts.plan,
        }

    def _write_model_files(self, final: bool, epochs_trained: int, stopped: str | None) -> None:
        from segtool.weights.integrity import sha256_file

        if final and not (self.model_dir / WEIGHTS_FILENAME).exists():
            write_weights(self.model_dir, unwrap(self.model).state_dict())
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

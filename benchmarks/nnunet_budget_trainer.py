"""nnU-Net's default trainer ended by a wall-clock deadline: its source text, and writing it into nnU-Net's venv.

``benchmarks/nnunet_race.py`` trains nnU-Net with ``-tr nnUNetTrainer_segtoolBudget``. ``install_trainer`` writes
``TRAINER_SOURCE`` into the venv as ``nnunetv2/training/nnUNetTrainer/nnUNetTrainer_segtoolBudget.py``, beside
nnUNetTrainer.py rather than under ``variants/``: nnU-Net finds a trainer by importing the package's modules in
order, and the ``primus`` sub-package before ``variants`` imports timm -> torchvision, whose wheel in the venv
(0.28.0, the only one the local index has) is a CUDA build that fails to load beside the CPU torch ("operator
torchvision::nms does not exist"); modules at the top are searched before any sub-package.

The changes against nnUNetTrainer are ``TRAINER_CHANGES`` (the race's report quotes them, the trainer's
docstring repeats them). The source runs only in nnU-Net's venv; tests run it against a stand-in trainer.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

TRAINER_NAME = "nnUNetTrainer_segtoolBudget"
DEADLINE_ENV = "SEGTOOL_NNUNET_DEADLINE"
TRAINER_CHANGES = (
    "first epoch: nnU-Net's 250 iterations, or fewer once a tenth of the time left before the deadline is used; "
    "that count becomes num_iterations_per_epoch, and num_val_iterations_per_epoch = count x 50/250 (>= 1)",
    "after each epoch: num_epochs (and the poly LR schedule's length) = the epochs that fit before the deadline "
    "at the mean epoch time, plus one last, shorter epoch where at least a quarter of one fits in what is left "
    "over (its training and validation iterations cut to 0.9 x that share)",
    f"deadline (Unix time) from ${DEADLINE_ENV}; the final validation (nnU-Net's prediction of the held-out "
    "cases, which the race scores) runs after it and is not counted, as segtool's prediction of them is not; "
    "everything else is nnUNetTrainer's default",
)

TRAINER_SOURCE = f'''\
"""{TRAINER_NAME}: nnU-Net's default trainer, ended by a wall-clock deadline.

Written by segtool's benchmarks/nnunet_race.py. Changes against nnUNetTrainer, nothing else:
- {TRAINER_CHANGES[0]};
- {TRAINER_CHANGES[1]};
- {TRAINER_CHANGES[2]}.
"""

import json
import os
import time
from os.path import join

import numpy as np
import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

DEADLINE_ENV = "{DEADLINE_ENV}"
EPOCH_SHARE = 0.1  # of the time left: the first epoch's length
VAL_RATIO = 50 / 250  # nnU-Net's num_val_iterations_per_epoch / num_iterations_per_epoch
LAST_EPOCH_MIN_SHARE = 0.25  # a last, shorter epoch only where at least this share of one fits
LAST_EPOCH_MARGIN = 0.9  # of that share: an epoch's fixed costs do not shrink with its iterations


def epochs_that_fit(done, epoch_seconds, seconds_left):
    """All epochs: the ``done`` ones plus those that fit in ``seconds_left`` at ``epoch_seconds`` each (>= 1)."""
    more = int(seconds_left // epoch_seconds) if epoch_seconds > 0 and seconds_left > 0 else 0
    return max(1, done + more)


def last_epoch_share(epoch_seconds, seconds_left):
    """The share of an epoch's iterations that a last, shorter epoch runs in what the whole epochs leave over
    (0: none; the whole epochs' remainder under LAST_EPOCH_MIN_SHARE of an epoch is not worth one)."""
    if epoch_seconds <= 0 or seconds_left <= 0:
        return 0.0
    share = (seconds_left % epoch_seconds) / epoch_seconds
    return LAST_EPOCH_MARGIN * share if share >= LAST_EPOCH_MIN_SHARE else 0.0


class {TRAINER_NAME}(nnUNetTrainer):
    def run_training(self):
        deadline = float(os.environ[DEADLINE_ENV])
        self.on_train_start()
        first_epoch_end = time.time() + EPOCH_SHARE * max(0.0, deadline - time.time())
        epoch_seconds, last_share, last_epoch_iterations = [], 0.0, None
        while self.current_epoch < self.num_epochs:
            start = time.time()
            self.on_epoch_start()
            self.on_train_epoch_start()
            train_outputs = []
            if not epoch_seconds:
                while len(train_outputs) < self.num_iterations_per_epoch and (
                        not train_outputs or time.time() < first_epoch_end):
                    train_outputs.append(self.train_step(next(self.dataloader_train)))
                self.num_iterations_per_epoch = len(train_outputs)
                self.num_val_iterations_per_epoch = max(1, round(len(train_outputs) * VAL_RATIO))
            else:
                last = self.current_epoch == self.num_epochs - 1 and last_share > 0
                for _ in range(max(1, int(last_share * self.num_iterations_per_epoch)) if last
                               else self.num_iterations_per_epoch):
                    train_outputs.append(self.train_step(next(self.dataloader_train)))
            val_iterations = max(1, round(self.num_val_iterations_per_epoch * len(train_outputs)
                                          / self.num_iterations_per_epoch))
            self.on_train_epoch_end(train_outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                val_outputs = [self.validation_step(next(self.dataloader_val)) for _ in range(val_iterations)]
                self.on_validation_epoch_end(val_outputs)
            self.on_epoch_end()
            if len(train_outputs) == self.num_iterations_per_epoch:
                epoch_seconds.append(time.time() - start)
            else:
                last_epoch_iterations = len(train_outputs)
            mean = float(np.mean(epoch_seconds[1:] or epoch_seconds))
            left = deadline - time.time()
            self.num_epochs = epochs_that_fit(self.current_epoch, mean, left)
            last_share = last_epoch_share(mean, left)
            if last_share > 0:
                self.num_epochs += 1
            self.lr_scheduler.max_steps = self.num_epochs
        self.on_train_end()
        end = time.time()
        record = dict(iterations_per_epoch=self.num_iterations_per_epoch,
                      val_iterations_per_epoch=self.num_val_iterations_per_epoch, epochs=self.current_epoch,
                      last_epoch_iterations=last_epoch_iterations,
                      epoch_seconds=[round(s, 2) for s in epoch_seconds], deadline=deadline,
                      training_end=end, seconds_left_after_training=round(deadline - end, 1))
        self.print_to_log_file("segtoolBudget:", json.dumps(record))
        with open(join(self.output_folder, "segtool_budget.json"), "w") as f:
            json.dump(record, f, indent=1)
'''


def install_trainer(bin_dir: Path) -> Path:
    """Write TRAINER_SOURCE into the venv's nnunetv2, beside nnUNetTrainer.py (why: the module docstring); its path."""
    found = subprocess.run([str(bin_dir / "python"), "-c", "import nnunetv2, os; print(os.path.dirname(nnunetv2.__file__))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    path = Path(found) / "training" / "nnUNetTrainer" / f"{TRAINER_NAME}.py"
    if not path.is_file() or path.read_text(encoding="utf-8") != TRAINER_SOURCE:
        path.write_text(TRAINER_SOURCE, encoding="utf-8")
    return path


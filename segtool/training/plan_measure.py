"""Measure what a candidate network costs on the real device: seconds per training step.

The planner asks for each candidate it considers; a few real optimiser steps (the batch's
augmentation recipe on the CPU, forward, Dice+CE loss, backward, AdamW) on random patches of
the candidate's size, in the precision and memory layout training will use, after one warm-up step. The same measurement gives a
forward-only time for estimating the final validation.

The augmentation and the network are timed apart: when training will run on fewer threads than
there are cores, a worker process augments the next batch while the network trains, so a step
costs the slower of the two, not their sum (measured on 3D BraTS patches on one thread: the
augmentation alone took longer than the network step, and adding them ruled 3D out).
"""

from __future__ import annotations

import time

from segtool.training.planner import Candidate


def usable_cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class StepTimer:
    """``timer(candidate)`` -> seconds per training step on ``device`` (cached per candidate)."""

    def __init__(self, device: str = "auto", precision: str = "auto", steps: int = 2, seconds_cap: float = 12.0):
        import torch

        from segtool.precision import resolve_precision
        from segtool.training.distributed import device_for, from_env

        self.device = device_for(from_env(), device) if isinstance(device, str) else device
        self.precision = resolve_precision(precision, self.device)
        self.steps = steps
        self.seconds_cap = seconds_cap
        self.cache: dict[Candidate, float] = {}
        self.forward_seconds: dict[Candidate, float] = {}
        self.threads: int | None = None
        self.thread_timings: dict[int, float] = {}
        self.augment_overlaps = False  # set by pick_threads: a batch worker will augment beside training
        self._torch = torch

    def pick_threads(self, probe: Candidate) -> int | None:
        """Measure ``probe`` with one CPU thread and with all, keep the faster for every later measurement
        and for training; the number of threads, or None off the CPU.

        On a CPU that other processes share, PyTorch's threads wait on each other at every
        operation: measured here, a 2D U-Net step took 0.64 s on one thread and 12 s on two.
        On an idle machine all threads are faster. So it is measured, not assumed.
        """
        torch = self._torch
        if self.device.type != "cpu":
            return None
        most = torch.get_num_threads()
        if most <= 1:
            self.threads = 1
            self.augment_overlaps = usable_cores() > 1
            return 1
        timings = {}
        for threads in (1, most):
            torch.set_num_threads(threads)
            self.augment_overlaps = threads < usable_cores()
            # the second setting needs no more steps once its first is 3x slower than the first setting's
            timings[threads] = self._measure(probe, give_up_after=3 * timings[1] if timings else None)
        self.threads = min(timings, key=timings.get)
        self.thread_timings = timings
        torch.set_num_threads(self.threads)
        self.augment_overlaps = self.threads < usable_cores()
        self.cache[probe] = timings[self.threads]
        return self.threads

    def __call__(self, candidate: Candidate) -> float:
        if candidate not in self.cache:
            self.cache[candidate] = self._measure(candidate)
        return self.cache[candidate]

    def _measure(self, c: Candidate, give_up_after: float | None = None) -> float:
        """`_timed_steps`, quietly: TorchIO warns about elastic grids on the random patches of a measurement."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return self._timed_steps(c, give_up_after)

    def _timed_steps(self, c: Candidate, give_up_after: float | None = None) -> float:
        """Seconds per training step of ``c`` (the fastest of ``steps`` after a warm-up); records its forward time."""
        from segtool.precision import autocast

        step, model, images = self._make_step(c)
        model.train()
        start = time.perf_counter()
        step()  # warm-up: allocations, kernel choice
        self._synchronise()
        warmup = time.perf_counter() - start
        times = []
        if warmup < self.seconds_cap and (give_up_after is None or warmup < give_up_after):
            for _ in range(self.steps):
                start = time.perf_counter()
                augmenting = step()
                self._synchronise()
                total = time.perf_counter() - start
                # a worker augments the next batch meanwhile: the step costs the slower of the two
                times.append(max(total - augmenting, augmenting) if self.augment_overlaps else total)
                if sum(times) > self.seconds_cap:
                    break
        seconds = min(times) if times else warmup
        model.eval()
        with self._torch.no_grad(), autocast(self.device, self.precision):
            start = time.perf_counter()
            model(images)
            self._synchronise()
        self.forward_seconds[c] = time.perf_counter() - start
        return seconds

    def _synchronise(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)

    def _make_step(self, c: Candidate):
        """(step, model, images): ``step()`` runs one training step of ``c`` on random patches, as training
        would, and returns the seconds its augmentation took (0 without one)."""
        torch = self._torch
        from segtool.networks import build_network
        from segtool.precision import memory_format
        from segtool.training.augment_recipes import TORCHIO_RECIPES, apply_recipe, build_recipe
        from segtool.training.loss import DiceCELoss
        from segtool.training.options import TrainOptions
        from segtool.training.step import optimisation_step

        generator = torch.Generator().manual_seed(0)
        layout = memory_format(self.device, self.precision, c.network_dims)
        model = build_network("unet", c.network_dims, c.in_channels, c.out_channels, features=list(c.features))
        model = model.to(self.device).to(memory_format=layout)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss_fn = DiceCELoss(num_classes=c.out_channels)
        images = torch.randn((c.batch_size, c.in_channels, *c.patch_size), generator=generator)
        images = images.to(self.device).contiguous(memory_format=layout)
        labels = torch.randint(0, c.out_channels, (c.batch_size, *c.patch_size), generator=generator).to(self.device)

        augment = None
        if c.augmentation in TORCHIO_RECIPES:
            augment = build_recipe(c.augmentation, c.network_dims, (0,))
        cpu_images, cpu_labels = images.cpu(), labels.cpu()
        seeds = iter(range(1_000_000))

        def step() -> float:
            """One step; returns the seconds its augmentation took (0 without one)."""
            batch = images
            augmenting = 0.0
            if augment is not None:  # as training: the batch is augmented on the CPU
                begun = time.perf_counter()
                augmented, _ = apply_recipe(augment, cpu_images, cpu_labels, next(seeds))
                augmenting = time.perf_counter() - begun
                batch = augmented.to(self.device).contiguous(memory_format=layout)
            optimisation_step(model, optimizer, loss_fn, batch, labels, self.device, self.precision,
                              grad_clip=TrainOptions.grad_clip)
            return augmenting

        return step, model, images

"""Measure what a candidate network costs on the real device: seconds per training step.

The planner asks for each candidate it considers; a few real optimiser steps (the batch's
augmentation recipe on the CPU, forward, Dice+CE loss, backward, AdamW) on random patches of
the candidate's size, in the precision and memory layout training will use, after one warm-up step. The same measurement gives a
forward-only time for estimating the final validation.
"""

from __future__ import annotations

import time

from segtool.training.planner import Candidate


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
            return 1
        timings = {}
        for threads in (1, most):
            torch.set_num_threads(threads)
            # the second setting needs no more steps once its first is 3x slower than the first setting's
            timings[threads] = self._measure(probe, give_up_after=3 * timings[1] if timings else None)
        self.threads = min(timings, key=timings.get)
        self.thread_timings = timings
        torch.set_num_threads(self.threads)
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
        torch = self._torch
        from segtool.networks import build_network
        from segtool.precision import autocast, memory_format
        from segtool.training.augment_recipes import TORCHIO_RECIPES, apply_recipe, build_recipe
        from segtool.training.loss import DiceCELoss

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

        def step() -> None:
            batch = images
            if augment is not None:  # as training: the batch is augmented on the CPU between steps
                augmented, _ = apply_recipe(augment, cpu_images, cpu_labels, next(seeds))
                batch = augmented.to(self.device).contiguous(memory_format=layout)
            with autocast(self.device, self.precision):
                logits = model(batch)
            loss = loss_fn(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def synchronise() -> None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)

        model.train()
        start = time.perf_counter()
        step()  # warm-up: allocations, kernel choice
        synchronise()
        warmup = time.perf_counter() - start
        times = []
        if warmup < self.seconds_cap and (give_up_after is None or warmup < give_up_after):
            for _ in range(self.steps):
                start = time.perf_counter()
                step()
                synchronise()
                times.append(time.perf_counter() - start)
                if sum(times) > self.seconds_cap:
                    break
        seconds = min(times) if times else warmup
        model.eval()
        with torch.no_grad(), autocast(self.device, self.precision):
            start = time.perf_counter()
            model(images)
            synchronise()
        self.forward_seconds[c] = time.perf_counter() - start
        return seconds

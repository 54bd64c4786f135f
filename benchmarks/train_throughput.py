"""Training steps per second in float32 and bfloat16 for each built-in task's configuration, and what bf16 costs in Dice.

    python benchmarks/train_throughput.py [--tasks spinal-gm,disc] [--repeats 5] [--steps 3] [--threads N]
                                          [--data ../shared/data] [--json out.json]

For every task: the task's network, training patch and batch size (from the task's
bundled model config when it has one, else the spec), random inputs and labels;
one optimiser step (forward, Dice+CE loss, backward, AdamW) per call, exactly as
`segtool train` does it (`segtool.precision`: bf16 autocast, channels-last for 2D).
fp32 and bf16 are measured in one process, interleaved (fp32, bf16, fp32, ...), after
one warm-up step each, ``--repeats`` times ``--steps`` steps; the table shows the
median steps/s of each and the median bf16/fp32 speed-up with its min and max.

ΔDice: for tasks with a trained model and real cases under ``--data`` (spinal-gm:
the gm-challenge sessions and the SCT images), the mean |Dice(bf16) - Dice(fp32)|
of `segtool run --precision bf16` vs `--precision fp32` against the ground truth.
Goal (issue "Real models on the core"): >= 2.5x faster with |ΔDice| <= 0.005.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def train_setup(spec):
    """(network config spec, patch, batch) that `segtool train` would use: the bundled model's, else the spec's."""
    from segtool.app import App
    from segtool.errors import SegtoolError
    from segtool.weights import HubSettings, resolve_model

    if spec.has_weights:
        try:
            resolved = resolve_model(spec, None, HubSettings.from_env(offline_flag=True), App().plugin_manager)
            spec = resolved.config.apply_to(spec)
            batch = int((resolved.config.training or {}).get("batch_size") or spec.batch_size)
            return spec, tuple(spec.patch_size), batch
        except SegtoolError:
            pass
    return spec, tuple(spec.patch_size), spec.batch_size


def make_step(spec, patch, batch, precision: str):
    """A closure doing one training step at ``precision`` on fixed random data."""
    from segtool.precision import memory_format
    from segtool.training.loss import DiceCELoss
    from segtool.training.step import optimisation_step

    device = torch.device("cpu")
    torch.manual_seed(0)
    layout = memory_format(device, precision, spec.network_dims)
    model = spec.build_network().to(memory_format=layout).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = DiceCELoss()
    images = torch.randn(batch, spec.in_channels, *patch).contiguous(memory_format=layout)
    labels = torch.randint(0, spec.num_classes, (batch, *patch))

    def step() -> None:
        optimisation_step(model, optimizer, loss_fn, images, labels, device, precision)

    return step


def measure(spec, repeats: int, steps: int) -> dict:
    spec, patch, batch = train_setup(spec)
    runs = {p: make_step(spec, patch, batch, p) for p in ("fp32", "bf16")}
    for run in runs.values():
        run()  # warm-up: oneDNN builds its kernels
    rates: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(repeats):
        for precision, run in runs.items():
            start = time.perf_counter()
            for _ in range(steps):
                run()
            rates[precision].append(steps / (time.perf_counter() - start))
    ratios = [b / f for f, b in zip(rates["fp32"], rates["bf16"])]
    return {
        "network": spec.network,
        "patch": list(patch),
        "batch": batch,
        "fp32_steps_per_s": statistics.median(rates["fp32"]),
        "bf16_steps_per_s": statistics.median(rates["bf16"]),
        "speedup_median": statistics.median(ratios),
        "speedup_min": min(ratios),
        "speedup_max": max(ratios),
    }


def spinal_gm_delta_dice(data: Path) -> float | None:
    """Mean |Dice(bf16) - Dice(fp32)| of `segtool run spinal-gm` over the real cases (None without data)."""
    import subprocess
    import tempfile

    import nibabel as nib

    import gmseg_reference as ref  # a sibling: this file runs as python benchmarks/train_throughput.py

    if not (data / "t2s").is_dir():
        return None
    deltas = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in ref.CASES:
            _, gt, spacing = ref.case_arrays(data, case)
            dice = {}
            for precision in ("fp32", "bf16"):
                out = Path(tmp) / f"{case.name}_{precision}.nii.gz"
                subprocess.run([sys.executable, "-m", "segtool", "run", "spinal-gm", str(data / case.image),
                                "-o", str(out), "--precision", precision, "-q", "--offline"], check=True,
                               stdout=subprocess.DEVNULL)
                pred = np.asarray(nib.load(str(out)).dataobj) > 0
                dice[precision] = ref.score(pred, gt, spacing, case.slices)["dice"]
            deltas.append(abs(dice["bf16"] - dice["fp32"]))
    return float(np.mean(deltas))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", help="comma-separated task names (default: every registered task)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from segtool.app import App
    from segtool.precision import cpu_has_native_bf16

    registry = App().registry
    names = args.tasks.split(",") if args.tasks else [spec.name for spec in registry]
    print(f"CPU native bf16: {cpu_has_native_bf16()}; torch threads {torch.get_num_threads()}; "
          f"{args.repeats} repeats x {args.steps} steps, interleaved", file=sys.stderr)
    rows = {}
    print("| task | network | patch x batch | fp32 steps/s | bf16 steps/s | bf16/fp32 median (min-max) | ΔDice |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        spec = registry.get(name)
        row = measure(spec, args.repeats, args.steps)
        if name == "spinal-gm":
            row["delta_dice"] = spinal_gm_delta_dice(args.data / "spinal-gm")
        rows[name] = row
        delta = row.get("delta_dice")
        print(f"| {name} | {row['network']} | {'x'.join(map(str, row['patch']))} x {row['batch']} | "
              f"{row['fp32_steps_per_s']:.3f} | {row['bf16_steps_per_s']:.3f} | "
              f"{row['speedup_median']:.2f} ({row['speedup_min']:.2f}-{row['speedup_max']:.2f}) | "
              f"{'-' if delta is None else f'{delta:.4f}'} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

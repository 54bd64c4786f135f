"""End-to-end `segtool run` time against the bare model forward passes, and start-up time.

Prints two ratios measured in this process (this machine is noisy: compare ratios,
not seconds):

1. `segtool run` on a 256x256x144 volume (CPU), divided by the time of the bare
   model forward passes over the same windows with the same batch size. Goal <= 1.25.
2. `segtool --help` start-up, divided by `python -c "import torch"`. Goal <= 0.2.

The model is the brain-tissue architecture with seeded random weights written as
a model folder (the benchmark measures mechanics, not accuracy).

    python benchmarks/inference.py [--task brain-tissue] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch


def write_model_folder(spec, folder: Path) -> None:
    from safetensors.torch import save_file

    from segtool.model_config import ModelConfig

    torch.manual_seed(0)
    model = spec.build_network()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(ModelConfig.for_spec(spec).to_json(), encoding="utf-8")


def bare_forward_seconds(spec, model_dir: Path, volume_path: Path) -> tuple[float, int]:
    """Time only the model's forward passes over exactly the windows `segtool run` uses."""
    from segtool.io import read_channels
    from segtool.preprocess import preprocess
    from segtool.segmenter import Segmenter
    from segtool.windows import plan_windows

    # the model exactly as `segtool run --model-dir` loads it; fp32 keeps the plain memory layout of the bare forward
    model = Segmenter.from_task(spec.name, model_dir, offline=True, device="cpu", precision="fp32").model
    prepared = preprocess(spec, read_channels([volume_path], spec.ndim, spec.channels))
    plan = plan_windows(prepared.array.shape[1:], spec.patch_size, spec.overlap)
    windows = len(plan.starts)
    batch = torch.zeros((spec.batch_size, spec.in_channels, *spec.patch_size))
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, windows, spec.batch_size):
            model(batch[: min(spec.batch_size, windows - first)])
    return time.perf_counter() - start, windows


def run_seconds(task: str, model_dir: Path, volume_path: Path, out_dir: Path) -> float:
    from click.testing import CliRunner

    from segtool.cli import cli

    start = time.perf_counter()
    result = CliRunner().invoke(
        cli, ["run", task, str(volume_path), "--model-dir", str(model_dir), "--output-dir", str(out_dir),
              "--overwrite", "--device", "cpu", "-q"],
    )
    elapsed = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"segtool run failed: {result.output}")
    return elapsed


def command_seconds(args: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="brain-tissue")
    parser.add_argument("--shape", default="256,256,144")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())

    from segtool.app import App

    spec = App().registry.get(args.task)
    shape = tuple(int(s) for s in args.shape.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "model"
        write_model_folder(spec, model_dir)
        rng = np.random.default_rng(0)
        volume_path = tmp / "volume.nii.gz"
        nib.save(nib.Nifti1Image(rng.normal(100, 20, shape).astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0])), volume_path)

        ratios = []
        for _ in range(args.repeats):
            bare, windows = bare_forward_seconds(spec, model_dir, volume_path)
            e2e = run_seconds(args.task, model_dir, volume_path, tmp / "out")
            ratios.append(e2e / bare)
            print(f"{args.task} {shape}: {windows} windows, batch {spec.batch_size}; "
                  f"bare forward {bare:.2f} s, segtool run {e2e:.2f} s")
        print(f"run / bare forward ratio: {statistics.median(ratios):.3f}  (goal <= 1.25)")

    segtool = [sys.executable, "-m", "segtool", "--help"]
    torch_import = [sys.executable, "-c", "import torch"]
    help_s = command_seconds(segtool)
    torch_s = command_seconds(torch_import)
    print(f"segtool --help {help_s * 1000:.0f} ms, import torch {torch_s * 1000:.0f} ms")
    print(f"--help / import torch ratio: {help_s / torch_s:.3f}  (goal <= 0.2)")


if __name__ == "__main__":
    main()

"""`segtool run` on N photos against a bare batched forward of the same network, each its own process.

Both sides are whole processes timed from outside (start-up, imports and weight
loading included on both): side A is ``segtool run clothing`` on N synthetic photos
of mixed sizes (read, resized to the task's input size, batched, resized back,
written); side B imports torch, builds the same network, loads the same weights and
runs N random inputs of the input size through it in batches of the task's batch
size. The sides alternate (A B A B ...), ``--repeats`` times (>= 5), and the median
ratio A/B is printed with its min and max. Goal <= 1.25. Timings on a busy machine are
noisy: compare ratios, not seconds.

    python benchmarks/run_overhead.py [--photos 64] [--repeats 5] [--task clothing]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BARE = """
import sys, time, torch
from segtool.app import App
from segtool.weights import HubSettings, build_model, resolve_model
app = App()
spec = app.registry.get(sys.argv[1])
resolved = resolve_model(spec, None, HubSettings.from_env(offline_flag=True), app.plugin_manager)
spec = resolved.config.apply_to(spec)
model = build_model(spec, resolved).eval()
count, batch = int(sys.argv[2]), spec.batch_size
images = torch.randn(count, spec.in_channels, *spec.patch_size)
with torch.inference_mode():
    for first in range(0, count, batch):
        torch.softmax(model(images[first : first + batch]), dim=1)
"""


def seconds(args: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])} ... failed: {done.stderr[-1500:]}")
    return elapsed


def write_photos(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(480, 320), (640, 427), (300, 300), (1024, 683)]
    paths = []
    for i in range(count):
        rows, cols = sizes[i % len(sizes)]
        path = folder / f"photo_{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="clothing")
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.repeats < 5:
        raise SystemExit("--repeats must be at least 5")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = write_photos(tmp, args.photos)
        run = [sys.executable, "-m", "segtool", "run", args.task, *map(str, photos), "--output-dir", str(tmp / "out"),
               "--overwrite", "--device", "cpu", "--offline", "-q"]
        bare = [sys.executable, "-c", BARE, args.task, str(args.photos)]
        ratios, runs, bares = [], [], []
        for _ in range(args.repeats):
            runs.append(seconds(run))
            bares.append(seconds(bare))
            ratios.append(runs[-1] / bares[-1])
            print(f"segtool run {runs[-1]:.2f} s, bare forward {bares[-1]:.2f} s, ratio {ratios[-1]:.3f}", flush=True)
    print(f"{args.task}, {args.photos} photos: run / bare median {statistics.median(ratios):.3f} "
          f"[min {min(ratios):.3f}, max {max(ratios):.3f}] over {args.repeats} interleaved pairs (goal <= 1.25)")


if __name__ == "__main__":
    main()

"""`segtool run` on N photos against a bare batched forward of the same network, each its own process.

Both sides are whole processes timed from outside (start-up, imports and weight
loading included on both): side A is ``segtool run clothing`` on N synthetic photos
of mixed sizes (read, resized to the task's input size, batched, resized back,
written); side B imports torch, builds the same network, loads the same weights and
runs N random inputs of the input size through it in batches of the task's batch
size. The sides alternate and so does which goes first (A B, B A, A B, ...), ``--repeats``
pairs (>= 5); the median wall-clock ratio A/B is printed with its min and max, and so is
the ratio of the processes' CPU time (user + system, from ``os.wait4``), which a busy
machine disturbs less. Goal <= 1.25. The load average is printed before and after:
timings on a busy machine are noisy, so compare ratios, not seconds.

    python benchmarks/run_overhead.py [--photos 64] [--repeats 5] [--task clothing]
"""

from __future__ import annotations

import argparse
import os
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
import gc
gc.freeze()  # as `segtool` does at its end: neither side pays a last collection over torch's objects
"""


def timed(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of ``args`` run as its own process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args[:4])} ... failed: {stderr[-1500:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


def summary(name: str, ratios: list[float]) -> str:
    return f"{name} median {statistics.median(ratios):.3f} [min {min(ratios):.3f}, max {max(ratios):.3f}]"


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
        print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
        wall_ratios, cpu_ratios = [], []
        for repeat in range(args.repeats):
            if repeat % 2 == 0:
                (run_wall, run_cpu), (bare_wall, bare_cpu) = timed(run), timed(bare)
            else:
                (bare_wall, bare_cpu), (run_wall, run_cpu) = timed(bare), timed(run)
            wall_ratios.append(run_wall / bare_wall)
            cpu_ratios.append(run_cpu / bare_cpu)
            print(f"{'run first' if repeat % 2 == 0 else 'bare first'}: segtool run {run_wall:.2f} s "
                  f"(CPU {run_cpu:.2f} s), bare forward {bare_wall:.2f} s (CPU {bare_cpu:.2f} s), "
                  f"ratio {wall_ratios[-1]:.3f} (CPU {cpu_ratios[-1]:.3f})", flush=True)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{args.task}, {args.photos} photos, {args.repeats} alternating pairs: run / bare "
          f"{summary('wall', wall_ratios)}; {summary('CPU', cpu_ratios)} (goal <= 1.25)")


if __name__ == "__main__":
    main()

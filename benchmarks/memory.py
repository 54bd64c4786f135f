"""Peak memory of `segtool run` per task, as a multiple of the input's float32 bytes.

For every task and input size, `segtool run` runs as its own process on a synthetic
input; its peak resident memory (the child's own VmHWM, read at its exit; see
`peak_rss_bytes`) minus
the peak of a bare ``python -c "import torch, segtool"`` process is divided by the
input's size as float32 (all channels). Goal: <= 3 for every task (issue 37: brain-tumour
on two 320x320x200 channels); the import baseline and the model are a fixed cost, so the
ratio is highest at the smallest size. Memory does not depend on how busy the CPUs are,
so one run per size is enough (``--repeats`` for more; the median is printed with min
and max), and a last table gives each task's ratio per size.

Tasks with a bundled model use it; the others get a model folder with seeded random
weights of the task's own network (memory, not accuracy, is measured). 3D tasks get
a volume of each ``--shapes`` (1 mm voxels; a bright rod along the third axis in
noise, zero outside a margin); 2D tasks one ``--photo`` sized image (clothing a PNG
photo, other 2D tasks a NIfTI slice per channel).

    python benchmarks/memory.py [--tasks brain-tumour] [--shapes 240,240,155 320,320,200 512,512,300]
                                [--overlap 0] [--photo 3000,4000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


#: Runs a Python command line (``-c CODE`` or ``-m MODULE``) and writes its own VmHWM (peak RSS of the
#: process image after exec, KiB) to the file named by SEGTOOL_PEAK_FILE at exit.
HIGH_WATER = """
import atexit, os, runpy, sys
def report():
    with open('/proc/self/status') as status:
        peak = next(line.split()[1] for line in status if line.startswith('VmHWM:'))
    with open(os.environ['SEGTOOL_PEAK_FILE'], 'w') as out:
        out.write(peak)
atexit.register(report)
mode, target, *rest = sys.argv[1:]
sys.argv = [target, *rest]
if mode == '-c':
    exec(compile(target, '<string>', 'exec'), {'__name__': '__main__'})
else:
    runpy.run_module(target, run_name='__main__', alter_sys=True)
"""


def peak_rss_bytes(args: list[str], env: dict | None = None) -> tuple[int, int]:
    """(exit status, peak resident bytes) of ``args`` (``python -c CODE ...`` or ``python -m MODULE ...``).

    The child's own high-water mark (VmHWM) is read from /proc at its exit: ``ru_maxrss``
    from ``os.wait4`` is no good here, because Linux carries the parent's resident size
    at fork into the child's maximum across exec (a parent that once held a large input
    would inflate every child after it). Elsewhere, ``ru_maxrss`` it is.
    """
    if not sys.platform.startswith("linux"):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        _report_failure(proc, status)
        return os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        child_env = dict(env if env is not None else os.environ, SEGTOOL_PEAK_FILE=str(peak_file))
        proc = subprocess.Popen([args[0], "-c", HIGH_WATER, *args[1:]], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=child_env)
        _, status, _ = os.wait4(proc.pid, 0)
        _report_failure(proc, status)
        peak = int(peak_file.read_text()) * 1024 if peak_file.exists() else 0
    return os.waitstatus_to_exitcode(status), peak


def _report_failure(proc, status) -> None:
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-2000:])
    proc.stderr.close()


def import_baseline(env: dict) -> int:
    status, peak = peak_rss_bytes([sys.executable, "-c", "import torch, segtool"], env)
    if status != 0:
        raise SystemExit("python -c 'import torch, segtool' failed")
    return peak


def write_model_folder(spec, folder: Path) -> None:
    """The task's network with seeded random weights, as `segtool run --model-dir` takes it."""
    import torch
    from safetensors.torch import save_file

    from segtool.model_config import ModelConfig

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(spec.build_network().state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(ModelConfig.for_spec(spec).to_json(), encoding="utf-8")


def synthetic_volume(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Noise with a bright rod along the last axis; zero outside a 4-voxel margin."""
    rng = np.random.default_rng(seed)
    volume = rng.normal(300.0, 30.0, shape).astype(np.float32)
    x, y = np.ogrid[: shape[0], : shape[1]]
    rod = ((x - shape[0] * 0.55) ** 2 + (y - shape[1] * 0.45) ** 2) < (min(shape[:2]) * 0.08) ** 2
    volume[rod] += 400.0
    margin = tuple(slice(min(4, n // 4), n - min(4, n // 4)) for n in shape)
    out = np.zeros_like(volume)
    out[margin] = volume[margin]
    return out


def write_inputs(spec, size: tuple[int, ...], folder: Path) -> tuple[list[Path], int]:
    """Input files for one case of ``spec`` and their float32 bytes (all channels)."""
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    if spec.normalization == "rgb":
        from PIL import Image

        rows, cols = size
        rgb = np.clip(synthetic_volume((rows, cols, 3))[..., :3] / 3, 0, 255).astype(np.uint8)
        path = folder / "photo.png"
        Image.fromarray(rgb).save(path)
        return [path], 3 * rows * cols * 4
    paths = []
    for c, channel in enumerate(spec.channels):
        path = folder / f"{channel}.nii"
        nib.save(nib.Nifti1Image(synthetic_volume(size, seed=c), np.eye(4)), path)
        paths.append(path)
    return paths, len(paths) * int(np.prod(size)) * 4


def measure(task: str, inputs: list[Path], model_dir: Path | None, out_dir: Path, extra: list[str], env) -> int:
    args = [sys.executable, "-m", "segtool", "run", task, *map(str, inputs), "--output-dir", str(out_dir),
            "--overwrite", "--device", "cpu", "-q", *extra]
    if model_dir is not None:
        args += ["--model-dir", str(model_dir)]
    status, peak = peak_rss_bytes(args, env)
    if status != 0:
        raise SystemExit(f"segtool run {task} failed (exit {status})")
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", help="comma-separated task names (default: every built-in task)")
    parser.add_argument("--shapes", nargs="+", default=["240,240,155", "320,320,200", "512,512,300"])
    parser.add_argument("--photo", default="3000,4000", help="rows,cols of 2D inputs")
    parser.add_argument("--overlap", type=float, help="--overlap for segtool run (default: the task's)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from segtool.app import App

    registry = App().registry
    names = args.tasks.split(",") if args.tasks else [spec.name for spec in registry]
    env = dict(os.environ)
    extra = ["--overlap", str(args.overlap)] if args.overlap is not None else []
    baseline = statistics.median(import_baseline(env) for _ in range(max(1, args.repeats)))
    print(f"import torch, segtool: {baseline / 2**20:.0f} MiB peak")
    print(f"{'task':16} {'input':>14} {'MiB in':>8} {'MiB peak':>9}  (peak - import) / input: median [min, max]")
    worst, table = 0.0, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in names:
            spec = registry.get(name)
            model_dir = None
            if not spec.models:
                model_dir = tmp / f"model-{name}"
                write_model_folder(spec, model_dir)
            sizes = [args.photo] if spec.ndim == 2 else args.shapes
            for text in sizes:
                size = tuple(int(v) for v in text.split(","))
                inputs, nbytes = write_inputs(spec, size, tmp / f"in-{name}-{text}")
                peaks = [measure(name, inputs, model_dir, tmp / "out", extra, env) for _ in range(args.repeats)]
                ratios = [(p - baseline) / nbytes for p in peaks]
                worst = max(worst, max(ratios))
                shown = "x".join(map(str, size)) + (f" x{len(inputs)}" if len(inputs) > 1 else "")
                table.setdefault(name, []).append(("x".join(map(str, size)), statistics.median(ratios)))
                print(f"{name:16} {shown:>14} {nbytes / 2**20:8.0f} {statistics.median(peaks) / 2**20:9.0f}  "
                      f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]", flush=True)
                for path in inputs:
                    path.unlink()
    print_ratio_table(table)
    print(f"worst ratio {worst:.2f} (goal <= 3)")


def print_ratio_table(table: dict[str, list[tuple[str, float]]]) -> None:
    """Each task's median (peak - import) / input at each size, one line per task."""
    print("\n(peak - import) / input by size")
    for name, row in table.items():
        print(f"{name:16} " + "   ".join(f"{size}: {ratio:.2f}" for size, ratio in row))


if __name__ == "__main__":
    main()

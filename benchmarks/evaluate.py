"""Benchmark the whole `segtool evaluate` command against its peers, each in its own process.

    python benchmarks/evaluate.py                # both cases, 5 repeats
    python benchmarks/evaluate.py --small        # only the 256x256x144 case
    python benchmarks/evaluate.py --repeat 7 --peers surface-distance

Cases (synthetic, generated here; no data needed), written as gzipped NIfTI (uint8):
  * brain: 256x256x144, three nested classes (CSF / GM / WM-like shells), spacing
    0.8 x 0.8 x 1.25 mm; the prediction is the ground truth with its boundaries moved
    by a smooth random field plus a few spurious blobs.
  * large: 512x512x300, an organ with two lesion classes inside, spacing 0.78 x 0.78 x
    1.0 mm, perturbed the same way.

What is timed, per repeat, interleaved (tool after tool, then the next repeat):
  * segtool: the whole command `python -m segtool evaluate PRED GT --json` as its own
    process, wall clock from start to exit: interpreter start-up, imports, reading
    and gunzipping both files, every metric of every label (overlap, volumes, HD, HD95,
    ASSD, directed means, MHD, NSD), the JSON. Once with voxel surfaces (the default)
    and once with `--surface surfel`.
  * each peer in its own process, from the label arrays already in memory (read from
    .npy, not timed) to its HD, HD95 and ASSD of every label: the compute alone.
    DeepMind's surface-distance: masks, compute_surface_distances, then
    compute_robust_hausdorff (100 and 95) and compute_average_surface_distance per label.
    MONAI: one-hot tensors, compute_hausdorff_distance (plain and percentile=95) and
    compute_average_surface_distance(symmetric=True).

It prints, per tool, the median, min and max over the repeats of its wall-clock and
CPU time (every thread; CPU time depends less on the machine's load) and its peak
resident memory, and the ratio of each segtool command to DeepMind's compute in the
same repeat (median, min, max), for wall and CPU time. Values: the largest difference from segtool per
metric under the same surface definition (MONAI <-> segtool voxel, surface-distance
<-> segtool surfel), flagged when it exceeds 1e-3 mm.

Peers are optional, benchmark-only dependencies (`pip install monai surface-distance`);
a missing one is skipped. Timings depend on the machine's load: the script prints the
load average before and after.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE_MM = 1e-3  # largest accepted difference from a peer with the same definitions


# ------------------------------------------------------------------ synthetic cases


def _smooth_field(shape, coarse, rng) -> np.ndarray:
    small = rng.standard_normal(coarse).astype(np.float32)
    field = ndimage.zoom(small, [s / c for s, c in zip(shape, coarse)], order=1)
    return field[tuple(slice(0, s) for s in shape)]


def _radius(shape, spacing, centre_frac=(0.5, 0.5, 0.5), radii_mm=None) -> np.ndarray:
    axes = []
    for n, s, c, r in zip(shape, spacing, centre_frac, radii_mm):
        axes.append(((np.arange(n, dtype=np.float32) - c * (n - 1)) * s / r).astype(np.float32))
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    return np.sqrt(x * x + y * y + z * z)


def _blobs(shape, rng, count, radius_vox) -> np.ndarray:
    out = np.zeros(shape, bool)
    for _ in range(count):
        c = [rng.integers(radius_vox, n - radius_vox) for n in shape]
        sl = tuple(slice(ci - radius_vox, ci + radius_vox) for ci in c)
        out[sl] = True
    return out


def brain_case(seed: int = 0):
    shape, spacing = (256, 256, 144), (0.8, 0.8, 1.25)
    rng = np.random.default_rng(seed)
    r = _radius(shape, spacing, radii_mm=(88, 88, 75))
    truth = r + 0.03 * _smooth_field(shape, (10, 10, 7), rng)
    guess = r + 0.03 * _smooth_field(shape, (10, 10, 7), rng) + 0.01 * _smooth_field(shape, (40, 40, 24), rng)

    def labels(field):
        lab = np.zeros(shape, np.uint8)
        lab[field < 0.95] = 1
        lab[field < 0.82] = 2
        lab[field < 0.62] = 3
        return lab

    gt, pred = labels(truth), labels(guess)
    pred[_blobs(shape, rng, 3, 3) & (gt == 0)] = 1  # spurious blobs outside the head
    return "brain 256x256x144, 3 labels, 0.8x0.8x1.25 mm", gt, pred, spacing


def large_case(seed: int = 1):
    shape, spacing = (512, 512, 300), (0.78, 0.78, 1.0)
    rng = np.random.default_rng(seed)
    organ = _radius(shape, spacing, (0.45, 0.5, 0.5), (120, 95, 100))
    truth = organ + 0.04 * _smooth_field(shape, (12, 12, 8), rng)
    guess = organ + 0.04 * _smooth_field(shape, (12, 12, 8), rng)
    gt = (truth < 1).astype(np.uint8)
    pred = (guess < 1).astype(np.uint8)
    lesion = _radius(shape, spacing, (0.4, 0.45, 0.5), (30, 25, 20))
    gt[lesion + 0.1 * _smooth_field(shape, (16, 16, 10), rng) < 1] = 2
    pred[lesion + 0.1 * _smooth_field(shape, (16, 16, 10), rng) < 1] = 2
    cyst = _radius(shape, spacing, (0.55, 0.55, 0.45), (12, 12, 10))
    gt[cyst < 1] = 3
    pred[cyst + 0.15 * _smooth_field(shape, (16, 16, 10), rng) < 1] = 3
    pred[_blobs(shape, rng, 4, 4) & (gt == 0)] = 2
    return "large 512x512x300, 3 labels, 0.78x0.78x1.0 mm", gt, pred, spacing


def write_case(folder: Path, gt: np.ndarray, pred: np.ndarray, spacing) -> None:
    """gt/pred as .nii.gz (for segtool) and .npy (for the peers), spacing in case.json.

    The peers get the spacing as stored in the NIfTI header (float32), the one
    segtool reads, so that differences in values come from definitions only.
    """
    import nibabel as nib

    affine = np.diag([*map(float, spacing), 1.0])
    for name, array in (("gt", gt), ("pred", pred)):
        nib.save(nib.Nifti1Image(array.astype(np.uint8), affine), str(folder / f"{name}.nii.gz"))
        np.save(folder / f"{name}.npy", array)
    stored = [float(z) for z in nib.load(str(folder / "gt.nii.gz")).header.get_zooms()[:3]]
    labels = sorted(int(v) for v in np.union1d(np.unique(gt), np.unique(pred)) if v != 0)
    (folder / "case.json").write_text(json.dumps({"spacing": stored, "labels": labels}))


# ------------------------------------------------------------------ the peers (run in a child process)
# each computes HD, HD95 and ASSD of every label from arrays in memory: {label: {metric: value}}


def peer_surface_distance(gt, pred, spacing, labels):
    import surface_distance as sd

    out = {}
    for lab in labels:
        g, p = gt == lab, pred == lab
        dist = sd.compute_surface_distances(g, p, spacing)
        g2p, p2g = sd.compute_average_surface_distance(dist)
        out[lab] = {
            "hd": sd.compute_robust_hausdorff(dist, 100),
            "hd95": sd.compute_robust_hausdorff(dist, 95),
            "msd_gt_to_pred": g2p,
            "msd_pred_to_gt": p2g,
        }
    return out


def peer_monai(gt, pred, spacing, labels):
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    def one_hot(a):
        return torch.from_numpy(np.stack([a == v for v in [0, *labels]])[None])

    p, g = one_hot(pred), one_hot(gt)
    res = {
        "hd": compute_hausdorff_distance(p, g, include_background=False, spacing=spacing),
        "hd95": compute_hausdorff_distance(p, g, include_background=False, percentile=95, spacing=spacing),
        "assd": compute_average_surface_distance(p, g, include_background=False, symmetric=True, spacing=spacing),
    }
    return {lab: {k: float(v[0, i]) for k, v in res.items()} for i, lab in enumerate(labels)}


# name: (distribution, module, function, segtool surface mode with the same definitions)
PEERS = {
    "surface-distance": ("surface-distance", "surface_distance", peer_surface_distance, "surfel"),
    "MONAI": ("monai", "monai.metrics", peer_monai, "voxel"),
}


def run_peer_here(name: str, folder: Path) -> None:
    """The child's side: import the peer, load the arrays, time its compute, print JSON."""
    _, module, fn, _ = PEERS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        __import__(module)
        meta = json.loads((folder / "case.json").read_text())
        gt, pred = np.load(folder / "gt.npy"), np.load(folder / "pred.npy")
        t0, c0 = time.perf_counter(), time.process_time()
        values = fn(gt, pred, tuple(meta["spacing"]), meta["labels"])
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"seconds": seconds, "cpu": cpu, "values": {str(k): v for k, v in values.items()}}))


# ------------------------------------------------------------------ measuring (the parent)


def run_process(command: list[str]) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS MiB, stdout) of one child process; raises when it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        cpu = usage.ru_utime + usage.ru_stime  # every thread of the child
        return seconds, cpu, usage.ru_maxrss / 1024, out.read().decode()


def segtool_command(folder: Path, surface: str) -> list[str]:
    return [sys.executable, "-m", "segtool", "evaluate", str(folder / "pred.nii.gz"), str(folder / "gt.nii.gz"),
            "--json", "--surface", surface]


def segtool_values(stdout: str) -> dict[str, dict]:
    doc = json.loads(stdout)
    return {str(m["labels"][0]): m for m in doc["metrics"] if not m["region"]}


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


def available_peers(only: set[str] | None) -> list[str]:
    out = []
    for name, (dist, module, _, _) in PEERS.items():
        if only and name not in only:
            continue
        probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        if probe.returncode != 0:
            print(f"  (skipping {name}: `import {module}` fails; pip install {dist})")
            continue
        out.append(name)
    return out


def _spread(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} [{format(min(values), fmt)}–{format(max(values), fmt)}]"


def largest_differences(ours: dict, theirs: dict) -> dict[str, float]:
    worst: dict[str, float] = {}
    for lab, row in theirs.items():
        for key, value in row.items():
            mine, value = ours[lab][key], float(value)
            mine = math.inf if mine is None else float(mine)
            diff = 0.0 if math.isinf(mine) and math.isinf(value) else abs(mine - value)
            worst[key] = max(worst.get(key, 0.0), diff)
    return worst


def _ratios(ours: list[float], theirs: list[float]) -> list[float]:
    return [a / b for a, b in zip(ours, theirs)]


def bench_case(title: str, folder: Path, peers: list[str], repeat: int) -> None:
    print(f"\n== {title} ==")
    tools = ["segtool voxel", "segtool surfel"] + peers
    wall: dict[str, list[float]] = {t: [] for t in tools}
    cpu: dict[str, list[float]] = {t: [] for t in tools}
    peaks: dict[str, list[float]] = {t: [] for t in tools}
    values: dict[str, dict] = {}
    for r in range(repeat):
        for tool in tools:
            if tool.startswith("segtool"):
                seconds, cpu_s, peak, stdout = run_process(segtool_command(folder, tool.split()[1]))
                result = segtool_values(stdout)
            else:
                _, _, peak, stdout = run_process([sys.executable, __file__, "--peer", tool, str(folder)])
                doc = json.loads(stdout.strip().splitlines()[-1])
                seconds, cpu_s, result = doc["seconds"], doc["cpu"], doc["values"]
            if tool in values and result != values[tool]:
                raise RuntimeError(f"{tool}: values differ between repeats")
            values[tool] = result
            wall[tool].append(seconds)
            cpu[tool].append(cpu_s)
            peaks[tool].append(peak)
        print(f"  repeat {r + 1}/{repeat}: " + ", ".join(f"{t} {wall[t][-1]:.2f} s" for t in tools), flush=True)

    print(f"{'tool':17s} {'timed':15s} {'wall s: median [min–max]':>26s} {'CPU s: median [min–max]':>26s} "
          f"{'peak MiB':>9s}")
    for tool in tools:
        what = "whole command" if tool.startswith("segtool") else "compute alone"
        print(f"{tool:17s} {what:15s} {_spread(wall[tool], '.2f'):>26s} {_spread(cpu[tool], '.2f'):>26s} "
              f"{statistics.median(peaks[tool]):9.0f}")
    if "surface-distance" in peers:
        print("  ratio per repeat, segtool's whole command / surface-distance's compute: median [min–max]")
        for tool in ("segtool voxel", "segtool surfel"):
            print(f"    {tool:15s} wall {_spread(_ratios(wall[tool], wall['surface-distance']), '.3f')}   "
                  f"CPU {_spread(_ratios(cpu[tool], cpu['surface-distance']), '.3f')}")
    if "MONAI" in peers:
        print("  ratio per repeat, MONAI's compute / segtool voxel's whole command: "
              f"wall {_spread(_ratios(wall['MONAI'], wall['segtool voxel']), '.2f')}   "
              f"CPU {_spread(_ratios(cpu['MONAI'], cpu['segtool voxel']), '.2f')}")
    print("largest |difference| from segtool per metric (mm), same surface definition:")
    for peer in peers:
        mode = PEERS[peer][3]
        worst = largest_differences(values[f"segtool {mode}"], values[peer])
        flag = "ok" if all(v <= TOLERANCE_MM for v in worst.values()) else f"EXCEEDS {TOLERANCE_MM:g} mm"
        cells = ", ".join(f"{k} {v:.2g}" for k, v in worst.items())
        print(f"  {peer} {_version(PEERS[peer][0])} vs segtool {mode}: {cells}  ({flag})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="only the 256x256x144 case")
    parser.add_argument("--peers", help=f"comma-separated subset of: {','.join(PEERS)}")
    parser.add_argument("--repeat", type=int, default=5, help="repeats, each tool once per repeat (default 5)")
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # child mode: --peer NAME FOLDER
    parser.add_argument("folder", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer:
        run_peer_here(args.peer, args.folder)
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    print(f"segtool {_version('segtool')} | numpy {np.__version__} | python {platform.python_version()} | "
          f"{platform.machine()} | cores available: {len(os.sched_getaffinity(0))} | "
          f"load average {os.getloadavg()[0]:.2f}")
    peers = available_peers(set(args.peers.split(",")) if args.peers else None)
    cases = [brain_case] + ([] if args.small else [large_case])
    with tempfile.TemporaryDirectory(prefix="segtool-bench-") as tmp:
        for make in cases:
            title, gt, pred, spacing = make()
            folder = Path(tmp) / make.__name__
            folder.mkdir()
            write_case(folder, gt, pred, spacing)
            del gt, pred
            bench_case(title, folder, peers, args.repeat)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark `segtool.metrics` against established peers, in one process.

    python benchmarks/evaluate.py            # both cases
    python benchmarks/evaluate.py --small    # only the 256x256x144 case
    python benchmarks/evaluate.py --peers MONAI,surface-distance --repeat 3

Cases (synthetic, generated here; no data needed):
  * brain: 256x256x144, three nested classes (CSF / GM / WM-like shells), spacing
    0.8 x 0.8 x 1.25 mm; the prediction is the ground truth with its boundaries moved
    by a smooth random field plus a few spurious blobs.
  * large: 512x512x300, an organ with two lesion classes inside, spacing 0.78 x 0.78 x
    1.0 mm, perturbed the same way.

Peers (benchmark-only dependencies: `pip install monai surface-distance seg-metrics`;
missing ones are skipped): MONAI's metric functions (one call per metric, as
documented), DeepMind's surface-distance (one compute_surface_distances per label,
then its summaries), and seg-metrics' write_metrics. Each computes what it offers of
Dice, IoU, HD, HD95, ASSD and NSD@1mm for every label; segtool computes all of its
metrics (overlap, volumes, HD, HD95, ASSD, directed means, MHD, NSD).

For each tool: wall time, peak resident memory above the starting point (Linux
VmHWM, reset before each run) and the time ratio to segtool. Then, per peer and
metric, the largest absolute disagreement with segtool under the matching surface
definition: MONAI <-> segtool voxel, surface-distance <-> segtool surfel,
seg-metrics <-> segtool voxel (seg-metrics' definitions differ: fully connected
contours, a signed Maurer distance map, HD95 as a percentile of the pooled distances).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata as md
import math
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segtool import metrics as M  # noqa: E402

TOLERANCE = 1.0


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


# ------------------------------------------------------------------ the tools
# each returns {label: {metric: value}}


def run_segtool(gt, pred, spacing, labels, surface="voxel"):
    rows = M.evaluate(pred, gt, spacing, labels=labels, tolerance=TOLERANCE, surface=surface)
    return {r.labels[0]: r.as_dict() for r in rows}


def run_segtool_surfel(gt, pred, spacing, labels):
    return run_segtool(gt, pred, spacing, labels, surface="surfel")


def run_monai(gt, pred, spacing, labels):
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
        compute_iou,
        compute_surface_dice,
    )

    def one_hot(a):
        return torch.from_numpy(np.stack([a == v for v in [0, *labels]])[None])

    p, g = one_hot(pred), one_hot(gt)
    res = {
        "dice": compute_dice(p.float(), g.float(), include_background=False),
        "iou": compute_iou(p.float(), g.float(), include_background=False),
        "hd": compute_hausdorff_distance(p, g, include_background=False, spacing=spacing),
        "hd95": compute_hausdorff_distance(p, g, include_background=False, percentile=95, spacing=spacing),
        "assd": compute_average_surface_distance(p, g, include_background=False, symmetric=True, spacing=spacing),
        "nsd": compute_surface_dice(p, g, [TOLERANCE] * len(labels), include_background=False, spacing=spacing),
    }
    return {lab: {k: float(v[0, i]) for k, v in res.items()} for i, lab in enumerate(labels)}


def run_surface_distance(gt, pred, spacing, labels):
    import surface_distance as sd

    out = {}
    for lab in labels:
        g, p = gt == lab, pred == lab
        dist = sd.compute_surface_distances(g, p, spacing)
        g2p, p2g = sd.compute_average_surface_distance(dist)
        out[lab] = {
            "dice": sd.compute_dice_coefficient(g, p),
            "hd": sd.compute_robust_hausdorff(dist, 100),
            "hd95": sd.compute_robust_hausdorff(dist, 95),
            "msd_gt_to_pred": g2p,
            "msd_pred_to_gt": p2g,
            "nsd": sd.compute_surface_dice_at_tolerance(dist, TOLERANCE),
        }
    return out


def run_seg_metrics(gt, pred, spacing, labels):
    import logging

    from seg_metrics import seg_metrics as sg

    logging.disable(logging.WARNING)
    res = sg.write_metrics(
        labels=list(labels), gdth_img=gt, pred_img=pred, spacing=list(spacing),
        metrics=["dice", "jaccard", "precision", "recall", "hd", "hd95", "msd"],
    )
    res = res[0] if isinstance(res, list) else res
    out = {}
    for i, lab in enumerate(res["label"]):
        out[int(lab)] = {
            "dice": res["dice"][i], "iou": res["jaccard"][i], "precision": res["precision"][i],
            "recall": res["recall"][i], "hd": res["hd"][i], "hd95": res["hd95"][i], "assd": res["msd"][i],
        }
    return out


# name, distribution, module, function, segtool surface mode it is compared with, same definitions?
PEERS = [
    ("MONAI", "monai", "monai.metrics", run_monai, "voxel", True),
    ("surface-distance", "surface-distance", "surface_distance", run_surface_distance, "surfel", True),
    ("seg-metrics", "seg-metrics", "seg_metrics.seg_metrics", run_seg_metrics, "voxel", False),
]


# ------------------------------------------------------------------ measuring


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def measure(fn: Callable, *args):
    """(result, seconds, peak MiB above the starting RSS) of fn(*args)."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        start = _status_kib("VmRSS")
    except OSError:
        start = None
    t0 = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - t0
    peak = (_status_kib("VmHWM") - start) / 1024 if start is not None else math.nan
    return result, seconds, peak


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


def available_peers(only: set[str] | None):
    out = []
    for name, dist, module, fn, mode, same in PEERS:
        if only and name not in only:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - a peer that does not import is skipped
            print(f"  (skipping {name}: {type(exc).__name__}: {exc})")
            continue
        out.append((f"{name} {_version(dist)}", fn, mode, same))
    return out


def disagreement(ours: dict, theirs: dict) -> dict[str, float]:
    worst: dict[str, float] = {}
    for lab, row in theirs.items():
        for key, value in row.items():
            mine = ours[lab][key]
            value = float(value)
            if math.isinf(mine) and math.isinf(value):
                diff = 0.0
            else:
                diff = abs(mine - value)
            worst[key] = max(worst.get(key, 0.0), diff)
    return worst


def bench_case(title, gt, pred, spacing, peers, repeat: int):
    labels = [int(v) for v in np.unique(gt) if v != 0]
    print(f"\n== {title}: {gt.size / 1e6:.1f} M voxels ==")
    tiny = (gt[::16, ::16, ::16].copy(), pred[::16, ::16, ::16].copy())
    tools = [
        ("segtool (voxel)", run_segtool, "voxel", True),
        ("segtool (surfel)", run_segtool_surfel, "surfel", True),
    ]
    tools += peers
    results, times = {}, {}
    print(f"{'tool':28s} {'time s':>9s} {'peak MiB':>9s} {'× segtool':>10s} {'× segtool same def.':>20s}")
    for name, fn, mode, _ in tools:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*tiny, spacing, [v for v in labels if v in tiny[0]] or labels)  # warm-up: imports, caches
            best = None
            for _ in range(repeat):
                res, seconds, peak = measure(fn, gt, pred, spacing, labels)
                if best is None or seconds < best[1]:
                    best = (res, seconds, peak)
                if seconds > 60:
                    break  # slow tools run once
        results[name], times[name] = best[0], best[1]
        base = times["segtool (voxel)"]
        same = times.get(f"segtool ({mode})", base)
        print(f"{name:28s} {best[1]:9.2f} {best[2]:9.0f} {best[1] / base:9.1f}× {best[1] / same:19.1f}×")
    print("largest |difference| from segtool per metric (distances in mm):")
    for name, fn, mode, same_def in peers:
        ours = results[f"segtool ({mode})"]
        worst = disagreement(ours, results[name])
        cells = ", ".join(f"{k} {v:.2g}" for k, v in worst.items())
        note = f"vs segtool {mode}" + ("" if same_def else "; definitions differ")
        print(f"  {name:26s} {cells}   ({note})")
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="only the 256x256x144 case")
    parser.add_argument("--peers", help="comma-separated subset of: MONAI,surface-distance,seg-metrics")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per tool on the small case, best time kept (tools over 60 s run once)")
    parser.add_argument("--seg-metrics-large", action="store_true",
                        help="also run seg-metrics on the large case (it takes minutes on the small one)")
    args = parser.parse_args(argv)
    print(f"segtool {_version('segtool')} | numpy {np.__version__} | python {platform.python_version()} | "
          f"{platform.machine()} | cores available: {len(__import__('os').sched_getaffinity(0))}")
    peers = available_peers(set(args.peers.split(",")) if args.peers else None)
    cases = [(brain_case, args.repeat)] + ([] if args.small else [(large_case, 1)])
    for make, repeat in cases:
        title, gt, pred, spacing = make()
        these = peers
        if make is large_case and not args.seg_metrics_large:
            these = [p for p in peers if not p[0].startswith("seg-metrics")]
            if len(these) < len(peers):
                print("\n  (seg-metrics left out of the large case: pass --seg-metrics-large to include it)")
        bench_case(title, gt, pred, spacing, these, repeat)
        del gt, pred
        gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""SCT mode: the published gmseg models run the way SCT's ``sct_deepseg_gm`` runs them.

Used by ``benchmarks/accuracy.py spinal-gm`` for the ``challenge`` and ``large``
columns, and runnable on its own to check the reproduction:

    python benchmarks/gmseg_reference.py [--data ../shared/data/spinal-gm] [--models challenge,large]

The steps follow SCT's ``spinalcordtoolbox/deepseg_/gm.py`` (``segment_file`` and
``segment_volume``; formerly ``deepseg_gm/deepseg_gm.py``) and
``spinalcordtoolbox/resampling.py::resample_nib``, re-implemented here:

1. Resample the volume to 0.25 x 0.25 mm in-plane, slice spacing kept, with linear
   interpolation (``scipy.ndimage`` order 1 through ``nibabel.processing.resample_from_to``,
   ``mode='nearest'``). The new shape is ``round(shape * zoom / 0.25)`` and the new
   affine is ``affine @ diag(shape / new_shape)``: voxel 0 stays on voxel 0 (the grid is
   not centred). Integer images are converted to float64 first; float images are
   resampled in their own dtype. No reorientation: slices are the 3rd array axis.
2. Each axial slice is centre-cropped to 200 x 200 (start ``n // 2 - 100``) or padded
   to it with ``numpy.pad(mode='symmetric')`` (mirror; before = ``100 - n // 2``).
3. The whole stack of 200 x 200 slices is standardised with its own mean and standard
   deviation (float32). The mean/std in the model's JSON are not used (SCT stopped
   using them in 2018).
4. Predict (the Keras sigmoid), threshold ``p > 0.999`` on the 0.25 mm grid, uint8.
5. Undo the crop (zero-pad) or the padding (crop), resample the 0/1 mask back to the
   native zooms with the same ``resample_nib`` (the mask image keeps the resampled
   image's float header, so scipy interpolates the uint8 array linearly and rounds to
   uint8), then ``> 0.5``. The shape returned by SCT's back-resampling equals the
   native one for all the data here; if it ever did not, the mask is resampled onto
   the native grid instead (``resample_from_to`` with the native shape and affine) and
   a warning is given.

No test-time augmentation (SCT's default).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

INPUT_SIZE = 200
TARGET_INPLANE_MM = 0.25
PRED_THRESHOLD = 0.999
BACK_THRESHOLD = 0.5
BATCH_SIZE = 4
PUBLISHED = ("challenge", "large")
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "spinal-gm"


@dataclass(frozen=True)
class Case:
    """One real image with its ground-truth GM mask, paths relative to the data folder."""

    name: str
    image: str
    gm: str
    slices: tuple[int, int] | None = None  # [start, stop) of the scored slices; None: all
    note: str = ""


def _gmc(sub: str, slices=None, note: str = "") -> Case:
    return Case(
        sub,
        f"gm-challenge/sub-{sub}/anat/sub-{sub}_run-1_T2starw.nii.gz",
        f"gm-challenge/derivatives/labels/sub-{sub}/anat/sub-{sub}_run-1_T2starw_gmseg-manual.nii.gz",
        slices,
        note,
    )


CASES: tuple[Case, ...] = (
    Case("t2s", "t2s/t2s.nii.gz", "t2s/t2s_gmseg_manual.nii.gz"),
    Case("t2s_uncropped", "t2s/t2s_uncropped.nii.gz", "t2s/t2s_uncropped_gmseg_manual.nii.gz"),
    Case("mt1", "mt/mt1.nii.gz", "mt/mt1_gmseg_goldstandard.nii.gz", note="MT contrast, not T2*"),
    _gmc("10062Ses1"),
    _gmc("10062Ses2"),
    _gmc("9418"),
    _gmc("9584"),
    # Cord and GM are labelled on slices 0-13 only; slices 14-19 show the cord but have
    # no labels (plus one stray GM voxel on slice 17), so any GM found there would count
    # as false positives. Only the labelled slices are scored (see SOURCE.md).
    _gmc("9604", slices=(0, 14), note="scored on labelled slices 0-13"),
)

#: Dice of SCT's own runs of the published models (challenge, large), to reproduce. For
#: 9604 these count all 20 slices (the reproduction gives 0.000 / 0.235 on all slices,
#: 0.000 / 0.244 on the labelled slices 0-13 that the benchmark scores).
SCT_DICE: dict[str, tuple[float, float]] = {
    "t2s": (0.895, 0.905),
    "t2s_uncropped": (0.890, 0.909),
    "mt1": (0.717, 0.715),
    "10062Ses1": (0.949, 0.977),
    "10062Ses2": (0.941, 0.950),
    "9418": (0.881, 0.897),
    "9584": (0.885, 0.910),
    "9604": (0.000, 0.235),
}


# --------------------------------------------------------------------------- SCT's steps


def resample_mm(img, zooms: Sequence[float], order: int = 1):
    """SCT's ``resample_nib(img, new_size=zooms, new_size_type='mm', interpolation=...)`` for 3D images."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    if order != 0 and img.get_data_dtype().kind in "biu":
        img = nib.Nifti1Image(img.get_fdata(), img.header.get_best_affine(), img.header)
        img.set_data_dtype(img.dataobj.dtype)
    p = img.header.get_zooms()
    shape = img.header.get_data_shape()
    new_shape = tuple(int(np.round(shape[i] * float(p[i]) / float(zooms[i]))) for i in range(3))
    affine = np.array(img.affine[:4, :4], dtype=float)
    affine[3, :] = (0, 0, 0, 1)
    scale = np.eye(4)
    for i in range(3):
        scale[i, i] = img.shape[i] / float(new_shape[i])
    return resample_from_to(img, (new_shape, affine @ scale), order=order, mode="nearest", cval=0.0, out_class=None)


def _fit(image: np.ndarray, new: tuple[int, int], pad_mode: str) -> np.ndarray:
    """Centre-crop or pad each of the two axes of ``image`` to ``new`` (SCT's ShapeTransform)."""
    for axis in (0, 1):
        old, want = image.shape[axis], new[axis]
        if want > old:
            before = want // 2 - old // 2
            widths = [(0, 0), (0, 0)]
            widths[axis] = (before, want - before - old)
            image = np.pad(image, widths, mode=pad_mode)
        else:
            start = old // 2 - want // 2
            image = image[start:start + want, :] if axis == 0 else image[:, start:start + want]
    return image


def predict_sigmoid(net, slices: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Sigmoid GM probabilities (float32, N x H x W) of standardised slices (N x H x W).

    ``net`` is the one-channel `DilatedGM` of ``load_gmseg_keras(..., sigmoid=True)``.
    """
    import torch

    out = np.empty(slices.shape, dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(slices), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(slices[start:start + batch_size]))[:, None]
            out[start:start + batch_size] = torch.sigmoid(net(x))[:, 0].numpy()
    return out


def segment_volume(net, data: np.ndarray, threshold: float = PRED_THRESHOLD) -> np.ndarray:
    """SCT's ``segment_volume`` on a volume already at 0.25 mm: a uint8 0/1 mask of its shape."""
    size = (INPUT_SIZE, INPUT_SIZE)
    slices = [_fit(data[..., k], size, "symmetric") for k in range(data.shape[2])]
    stack = np.asarray(slices, dtype=np.float32)
    stack -= stack.mean()
    stack /= stack.std()
    probs = predict_sigmoid(net, stack)
    mask = (probs > threshold).astype(np.uint8)
    back = [_fit(mask[k], data.shape[:2], "constant") for k in range(mask.shape[0])]
    return np.ascontiguousarray(np.transpose(np.asarray(back, dtype=np.uint8), (1, 2, 0)))


def segment_image(net, img, threshold: float = PRED_THRESHOLD) -> np.ndarray:
    """SCT's ``segment_file``: the GM mask (uint8 0/1) of a nibabel image, on its own grid."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    zooms = [float(z) for z in img.header["pixdim"][1:4]]
    resampled = resample_mm(img, [TARGET_INPLANE_MM, TARGET_INPLANE_MM, zooms[2]])
    pred = segment_volume(net, np.asanyarray(resampled.dataobj), threshold)
    seg = nib.Nifti1Image(pred, resampled.affine, resampled.header)
    back = resample_mm(seg, zooms)
    if back.shape != img.shape:
        warnings.warn(
            f"SCT's back-resampling gives shape {back.shape}, not the native {img.shape}; "
            "resampling onto the native grid instead"
        )
        back = resample_from_to(seg, (img.shape, img.affine), order=1, mode="nearest", out_class=None)
    return (np.asanyarray(back.dataobj) > BACK_THRESHOLD).astype(np.uint8)


def load_published(weights_dir: Path, name: str):
    """The published ``challenge`` or ``large`` model as a one-channel (sigmoid) `DilatedGM`."""
    from segtool.networks.keras_h5 import load_gmseg_keras

    meta = json.loads((weights_dir / f"{name}_model.json").read_text())
    return load_gmseg_keras(weights_dir / f"{name}_model.hdf5", filters=int(meta["filters"]), sigmoid=True)


# --------------------------------------------------------------------------- scoring


def case_arrays(data_dir: Path, case: Case):
    """(nibabel image, ground-truth bool mask, spacing in mm) of ``case``."""
    import nibabel as nib

    img = nib.load(data_dir / case.image)
    gt_img = nib.load(data_dir / case.gm)
    if gt_img.shape != img.shape:
        raise ValueError(f"{case.name}: mask shape {gt_img.shape} != image shape {img.shape}")
    gt = np.asanyarray(gt_img.dataobj) > 0.5
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    return img, gt, spacing


def score(pred: np.ndarray, gt: np.ndarray, spacing, slices: tuple[int, int] | None = None) -> dict[str, float]:
    """GM Dice, HD95 and ASSD (mm) with `segtool.metrics`, on the scored slices only."""
    from segtool import metrics as M

    pred, gt = np.asarray(pred) > 0, np.asarray(gt) > 0
    if slices is not None:
        pred, gt = pred[..., slices[0]:slices[1]], gt[..., slices[0]:slices[1]]
    overlap = M.overlap_metrics(pred, gt, spacing)
    dist = M.distance_metrics(pred, gt, spacing)
    return {"dice": overlap.dice, "hd95": dist.hd95, "assd": dist.assd}


def score_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """GM Dice over the whole volume."""
    from segtool import metrics as M

    return M.overlap_metrics(np.asarray(pred) > 0, np.asarray(gt) > 0).dice


def run_published(
    data_dir: Path,
    models: Sequence[str] = PUBLISHED,
    cases: Sequence[Case] = CASES,
    on_case: Callable[[str, str, dict, float], None] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {case: {dice, hd95, assd}}} of the published models in SCT mode."""
    import torch

    torch.set_grad_enabled(False)
    results: dict[str, dict[str, dict[str, float]]] = {}
    arrays = {case.name: case_arrays(data_dir, case) for case in cases}
    for model in models:
        net = load_published(data_dir / "weights", model)
        results[model] = {}
        for case in cases:
            img, gt, spacing = arrays[case.name]
            t0 = time.perf_counter()
            pred = segment_image(net, img)
            results[model][case.name] = score(pred, gt, spacing, case.slices)
            if case.slices is not None:  # SCT's own figure for 9604 counts every slice
                results[model][case.name]["dice_all_slices"] = score_dice(pred, gt)
            if on_case is not None:
                on_case(model, case.name, results[model][case.name], time.perf_counter() - t0)
    return results


def _fmt(x: float, digits: int = 3) -> str:
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the spinal-gm data folder")
    parser.add_argument("--models", default=",".join(PUBLISHED), help="comma-separated: challenge,large")
    args = parser.parse_args(argv)
    if not (args.data / "weights").is_dir():
        print(f"no spinal-gm data at {args.data} (expected ../shared/data/spinal-gm); nothing to do", file=sys.stderr)
        return 0
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(PUBLISHED))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(PUBLISHED)}")

    def progress(model, case, r, seconds):
        print(f"{model:9s} {case:14s} Dice {_fmt(r['dice'])}  ({seconds:.1f} s)", file=sys.stderr)

    results = run_published(args.data, models, on_case=progress)
    print("| case | " + " | ".join(f"{m} Dice (SCT)" for m in models) + " |")
    print("|---|" + "---|" * len(models))
    worst = 0.0
    for case in CASES:
        cells = []
        for m in models:
            ours, sct = results[m][case.name]["dice"], SCT_DICE[case.name][PUBLISHED.index(m)]
            worst = max(worst, abs(ours - sct))
            cells.append(f"{ours:.3f} ({sct:.3f})")
        print(f"| {case.name} | " + " | ".join(cells) + " |")
        if case.slices is not None:
            cells = [f"{results[m][case.name]['dice_all_slices']:.3f}" for m in models]
            print(f"| {case.name}, all slices | " + " | ".join(cells) + " |")
    print(f"\nlargest |Dice - SCT| = {worst:.4f} (scored slices; SCT's 9604 figures count all 20 slices, "
          "of which only 0-13 are labelled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

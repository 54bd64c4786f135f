"""Lay out ../shared/data/brain-tissue as a `segtool train brain-tissue` folder (simple layout).

    python scripts/prepare_brain_tissue.py OUT_DIR [--data ../shared/data/brain-tissue]

Training cases (the 12 SynthSeg label maps; no image exists for them):

    OUT_DIR/synthseg_NN.nii.gz       -> a symbolic link to training_seg_NN.nii.gz, the full FreeSurfer label
                                        map standing in as the case's "image": the brain-tissue plugin's
                                        `segtool_training_sampler` reads it back as a label map and synthesises
                                        a new random-contrast image from it at every step (the core's own
                                        preprocessing of this "image" is never used for training)
    OUT_DIR/synthseg_NN_seg.nii.gz   the same map merged into 0 background, 1 CSF, 2 GM, 3 WM (uint8, same header)

Validation case (a real scan, never trained on; pass it with --val-cases vxm_t1):

    OUT_DIR/vxm_t1.nii.gz            the voxelmorph test T1 (float32), 1 mm, voxel axes L, I, A (checked from
                                     its labels: left hemisphere at high axis 0, brainstem at high axis 1,
                                     cerebellum at low axis 2), so the affine below
    OUT_DIR/vxm_t1_seg.nii.gz        its FreeSurfer aseg merged to CSF/GM/WM (uint8)
    OUT_DIR/vxm_t1_t2like.nii.gz     (with --t2like) the same T1 contrast-inverted inside the brain, a T2-like
                                     image to show contrast independence (benchmarks/accuracy.py makes it too)

The merge table is the plugin's `TISSUE_OF` (SOURCE.md section 3 of the data folder).
Then: ``segtool train brain-tissue OUT_DIR -o MODEL --val-cases vxm_t1``.

With ``--raw-labels`` every _seg file keeps the FreeSurfer values unmerged, and the
merge is the training run's ``--labels-map``; two maps are written beside them:

    OUT_DIR/labels_map_all_csf.json          `TISSUE_OF`: CSF includes the extra-cerebral CSF (label 24)
    OUT_DIR/labels_map_ventricular_csf.json  `VENTRICULAR_CSF_TISSUE_OF`: FreeSurfer aseg's convention,
                                             CSF = the ventricles; label 24 is background

e.g. ``segtool train brain-tissue OUT_DIR -o MODEL --val-cases vxm_t1 --labels-map
OUT_DIR/labels_map_ventricular_csf.json`` (the plugin's sampler merges the synthetic
images' labels by the same map).
The data stays outside the repository: OUT_DIR should be a scratch folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
DEFAULT_DATA = HERE.parent / "shared" / "data" / "brain-tissue"
#: voxel (left, inferior, anterior) -> RAS mm, 1 mm, centred (voxelmorph stores no affine)
VXM_AFFINE = np.array([[-1.0, 0, 0, 80], [0, 0, 1, -112], [0, -1, 0, 96], [0, 0, 0, 1]])
VAL_CASE = "vxm_t1"


def _plugin():
    """The brain-tissue plugin module (its tables and its task spec; this checkout's, installed with pip install -e .)."""
    import segtool_brain_tissue

    return segtool_brain_tissue


def tissue_table(convention: str = "all") -> dict[int, int]:
    """FreeSurfer value -> class: ``"all"`` CSF (the plugin's TISSUE_OF) or ``"ventricular"`` CSF only."""
    plugin = _plugin()
    return dict(plugin.TISSUE_OF if convention == "all" else plugin.VENTRICULAR_CSF_TISSUE_OF)


def tissue_names() -> dict[int, str]:
    """The task's classes, {1: "csf", 2: "gray_matter", 3: "white_matter"}, as the plugin declares them."""
    return dict(_plugin().BRAIN_TISSUE.labels)


def write_labels_map(table: dict[int, int], path: Path) -> None:
    """The table as a `segtool train --labels-map` JSON file: class name -> FreeSurfer values."""
    names = tissue_names()
    grouped = {names[c]: sorted(v for v, t in table.items() if t == c) for c in sorted(names)}
    path.write_text(json.dumps(grouped, indent=1) + "\n", encoding="utf-8")


def merge(labels: np.ndarray, table: dict[int, int]) -> np.ndarray:
    """FreeSurfer values -> 0..3 (unlisted values -> 0)."""
    labels = np.rint(np.asarray(labels)).astype(np.int64)
    values, inverse = np.unique(labels, return_inverse=True)
    targets = np.array([table.get(int(v), 0) for v in values], dtype=np.uint8)
    return targets[inverse].reshape(labels.shape)


def t2_like(t1: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A T2-like contrast: inside the brain (labels > 0, or T1 > 0) the T1 inverted; 0 outside."""
    brain = (labels > 0) | (t1 > 0)
    hi = float(np.percentile(t1[brain], 99.5)) if brain.any() else 1.0
    out = np.where(brain, np.clip(hi - t1, 0.0, None) + 0.05 * hi, 0.0)
    return out.astype(np.float32)


def save(array: np.ndarray, affine: np.ndarray, path: Path, header=None) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(array, affine, header=header)
    if header is None:
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        img.header.set_xyzt_units("mm")
    img.set_data_dtype(array.dtype)
    nib.save(img, str(path))


def load_vxm(data: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(data / "vxm_test_scan.npz") as npz:
        return npz["vol"].astype(np.float32), np.rint(npz["seg"]).astype(np.int64)


def prepare(out: Path, data: Path, t2like: bool = False, raw_labels: bool = False) -> list[str]:
    import nibabel as nib

    table = tissue_table()
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    maps = sorted((data / "synthseg_label_maps").glob("training_seg_*.nii.gz"))
    if not maps:
        raise SystemExit(f"{data}/synthseg_label_maps: no training_seg_*.nii.gz")
    for source in maps:
        name = "synthseg_" + source.name[len("training_seg_"):-len(".nii.gz")]
        link = out / f"{name}.nii.gz"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(source.resolve(), link)
        img = nib.load(str(source))
        merged = merge(np.asarray(img.dataobj), table)
        header = img.header.copy()
        if raw_labels:  # the label file is the same map: the run's --labels-map merges it
            seg_link = out / f"{name}_seg.nii.gz"
            if seg_link.is_symlink() or seg_link.exists():
                seg_link.unlink()
            os.symlink(source.resolve(), seg_link)
        else:
            save(merged, img.affine, out / f"{name}_seg.nii.gz", header=header)
        counts = np.bincount(merged.ravel(), minlength=4)[1:] / 1000.0
        lines.append(f"{name}: label map {img.shape} -> csf/gm/wm {counts[0]:.0f}/{counts[1]:.0f}/{counts[2]:.0f} ml")
    t1, seg = load_vxm(data)
    merged = merge(seg, table)
    save(t1, VXM_AFFINE, out / f"{VAL_CASE}.nii.gz")
    truth = seg.astype(np.int32) if raw_labels else merged
    save(truth, VXM_AFFINE, out / f"{VAL_CASE}_seg.nii.gz")
    counts = np.bincount(merged.ravel(), minlength=4)[1:] / 1000.0
    lines.append(f"{VAL_CASE}: real T1 {t1.shape} (validation only) -> csf/gm/wm "
                 f"{counts[0]:.0f}/{counts[1]:.0f}/{counts[2]:.0f} ml")
    if t2like:
        save(t2_like(t1, seg), VXM_AFFINE, out / f"{VAL_CASE}_t2like.nii.gz")
        save(truth, VXM_AFFINE, out / f"{VAL_CASE}_t2like_seg.nii.gz")
        lines.append(f"{VAL_CASE}_t2like: the T1 contrast-inverted (validation only)")
    info = {
        "name": "brain-tissue: SynthSeg label maps (training) + voxelmorph T1 (validation)",
        "description": (
            "Training cases are label maps only: each case's image file is its full FreeSurfer label map, which the "
            "brain-tissue training sampler turns into random synthetic images; its _seg file is the map merged to "
            f"CSF/GM/WM. {VAL_CASE} is a real skull-stripped T1 with automatic FreeSurfer labels, for validation only."
        ),
        "reference": ("https://github.com/BBillot/SynthSeg (66342c1f); "
                      "https://github.com/voxelmorph/voxelmorph (ca28315d)"),
        "licence": "Apache-2.0 (label maps, as released by the SynthSeg authors; derived from HCP and ADNI)",
        "validation_cases": [VAL_CASE],
    }
    if raw_labels:
        write_labels_map(tissue_table("all"), out / "labels_map_all_csf.json")
        write_labels_map(tissue_table("ventricular"), out / "labels_map_ventricular_csf.json")
        lines.append("labels unmerged (FreeSurfer values); train with --labels-map "
                     f"{out / 'labels_map_ventricular_csf.json'} (or labels_map_all_csf.json)")
    else:
        info["labels"] = {"background": 0, "csf": 1, "gray_matter": 2, "white_matter": 3}
    (out / "dataset.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--t2like", action="store_true", help="also write the contrast-inverted T1 (validation)")
    parser.add_argument("--raw-labels", action="store_true",
                        help="keep FreeSurfer values in the _seg files and write the two --labels-map files")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"{args.data}: no data folder", file=sys.stderr)
        return 2
    for line in prepare(args.out, args.data, args.t2like, args.raw_labels):
        print(line)
    print(f"then: segtool train brain-tissue {args.out} -o MODEL --val-cases {VAL_CASE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

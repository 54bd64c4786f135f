"""Lay out ../shared/data/spinal-gm as two `segtool train` folders (simple layout), without copying into the repo.

    python scripts/prepare_spinal_gm.py OUT_DIR [--data ../shared/data/spinal-gm]

writes
    OUT_DIR/cord/CASE.nii.gz + CASE_seg.nii.gz   whole T2* volumes with their spinal cord masks
                                                 (training data of the `spinal-cord` localiser)
    OUT_DIR/gm/CASE.nii.gz + CASE_seg.nii.gz     the same volumes cropped to the cord's bounding box
                                                 plus the margin `spinal-gm` declares (what the
                                                 localiser hands the GM network at run time),
                                                 with the gray-matter masks

Cases: the gm-challenge sessions (10062Ses1, 10062Ses2, 9418, 9584, 9604), the SCT
test subject's uncropped T2* (t2s_uncropped; its cord mask is drawn on the cropped
t2s image and carried over by world coordinates) and the MT image (mt1, GM folder
only: its field of view is already a crop). 9604 keeps only its labelled slices
0-13 (slices 14-19 have no labels although the cord is visible). The data stays
outside the repository: OUT_DIR should be a scratch folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from segtool.locate import box_around, margins_in_voxels

HERE = Path(__file__).resolve().parents[1]


def gm_challenge(data: Path, session: str) -> tuple[Path, Path, Path]:
    anat = data / "gm-challenge" / f"sub-{session}" / "anat" / f"sub-{session}_run-1_T2starw.nii.gz"
    labels = data / "gm-challenge" / "derivatives" / "labels" / f"sub-{session}" / "anat"
    return anat, labels / f"sub-{session}_run-1_T2starw_gmseg-manual.nii.gz", labels / f"sub-{session}_run-1_T2starw_seg-manual.nii.gz"


def carry_over(mask: nib.Nifti1Image, target: nib.Nifti1Image) -> np.ndarray:
    """A mask on another grid, nearest neighbour through world coordinates."""
    to_mask = np.linalg.inv(mask.affine) @ target.affine
    grid = np.indices(target.shape[:3]).reshape(3, -1)
    coords = to_mask[:3, :3] @ grid + to_mask[:3, 3:4]
    values = ndimage.map_coordinates(np.asarray(mask.dataobj, dtype=np.float32), coords, order=0, cval=0)
    return values.reshape(target.shape[:3]) > 0.5


def save(image: np.ndarray, affine: np.ndarray, path: Path, header=None, label: bool = False) -> None:
    data = image.astype(np.uint8 if label else np.float32)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def crop(array: np.ndarray, affine: np.ndarray, slices: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray]:
    new = affine.copy()
    new[:3, 3] = affine[:3, :3] @ np.array([s.start for s in slices], dtype=float) + affine[:3, 3]
    return array[slices], new


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=HERE.parent / "shared" / "data" / "spinal-gm")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 1
    from segtool_spinal_gm import SPINAL_GM

    margin = SPINAL_GM.locate.margin_mm
    (args.out / "cord").mkdir(parents=True, exist_ok=True)
    (args.out / "gm").mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[nib.Nifti1Image, np.ndarray, np.ndarray]] = {}
    for session in ("10062Ses1", "10062Ses2", "9418", "9584", "9604"):
        image_path, gm_path, cord_path = gm_challenge(args.data, session)
        image = nib.load(str(image_path))
        gm = np.asarray(nib.load(str(gm_path)).dataobj) > 0.5
        cord = np.asarray(nib.load(str(cord_path)).dataobj) > 0.5
        cases[session] = (image, gm, cord)
    t2s = nib.load(str(args.data / "t2s" / "t2s_uncropped.nii.gz"))
    t2s_gm = np.asarray(nib.load(str(args.data / "t2s" / "t2s_uncropped_gmseg_manual.nii.gz")).dataobj) > 0.5
    t2s_cord = carry_over(nib.load(str(args.data / "t2s" / "t2s_seg.nii.gz")), t2s) | t2s_gm
    cases["t2s_uncropped"] = (t2s, t2s_gm, t2s_cord)

    for name, (image, gm, cord) in cases.items():
        array = np.asarray(image.dataobj, dtype=np.float32)
        affine = image.affine
        if name == "9604":  # labelled slices only
            array, gm, cord = array[..., :14], gm[..., :14], cord[..., :14]
        save(array, affine, args.out / "cord" / f"{name}.nii.gz")
        save(cord, affine, args.out / "cord" / f"{name}_seg.nii.gz", label=True)
        box = box_around(cord, margins_in_voxels(affine, margin))
        cropped, cropped_affine = crop(array, affine, box.slices)
        save(cropped, cropped_affine, args.out / "gm" / f"{name}.nii.gz")
        save(crop(gm, affine, box.slices)[0], cropped_affine, args.out / "gm" / f"{name}_seg.nii.gz", label=True)
        print(f"{name}: {array.shape} -> crop {cropped.shape}, GM {int(gm.sum())} voxels")
    mt = nib.load(str(args.data / "mt" / "mt1.nii.gz"))
    mt_gm = np.asarray(nib.load(str(args.data / "mt" / "mt1_gmseg_goldstandard.nii.gz")).dataobj) > 0.5
    save(np.asarray(mt.dataobj, dtype=np.float32), mt.affine, args.out / "gm" / "mt1.nii.gz")
    save(mt_gm, mt.affine, args.out / "gm" / "mt1_seg.nii.gz", label=True)
    print(f"mt1: {mt.shape} (whole), GM {int(mt_gm.sum())} voxels")
    return 0


if __name__ == "__main__":
    sys.exit(main())

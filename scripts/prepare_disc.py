"""Convert ../shared/data/disc (three .mat subjects) into a `segtool train` folder (simple layout).

    python scripts/prepare_disc.py OUT_DIR [--data ../shared/data/disc]

writes OUT_DIR/ivd_NN.nii.gz (float32 image) + OUT_DIR/ivd_NN_seg.nii.gz (uint8 labels
1 = L5-S1 ... 5 = L1-L2, as stored) for each subject. Geometry from the data folder's
SOURCE.md: voxel axes run inferior (axis 0), posterior (axis 1) and left (axis 2),
1 mm (approximate; not stored in the files), so the affine is

    [[0, 0, -1, 0], [0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]]   (axis codes I, P, L)

and reorienting to RAS puts the sagittal slices on axis 0 (the disc task's slice_axis).
With ``--dicom`` each subject is also written as a DICOM MR series of sagittal slices,
OUT_DIR/ivd_NN_dicom/ (as the scanner wrote it: one file per slice), the input of
``segtool run disc OUT_DIR/ivd_NN_dicom/ --format dicom-seg`` and of the speed benchmark.
The data stays outside the repository: OUT_DIR should be a scratch folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
#: voxel (inferior, posterior, left) -> RAS mm, 1 mm isotropic (SOURCE.md)
AFFINE = np.array([[0.0, 0, -1, 0], [0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]])
SUBJECTS = ("ivd_11", "ivd_20", "ivd_25")


def save(array: np.ndarray, path: Path, label: bool = False) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(array.astype(np.uint8 if label else np.float32), AFFINE)
    img.set_qform(AFFINE, code=1)
    img.set_sform(AFFINE, code=1)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))


def save_dicom_series(image_path: Path, directory: Path, name: str) -> None:
    """``image_path`` (NIfTI) as a DICOM MR series, one sagittal slice per file (uint16 pixels)."""
    import SimpleITK as sitk

    image = sitk.Cast(sitk.ReadImage(str(image_path)), sitk.sitkUInt16)
    directory.mkdir(parents=True, exist_ok=True)
    # identifiers derived from the subject's name, so a series written twice is the same series
    digits = "".join(str(ord(c)) for c in name)[:20]
    study, series = f"1.2.826.0.1.3680043.10.1234.1.{digits}", f"1.2.826.0.1.3680043.10.1234.2.{digits}"
    frame = f"1.2.826.0.1.3680043.10.1234.3.{digits}"
    direction = image.GetDirection()  # 3x3, row-major, LPS: columns are the voxel axes' directions
    row, col = direction[0::3], direction[1::3]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetSize()[2]):
        slice_ = image[:, :, k]
        tags = {
            "0008|0060": "MR", "0008|103e": f"{name} sagittal T2", "0010|0010": name, "0010|0020": name,
            "0020|000d": study, "0020|000e": series, "0020|0052": frame, "0008|0018": f"{series}.{k + 1}",
            "0020|0032": "\\".join(f"{v:.4f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0037": "\\".join(f"{v:.6f}" for v in (*row, *col)),
            "0020|0013": str(k + 1), "0018|0050": f"{image.GetSpacing()[2]:.4f}",
        }
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(directory / f"IM{k + 1:04d}.dcm"))
        writer.Execute(slice_)


def describe(image: Path, labels: Path) -> str:
    """Shape, spacing, axis codes (as stored and after RAS reorientation) and voxels per label."""
    import nibabel as nib

    img, seg = nib.load(str(image)), nib.load(str(labels))
    codes = "".join(nib.aff2axcodes(img.affine))
    ras = nib.as_closest_canonical(seg)
    data = np.asarray(ras.dataobj)
    counts = np.bincount(data.ravel(), minlength=6)[1:6]
    # in RAS the last axis is S: the label order along it must be 1 (lowest) ... 5 (highest)
    heights = [float(np.argwhere(data == k)[:, 2].mean()) if counts[k - 1] else float("nan") for k in range(1, 6)]
    order = "ok" if all(np.diff(heights) > 0) else "NOT ascending"
    sagittal = "".join(nib.aff2axcodes(ras.affine))
    return (
        f"{image.name}: shape {img.shape}, spacing {tuple(float(z) for z in img.header.get_zooms())} mm, "
        f"axes {codes} -> RAS {ras.shape} ({sagittal}: sagittal slices on axis 0), "
        f"voxels per label 1..5 {counts.tolist()}, label heights along S {[round(h) for h in heights]} ({order}), "
        f"intensity {float(np.asarray(img.dataobj).min()):.0f}..{float(np.asarray(img.dataobj).max()):.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (outside the repository)")
    parser.add_argument("--data", type=Path, default=HERE.parent / "shared" / "data" / "disc",
                        help="the folder holding ivd_11.mat, ivd_20.mat, ivd_25.mat")
    parser.add_argument("--dicom", action="store_true", help="also write OUT_DIR/ivd_NN_dicom/, a DICOM series")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 1
    out = args.out.resolve()
    if HERE in out.parents or out == HERE:
        print(f"{out}: choose a folder outside the repository", file=sys.stderr)
        return 2
    from scipy.io import loadmat

    out.mkdir(parents=True, exist_ok=True)
    for name in SUBJECTS:
        mat = loadmat(str(args.data / f"{name}.mat"))
        image, labels = np.asarray(mat["I"]), np.asarray(mat["GT"])
        if image.shape != labels.shape or labels.max() > 5:
            print(f"{name}: unexpected contents (I {image.shape}, GT {labels.shape}, max label {labels.max()})",
                  file=sys.stderr)
            return 1
        save(image, out / f"{name}.nii.gz")
        save(labels, out / f"{name}_seg.nii.gz", label=True)
        print(describe(out / f"{name}.nii.gz", out / f"{name}_seg.nii.gz"))
        if args.dicom:
            save_dicom_series(out / f"{name}.nii.gz", out / f"{name}_dicom", name)
            print(f"  DICOM series: {out / f'{name}_dicom'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

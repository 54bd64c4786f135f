"""Training cases labelled by a published gmseg model on augmented copies of the training images.

    python scripts/distill_gmseg.py DATA OUT --cases 10062Ses1,9418,... [--copies 3] [--teacher large]
        [--teacher-originals all|CASE,...] [--keep 9604,mt1] [--weights ../shared/data/spinal-gm/weights] [--seed 0]

Distillation (Hinton et al. 2015, here with hard labels): each named training case of DATA
(a `segtool train` simple layout, CASE.nii.gz + CASE_seg.nii.gz) is copied into OUT, with its
manual mask or, if named by ``--teacher-originals``, the teacher's mask of it; then it is
augmented ``--copies`` times (TorchIO: in-plane rotation and scaling, elastic, bias field,
gamma, noise, blur; the volume z-scored first) as CASE_TEACHERk, each copy labelled by the
teacher, not by the warped manual mask. The teacher is a published gmseg model run the way
SCT runs it (`benchmarks/gmseg_reference.py`: 0.25 mm in-plane, 200 x 200 centre crop,
probability > 0.999, back to the image's grid), so it must see the cord within 25 mm of the
image centre. ``--keep`` copies cases unchanged (the held-out validation cases of the
training command; never pass them to ``--cases``). `segtool train spinal-gm OUT ...` then
learns from all of it. The published weights are read from the data folder at run time;
neither they nor a conversion of them is written to OUT, and OUT holds copies of the shared
images: keep it out of the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = ROOT.parent / "shared" / "data" / "spinal-gm" / "weights"


def gmseg_reference():
    """benchmarks/gmseg_reference.py, the published gmseg network the accuracy benchmark also runs.

    benchmarks/ is a folder of programs, not a package: the module is loaded by its path
    (once), without changing sys.path.
    """
    import importlib.util

    if "gmseg_reference" in sys.modules:
        return sys.modules["gmseg_reference"]
    spec = importlib.util.spec_from_file_location("gmseg_reference", ROOT / "benchmarks" / "gmseg_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gmseg_reference"] = module  # before running it: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def augmentation(seed: int):
    """In-plane spatial and intensity transforms for volumes whose 3rd axis is the slice axis."""
    import torch
    import torchio as tio

    torch.manual_seed(seed)
    return tio.Compose([
        tio.ZNormalization(),
        tio.RandomAffine(scales=(0.8, 1.25, 0.8, 1.25, 1, 1), degrees=(0, 0, 0, 0, -20, 20), p=0.9),
        tio.RandomElasticDeformation(num_control_points=7, max_displacement=(4, 4, 0), p=0.5),
        tio.RandomBiasField(coefficients=0.5, order=3, p=0.5),
        tio.RandomGamma(log_gamma=(-0.4, 0.4), p=0.5),
        tio.RandomNoise(std=(0.0, 0.1), p=0.4),
        tio.RandomBlur(std=(0.0, 0.8, 0.0, 0.8, 0.0, 0.0), p=0.3),
    ])


def names(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="simple layout: CASE.nii.gz and CASE_seg.nii.gz")
    parser.add_argument("out", type=Path)
    parser.add_argument("--cases", required=True, help="comma-separated training cases (never the held-out ones)")
    parser.add_argument("--copies", type=int, default=3, help="augmented copies per case, labelled by the teacher")
    parser.add_argument("--teacher-originals", default="",
                        help="'all' or comma-separated cases whose unaugmented copy gets the teacher's mask")
    parser.add_argument("--keep", default="", help="comma-separated cases copied unchanged (validation)")
    parser.add_argument("--teacher", default="large", choices=("challenge", "large"))
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="folder of the published HDF5 + JSON")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cases = names(args.cases)
    relabel = set(cases) if args.teacher_originals.strip().lower() == "all" else set(names(args.teacher_originals))
    kept = names(args.keep)
    clash = (relabel - set(cases)) | (set(kept) & set(cases))
    if clash:
        parser.error(f"{', '.join(sorted(clash))}: --teacher-originals must name training cases, --keep others")

    import nibabel as nib
    import numpy as np
    import torch
    import torchio as tio

    sct = gmseg_reference()
    torch.set_grad_enabled(False)
    teacher = sct.load_published(args.weights, args.teacher)
    args.out.mkdir(parents=True, exist_ok=True)
    transform = augmentation(args.seed)
    for name in kept:
        for suffix in ("", "_seg"):
            nib.save(nib.load(args.data / f"{name}{suffix}.nii.gz"), args.out / f"{name}{suffix}.nii.gz")
    for name in cases:
        image_path, mask_path = args.data / f"{name}.nii.gz", args.data / f"{name}_seg.nii.gz"
        image, mask = nib.load(image_path), nib.load(mask_path)
        nib.save(image, args.out / f"{name}.nii.gz")
        if name in relabel:
            taught = sct.segment_image(teacher, image)
            manual = np.asanyarray(mask.dataobj) > 0
            agree = sct.score_dice(taught, manual)
            print(f"{name}: teacher {int(taught.sum())} voxels, manual {int(manual.sum())}, Dice {agree:.3f}")
            mask = nib.Nifti1Image(taught.astype(np.uint8), mask.affine, mask.header)
        nib.save(mask, args.out / f"{name}_seg.nii.gz")
        subject = tio.Subject(image=tio.ScalarImage(image_path), label=tio.LabelMap(mask_path))
        for k in range(args.copies):
            copy = transform(subject)
            data = copy["image"].data[0].numpy().astype(np.float32)
            img = nib.Nifti1Image(data, copy["image"].affine)
            img.header.set_zooms(image.header.get_zooms()[:3])
            taught = sct.segment_image(teacher, img)
            warped = copy["label"].data[0].numpy() > 0
            agree = sct.score_dice(taught, warped)
            stem = f"{name}_{args.teacher}{k}"
            nib.save(img, args.out / f"{stem}.nii.gz")
            nib.save(nib.Nifti1Image(taught.astype(np.uint8), img.affine), args.out / f"{stem}_seg.nii.gz")
            print(f"{stem}: teacher {int(taught.sum())} voxels, warped manual {int(warped.sum())}, Dice {agree:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

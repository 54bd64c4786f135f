"""scripts/distill_gmseg.py: training cases labelled by a published gmseg model (the teacher).

The teacher here is a tiny Keras-layout HDF5 file written by the test whose last layer is
a constant: probability ~1 everywhere (``--teacher large``) or ~0 (``challenge``), so where
the teacher's mask went, and where the manual one stayed, is visible in the output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("h5py")
pytest.importorskip("torchio")

from test_keras_h5 import random_weights, write_keras_h5  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (24, 22, 3)
AFFINE = np.diag([0.5, 0.5, 3.0, 1.0])


def teacher_folder(folder: Path) -> Path:
    folder.mkdir()
    for name, bias in (("large", 30.0), ("challenge", -30.0)):
        weights = random_weights(4)
        weights["predictions"]["kernel"][:] = 0.0
        weights["predictions"]["bias"][:] = bias
        write_keras_h5(folder / f"{name}_model.hdf5", weights)
        (folder / f"{name}_model.json").write_text(json.dumps({"filters": 4}))
    return folder


def data_folder(folder: Path) -> tuple[Path, np.ndarray]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    manual = np.zeros(SHAPE, np.uint8)
    manual[10:14, 9:13, :] = 1
    for case in ("a", "b", "held"):
        image = rng.normal(100.0, 10.0, SHAPE).astype(np.float32) + 50.0 * manual
        nib.save(nib.Nifti1Image(image, AFFINE), folder / f"{case}.nii.gz")
        nib.save(nib.Nifti1Image(manual, AFFINE), folder / f"{case}_seg.nii.gz")
    return folder, manual


def distill(data: Path, out: Path, weights: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "distill_gmseg.py"), str(data), str(out),
                           "--weights", str(weights), *args], capture_output=True, text=True)


def mask(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def test_copies_and_named_originals_carry_the_teachers_mask_the_rest_stay_manual(tmp_path):
    data, manual = data_folder(tmp_path / "data")
    weights = teacher_folder(tmp_path / "weights")
    out = tmp_path / "out"
    done = distill(data, out, weights, "--cases", "a,b", "--copies", "2", "--teacher-originals", "b",
                   "--keep", "held", "--teacher", "large")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{case}{suffix}.nii.gz" for case in ("a", "b", "held", "a_large0", "a_large1", "b_large0", "b_large1")
        for suffix in ("", "_seg"))
    # the held-out case and a's original are untouched; b's original mask is the teacher's (everywhere)
    for case in ("held", "a"):
        np.testing.assert_array_equal(mask(out / f"{case}.nii.gz"), mask(data / f"{case}.nii.gz"))
        np.testing.assert_array_equal(mask(out / f"{case}_seg.nii.gz"), manual)
    np.testing.assert_array_equal(mask(out / "b_seg.nii.gz"), np.ones(SHAPE, np.uint8))
    # augmented copies: new images on the case's grid, labelled by the teacher, not the warped manual mask
    for k in range(2):
        copy = nib.load(str(out / f"a_large{k}.nii.gz"))
        assert copy.shape == SHAPE and np.allclose(copy.affine, AFFINE)
        assert not np.allclose(copy.get_fdata(), mask(data / "a.nii.gz"))
        assert abs(float(copy.get_fdata().mean())) < 5.0  # z-scored before the augmentation (the input is ~100)
        np.testing.assert_array_equal(mask(out / f"a_large{k}_seg.nii.gz"), np.ones(SHAPE, np.uint8))
    # nothing of the teacher is written next to the cases
    assert not list(out.glob("*.hdf5")) and not list(out.glob("*.safetensors"))


def test_the_teacher_is_chosen_by_name_and_all_relabels_every_training_case(tmp_path):
    data, _ = data_folder(tmp_path / "data")
    weights = teacher_folder(tmp_path / "weights")
    out = tmp_path / "out"
    done = distill(data, out, weights, "--cases", "a,b", "--copies", "0", "--teacher-originals", "all",
                   "--teacher", "challenge")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "a_seg.nii.gz", "b.nii.gz", "b_seg.nii.gz"]
    for case in ("a", "b"):
        assert not mask(out / f"{case}_seg.nii.gz").any()  # the 'challenge' teacher here says no GM anywhere


@pytest.mark.parametrize("args, named", [
    (["--cases", "a", "--teacher-originals", "b"], "b"),
    (["--cases", "a,held", "--keep", "held"], "held"),
])
def test_held_out_cases_cannot_be_distilled_and_relabelled_cases_must_be_training_cases(tmp_path, args, named):
    data, _ = data_folder(tmp_path / "data")
    done = distill(data, tmp_path / "out", tmp_path / "weights", *args)
    assert done.returncode == 2
    assert f"{named}: --teacher-originals must name training cases, --keep others" in done.stderr
    assert not (tmp_path / "out").exists()

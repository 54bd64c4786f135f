"""`segtool evaluate` on the datasets' own masks: 0/1, 0/255 and boolean masks, failed cases, units.

Issue 38, points 1 and 4: the LGG dataset's `_mask.tif` files are 0/255 and segtool's
predictions 0/1; both are one label. Real files on disk, through click's CliRunner.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segtool.cli import cli


def run(*args):
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)])


def tif(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def nifti(path, array, spacing=(0.5, 0.5, 2.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(np.uint8), np.diag([*spacing, 1.0])), str(path))
    return path


def square(top: int, left: int, size: int = 10, shape=(32, 32)) -> np.ndarray:
    a = np.zeros(shape, np.uint8)
    a[top : top + size, left : left + size] = 1
    return a


#: prediction 10x10 at (5,5), truth 10x10 at (7,5): overlap 8x10 -> Dice 2*80/200
DICE = 0.8


def dice_of(doc) -> dict:
    return {r["name"]: r["dice"] for r in doc["metrics"]}


def test_0_255_truth_scores_as_0_1_truth_in_tiff(tmp_path):
    pred = tif(tmp_path / "slice_seg.tif", square(5, 5))
    gt01 = tif(tmp_path / "gt01" / "slice_mask.tif", square(7, 5))
    gt255 = tif(tmp_path / "gt255" / "slice_mask.tif", square(7, 5) * 255)
    reference = run(pred, gt01, "--json")
    assert reference.exit_code == 0, reference.output
    assert dice_of(json.loads(reference.stdout)) == {"1": pytest.approx(DICE)}
    result = run(pred, gt255, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert dice_of(doc) == {"1": pytest.approx(DICE)}
    assert doc["read_as"] == {"gt": {"255": 1}}
    table = run(pred, gt255)
    assert "ground truth's 255 scored as label 1" in table.stdout.replace("\n", " ")


@pytest.mark.parametrize(
    "labels, name",
    [(["--task", "brain-tumour-2d"], "tumour"), (["--labels", "1=tumour"], "tumour"),
     (["--labels", "255=tumour"], "tumour")],
)
def test_one_label_asked_for_reads_either_mask_value(tmp_path, labels, name):
    pred = tif(tmp_path / "p_seg.tif", square(5, 5))
    gt = tif(tmp_path / "p_mask.tif", square(7, 5) * 255)
    result = run(pred, gt, "--json", *labels)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["metrics"]
    assert [(r["name"], r["dice"]) for r in rows] == [(name, pytest.approx(DICE))]
    assert rows[0]["empty"] is None


def test_boolean_png_and_nifti_masks_are_one_label(tmp_path):
    pred = tmp_path / "pred.png"
    Image.fromarray(square(5, 5).astype(bool)).save(pred)  # a 1-bit PNG
    gt = tif(tmp_path / "gt.png", square(7, 5) * 255)
    result = run(pred, gt, "--json")
    assert result.exit_code == 0, result.output
    assert dice_of(json.loads(result.stdout)) == {"1": pytest.approx(DICE)}
    volume = np.stack([square(5, 5)] * 4, axis=-1)
    truth = np.stack([square(7, 5)] * 4, axis=-1)
    p = nifti(tmp_path / "pred.nii.gz", volume)
    g = nifti(tmp_path / "gt.nii.gz", truth * 255)
    result = run(p, g, "--json", "--task", "spinal-gm")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert dice_of(doc) == {"gray_matter": pytest.approx(DICE)}
    assert doc["read_as"] == {"gt": {"255": 1}} and doc["volume_unit"] == "mm³"


def test_label_maps_are_left_alone(tmp_path):
    """Only 1 and 255 are mask values: a pair of different labels stays two labels."""
    pred = tif(tmp_path / "pred.png", square(5, 5) * 2)
    gt = tif(tmp_path / "gt.png", square(7, 5))
    doc = json.loads(run(pred, gt, "--json").stdout)
    assert dice_of(doc) == {"1": 0.0, "2": 0.0} and doc["read_as"] == {}
    four = json.loads(run(pred, gt, "--json", "--labels", "4").stdout)
    assert dice_of(four) == {"4": 1.0} and four["read_as"] == {}
    multi = square(5, 5) * 255
    multi[0, 0] = 1  # two values: not a mask
    doc = json.loads(run(tif(tmp_path / "m.png", multi), gt, "--json").stdout)
    assert set(dice_of(doc)) == {"1", "255"} and doc["read_as"] == {}


def _lgg_folders(tmp_path, truth_scale: int):
    """Three slices of one patient: two with tumour, one empty (as in the LGG data set)."""
    preds, gts = tmp_path / "pred", tmp_path / f"gt{truth_scale}"
    cases = {"TCGA_1_10": (square(5, 5), square(7, 5)), "TCGA_1_11": (square(5, 5), square(5, 7)),
             "TCGA_1_12": (np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8))}
    for case, (p, g) in cases.items():
        tif(preds / f"{case}_seg.tif", p)
        tif(gts / f"{case}_mask.tif", g * truth_scale)
    return preds, gts


def test_lgg_folder_with_its_own_masks_scores_every_slice(tmp_path):
    preds, gt255 = _lgg_folders(tmp_path, 255)
    _, gt01 = _lgg_folders(tmp_path, 1)
    docs = []
    for gts in (gt01, gt255):
        result = run(preds, gts, "--task", "brain-tumour-2d", "--json")
        assert result.exit_code == 0, result.output
        docs.append(json.loads(result.stdout))
    for doc in docs:
        assert doc["n_pairs"] == 3 and doc["n_scored"] == 3 and doc["n_failed"] == 0
        per_case = {c["case"]: dice_of(c)["tumour"] for c in doc["cases"]}
        assert per_case == {"TCGA_1_10": pytest.approx(DICE), "TCGA_1_11": pytest.approx(DICE), "TCGA_1_12": 1.0}
        assert doc["summary"][0]["stats"]["dice"]["mean"] == pytest.approx((2 * DICE + 1) / 3)


def test_failed_cases_are_counted_and_never_averaged(tmp_path):
    preds, gts = _lgg_folders(tmp_path, 1)
    tif(gts / "TCGA_1_10_mask.tif", np.zeros((30, 30), np.uint8))  # another grid: cannot be scored
    two = square(7, 5)
    two[0, 0] = 2  # a label the task does not know
    tif(gts / "TCGA_1_11_mask.tif", two)
    result = run(preds, gts, "--task", "brain-tumour-2d", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["n_pairs"] == 3 and doc["n_scored"] == 1 and doc["n_failed"] == 2
    assert [f["case"] for f in doc["failed"]] == ["TCGA_1_10", "TCGA_1_11"]
    assert doc["summary"][0]["n_cases"] == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("segtool: error:")]
    assert len(errors) == 2
    assert "different grids" in errors[0] and "label value 2" in errors[1]
    assert "segtool: 2 of 3 cases could not be scored" in result.stderr.splitlines()[-1]
    table = run(preds, gts, "--task", "brain-tumour-2d")
    assert table.exit_code == 1
    flat = " ".join(table.stdout.split())
    assert "summary over 1 of 3 cases (2 failed, not in the statistics)" in flat


@pytest.mark.parametrize(
    "make, suffix, area",
    [(lambda p, a: tif(p, a), ".png", "px²"), (lambda p, a: nifti(p, a[..., None]), ".nii.gz", "mm³")],
)
def test_volume_units_follow_the_image(tmp_path, make, suffix, area):
    pred = make(tmp_path / f"pred{suffix}", square(5, 5))
    gt = make(tmp_path / f"gt{suffix}", square(7, 5))
    result = run(pred, gt)
    assert result.exit_code == 0, result.output
    assert f"Vol pred {area}" in result.stdout and f"ΔVol {area}" in result.stdout
    assert "px³" not in result.stdout
    doc = json.loads(run(pred, gt, "--json").stdout)
    assert doc["volume_unit"] == area
    assert doc["metrics"][0]["volume_gt"] == pytest.approx(100 * (1.0 if suffix == ".png" else 0.5 * 0.5 * 2.0))

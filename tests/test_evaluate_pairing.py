"""`segtool evaluate PRED_DIR GT_DIR` pairing BIDS derivatives names (issue 38, point 4).

The spinal-gm data (SCT's gm-challenge) keeps its labels under
``derivatives/labels/sub-*/anat/`` as ``*_gmseg-manual`` (gray matter) and
``*_seg-manual`` (cord), while `segtool run spinal-gm` writes ``*_gmseg``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from segtool.cli import cli
from segtool.evaluation import case_key, pair_folders


def run(*args):
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)])


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(np.uint8), np.diag([0.25, 0.25, 2.5, 1.0])), str(path))
    return path


def gm(shift: int = 0) -> np.ndarray:
    a = np.zeros((24, 24, 3), np.uint8)
    a[8 + shift : 16 + shift, 8:16] = 1
    return a


def cord() -> np.ndarray:
    a = np.zeros((24, 24, 3), np.uint8)
    a[4:20, 4:20] = 1
    return a


SUBJECTS = ("sub-9418", "sub-9604")


def gm_challenge(root: Path, nested: bool = True) -> Path:
    """Ground truth in the gm-challenge layout: gray matter and cord per subject."""
    labels = root / "derivatives" / "labels"
    for sub in SUBJECTS:
        folder = labels / sub / "anat" if nested else labels
        save(folder / f"{sub}_run-1_T2starw_gmseg-manual.nii.gz", gm())
        save(folder / f"{sub}_run-1_T2starw_seg-manual.nii.gz", cord())
        (folder / f"{sub}_run-1_T2starw_gmseg-manual.json").write_text("{}")
    (labels / "dataset_description.json").write_text("{}")
    return labels


def predictions(folder: Path, suffix: str = "_gmseg") -> Path:
    for i, sub in enumerate(SUBJECTS):
        save(folder / f"{sub}_run-1_T2starw{suffix}.nii.gz", gm(shift=i))
    return folder


def expected_dice(shift: int) -> float:
    return 2 * (8 - shift) * 8 / (2 * 64)


@pytest.mark.parametrize("nested", [True, False], ids=["sub-folders", "flat"])
def test_spinal_gm_pairs_bids_derivatives(tmp_path, nested):
    labels = gm_challenge(tmp_path / "gt", nested=nested)
    preds = predictions(tmp_path / "pred")
    result = run(preds, labels, "--task", "spinal-gm", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["case"] for c in doc["cases"]] == [f"{sub}_run-1_T2starw" for sub in SUBJECTS]
    assert [Path(c["gt"]).name for c in doc["cases"]] == [f"{s}_run-1_T2starw_gmseg-manual.nii.gz" for s in SUBJECTS]
    dice = [c["metrics"][0]["dice"] for c in doc["cases"]]
    assert dice == [expected_dice(0), pytest.approx(expected_dice(1))]
    assert doc["n_scored"] == 2
    # the cord files are listed, never dropped silently
    assert sorted(Path(p).name for p in doc["unmatched"]["gt"]) == [
        f"{s}_run-1_T2starw_seg-manual.nii.gz" for s in SUBJECTS
    ]


def test_roles_pair_without_a_task(tmp_path):
    """`_gmseg` pairs with `_gmseg-manual` and `_seg` with `_seg-manual` by their shared role."""
    labels = gm_challenge(tmp_path / "gt")
    doc = json.loads(run(predictions(tmp_path / "gm"), labels, "--json").stdout)
    assert [Path(c["gt"]).name.split("T2starw")[1] for c in doc["cases"]] == ["_gmseg-manual.nii.gz"] * 2
    cord_preds = tmp_path / "cord"
    for sub in SUBJECTS:
        save(cord_preds / f"{sub}_run-1_T2starw_seg.nii.gz", cord())
    doc = json.loads(run(cord_preds, labels, "--json").stdout)
    assert [Path(c["gt"]).name.split("T2starw")[1] for c in doc["cases"]] == ["_seg-manual.nii.gz"] * 2
    assert [c["metrics"][0]["dice"] for c in doc["cases"]] == [1.0, 1.0]


def test_a_task_chooses_between_roles(tmp_path):
    """A prediction without a role (nnU-Net style) needs --task to choose the truth's file."""
    labels = gm_challenge(tmp_path / "gt")
    preds = predictions(tmp_path / "pred", suffix="")
    result = run(preds, labels)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"segtool: error: {labels}: files sub-9418_run-1_T2starw_gmseg-manual.nii.gz, "
        "sub-9418_run-1_T2starw_seg-manual.nii.gz all name case 'sub-9418_run-1_T2starw'; "
        "pass --task to choose by the task's suffix, or keep one per case"
    ]
    doc = json.loads(run(preds, labels, "--task", "spinal-gm", "--json").stdout)
    assert [Path(c["gt"]).name for c in doc["cases"]] == [f"{s}_run-1_T2starw_gmseg-manual.nii.gz" for s in SUBJECTS]


def test_desc_entities_and_sct_names_pair(tmp_path):
    preds, gts = tmp_path / "pred", tmp_path / "gt"
    save(preds / "sub-01" / "anat" / "sub-01_T1w_desc-braintumour_dseg.nii.gz", gm())  # a BIDS derivative
    save(gts / "sub-01_T1w_dseg.nii.gz", gm())
    save(preds / "t2s_gmseg.nii.gz", gm(1))  # SCT's testing data
    save(gts / "t2s_gmseg_manual.nii.gz", gm())
    save(preds / "qc" / "case_gmseg.nii.gz", gm())  # not a BIDS sub-folder: ignored
    save(gts / "sub-01" / "anat" / "sub-01_T1w.nii.gz", gm())  # a raw image (no role) in a BIDS folder: ignored
    result = run(preds, gts, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["case"] for c in doc["cases"]] == ["sub-01_T1w", "t2s"]
    assert doc["unmatched"] == {"pred": [], "gt": []}


def test_case_key_of_bids_names():
    assert case_key("sub-01_T2starw_gmseg-manual.nii.gz") == "sub-01_T2starw"
    assert case_key("sub-01_T2starw_seg-manual.nii.gz") == "sub-01_T2starw"
    assert case_key("sub-01_ses-1_T1w_desc-tissue_dseg.nii.gz") == "sub-01_ses-1_T1w"
    assert case_key("t2s_gmseg_manual.nii.gz") == "t2s"
    assert case_key("scan_manual.nii.gz") == "scan_manual"  # no role: the marker is part of the name
    assert case_key("x_discseg.nii.gz") == "x_discseg"
    assert case_key("x_discseg.nii.gz", role="_discseg") == "x"


def test_task_suffix_is_a_role(tmp_path):
    save(tmp_path / "p" / "a_discseg.nii.gz", gm())
    save(tmp_path / "g" / "a.nii.gz", gm())
    assert pair_folders(tmp_path / "p", tmp_path / "g").pairs == []
    pairs = pair_folders(tmp_path / "p", tmp_path / "g", role="_discseg").pairs
    assert [(k, p.name, g.name) for k, p, g in pairs] == [("a", "a_discseg.nii.gz", "a.nii.gz")]


def test_a_bids_root_points_to_its_derivatives(tmp_path):
    root = tmp_path / "bids"
    gm_challenge(root)
    for sub in SUBJECTS:
        save(root / sub / "anat" / f"{sub}_run-1_T2starw.nii.gz", gm())  # raw images: never labels
    result = run(predictions(tmp_path / "pred"), root, "--task", "spinal-gm")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1:] == [
        f"segtool: error: no file in {tmp_path / 'pred'} pairs with a file in {root} (files pair by case name; "
        f"see docs/metrics.md); the labels of a BIDS dataset are under {root / 'derivatives'}/<pipeline>"
    ]
    ok = run(tmp_path / "pred", root / "derivatives" / "labels", "--task", "spinal-gm")
    assert ok.exit_code == 0, ok.output


def test_strict_bids_derivatives_pair_with_sct_labels(tmp_path):
    """`segtool run --bids` names drop the raw suffix (T2starw); the reference labels keep it."""
    labels = gm_challenge(tmp_path / "gt")
    for i, sub in enumerate(SUBJECTS):
        save(tmp_path / "deriv" / sub / "anat" / f"{sub}_run-1_desc-spinalgm_dseg.nii.gz", gm(shift=i))
    result = run(tmp_path / "deriv", labels, "--task", "spinal-gm", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [(c["case"], Path(c["gt"]).name) for c in doc["cases"]] == [
        (f"{s}_run-1", f"{s}_run-1_T2starw_gmseg-manual.nii.gz") for s in SUBJECTS
    ]
    assert [c["metrics"][0]["dice"] for c in doc["cases"]] == [1.0, pytest.approx(expected_dice(1))]
    assert doc["unmatched"]["pred"] == [] and len(doc["unmatched"]["gt"]) == 2  # the cord masks
    # two contrasts of one subject: the entities alone would be ambiguous, so they stay unmatched
    save(labels / "sub-9418" / "anat" / "sub-9418_run-1_T1w_gmseg-manual.nii.gz", gm())
    doc = json.loads(run(tmp_path / "deriv", labels, "--task", "spinal-gm", "--json").stdout)
    assert [c["case"] for c in doc["cases"]] == ["sub-9604_run-1"]
    assert [Path(p).name for p in doc["unmatched"]["pred"]] == ["sub-9418_run-1_desc-spinalgm_dseg.nii.gz"]

"""`segtool evaluate --labels-map`: a reference coded in its own values (SynthSeg's 2/41 white matter,
3/42 gray matter, 4 CSF, ...) scored against a prediction in the task's labels, Dice by hand."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from segtool.cli import cli

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
SYNTHSEG_MAP = "4:csf,3:gray_matter,42:gray_matter,2:white_matter,41:white_matter"


def save(path, data):
    nib.save(nib.Nifti1Image(data.astype(np.int16), AFFINE), str(path))
    return path


@pytest.fixture
def synthseg_pair(tmp_path):
    """Columns of 4 voxels along x: CSF (4) at x 0-3, gray matter 3 / 42 at x 4-5 / 6-7, white matter
    2 / 41 at x 8-9 / 10-11; a hippocampus (17, not mapped: background) over 4 of the CSF voxels.
    The prediction (csf 1, gray 2, white 3) has CSF over all 16 voxels of x 0-3, gray matter exact,
    white matter on x 8-10 only."""
    gt = np.zeros((12, 2, 2), np.int16)
    for x, value in enumerate((4, 4, 4, 4, 3, 3, 42, 42, 2, 2, 41, 41)):
        gt[x] = value
    gt[0:2, 0] = 17
    pred = np.zeros_like(gt)
    pred[0:4], pred[4:8], pred[8:11] = 1, 2, 3
    return save(tmp_path / "pred.nii.gz", pred), save(tmp_path / "synthseg.nii.gz", gt), gt


def evaluate(*args):
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)])


def test_the_reference_is_renumbered_before_scoring(synthseg_pair):
    pred, gt, original = synthseg_pair
    result = evaluate(pred, gt, "--task", "brain-tissue", "--labels-map", SYNTHSEG_MAP, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    dice = {row["name"]: row["dice"] for row in doc["metrics"]}
    # CSF: 12 reference voxels (16 less the hippocampus's 4), 16 predicted, 12 shared: 24 / 28
    assert dice == pytest.approx({"csf": 24 / 28, "gray_matter": 1.0, "white_matter": 24 / 28}, rel=1e-12)
    assert doc["gt_labels_map"] == {"2": 3, "3": 2, "4": 1, "41": 3, "42": 2}
    assert np.array_equal(np.asanyarray(nib.load(str(gt)).dataobj), original)  # the input is never changed
    table = evaluate(pred, gt, "--task", "brain-tissue", "--labels-map", SYNTHSEG_MAP)
    assert table.exit_code == 0 and "renumbered by --labels-map (5 values" in " ".join(table.stdout.split())


def test_without_the_map_the_task_refuses_the_references_values_and_names_the_option(synthseg_pair):
    pred, gt, _ = synthseg_pair
    result = evaluate(pred, gt, "--task", "brain-tissue")
    assert result.exit_code == 1
    assert "label values 4, 17, 41, 42" in result.output and "--labels-map" in result.output


def test_a_map_with_plain_labels_and_the_options_errors(synthseg_pair):
    pred, gt, _ = synthseg_pair
    plain = evaluate(pred, gt, "--labels", "1=csf,2=gm,3=wm", "--labels-map", "4:1,3:2,42:2,2:3,41:3", "--json")
    assert plain.exit_code == 0, plain.output
    assert {r["name"]: r["dice"] for r in json.loads(plain.stdout)["metrics"]}["wm"] == pytest.approx(24 / 28)
    for args, message in (
        (["--labels-map", "4:1"], "--labels-map needs --task or --labels"),
        (["--task", "brain-tissue", "--labels-map", "4:9"], "--labels-map: target 9 is outside 0..3"),
        (["--task", "brain-tissue", "--labels-map", "4"], "is not SOURCE:TARGET"),
        (["--labels", "1,2,4", "--labels-map", "7:3"], "target 3 is outside 0, 1, 2, 4"),
    ):
        result = evaluate(pred, gt, *args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("segtool: error: ") and message in lines[0], lines

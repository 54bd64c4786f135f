"""`segtool run --combine`: one subject's contrasts on one grid, segmented alone, one mask from their mean."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from click.testing import CliRunner

from segtool.cli import cli
from test_run import LPS, duo, save_nifti, tiny3d  # noqa: F401  (fixtures)
from tiny_task import app_with


def invoke(spec, args):
    return CliRunner().invoke(cli, ["run", spec.name, *args], obj=app_with(spec))


def two_contrasts(tmp_path, affine_b=LPS):
    """Two images of one grid whose bright regions overlap in part, with weak and strong voxels."""
    rng = np.random.default_rng(3)
    a = rng.normal(0.0, 1.0, (12, 10, 6)).astype(np.float32)
    b = rng.normal(0.0, 1.0, (12, 10, 6)).astype(np.float32)
    return save_nifti(tmp_path / "t1.nii.gz", a), save_nifti(tmp_path / "t2.nii.gz", b, affine=affine_b)


def probabilities(spec, path, out_dir):
    result = invoke(spec, [str(path), "--prob", "--json", "-q", "--output-dir", str(out_dir)])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    labels = np.asarray(nib.load(row["output"]).dataobj)
    return labels, np.asarray(nib.load(row["probabilities"]).dataobj, dtype=np.float64)


def test_combine_writes_the_argmax_of_the_mean_probabilities(tmp_path, tiny3d):
    spec, _ = tiny3d
    t1, t2 = two_contrasts(tmp_path)
    labels_1, probs_1 = probabilities(spec, t1, tmp_path / "alone1")
    labels_2, probs_2 = probabilities(spec, t2, tmp_path / "alone2")
    mean = (probs_1 + probs_2) / 2.0
    expected = np.argmax(mean, axis=-1)
    decided = np.abs(mean[..., 1] - mean[..., 0]) > 1e-4  # the written probabilities are rounded

    out = tmp_path / "both.nii.gz"
    result = invoke(spec, [str(t1), str(t2), "--combine", "-o", str(out), "--prob", "--json", "-q"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["input"] == str(t1) and rows[0]["output"] == str(out)
    combined = np.asarray(nib.load(out).dataobj)
    assert decided.mean() > 0.95
    assert np.array_equal(combined[decided], expected[decided])
    # the mean is neither image's own answer
    assert (combined != labels_1).any() and (combined != labels_2).any()
    written = np.asarray(nib.load(rows[0]["probabilities"]).dataobj)
    assert np.allclose(written, mean, atol=1e-5)
    assert np.allclose(nib.load(out).affine, nib.load(t1).affine)


def test_combine_default_name_is_the_first_input_and_both_inputs_are_protected(tmp_path, tiny3d):
    spec, _ = tiny3d
    t1, t2 = two_contrasts(tmp_path)
    result = invoke(spec, [str(t1), str(t2), "--combine", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 't1_seg.nii.gz'}\n"
    assert not (tmp_path / "t2_seg.nii.gz").exists()
    clash = invoke(spec, [str(t1), str(t2), "--combine", "-o", str(t2), "--overwrite", "-q"])
    assert clash.exit_code == 2 and "would overwrite an input" in clash.output


def test_combine_refuses_images_on_another_grid(tmp_path, tiny3d):
    spec, _ = tiny3d
    moved = LPS.copy()
    moved[0, 3] += 2.0
    t1, t2 = two_contrasts(tmp_path, affine_b=moved)
    result = invoke(spec, [str(t1), str(t2), "--combine"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("segtool: error:")]
    assert len(errors) == 1 and "different grids" in errors[0] and "register or resample" in errors[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "t1_seg.nii.gz").exists()


def test_combine_usage_errors(tmp_path, tiny3d, duo):  # noqa: F811
    spec, _ = tiny3d
    t1, t2 = two_contrasts(tmp_path)
    one = invoke(spec, [str(t1), "--combine"])
    assert one.exit_code == 2 and "two or more" in one.output
    sharded = invoke(spec, [str(t1), str(t2), "--combine", "--shard", "0/2"])
    assert sharded.exit_code == 2 and "--shard" in sharded.output
    channels = invoke(duo, [str(t1), str(t2), "--combine"])
    assert channels.exit_code == 2 and "single-channel" in channels.output

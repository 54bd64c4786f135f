"""Logit adjustment: per-class offsets in a model's config.json, added to its logits by the core.

A tiny slice-wise model is run with and without ``logit_offsets``: the adjusted
probabilities must be the plain ones reweighted by exp(offset) and renormalised
(softmax(log p + b)), and ``adjust_folder`` must derive the offsets from the exact class
shares of the model's own training labels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from segtool.cli import cli
from segtool.errors import UsageError, WeightsUnavailableError
from segtool.model_config import ModelConfig
from segtool.networks.logit_offsets import prior_offsets
from segtool.training.ensemble_folder import write_ensemble
from segtool.training.logit_adjustment import adjust_folder
from test_ensemble import member, run_probabilities, spec
from tiny_task import app_with


def image(path: Path) -> Path:
    """One 16x16 window per slice (the patch size): no overlap blends probabilities of several windows."""
    data = np.random.default_rng(0).normal(0, 1, (16, 16, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))
    return path


def with_offsets(folder: Path, offsets) -> None:
    path = folder / "config.json"
    data = json.loads(path.read_text())
    data["logit_offsets"] = offsets
    path.write_text(json.dumps(data))


def test_prior_offsets_are_minus_tau_log_prior_relative_to_the_background():
    assert prior_offsets([0.5, 0.25, 0.25], tau=1.0) == pytest.approx([0.0, math.log(2), math.log(2)], abs=1e-6)
    assert prior_offsets([2, 1, 1], tau=0.5) == pytest.approx([0.0, 0.5 * math.log(2), 0.5 * math.log(2)], abs=1e-6)
    assert prior_offsets([0.8, 0.2, 0.0], tau=0.0) == [0.0, 0.0, 0.0]
    # a class never seen counts as the floor, not as -inf
    unseen = prior_offsets([1.0, 0.0], tau=1.0, floor=1e-4)
    assert unseen == pytest.approx([0.0, -math.log(1e-4)], abs=1e-6)
    for bad in (dict(class_fractions=[1.0, 0.0], tau=-1), dict(class_fractions=[1.0], tau=1),
                dict(class_fractions=[0.0, 0.0], tau=1), dict(class_fractions=[1.0, float("nan")], tau=1)):
        with pytest.raises(ValueError):
            prior_offsets(**bad)


def test_the_core_adds_the_offsets_to_the_logits(tmp_path):
    task = spec()
    folder = member(tmp_path / "m", task, seed=3)
    source = image(tmp_path / "img.nii.gz")
    plain = run_probabilities(task, folder, source, tmp_path / "plain.nii.gz")
    offsets = [0.0, 1.5, -0.7]
    with_offsets(folder, offsets)
    adjusted = run_probabilities(task, folder, source, tmp_path / "adjusted.nii.gz")
    weighted = plain * np.exp(np.asarray(offsets))
    expected = weighted / weighted.sum(-1, keepdims=True)
    assert not np.allclose(adjusted, plain, atol=1e-3)
    np.testing.assert_allclose(adjusted, expected, atol=2e-5)
    labels = nib.load(str(tmp_path / "adjusted.nii.gz")).get_fdata()
    np.testing.assert_array_equal(labels, np.argmax(expected, -1))
    said = CliRunner().invoke(cli, ["run", task.name, str(source), "-o", str(tmp_path / "said.nii.gz"),
                                    "--model-dir", str(folder)], obj=app_with(task))
    assert said.exit_code == 0 and "(logit offsets)" in said.output


@pytest.mark.parametrize("offsets", [[0.0, 1.0], [0.0, 1.0, float("inf")], [0.0, "1", 2.0], [0.0, 1.0, 500.0]])
def test_bad_offsets_are_refused_with_one_line(tmp_path, offsets):
    task = spec()
    folder = member(tmp_path / "m", task, seed=3)
    with_offsets(folder, offsets)
    with pytest.raises(WeightsUnavailableError, match="logit_offsets"):
        ModelConfig.read(folder / "config.json")
    source = image(tmp_path / "img.nii.gz")
    result = CliRunner().invoke(cli, ["run", task.name, str(source), "-o", str(tmp_path / "o.nii.gz"),
                                      "--model-dir", str(folder)], obj=app_with(task))
    assert result.exit_code == 3
    assert "logit_offsets" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.nii.gz").exists()


def labelled_case(folder: Path, name: str, labels: np.ndarray) -> None:
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(labels.astype(np.float32), affine), str(folder / f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), str(folder / f"{name}_seg.nii.gz"))


def test_adjust_folder_takes_the_prior_from_the_models_training_cases_only(tmp_path):
    task = spec()
    data = tmp_path / "data"
    data.mkdir()
    a = np.zeros((4, 5, 2), np.uint8)
    a[0, :, 0] = 1  # 5 voxels of label 1, 0 of label 2, 35 background
    b = np.zeros((4, 5, 2), np.uint8)
    b[:, 0, :] = 2  # 8 voxels of label 2, 32 background
    held_out = np.full((4, 5, 2), 1, np.uint8)  # not a training case: must not count
    labelled_case(data, "a", a)
    labelled_case(data, "b", b)
    labelled_case(data, "c", held_out)
    folder = member(tmp_path / "m", task, seed=0)
    config = json.loads((folder / "config.json").read_text())
    config["training"] = {"data": {"train_cases": ["a", "b"], "validation_cases": ["c"]}}
    (folder / "config.json").write_text(json.dumps(config))

    written = adjust_folder(folder, task, data, tau=0.5, reason="unit test")
    fractions = [67 / 80, 5 / 80, 8 / 80]
    assert written.training["logit_adjustment"]["class_fractions"] == pytest.approx(fractions)
    expected = [-0.5 * math.log(f) + 0.5 * math.log(fractions[0]) for f in fractions]
    assert written.logit_offsets == pytest.approx(expected, abs=1e-6)
    assert ModelConfig.read(folder / "config.json").logit_offsets == written.logit_offsets
    assert written.training["logit_adjustment"]["reason"] == "unit test"

    config["training"]["data"]["train_cases"] = ["a", "missing"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match="missing"):
        adjust_folder(folder, task, data, tau=0.5, reason="unit test")


def test_an_ensemble_refuses_a_member_with_offsets(tmp_path):
    task = spec()
    a = member(tmp_path / "a", task, seed=0)
    b = member(tmp_path / "b", task, seed=1)
    with_offsets(b, [0.0, 0.2, 0.2])
    with pytest.raises(UsageError, match="logit_offsets"):
        write_ensemble([a, b], tmp_path / "ens")

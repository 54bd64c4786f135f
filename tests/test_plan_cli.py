"""`segtool plugin new --from DATA` + `segtool train --budget --folds`: a new dataset from nothing to a model.

A synthetic nnU-Net-layout folder (two channels, two labels, dataset.json) is scaffolded into a plugin,
planned, cross-validated in two folds within a tiny budget, run and evaluated; --plan-only prints the plan
without training; a built-in-style task keeps its declared recipe unless --plan auto.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from segtool.cli import cli
from tiny_task import app_with


def write_nnunet_folder(root: Path, n: int = 4, seed: int = 0) -> Path:
    """imagesTr/CASE_000{0,1}.nii.gz + labelsTr/CASE.nii.gz + dataset.json: a ball (1) in a shell (2)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(seed)
    shape = (28, 26, 12)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")).astype(float)
    grid[2] *= 2.0
    for i in range(n):
        centre = np.array([rng.uniform(11, 17), rng.uniform(11, 15), rng.uniform(10, 14)])[:, None, None, None]
        dist = np.sqrt(((grid - centre) ** 2).sum(0))
        label = np.where(dist < 4, 1, np.where(dist < 7, 2, 0)).astype(np.uint8)
        affine = np.diag([1.0, 1.0, 2.0, 1.0])
        for c, contrast in enumerate(([0, 90, 40], [0, -40, 60])):
            image = rng.normal(100, 8, shape) + np.array(contrast)[label]
            nib.save(nib.Nifti1Image(image.astype(np.float32), affine), root / "imagesTr" / f"blob_{i:03d}_{c:04d}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"blob_{i:03d}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "ball": 1, "shell": 2},
        "numTraining": n, "file_ending": ".nii.gz", "description": "Balls in shells",
    }))
    return root


def invoke(obj, *args, ok=True):
    result = CliRunner().invoke(cli, [str(a) for a in args], obj=obj)
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def scaffolded_task(tmp_path: Path, data: Path):
    pkg = tmp_path / "pkg"
    result = CliRunner().invoke(cli, ["plugin", "new", "blob-task", "--from", str(data), "--dir", str(pkg)])
    assert result.exit_code == 0, result.output
    namespace: dict = {}
    source = (pkg / "segtool_blob_task" / "__init__.py").read_text(encoding="utf-8")
    exec(compile(source, "segtool_blob_task", "exec"), namespace)
    return namespace["TASK"]


@pytest.mark.slow
def test_plugin_new_from_data_plans_trains_folds_runs_and_evaluates(tmp_path):
    data = write_nnunet_folder(tmp_path / "data")
    spec = scaffolded_task(tmp_path, data)
    assert spec.channels == ("T1", "T2") and dict(spec.labels) == {1: "ball", 2: "shell"}
    assert spec.ndim == 3 and spec.recipe == "planned" and spec.description == "Balls in shells"
    obj = app_with(spec)

    model = tmp_path / "model"
    summary = json.loads(invoke(obj, "train", "blob-task", data, "-o", model, "--budget", "8s", "--folds", "2",
                                "--json", "-q").stdout)
    assert summary["folds"] == 2 and sorted(summary["per_case"]) == [f"blob_{i:03d}" for i in range(4)]
    assert {summary["fold_of"][c] for c in summary["per_case"]} == {0, 1}
    assert set(summary["mean"]) == {"ball", "shell"}
    assert json.loads((model / "cross_validation.json").read_text()) == json.loads(json.dumps(summary))

    fold = json.loads((model / "folds" / "fold_0" / "config.json").read_text())
    plan = fold["training"]["plan"]
    assert plan["budget_seconds"] == 8 and plan["overridden"] == []
    assert fold["patch_size"] == plan["patch_size"] and fold["normalization"] == plan["normalization"]
    assert len(fold["training"]["data"]["validation_cases"]) == 2
    assert "## Plan" in (model / "folds" / "fold_0" / "README.md").read_text()
    card = (model / "README.md").read_text()
    assert "## Cross-validation" in card and "ensemble of the fold models" in card and "## Plan" in card
    assert json.loads((model / "config.json").read_text())["network"] == "ensemble"

    pred = tmp_path / "pred.nii.gz"
    images = [data / "imagesTr" / f"blob_000_{c:04d}.nii.gz" for c in range(2)]
    invoke(obj, "run", "blob-task", "--model-dir", model, *images, "-o", pred, "-q")
    truth = data / "labelsTr" / "blob_000.nii.gz"
    assert nib.load(pred).shape == nib.load(truth).shape
    scores = json.loads(invoke(obj, "evaluate", pred, truth, "--task", "blob-task", "--json").stdout)
    assert [m["name"] for m in scores["metrics"]][:2] == ["ball", "shell"]


def test_plan_only_prints_the_plan_and_trains_nothing(tmp_path):
    data = write_nnunet_folder(tmp_path / "data", n=3)
    spec = scaffolded_task(tmp_path, data)
    obj = app_with(spec)
    model = tmp_path / "model"
    out = json.loads(invoke(obj, "train", "blob-task", data, "-o", model, "--budget", "10m", "--plan-only",
                            "--json", "-q").stdout)
    plan, fingerprint = out["plan"], out["fingerprint"]
    assert plan["budget_seconds"] == 600 and plan["steps"] >= 1 and plan["measurements"]
    assert set(plan["reasons"]) >= {"network_dims", "target_spacing", "normalization", "augmentation", "steps"}
    assert fingerprint["cases"] == 3 and fingerprint["median_spacing"] == [1.0, 1.0, 2.0]
    assert sorted(p.name for p in model.iterdir()) == ["fingerprint.json"]  # cached, nothing trained
    table = invoke(obj, "train", "blob-task", data, "-o", model, "--budget", "10m", "--plan-only",
                   "--patch-size", "32,32" if plan["network_dims"] == 2 else "32,32,16").stdout
    assert "(by hand)" in table and "normalisation" in table


def test_a_declared_recipe_trains_as_declared_unless_plan_auto(tmp_path):
    from dataclasses import replace

    data = write_nnunet_folder(tmp_path / "data", n=3)
    spec = replace(scaffolded_task(tmp_path, data), recipe="declared", name="declared-task")
    obj = app_with(spec)
    refused = invoke(obj, "train", "declared-task", data, "-o", tmp_path / "m", "--plan-only", ok=False)
    assert refused.exit_code != 0 and "--plan auto" in refused.output
    out = json.loads(invoke(obj, "train", "declared-task", data, "-o", tmp_path / "m", "--plan", "auto",
                            "--plan-only", "--json", "-q").stdout)
    assert out["plan"]["network"] == "unet"
    refused = invoke(obj, "train", "declared-task", data, "-o", tmp_path / "m", "--folds", "2", "--val-cases",
                     "blob_000", ok=False)
    assert refused.exit_code != 0 and "--folds chooses" in refused.output

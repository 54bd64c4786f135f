"""Ensembles: several trained model folders as one, run through the same pipeline.

Two tiny U-Nets of the same task (different initialisations) are written as model
folders, combined by `write_ensemble` (`segtool models ensemble`; its CLI in test_models_commands.py), and run with
`segtool run --model-dir`: the ensemble's probabilities must be the mean of the
members' (each run alone on the same image), and members that disagree on the
pipeline are refused with a one-line error.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from segtool.cli import cli
from segtool.errors import UsageError
from segtool.model_config import ModelConfig
from segtool.spec import Postprocess, TaskSpec
from segtool.training.ensemble_folder import write_ensemble
from tiny_task import app_with

ROOT = Path(__file__).resolve().parents[1]


def spec(**overrides) -> TaskSpec:
    values = dict(
        name="tiny-ens", description="tiny slice-wise task for ensembles", channels=("t2",), ndim=3,
        labels={1: "a", 2: "b"}, network="unet", model_kwargs={"features": (4, 8), "strides": (2,)},
        slice_axis=2, target_spacing=(1.0, 1.0, None), patch_size=(16, 16), normalization="zscore",
        batch_size=4, postprocess=Postprocess(), licence="MIT",
    )
    values.update(overrides)
    return TaskSpec(**values)


def member(folder: Path, task: TaskSpec, seed: int, network: str | None = None, **kwargs) -> Path:
    """A model folder of ``task`` (or another family) with seeded random weights."""
    if network:
        task = replace(task, network=network, model_kwargs=kwargs)
    torch.manual_seed(seed)
    model = task.build_network()
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(ModelConfig.for_spec(task).to_json(), encoding="utf-8")
    return folder


def image(path: Path) -> Path:
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (20, 18, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))
    return path


def run_probabilities(task: TaskSpec, model_dir: Path, source: Path, out: Path) -> np.ndarray:
    result = CliRunner().invoke(
        cli, ["run", task.name, str(source), "-o", str(out), "--model-dir", str(model_dir), "--prob",
              "--precision", "fp32"], obj=app_with(task),
    )
    assert result.exit_code == 0, result.output
    return nib.load(str(out).replace(".nii.gz", "_prob.nii.gz")).get_fdata()


def test_the_ensemble_runs_and_gives_the_mean_probability_of_its_members(tmp_path):
    task = spec()
    a = member(tmp_path / "a", task, seed=0)
    b = member(tmp_path / "b", task, seed=1, network="res_se_unet", features=(4, 8), strides=(2,))
    config = write_ensemble([a, b], tmp_path / "ens")
    assert config.network == "ensemble"
    assert [m["network"] for m in config.architecture["members"]] == ["unet", "res_se_unet"]
    assert [m["folder"] for m in config.training["members"]] == [str(a), str(b)]
    stored = load_file(str(tmp_path / "ens" / "model.safetensors"))
    assert {k.split(".")[1] for k in stored} == {"0", "1"}
    assert json.loads((tmp_path / "ens" / "config.json").read_text())["weights_sha256"] == config.weights_sha256
    card = (tmp_path / "ens" / "README.md").read_text()
    assert "mean class probability of 2 trained networks (unet, res_se_unet)" in card
    assert "| 1 | `res_se_unet` |" in card

    source = image(tmp_path / "img.nii.gz")
    pa = run_probabilities(task, a, source, tmp_path / "pa.nii.gz")
    pb = run_probabilities(task, b, source, tmp_path / "pb.nii.gz")
    pe = run_probabilities(task, tmp_path / "ens", source, tmp_path / "pe.nii.gz")
    assert np.abs(pa - pb).max() > 0.05, "the members should disagree somewhere"
    np.testing.assert_allclose(pe, (pa + pb) / 2, atol=2e-3)  # probabilities are stored as float16/32


def test_float16_halves_the_tensors_and_keeps_the_output(tmp_path):
    task = spec()
    a, b = member(tmp_path / "a", task, seed=0), member(tmp_path / "b", task, seed=1)
    write_ensemble([a, b], tmp_path / "full")
    write_ensemble([a, b], tmp_path / "half", float16=True)
    full, half = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("full", "half"))
    assert sum(t.nbytes for t in half.values()) * 2 == sum(t.nbytes for t in full.values())
    assert {t.dtype for t in half.values()} == {torch.float16}
    source = image(tmp_path / "img.nii.gz")
    pf = run_probabilities(task, tmp_path / "full", source, tmp_path / "pf.nii.gz")
    ph = run_probabilities(task, tmp_path / "half", source, tmp_path / "ph.nii.gz")
    np.testing.assert_allclose(ph, pf, atol=5e-3)


@pytest.mark.parametrize("change, words", [
    (dict(normalization="none"), "normalization differ"),
    (dict(labels={1: "a", 2: "c"}), "labels differ"),
    (dict(target_spacing=(0.5, 0.5, None)), "target_spacing differ"),
    (dict(postprocess=Postprocess(keep_largest=True)), "postprocess differ"),
])
def test_members_with_another_pipeline_are_refused(tmp_path, change, words):
    a = member(tmp_path / "a", spec(), seed=0)
    b = member(tmp_path / "b", spec(**change), seed=1)
    with pytest.raises(UsageError, match=words):
        write_ensemble([a, b], tmp_path / "ens")
    assert not (tmp_path / "ens").exists()


def test_one_member_an_ensemble_or_an_existing_model_is_refused(tmp_path):
    task = spec()
    a, b = member(tmp_path / "a", task, seed=0), member(tmp_path / "b", task, seed=1)
    with pytest.raises(UsageError, match="at least two"):
        write_ensemble([a], tmp_path / "one")
    write_ensemble([a, b], tmp_path / "ens")
    with pytest.raises(UsageError, match="is an ensemble already"):
        write_ensemble([a, tmp_path / "ens"], tmp_path / "nested")
    with pytest.raises(UsageError, match="holds a model already"):
        write_ensemble([a, b], tmp_path / "ens")
    with pytest.raises(UsageError, match="not a model folder"):
        write_ensemble([a, tmp_path / "missing"], tmp_path / "x")


def test_a_member_from_before_a_post_processing_step_existed_still_joins(tmp_path):
    task = spec()
    a, b = member(tmp_path / "a", task, seed=0), member(tmp_path / "b", task, seed=1)
    config = json.loads((b / "config.json").read_text())
    del config["postprocess"]["keep_largest_union"]  # written before that step existed: it means "off"
    (b / "config.json").write_text(json.dumps(config))
    assert write_ensemble([a, b], tmp_path / "ens").postprocess == ModelConfig.read(a / "config.json").postprocess


def test_the_ensemble_does_not_inherit_its_first_members_flips(tmp_path):
    task = spec()
    a, b = member(tmp_path / "a", task, seed=0), member(tmp_path / "b", task, seed=1)
    config = json.loads((a / "config.json").read_text())
    config["tta"] = True
    (a / "config.json").write_text(json.dumps(config))
    assert write_ensemble([a, b], tmp_path / "ens").tta is False
    assert ModelConfig.read(tmp_path / "ens" / "config.json").tta is False


def test_segtool_train_refuses_to_train_an_ensemble(tmp_path):
    task = spec()
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(
        cli, ["train", task.name, str(tmp_path / "data"), "-o", str(tmp_path / "m"), "--network", "ensemble"],
        obj=app_with(task),
    )
    assert result.exit_code == 2
    assert "made from trained model folders" in result.output
    assert not (tmp_path / "m").exists()


def test_members_trained_on_different_data_join_and_record_their_cases(tmp_path):
    """Intensity statistics are a record of the training data, not the pipeline: members trained on
    different cases join, and the ensemble records each member's cases (the benchmarks' "in training")."""
    import importlib.util

    task = spec()
    a, b = member(tmp_path / "a", task, seed=0), member(tmp_path / "b", task, seed=1)
    for folder, mean, cases in ((a, 10.0, ["s1", "s2"]), (b, 99.0, ["s2", "s3_copy0"])):
        config = json.loads((folder / "config.json").read_text())
        config["normalization_stats"] = {"method": "zscore", "per_image": True, "channels": {"t2": {"mean": mean}}}
        config["training"] = {"data": {"train_cases": cases, "path": str(folder)}}
        (folder / "config.json").write_text(json.dumps(config))
    written = write_ensemble([a, b], tmp_path / "ens")
    assert written.normalization_stats["channels"]["t2"]["mean"] == 10.0  # the first member's record
    assert [m["train_cases"] for m in written.training["members"]] == [["s1", "s2"], ["s2", "s3_copy0"]]
    assert "data" not in written.training  # no one split to name

    loaded = importlib.util.spec_from_file_location("accuracy_common", ROOT / "benchmarks" / "accuracy_common.py")
    common = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(common)
    assert common.training_cases(tmp_path / "ens") == ["s1", "s2", "s3_copy0"]
    assert common.training_cases(a) == ["s1", "s2"]

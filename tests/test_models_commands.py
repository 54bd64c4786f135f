"""`segtool models ensemble | logit-adjust | export-checkpoint | bundle`, and `models export` of bundled models.

Tiny model folders of a slice-wise task (test_ensemble's) go through click's CliRunner:
the ensemble's probabilities must be the mean of its members', export-checkpoint's
safetensors must load strictly and equal the checkpoint's tensors, a bundled model must
resolve through its printed sha256 pins and run, and bad input gets one line and a
non-zero exit with nothing written.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from segtool.cli import cli
from segtool.model_config import ModelConfig
from segtool.spec import WeightsRef
from segtool.training.checkpoint import checkpoint_path, save
from segtool.weights.integrity import sha256_file
from test_ensemble import image, member, run_probabilities, spec
from test_logit_offsets import labelled_case
from tiny_task import app_with, make_bundled_package, make_spec

NEW = ("ensemble", "logit-adjust", "export-checkpoint", "bundle")


def invoke(task, *args: str):
    return CliRunner().invoke(cli, ["models", *args], obj=app_with(task))


def one_error_line(result, exit_code: int, words: str) -> None:
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segtool: error: ") and words in lines[0], result.output


@pytest.mark.parametrize("name", NEW)
def test_each_new_subcommand_has_help_with_an_example(name):
    result = CliRunner().invoke(cli, ["models", name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"segtool models {name} " in result.output and "Example" in result.output
    listed = CliRunner().invoke(cli, ["models", "--help"])
    assert name in listed.output


# ---------------------------------------------------------------------------- ensemble


def test_ensemble_lists_its_members_and_gives_their_mean_probability(tmp_path):
    task = spec()
    a = member(tmp_path / "a", task, seed=0)
    b = member(tmp_path / "b", task, seed=1, network="res_se_unet", features=(4, 8), strides=(2,))
    result = invoke(task, "ensemble", str(tmp_path / "ens"), str(a), str(b), "--json")
    assert result.exit_code == 0, result.output
    said = json.loads(result.stdout)
    assert said["networks"] == ["unet", "res_se_unet"]
    config = ModelConfig.read(tmp_path / "ens" / "config.json")
    assert config.network == "ensemble"
    assert [m["network"] for m in config.architecture["members"]] == ["unet", "res_se_unet"]
    assert [m["folder"] for m in config.training["members"]] == [str(a), str(b)]
    assert config.weights_sha256 == said["weights_sha256"] == sha256_file(tmp_path / "ens" / "model.safetensors")

    source = image(tmp_path / "img.nii.gz")
    pa = run_probabilities(task, a, source, tmp_path / "pa.nii.gz")
    pb = run_probabilities(task, b, source, tmp_path / "pb.nii.gz")
    pe = run_probabilities(task, tmp_path / "ens", source, tmp_path / "pe.nii.gz")
    assert np.abs(pa - pb).max() > 0.05, "the members should disagree somewhere"
    np.testing.assert_allclose(pe, (pa + pb) / 2, atol=2e-3)


def test_ensemble_summary_and_bad_input(tmp_path):
    task = spec()
    a, b = member(tmp_path / "a", task, seed=0), member(tmp_path / "b", task, seed=1)
    done = invoke(task, "ensemble", str(tmp_path / "ens"), str(a), str(b), "--float16")
    assert done.exit_code == 0, done.output
    assert "ensemble of 2 (unet, unet), weights sha256" in done.output
    assert {t.dtype for t in load_file(str(tmp_path / "ens" / "model.safetensors")).values()} == {torch.float16}
    one_error_line(invoke(task, "ensemble", str(tmp_path / "one"), str(a)), 2, "at least two model folders")
    one_error_line(invoke(task, "ensemble", str(tmp_path / "x"), str(a), str(tmp_path / "nope")), 2,
                   "not a model folder")
    one_error_line(invoke(task, "ensemble", str(tmp_path / "ens"), str(a), str(b)), 2, "holds a model already")
    assert not (tmp_path / "one").exists() and not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------- logit-adjust


def trained_folder(tmp_path: Path, task) -> tuple[Path, Path]:
    """A model folder whose config records training cases a, b, and the data folder holding a, b, c."""
    data = tmp_path / "data"
    data.mkdir()
    a = np.zeros((4, 5, 2), np.uint8)
    a[0, :, 0] = 1  # 5 voxels of label 1
    b = np.zeros((4, 5, 2), np.uint8)
    b[:, 0, :] = 2  # 8 voxels of label 2
    for name, labels in (("a", a), ("b", b), ("c", np.ones((4, 5, 2), np.uint8))):
        labelled_case(data, name, labels)
    folder = member(tmp_path / "m", task, seed=0)
    config = json.loads((folder / "config.json").read_text())
    config["training"] = {"data": {"train_cases": ["a", "b"], "validation_cases": ["c"]}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder, data


def test_logit_adjust_writes_offsets_from_the_training_cases_class_shares(tmp_path):
    task = spec()
    folder, data = trained_folder(tmp_path, task)
    result = invoke(task, "logit-adjust", str(folder), str(data), "--tau", "0.5", "--reason", "unit test", "--json")
    assert result.exit_code == 0, result.output
    fractions = [67 / 80, 5 / 80, 8 / 80]
    expected = [-0.5 * math.log(f) + 0.5 * math.log(fractions[0]) for f in fractions]
    said = json.loads(result.stdout)
    assert said["class_fractions"] == pytest.approx(fractions)
    assert said["logit_offsets"] == pytest.approx(expected, abs=1e-6)
    written = ModelConfig.read(folder / "config.json")
    assert written.logit_offsets == pytest.approx(expected, abs=1e-6)
    assert written.training["logit_adjustment"]["reason"] == "unit test"
    summary = invoke(task, "logit-adjust", str(folder), str(data), "--tau", "0", "--reason", "off")
    assert summary.exit_code == 0 and "logit offsets (tau 0.0): background +0.000, a +0.000, b +0.000" in summary.output


def test_logit_adjust_bad_input_is_one_line_and_changes_nothing(tmp_path):
    task = spec()
    folder, data = trained_folder(tmp_path, task)
    before = (folder / "config.json").read_bytes()
    one_error_line(invoke(task, "logit-adjust", str(folder), str(data), "--tau", "-1", "--reason", "x"), 2,
                   "tau must be a finite number >= 0")
    one_error_line(invoke(task, "logit-adjust", str(tmp_path / "data"), str(data), "--tau", "1", "--reason", "x"), 2,
                   "not a model folder (no config.json)")
    one_error_line(invoke(task, "logit-adjust", str(folder), str(tmp_path / "nodata"), "--tau", "1", "--reason", "x"),
                   2, "nodata")
    missing = invoke(task, "logit-adjust", str(folder), str(data), "--tau", "1")
    assert missing.exit_code == 2 and "--reason" in missing.output
    assert (folder / "config.json").read_bytes() == before


# ---------------------------------------------------------------------------- export-checkpoint


def with_checkpoint(folder: Path, state: dict, step: int) -> None:
    """A resume checkpoint (DDP-prefixed keys, as torchrun saves them) and a log that validated ``step``."""
    save(checkpoint_path(folder), {"model": {f"module.{k}": v for k, v in state.items()}, "global_step": step,
                                   "optimizer": {}})
    log = [{"step": 4, "epoch": 0, "validation": {"mean_dice": 0.5}}, {"step": step, "epoch": 1,
                                                                        "validation": {"mean_dice": 0.625}}]
    (folder / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    (folder / "README.md").write_text("# card\n")
    config = json.loads((folder / "config.json").read_text())
    config["training"] = {"best_epoch": 0, "validation": {"mean_dice": 0.5}}
    (folder / "config.json").write_text(json.dumps(config))


def test_export_checkpoint_writes_the_final_weights_which_load_strictly(tmp_path):
    task = spec()
    folder = member(tmp_path / "m", task, seed=0)
    torch.manual_seed(5)
    final = {k: v.clone() for k, v in task.build_network().state_dict().items()}
    with_checkpoint(folder, final, step=9)
    result = invoke(task, "export-checkpoint", str(folder), str(tmp_path / "final"), "--json")
    assert result.exit_code == 0, result.output
    out = tmp_path / "final"
    stored = load_file(str(out / "model.safetensors"))
    network = task.build_network()
    network.load_state_dict(stored, strict=True)
    assert stored.keys() == final.keys() and all(torch.equal(stored[k], final[k]) for k in final)
    config = ModelConfig.read(out / "config.json")
    assert config.weights_sha256 == sha256_file(out / "model.safetensors") == json.loads(result.stdout)["weights_sha256"]
    assert config.training["selected"] == "final step 9"
    assert config.training["validation"] == {"mean_dice": 0.625}
    assert config.training["validation_of"] == "final step 9"
    assert (out / "README.md").read_text() == "# card\n"
    assert (out / "train_log.jsonl").read_bytes() == (folder / "train_log.jsonl").read_bytes()
    source = image(tmp_path / "img.nii.gz")
    assert run_probabilities(task, out, source, tmp_path / "p.nii.gz").shape[-1] == 3  # runs, sha256 checked


def test_export_checkpoint_refuses_what_would_not_load(tmp_path):
    task = spec()
    folder = member(tmp_path / "m", task, seed=0)
    one_error_line(invoke(task, "export-checkpoint", str(folder), str(tmp_path / "o")), 2, "no resume checkpoint")
    other = replace(task, network="res_se_unet", model_kwargs={"features": (4, 8), "strides": (2,)})
    with_checkpoint(folder, other.build_network().state_dict(), step=3)
    one_error_line(invoke(task, "export-checkpoint", str(folder), str(tmp_path / "o")), 2,
                   "do not fit the network of its config.json")
    one_error_line(invoke(task, "export-checkpoint", str(folder), str(folder)), 2, "the training folder itself")
    one_error_line(invoke(task, "export-checkpoint", str(tmp_path), str(tmp_path / "o")), 2, "not a model folder")
    checkpoint_path(folder).write_bytes(b"not a checkpoint")
    one_error_line(invoke(task, "export-checkpoint", str(folder), str(tmp_path / "o")), 2, "cannot read the checkpoint")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- bundle


def plugin_package(root: Path, name: str) -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    return root / name


def test_bundle_writes_the_folder_and_pins_that_resolve_and_run(tmp_path, monkeypatch):
    task = spec()
    a, b = member(tmp_path / "a", task, seed=0), member(tmp_path / "b", task, seed=1)
    assert invoke(task, "ensemble", str(tmp_path / "ens"), str(a), str(b)).exit_code == 0
    plugin = plugin_package(tmp_path / "site", "segtool_tinybundle")
    (tmp_path / "extra.md").write_text("## Per case\n\n| case | Dice |\n")
    result = invoke(task, "bundle", str(tmp_path / "ens"), str(plugin), "--variant", "ens",
                    "--set", "postprocess.keep_largest=true", "--card-extra", str(tmp_path / "extra.md"))
    assert result.exit_code == 0, result.output
    target = plugin / "ens"
    weights_sha, config_sha = sha256_file(target / "model.safetensors"), sha256_file(target / "config.json")
    assert result.stdout.strip() == (f'WeightsRef.bundled("segtool_tinybundle", "{weights_sha}", "{config_sha}", '
                                     '"DESCRIPTION", folder="ens")')
    assert weights_sha == sha256_file(tmp_path / "ens" / "model.safetensors")
    config = json.loads((target / "config.json").read_text())
    assert config["postprocess"]["keep_largest"] is True
    assert config["training"]["bundle_overrides"] == ["postprocess.keep_largest=true"]
    card = (target / "model_card.md").read_text()
    assert card == (tmp_path / "ens" / "README.md").read_text().rstrip("\n") + "\n\n## Per case\n\n| case | Dice |\n"
    assert not (target / "train_log.jsonl").exists()  # an ensemble was not trained as one

    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    ref = WeightsRef.bundled("segtool_tinybundle", weights_sha, config_sha, "tiny ensemble", folder="ens")
    bundled = replace(task, models={"ens": ref})
    source = image(tmp_path / "img.nii.gz")
    run = CliRunner().invoke(cli, ["run", task.name, str(source), "-o", str(tmp_path / "o.nii.gz"), "--model", "ens"],
                             obj=app_with(bundled))
    assert run.exit_code == 0, run.output
    assert (tmp_path / "o.nii.gz").is_file()


def test_bundle_bad_input_is_one_line_and_writes_nothing(tmp_path):
    task = spec()
    plain = member(tmp_path / "m", task, seed=0)  # its config records no weights sha256
    (plain / "README.md").write_text("# card\n")
    plugin = plugin_package(tmp_path / "site", "segtool_tinybundle")
    one_error_line(invoke(task, "bundle", str(plain), str(plugin)), 3, "does not match")
    a, b = member(tmp_path / "a", task, seed=0), member(tmp_path / "b", task, seed=1)
    assert invoke(task, "ensemble", str(tmp_path / "ens"), str(a), str(b)).exit_code == 0
    ens = str(tmp_path / "ens")
    one_error_line(invoke(task, "bundle", ens, str(plugin), "--set", "postprocess.nope=1"), 2, "config.json has no")
    one_error_line(invoke(task, "bundle", ens, str(plugin), "--set", "postprocess.keep_largest"), 2,
                   "expected KEY.PATH=JSON")
    one_error_line(invoke(task, "bundle", ens, str(plugin), "--set", "postprocess.keep_largest=yes"), 2, "is not JSON")
    one_error_line(invoke(task, "bundle", ens, str(plugin), "--set", 'normalization="nope"'), 2, "normalization")
    one_error_line(invoke(task, "bundle", ens, str(tmp_path / "site")), 2, "not a plugin package")
    one_error_line(invoke(task, "bundle", ens, str(plugin), "--variant", "../up"), 2, "plain folder name")
    assert sorted(p.name for p in plugin.iterdir()) == ["__init__.py"]


# ---------------------------------------------------------------------------- export when every model is bundled


def test_export_of_bundled_only_models_says_why_in_one_line_and_writes_nothing(tmp_path):
    ref = make_bundled_package(tmp_path / "site", "segtool_tinyexport", make_spec())
    task = make_spec(models={"default": ref})
    result = CliRunner().invoke(cli, ["models", "export", str(tmp_path / "w.tar"), "--cache-dir",
                                      str(tmp_path / "cache")], obj=app_with(task))
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == [
        f"nothing to export: the 1 model(s) are bundled with their plugins, so an offline machine has them once "
        f"segtool is installed; {tmp_path / 'w.tar'} not written"]
    assert not (tmp_path / "w.tar").exists()
    as_json = CliRunner().invoke(cli, ["models", "export", str(tmp_path / "w.tar"), "--json", "--cache-dir",
                                       str(tmp_path / "cache")], obj=app_with(task))
    assert json.loads(as_json.stdout) == {"archive": None, "files": [], "bytes": 0, "bundled": ["tiny/default"]}


def test_the_shell_completes_the_new_subcommands_and_their_folders():
    from click.shell_completion import ShellComplete

    def complete(args, incomplete):
        return ShellComplete(cli, {}, "segtool", "_SEGTOOL_COMPLETE").get_completions(args, incomplete)

    assert [i.value for i in complete(["models"], "e")] == ["ensemble", "export", "export-checkpoint"]
    assert [i.value for i in complete(["models"], "b")] == ["bundle"]
    assert [i.value for i in complete(["models"], "logit")] == ["logit-adjust"]
    assert [i.type for i in complete(["models", "ensemble"], "")] == ["dir"]
    assert "--float16" in [i.value for i in complete(["models", "ensemble"], "--")]

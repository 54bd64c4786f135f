"""A task's model served from one member of its bundled ensemble (``WeightsRef.member_of``).

A plugin that bundles an ensemble need not ship its members' weights a second time: a
member reference names the ensemble's weights file (same pin) and the member's own
config. Run by name, it must give exactly what the member's own folder gives.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from segtool.cli import cli
from segtool.errors import InvalidSpecError
from segtool.spec import WeightsRef
from segtool.training.ensemble_folder import write_ensemble
from segtool.weights.integrity import sha256_file
from test_ensemble import image, member, run_probabilities, spec
from tiny_task import app_with


@pytest.fixture
def package(tmp_path, monkeypatch):
    """An importable package holding an ensemble of two members and member 1's config only."""
    name = f"segtool_testmembers_{uuid.uuid4().hex[:8]}"
    root = tmp_path / "site" / name
    task = spec()
    a = member(tmp_path / "a", task, seed=0)
    b = member(tmp_path / "b", task, seed=1, network="res_se_unet", features=(4, 8), strides=(2,))
    write_ensemble([a, b], root / "ensemble")
    (root / "__init__.py").write_text("")
    (root / "second").mkdir()
    shutil.copy(b / "config.json", root / "second" / "config.json")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield name, root, task, b
    sys.modules.pop(name, None)


def refs(name, root, index=1):
    ensemble = WeightsRef.bundled(name, sha256_file(root / "ensemble" / "model.safetensors"),
                                  sha256_file(root / "ensemble" / "config.json"), folder="ensemble")
    second = WeightsRef.member_of(ensemble, index, sha256_file(root / "second" / "config.json"), folder="second")
    return ensemble, second


def run_model(task, variant, source, out):
    result = CliRunner().invoke(
        cli, ["run", task.name, str(source), "-o", str(out), "--model", variant, "--prob", "--precision", "fp32"],
        obj=app_with(task),
    )
    return result


def test_a_member_run_by_name_gives_exactly_its_own_folders_output(package, tmp_path):
    name, root, task, b = package
    ensemble, second = refs(name, root)
    assert second.weights == ensemble.weights and second.member == 1
    assert second.config.filename == "second/config.json"
    task = replace(task, models={"ensemble": ensemble, "second": second}, default_model="ensemble")
    source = image(tmp_path / "img.nii.gz")

    result = run_model(task, "second", source, tmp_path / "m.nii.gz")
    assert result.exit_code == 0, result.output
    assert f"model second (bundled {name}) on cpu" in result.output  # the status line names the model chosen
    by_name = np.asarray(nib.load(str(tmp_path / "m_prob.nii.gz")).dataobj)
    alone = run_probabilities(task, b, source, tmp_path / "b.nii.gz")
    np.testing.assert_array_equal(by_name, alone)  # the same float32 tensors, stored once

    result = run_model(task, "ensemble", source, tmp_path / "e.nii.gz")
    assert result.exit_code == 0, result.output
    both = np.asarray(nib.load(str(tmp_path / "e_prob.nii.gz")).dataobj)
    assert np.abs(both - alone).max() > 0.01, "the ensemble and its member should differ"


def test_a_member_the_file_does_not_hold_is_one_line_and_no_output(package, tmp_path):
    name, root, task, _ = package
    ensemble, missing = refs(name, root, index=2)
    task = replace(task, models={"ensemble": ensemble, "third": missing}, default_model="ensemble")
    result = run_model(task, "third", image(tmp_path / "img.nii.gz"), tmp_path / "m.nii.gz")
    assert result.exit_code == 3
    assert "holds no ensemble member 2" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "m.nii.gz").exists()


def test_member_indices_are_checked_when_the_plugin_declares_them(package):
    name, root, _, _ = package
    ensemble, second = refs(name, root)
    for bad in (-1, True, "1", 1.0):
        with pytest.raises(InvalidSpecError, match="member must be an ensemble member index"):
            WeightsRef.member_of(ensemble, bad, second.config.sha256)
    with pytest.raises(InvalidSpecError, match="not another member's"):
        WeightsRef.member_of(second, 0, second.config.sha256)


def test_models_list_names_the_member_and_verify_checks_the_shared_file(package, tmp_path):
    name, root, task, _ = package
    ensemble, second = refs(name, root)
    task = replace(task, models={"ensemble": ensemble, "second": second}, default_model="ensemble")
    listed = CliRunner().invoke(cli, ["models", "list", task.name, "--json"], obj=app_with(task))
    assert listed.exit_code == 0, listed.output
    variants = {v["variant"]: v for v in json.loads(listed.output)[0]["variants"]}
    assert variants["ensemble"]["member"] is None and variants["second"]["member"] == 1
    assert variants["second"]["sha256"] == variants["ensemble"]["sha256"]
    assert variants["second"]["files"][1]["filename"] == "second/config.json"

    (root / "ensemble" / "model.safetensors").write_bytes(b"changed")
    verified = CliRunner().invoke(cli, ["models", "verify", task.name], obj=app_with(task))
    assert verified.exit_code != 0
    bad = [line for line in verified.output.splitlines() if line.startswith("MISMATCH")]
    assert [line.split()[1:3] for line in bad] == [["tiny-ens/ensemble", "ensemble/model.safetensors:"],
                                                    ["tiny-ens/second", "ensemble/model.safetensors:"]]
    assert "4 file(s) checked, 2 bad" in verified.output

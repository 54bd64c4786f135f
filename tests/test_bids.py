"""`segtool run --bids DERIVATIVES_DIR`: masks as a BIDS derivatives dataset, checked against the BIDS schema."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from output_tasks import (
    block_photo, bright_cube, run_cli, save_nifti, skin_photo_folder, tiny_folder, two_label_folder,
    two_label_images,
)
from segtool.bids import BidsLayout, desc_label, parse_bids_name


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw_dataset(root: Path) -> list[Path]:
    """A raw BIDS dataset: sub-01 with a session and an acquisition, sub-02 without."""
    return [
        save_nifti(root / "sub-01" / "ses-02" / "anat" / "sub-01_ses-02_acq-ax_T2w.nii.gz", bright_cube()),
        save_nifti(root / "sub-02" / "anat" / "sub-02_T2w.nii.gz", bright_cube(50.0, 70.0)),
    ]


def dataset_files(root: Path) -> list[str]:
    """Every file of a dataset as '/relative/path', less those its .bidsignore names."""
    ignore = (root / ".bidsignore").read_text().split() if (root / ".bidsignore").exists() else []
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel != ".bidsignore" and not any(fnmatch.fnmatch(path.name, pattern) for pattern in ignore):
            out.append("/" + rel)
    return out


def assert_valid_derivative(root: Path) -> None:
    """The BIDS schema (bidsschematools, bids-validator's own rules): every file name matches a common or
    derivative file rule, and dataset_description.json holds every required field."""
    bst = pytest.importorskip("bidsschematools")
    import re

    import bidsschematools.rules
    import bidsschematools.schema

    schema = bst.schema.load_schema()
    rules = [r["regex"] for group in (schema.rules.files.common, schema.rules.files.deriv)
             for r in bst.rules.regexify_filename_rules(group, schema, level=2)]
    for name in dataset_files(root):
        assert any(re.match(rx, name[1:]) for rx in rules), f"{name} is not a BIDS derivative file name"
    description = json.loads((root / "dataset_description.json").read_text())
    for rule in (schema.rules.json.dataset.dataset_description, schema.rules.json.dataset.derivative_description):
        required = [k for k, level in rule.fields.items() if level == "required"]
        assert required and all(k in description for k in required), (required, description)


def test_bids_names_parse_and_desc_labels():
    name = parse_bids_name("sub-01_ses-2_acq-ax_run-1_T2starw.nii.gz")
    assert name.entities == (("sub", "01"), ("ses", "2"), ("acq", "ax"), ("run", "1"))
    assert (name.suffix, name.extension) == ("T2starw", ".nii.gz")
    for bad in ("case.nii.gz", "sub-01.nii.gz", "sub-01_T1w.png", "sub-0_1_T1w.nii.gz", "01_T1w.nii"):
        assert parse_bids_name(bad) is None, bad
    assert desc_label("spinal-gm") == "spinalgm" and desc_label("brain-tumour", regions=True) == "braintumourregions"
    layout = BidsLayout.create(Path("/d"), "spinal-gm")
    assert layout.labels_path(Path("/raw/sub-01_desc-old_T2starw.nii.gz"), "volume") == Path(
        "/d/segtool/sub-01/anat/sub-01_desc-spinalgm_dseg.nii.gz")  # an input's own desc- is replaced


def test_3d_task_writes_a_valid_bids_derivatives_dataset(tmp_path, monkeypatch):
    spec = tiny_folder(tmp_path / "model")
    inputs = raw_dataset(tmp_path / "raw")
    argv = ["segtool", "run", "tiny", *map(str, inputs), "--bids", str(tmp_path / "derivatives")]
    monkeypatch.setattr(sys, "argv", argv)
    result = run_cli(spec, [*inputs, "--bids", tmp_path / "derivatives", "--model-dir", tmp_path / "model",
                            "--statistics", "-q"])
    assert result.exit_code == 0, result.output
    root = tmp_path / "derivatives" / "segtool"
    assert dataset_files(root) == [
        "/dataset_description.json",
        "/desc-tiny_dseg.tsv",
        "/sub-01/ses-02/anat/sub-01_ses-02_acq-ax_desc-tiny_dseg.json",
        "/sub-01/ses-02/anat/sub-01_ses-02_acq-ax_desc-tiny_dseg.nii.gz",
        "/sub-02/anat/sub-02_desc-tiny_dseg.json",
        "/sub-02/anat/sub-02_desc-tiny_dseg.nii.gz",
    ]
    mask = root / "sub-01/ses-02/anat/sub-01_ses-02_acq-ax_desc-tiny_dseg.nii.gz"
    assert result.stdout.splitlines() == [str(mask), str(root / "sub-02/anat/sub-02_desc-tiny_dseg.nii.gz")]
    assert np.array_equal(np.asarray(nib.load(mask).dataobj), (bright_cube() > 0).astype(np.uint8))
    assert np.array_equal(nib.load(mask).affine, nib.load(inputs[0]).affine)
    description = json.loads((root / "dataset_description.json").read_text())
    from segtool import __version__

    assert description["DatasetType"] == "derivative" and description["BIDSVersion"] == "1.10.0"
    assert description["GeneratedBy"][0]["Name"] == "segtool"
    assert description["GeneratedBy"][0]["Version"] == __version__
    assert description["DatasetLinks"] == {"raw": (tmp_path / "raw").resolve().as_uri()}
    sidecar = json.loads(mask.with_name(mask.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["Sources"] == ["bids:raw:sub-01/ses-02/anat/sub-01_ses-02_acq-ax_T2w.nii.gz"]
    assert sidecar["Model"]["WeightsSHA256"] == sha256(tmp_path / "model" / "model.safetensors")
    assert sidecar["Model"]["ConfigSHA256"] == sha256(tmp_path / "model" / "config.json")
    assert sidecar["Command"] == " ".join(argv)
    assert (root / "desc-tiny_dseg.tsv").read_text() == "index\tname\n1\tbright\n"
    stats = json.loads((mask.parent / "sub-01_ses-02_acq-ax_desc-tiny_statistics.json").read_text())
    assert stats["bright"]["voxels"] == 75  # statistics beside the masks, listed in .bidsignore
    assert_valid_derivative(root)


def test_multi_label_task_bids_label_table_and_second_run_links_its_own_raw_dataset(tmp_path):
    spec = two_label_folder(tmp_path / "model")
    first = two_label_images(tmp_path / "raw" / "sub-07" / "anat", "sub-07")
    second = two_label_images(tmp_path / "other", "sub-08_run-3")  # named in BIDS, not in a BIDS tree
    for images in (first, second):
        result = run_cli(spec, [*images, "--bids", tmp_path / "deriv", "--model-dir", tmp_path / "model", "-q"])
        assert result.exit_code == 0, result.output
    root = tmp_path / "deriv" / "segtool"
    assert (root / "desc-duo3_dseg.tsv").read_text() == "index\tname\n1\toedema\n2\tcore\n"
    mask = np.asarray(nib.load(root / "sub-07/anat/sub-07_desc-duo3_dseg.nii.gz").dataobj)
    assert sorted(np.unique(mask).tolist()) == [0, 1, 2] and int((mask == 2).sum()) == 24
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["DatasetLinks"] == {"raw": (tmp_path / "raw").resolve().as_uri(),
                                           "raw2": (tmp_path / "other").resolve().as_uri()}
    sidecar = json.loads((root / "sub-08/anat/sub-08_run-3_desc-duo3_dseg.json").read_text())
    assert sidecar["Sources"] == ["bids:raw2:sub-08_run-3_flair.nii.gz", "bids:raw2:sub-08_run-3_t1c.nii.gz"]
    assert_valid_derivative(root)


def test_non_bids_input_is_a_one_line_error_before_the_model_loads(tmp_path, monkeypatch):
    from segtool.segmenter import Segmenter

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(Segmenter, "from_task", classmethod(never))
    spec = tiny_folder(tmp_path / "model")
    good = raw_dataset(tmp_path / "raw")[0]
    bad = save_nifti(tmp_path / "scan.nii.gz", bright_cube())
    result = run_cli(spec, [good, bad, "--bids", tmp_path / "deriv", "--model-dir", tmp_path / "model"])
    assert result.exit_code == 2
    assert result.stderr == (f"segtool: error: {bad}: --bids needs inputs named in BIDS "
                             "(sub-01[_ses-01][_acq-x]_T1w.nii.gz); rename it or use --output-dir\n")
    assert not (tmp_path / "deriv").exists()


def test_photo_task_with_bids_is_a_one_line_error(tmp_path):
    spec = skin_photo_folder(tmp_path / "model")
    photo = block_photo(tmp_path / "sub-01_photo.png", 32, 24, 5, 4, 10)
    result = run_cli(spec, [photo, "--bids", tmp_path / "deriv", "--model-dir", tmp_path / "model"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "photos and 2D slices have no BIDS segmentation layout" in result.stderr
    assert not (tmp_path / "deriv").exists()


@pytest.mark.parametrize("flag", [["--prob"], ["--output-dir", "out"], ["-o", "x.nii.gz"]])
def test_bids_with_an_output_naming_flag_is_refused(tmp_path, flag):
    spec = tiny_folder(tmp_path / "model")
    src = raw_dataset(tmp_path / "raw")[1]
    result = run_cli(spec, [src, "--bids", tmp_path / "deriv", "--model-dir", tmp_path / "model", *flag])
    assert result.exit_code == 2
    assert result.stderr == f"segtool: error: --bids names every output itself; it cannot be used with {flag[0]}\n"


def test_evaluate_pairs_the_bids_outputs_with_bids_reference_labels(tmp_path):
    """The derivatives written by --bids, read back by `segtool evaluate` against manual labels in BIDS."""
    from segtool.cli import cli
    from tiny_task import app_with

    spec = tiny_folder(tmp_path / "model")
    inputs = raw_dataset(tmp_path / "raw")
    result = run_cli(spec, [*inputs, "--bids", tmp_path / "derivatives", "--model-dir", tmp_path / "model", "-q"])
    assert result.exit_code == 0, result.output
    truth = (bright_cube() > 0).astype(np.uint8)
    labels = tmp_path / "derivatives" / "labels"
    for rel in ("sub-01/ses-02/anat/sub-01_ses-02_acq-ax_desc-manual_dseg.nii.gz",
                "sub-02/anat/sub-02_desc-manual_dseg.nii.gz"):
        (labels / rel).parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(truth, nib.load(inputs[0]).affine), labels / rel)
    evaluated = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "derivatives" / "segtool"), str(labels),
                                         "--task", "tiny", "--json"], obj=app_with(spec))
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert (report["n_pairs"], report["n_scored"], report["unmatched"]) == (2, 2, {"pred": [], "gt": []})
    assert [c["case"] for c in report["cases"]] == ["sub-01_ses-02_acq-ax", "sub-02"]
    assert [c["metrics"][0]["dice"] for c in report["cases"]] == [1.0, 1.0]

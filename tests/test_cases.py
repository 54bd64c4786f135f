"""`segtool.cases.write_case_outputs`: every output of a case from one call, all of them or none.

Tiny synthetic images made here: a 2D three-channel slice (overlay, probabilities, QC) and
a 3D volume written as a detached-header MetaImage (``.mhd`` + ``.zraw``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segtool.cli import cli
from segtool.cases import Case, OutputPlan, RunRequest, postprocess_labels, write_case_outputs
from segtool.errors import SegtoolError
from segtool.io import read_channels
from segtool.segmenter import Prediction
from segtool.spec import Postprocess
from tiny_task import app_with, make_spec, write_model_folder

TRI = make_spec("tri", ndim=2, channels=("pre", "flair", "post"), labels={1: "tumour"})
TINY = make_spec("tiny")


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def tri_slice(folder: Path) -> tuple[Case, object, Prediction]:
    """A 24 x 20 RGB slice with a bright 10 x 8 block, read as the run reads it, and its prediction."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((24, 20, 3), np.uint8)
    pixels[4:14, 4:12] = 200
    path = folder / "P_1.tif"
    Image.fromarray(pixels, mode="RGB").save(path)
    volume = read_channels([path], 2, TRI.channels)
    labels = (pixels[..., 0] > 0).astype(np.uint8)
    probs = np.stack([1.0 - labels, labels]).astype(np.float32)
    labels, volumes = postprocess_labels(TRI, Postprocess(), volume, labels)
    return Case((path,)), volume, Prediction(labels, probs, volumes, dict(TRI.labels))


class QcRecords:
    """A QC hook that keeps each row it is given, or fails when asked to."""

    def __init__(self, fail: bool = False):
        self.rows, self.fail = [], fail

    def __call__(self, volume, labels, result):
        if self.fail:
            raise OSError(28, "No space left on device")
        self.rows.append((result.to_json(), int(np.asarray(labels).sum())))


def test_postprocess_labels_measures_each_label_on_the_volumes_grid(tmp_path):
    _, volume, prediction = tri_slice(tmp_path / "in")
    assert prediction.volumes_by_value == {1: 80.0}  # 10 x 8 px, 1 px each
    steps = Postprocess(min_size_mm3=100.0)  # the block is smaller: removed
    labels, volumes = postprocess_labels(TRI, steps, volume, prediction.labels)
    assert labels.sum() == 0 and volumes == {1: 0.0}


def test_one_call_writes_the_mask_overlay_probabilities_and_qc_record(tmp_path):
    case, volume, prediction = tri_slice(tmp_path / "in")
    out = tmp_path / "out"
    qc = QcRecords()
    plan = OutputPlan(output_dir=out, probabilities=True, overlay=True)
    result = write_case_outputs(RunRequest(TRI, None, "m1", plan, qc=qc), case, volume, prediction,
                                time.perf_counter())
    assert files_under(out) == ["P_1_overlay.png", "P_1_prob.nii.gz", "P_1_seg.tif"]
    assert (result.status, result.output, result.model) == ("done", str(out / "P_1_seg.tif"), "m1")
    assert result.probabilities == str(out / "P_1_prob.nii.gz")
    assert result.volumes_mm3 == {"tumour": 80.0}
    assert np.array_equal(np.asarray(Image.open(out / "P_1_seg.tif")), prediction.labels)
    probs = np.asarray(nib.load(out / "P_1_prob.nii.gz").dataobj)
    assert probs.shape == (24, 20, 1, 2) and probs[..., 0, 1].sum() == 80
    assert Image.open(out / "P_1_overlay.png").size[0] >= 20
    assert qc.rows == [(result.to_json(), 80)]  # the QC record of this very result, with the labels


def test_a_mask_that_cannot_be_written_leaves_no_overlay_or_probabilities(tmp_path):
    case, volume, prediction = tri_slice(tmp_path / "in")
    out = tmp_path / "out"
    (out / "P_1_seg.tif").mkdir(parents=True)  # a folder where the mask goes: the mask's move fails
    plan = OutputPlan(output_dir=out, probabilities=True, overlay=True, overwrite=True)
    qc = QcRecords()
    with pytest.raises(SegtoolError) as caught:
        write_case_outputs(RunRequest(TRI, None, "m1", plan, qc=qc), case, volume, prediction, time.perf_counter())
    assert "P_1_seg.tif" in caught.value.one_line()
    assert files_under(out) == ["P_1_seg.tif"]  # only the folder that was there: no overlay, no probabilities
    assert qc.rows == []


def test_a_failing_qc_record_removes_the_mask_and_its_detached_data_file(tmp_path):
    data = np.zeros((12, 10, 6), np.float32)
    data[3:8, 2:7, 1:4] = 100.0
    src = tmp_path / "in" / "a.nii.gz"
    src.parent.mkdir()
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), src)
    volume = read_channels([src], 3, TINY.channels)
    labels, volumes = postprocess_labels(TINY, Postprocess(), volume, (data > 0).astype(np.uint8))
    assert volumes == {1: 150.0}  # 75 voxels of 2 mm³
    out = tmp_path / "out" / "a.mhd"
    request = RunRequest(TINY, None, "m1", OutputPlan(output=out, probabilities=True), qc=QcRecords(fail=True))
    probs = np.stack([1.0 - labels, labels]).astype(np.float32)
    with pytest.raises(OSError):
        write_case_outputs(request, Case((src,)), volume, Prediction(labels, probs, volumes), time.perf_counter())
    assert files_under(tmp_path / "out") == []  # no a.mhd, a.zraw, a_prob.nii.gz, nor a temp folder
    request = RunRequest(TINY, None, "m1", OutputPlan(output=out))
    write_case_outputs(request, Case((src,)), volume, Prediction(labels, None, volumes), time.perf_counter())
    assert files_under(tmp_path / "out") == ["a.mhd", "a.zraw"]  # a rerun trips on nothing


def test_an_existing_mask_is_refused_in_the_commands_words_and_left_alone(tmp_path):
    case, volume, prediction = tri_slice(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "P_1_seg.tif").write_bytes(b"earlier")
    plan = OutputPlan(output_dir=out, probabilities=True)
    with pytest.raises(SegtoolError) as caught:
        write_case_outputs(RunRequest(TRI, None, "m1", plan), case, volume, prediction, time.perf_counter())
    assert caught.value.one_line().endswith("P_1_seg.tif: output exists (use --overwrite or --skip-existing)")
    assert files_under(out) == ["P_1_seg.tif"] and (out / "P_1_seg.tif").read_bytes() == b"earlier"


def test_stacked_slices_carry_label_names_and_algorithm_like_a_slice_alone(tmp_path, monkeypatch):
    """--stack writes each slice through the same writer as a run of that slice alone: the mask gets the
    task's label names and the producer (kept by DICOM SEG), not the writer's defaults."""
    import segtool.io

    write_model_folder(tmp_path / "model", TRI)
    case, _, _ = tri_slice(tmp_path / "p")
    real = segtool.io.write_labels
    calls = []

    def recording_write_labels(labels, reference, out, **kwargs):
        calls.append((Path(out).parent.name, kwargs["label_names"], kwargs["algorithm"]))
        return real(labels, reference, out, **kwargs)

    monkeypatch.setattr(segtool.io, "write_labels", recording_write_labels)
    for name, extra in (("stacked", ["--stack", str(tmp_path / "p")]), ("alone", [str(case.inputs[0])])):
        result = CliRunner().invoke(
            cli, ["run", "tri", *extra, "--model-dir", str(tmp_path / "model"), "--output-dir", str(tmp_path / name),
             "--json", "-q"], obj=app_with(TRI))
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["volumes_mm3"] == {"tumour": 80.0}
    assert calls == [("stacked", {1: "tumour"}, "segtool tri"), ("alone", {1: "tumour"}, "segtool tri")]
    assert os.path.exists(tmp_path / "stacked" / "P_1_seg.tif")

"""What a researcher meets first (issue 38, points 7-9): the task card, --model completion,
photo progress, library messages, a corrupt training case, the Python API's words."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from segtool.cli import cli

# ----------------------------------------------------------------------------- segtool tasks TASK


def test_a_task_is_shown_as_readable_sections_within_100_columns():
    result = CliRunner().invoke(cli, ["tasks", "spinal-gm"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "task spinal-gm"
    for heading in ("Input", "Labels", "Preprocessing", "Postprocessing", "Output", "Citation"):
        assert heading in lines, heading
    assert any(line.startswith("Models (default: default; choose with --model NAME)") for line in lines)
    assert max(len(line) for line in lines) <= 100
    assert all(line == line.rstrip() for line in lines)
    text = result.output
    assert "gray_matter" in text and "dilated_gm" in text and "held out: t2s 0.895" in text
    assert "<input>_gmseg.nii.gz" in text and "task spinal-cord, cropped with a 10 x 10 x 0 mm margin" in text
    for raw in ("{'", "': None", "None", "[96, 96]", "'validation'"):  # no Python reprs
        assert raw not in text, raw


def test_the_task_card_summarises_training_facts_and_keeps_json_complete():
    card = CliRunner().invoke(cli, ["tasks", "spinal-cord"])
    assert card.exit_code == 0, card.output
    assert "trained on       5 cases, validated on 1" in card.output
    assert "validation Dice  spinal_cord 0.927 (1 held-out cases during training)" in card.output
    everything = CliRunner().invoke(cli, ["tasks", "brain-tumour-2d"])  # trained on every patient: no validation line
    assert "trained on     1345 cases\n" in everything.output and "validation Dice" not in everything.output
    assert "per_case" not in everything.output and "TCGA_" not in everything.output
    full = json.loads(CliRunner().invoke(cli, ["tasks", "brain-tumour-2d", "--json"]).output)
    assert len(full["model"]["trained_on"]) == 1345 and not full["model"]["validated_on"]


# ----------------------------------------------------------------------------- --model completion


def _completions(args, incomplete):
    from click.shell_completion import ShellComplete

    return [i.value for i in ShellComplete(cli, {}, "segtool", "_SEGTOOL_COMPLETE").get_completions(args, incomplete)]


def test_model_completion_lists_the_named_tasks_variants():
    from segtool.app import App

    registry = App().registry
    assert _completions(["run", "spinal-gm", "--model"], "") == list(registry.get("spinal-gm").models)
    assert _completions(["run", "spinal-gm", "t2s.nii.gz", "--model"], "dil") == ["dilated_gm"]
    assert _completions(["models", "path", "disc", "--model"], "") == list(registry.get("disc").models)
    every = {v for spec in registry for v in spec.models}
    assert set(_completions(["run", "--model"], "")) == every  # no task yet: every task's variants


def test_model_completion_in_a_shell_does_not_import_torch():
    code = """
import os, sys
os.environ.update(_SEGTOOL_COMPLETE="bash_complete", COMP_WORDS="segtool run spinal-gm --model ", COMP_CWORD="4")
from segtool.cli import cli
try:
    cli(prog_name="segtool")
except SystemExit:
    pass
print("TORCH" if "torch" in sys.modules else "NO-TORCH")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.splitlines() == ["plain,default", "plain,dilated_gm", "NO-TORCH"]


# ----------------------------------------------------------------------------- photo progress


def _skin_task(folder):
    """The clothing task with a one-conv network at 32 x 24 and its model folder."""
    from output_tasks import skin_photo_folder

    return skin_photo_folder(folder)

def test_a_batch_of_photos_on_a_cpu_goes_through_the_network_photo_by_photo(tmp_path):
    """Six photos, batch size 8: six forward passes, each announced, each photo's result counted in order
    (before: one pass of six, "cases 0/6" until all were through)."""
    from PIL import Image
    from safetensors.torch import load_file

    from segtool.segmenter import InferenceOptions, Segmenter
    from segtool.cases import Case, OutputPlan, RunRequest
    from segtool.runner import run_cases
    from tiny_task import one_conv

    spec = _skin_task(tmp_path)
    photos = []
    for i in range(6):
        rgb = np.full((30 + i, 20, 3), 20, np.uint8)
        rgb[5:15, 5:15] = 240
        photos.append(tmp_path / f"p{i}.png")
        Image.fromarray(rgb).save(photos[-1])
    model = one_conv(2, 3, 14)
    model.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    segmenter = Segmenter(spec, model.eval(), InferenceOptions(device="cpu", precision="fp32", batch_size=8))
    events: list[tuple[str, str]] = []
    request = RunRequest(
        spec, segmenter, "tiny", OutputPlan(output_dir=tmp_path / "out"),
        on_result=lambda r: events.append(("done", r.input)),
        on_batch=lambda done, total: events.append(("windows", f"{done}/{total}")),
        on_case_start=lambda case: events.append(("start", case.name)),
    )
    results = run_cases(request, [Case((p,)) for p in photos])
    assert [r.status for r in results] == ["done"] * 6
    assert [name for kind, name in events if kind == "start"] == [str(p) for p in photos]
    assert [name for kind, name in events if kind == "done"] == [str(p) for p in photos]
    assert [name for kind, name in events if kind == "windows"] == ["1/1"] * 6
    assert all((tmp_path / "out" / f"p{i}_seg.png").exists() for i in range(6))


def test_accelerators_keep_batches_of_photos():
    from types import SimpleNamespace

    import torch

    from segtool.photo_batch import forward_step

    assert forward_step(SimpleNamespace(device=torch.device("cpu")), 8) == 1
    assert forward_step(SimpleNamespace(device=torch.device("cuda", 0)), 8) == 8
    assert forward_step(SimpleNamespace(device=torch.device("mps")), 8) == 8


# ----------------------------------------------------------------------------- library messages


def _nifti_with_negative_pixdim(path):
    """A NIfTI whose header says pixdim[1] = -1 (edited in the bytes; nibabel would refuse to write it)."""
    import struct

    import nibabel as nib

    data = np.zeros((12, 10, 6), np.float32)
    data[3:8, 2:7, 1:4] = 100
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    raw = bytearray(path.read_bytes())
    pixdim = list(struct.unpack("<8f", raw[76:108]))
    pixdim[1] = -pixdim[1]
    raw[76:108] = struct.pack("<8f", *pixdim)
    path.write_bytes(bytes(raw))
    return path


NEGATIVE_PIXDIM = ("warning: a NIfTI header has negative voxel sizes (pixdim): the spacing is taken as their "
                   "absolute values [pixdim[1,2,3] should be positive; setting to abs of pixdim values]")


def test_a_negative_pixdim_is_one_segtool_warning_and_the_raw_message_goes_to_the_log(tmp_path):
    from tiny_task import app_with, make_spec, write_model_folder

    spec = make_spec("tiny")
    write_model_folder(tmp_path / "model", spec)
    src = _nifti_with_negative_pixdim(tmp_path / "neg.nii")
    log = tmp_path / "segtool.log"
    result = CliRunner().invoke(cli, ["--log", str(log), "run", "tiny", str(src), "--model-dir", str(tmp_path / "model")],
                                obj=app_with(spec))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [NEGATIVE_PIXDIM]
    assert "library message(s) not shown" not in result.stderr
    assert "pixdim[1,2,3] should be positive; setting to abs of pixdim values" in log.read_text(encoding="utf-8")
    verbose = CliRunner().invoke(cli, ["--verbose", "run", "tiny", str(src), "--model-dir", str(tmp_path / "model"),
                                       "--overwrite"], obj=app_with(spec))
    assert verbose.exit_code == 0, verbose.output
    assert [line for line in verbose.stderr.splitlines() if line.startswith("warning:")] == [
        "warning: pixdim[1,2,3] should be positive; setting to abs of pixdim values"]


def test_a_message_without_a_meaning_is_counted_not_shown(tmp_path):
    """numpy's overflow on a float64 image beyond float32: the refusal says it all, the library's words are logged."""
    import nibabel as nib

    from tiny_task import app_with, make_spec, write_model_folder

    spec = make_spec("tiny")
    write_model_folder(tmp_path / "model", spec)
    huge = tmp_path / "huge.nii"
    nib.save(nib.Nifti1Image(np.full((12, 10, 6), 1e300, np.float64), np.eye(4)), huge)
    result = CliRunner().invoke(cli, ["run", "tiny", str(huge), "--model-dir", str(tmp_path / "model")],
                                obj=app_with(spec))
    assert result.exit_code == 1
    assert "overflow" not in result.stderr
    assert "note: 1 library message(s) not shown (segtool --verbose shows them, segtool --log FILE keeps them)" \
        in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"segtool: error: {huge}: image contains NaN/inf values"


def test_what_c_libraries_write_on_fd_2_is_translated(tmp_path, capfd):
    """GDCM's libjpeg writes "Corrupt JPEG data" straight to file descriptor 2: caught, one segtool line."""
    import os

    from rich.console import Console

    from segtool.console import library_output

    out = __import__("io").StringIO()
    with library_output(Console(file=out, width=300), verbose=False):
        os.write(2, b"Corrupt JPEG data: 62 extraneous bytes before marker 0xd9\n")
        os.write(2, b"Corrupt JPEG data: 12 extraneous bytes before marker 0xd9\n")
        os.write(2, b"some other chatter\n")
    assert capfd.readouterr().err == ""
    assert out.getvalue().splitlines() == [
        "warning: corrupt JPEG data in a compressed image: it was decoded, but parts of it may be damaged (check the "
        "QC) [Corrupt JPEG data: 62 extraneous bytes before marker 0xd9]",
        "note: 1 library message(s) not shown (segtool --verbose shows them, segtool --log FILE keeps them)",
    ]


# ----------------------------------------------------------------------------- a corrupt training case


def test_train_on_a_folder_with_one_mismatched_case_names_its_files(tmp_path):
    import nibabel as nib

    from test_train import invoke, tiny_3d, write_3d_simple

    data = write_3d_simple(tmp_path / "data", n=3)
    label = nib.load(data / "case1_seg.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(label.dataobj)[:-2], label.affine), data / "case1_seg.nii.gz")
    spec = tiny_3d()
    result = invoke(spec, "train", spec.name, data, "-o", tmp_path / "out", "--epochs", "1", "--steps-per-epoch", "1",
                    ok=False)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("segtool: error:")]
    assert errors == [f"segtool: error: case 'case1': image (22, 20, 14) ({data / 'case1.nii.gz'}) and label "
                      f"(20, 20, 14) ({data / 'case1_seg.nii.gz'}) differ in shape"]
    assert "Traceback" not in result.output


def test_train_on_a_folder_with_one_truncated_case_names_the_file(tmp_path):
    from test_train import invoke, tiny_3d, write_3d_simple

    data = write_3d_simple(tmp_path / "data", n=3)
    raw = (data / "case2.nii.gz").read_bytes()
    (data / "case2.nii.gz").write_bytes(raw[: len(raw) // 2])
    spec = tiny_3d()
    result = invoke(spec, "train", spec.name, data, "-o", tmp_path / "out", "--epochs", "1", "--steps-per-epoch", "1",
                    ok=False)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("segtool: error:")]
    assert len(errors) == 1 and f"{data / 'case2.nii.gz'}: cannot read NIfTI file" in errors[0]


# ----------------------------------------------------------------------------- the Python API


def test_write_labels_refuses_an_existing_file_in_python_words(tmp_path):
    from segtool.errors import OutputExistsError
    from segtool.io import write_labels
    from segtool.io.volume import Volume

    reference = Volume(np.zeros((1, 4, 4, 3), np.float32), np.eye(4), None, "nifti")
    target = tmp_path / "mask.nii.gz"
    write_labels(np.ones((4, 4, 3), np.uint8), reference, target)
    with pytest.raises(OutputExistsError) as refused:
        write_labels(np.zeros((4, 4, 3), np.uint8), reference, target)
    assert str(refused.value) == f"{target}: output exists; pass overwrite=True to replace it"
    assert "--" not in str(refused.value)
    write_labels(np.zeros((4, 4, 3), np.uint8), reference, target, overwrite=True)  # a second run replaces it


def test_prediction_volumes_are_keyed_by_label_name_like_the_clis_json(tmp_path):
    import nibabel as nib

    from segtool.io import read_channels
    from segtool.segmenter import Segmenter
    from tiny_task import app_with, make_spec, write_model_folder

    spec = make_spec("tiny", labels={1: "bright"})
    write_model_folder(tmp_path / "model", spec)
    data = np.zeros((12, 10, 6), np.float32)
    data[3:8, 2:7, 1:4] = 100
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "a.nii.gz")
    result = CliRunner().invoke(cli, ["run", "tiny", str(tmp_path / "a.nii.gz"), "--model-dir", str(tmp_path / "model"),
                                      "--json", "-q"], obj=app_with(spec))
    assert result.exit_code == 0, result.output
    cli_volumes = json.loads(result.output)["volumes_mm3"]
    segmenter = Segmenter.from_task("tiny", tmp_path / "model", device="cpu", app=app_with(spec))
    prediction = segmenter.predict(read_channels(tmp_path / "a.nii.gz", spec.ndim, spec.channels))
    assert prediction.volumes_mm3 == cli_volumes == {"bright": 75 * 2.0}
    assert prediction.volumes_by_value == {1: 75 * 2.0}

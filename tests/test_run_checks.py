"""`segtool run` refuses what it can know before any work (issue 38): missing inputs, photos for a 3D
task, outputs that exist (also in --stack runs), folders that take no file; -i/--input; -o with two cases.

Every refusal here comes before the model loads (`Segmenter.from_task` is made to fail), in one line,
exit 2; and every hint a refusal gives is followed by running the command it names.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segtool.cli import cli
from test_stack import bundled_tri, patient, read_mask
from tiny_task import app_with, make_bundled_package, make_spec

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    ref = make_bundled_package(tmp_path / "site", "tiny_checks_weights", make_spec("tiny"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return make_spec("tiny", models={"default": ref})


@pytest.fixture
def tri(tmp_path, monkeypatch):
    return bundled_tri(tmp_path, monkeypatch)


@pytest.fixture
def no_model():
    """Fail loudly if anything loads a model: the refusals under test must come first.
    ``no_model.undo()`` lets models load again (to run what a hint says)."""
    from segtool.segmenter import Segmenter

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the refusal")

    patch = pytest.MonkeyPatch()
    patch.setattr(Segmenter, "from_task", refuse)
    yield patch
    patch.undo()


def volume(path: Path) -> Path:
    data = np.zeros((12, 10, 6), dtype=np.float32)
    data[3:8, 2:7, 1:4] = 100.0
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return path


def run(spec, *args, input=None):
    return CliRunner().invoke(cli, ["run", spec.name, *map(str, args)], obj=app_with(spec), input=input)


def one_error(result, code: int = 2) -> str:
    """The refusal's only stderr line, after checking exit status and no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("segtool: error: "), lines
    assert "Traceback" not in result.output
    return lines[0]


def hinted_flags(line: str) -> list[str]:
    """The options a refusal tells the user to pass (those after its last "pass ")."""
    return re.findall(r"(--[a-z][a-z-]+)", line.rsplit("pass ", 1)[1])


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- inputs (points 3 and 5)


def test_a_missing_input_is_refused_before_the_model_loads(tmp_path, tiny, no_model):
    good = volume(tmp_path / "good.nii.gz")
    line = one_error(run(tiny, good, tmp_path / "typo.nii.gz", "-q"))
    assert line == f"segtool: error: {tmp_path / 'typo.nii.gz'}: no such file or directory"
    assert not (tmp_path / "good_seg.nii.gz").exists()  # nothing done for the good case either


def test_every_unreadable_input_is_counted_in_the_one_line(tmp_path, tiny, no_model):
    link = tmp_path / "link.nii.gz"
    os.symlink(tmp_path / "gone.nii.gz", link)
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    line = one_error(run(tiny, tmp_path / "a.nii.gz", link, tmp_path / "empty.nii.gz", "-q"))
    assert line == (f"segtool: error: {tmp_path / 'a.nii.gz'}: no such file or directory (and 2 more: "
                    f"{link}: no such file or directory (a link to a missing file), "
                    f"{tmp_path / 'empty.nii.gz'}: empty file (0 bytes))")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_a_photo_for_a_3d_task_says_the_task_needs_a_volume_and_the_hint_runs(tmp_path, tiny, no_model, suffix):
    photo = tmp_path / f"face{suffix}"
    Image.fromarray(np.full((12, 10, 3), 120, dtype=np.uint8)).save(photo)
    for extra in ([], ["-o", tmp_path / "face_seg.nii.gz"]):  # the output's name changes nothing
        line = one_error(run(tiny, photo, *extra, "-q"))
        assert f"{photo}: a {suffix} photo is one 2D image, and task 'tiny' segments 3D volumes" in line
        assert "NIfTI (.nii.gz)" in line and "cannot be written" not in line and "use .nii.gz" not in line
    hint = re.search(r"`segtool (tasks [^`]+)`", line).group(1).split()
    shown = CliRunner().invoke(cli, hint, obj=app_with(tiny))
    assert shown.exit_code == 0 and "tiny" in shown.output
    no_model.undo()  # the input the line asks for runs
    done = run(tiny, volume(tmp_path / "face.nii.gz"), "-q")
    assert done.exit_code == 0 and (tmp_path / "face_seg.nii.gz").exists()


def test_the_real_brain_tissue_task_refuses_a_photo_in_one_line(tmp_path, no_model):
    from segtool.app import App

    photo = tmp_path / "holiday.jpg"
    Image.fromarray(np.full((16, 16, 3), 90, dtype=np.uint8)).save(photo)
    result = CliRunner().invoke(cli, ["run", "brain-tissue", str(photo)], obj=App(warn=lambda m: None))
    line = one_error(result)
    assert "task 'brain-tissue' segments 3D volumes" in line and "`segtool tasks brain-tissue`" in line
    assert CliRunner().invoke(cli, ["tasks", "brain-tissue"], obj=App(warn=lambda m: None)).exit_code == 0


# --------------------------------------------------------------------------- outputs that exist


def test_an_existing_output_is_refused_once_and_each_hinted_flag_works(tmp_path, tiny, monkeypatch):
    a, b = volume(tmp_path / "a.nii.gz"), volume(tmp_path / "b.nii.gz")
    assert run(tiny, a, "-q").exit_code == 0
    stamp = os.stat(tmp_path / "a_seg.nii.gz").st_mtime_ns
    with monkeypatch.context() as patch:
        from segtool.segmenter import Segmenter

        patch.setattr(Segmenter, "from_task", lambda *a, **k: pytest.fail("model loaded before the refusal"))
        line = one_error(run(tiny, a, b, "-q"))
    assert line == (f"segtool: error: {tmp_path / 'a_seg.nii.gz'}: output exists; pass --overwrite to replace it "
                    "or --skip-existing to skip those cases")
    assert not (tmp_path / "b_seg.nii.gz").exists()
    assert hinted_flags(line) == ["--overwrite", "--skip-existing"]
    skipped = run(tiny, a, b, "--skip-existing", "--json", "-q")
    assert skipped.exit_code == 0, skipped.output
    assert [json.loads(r)["status"] for r in skipped.stdout.splitlines()] == ["skipped", "done"]
    assert os.stat(tmp_path / "a_seg.nii.gz").st_mtime_ns == stamp
    replaced = run(tiny, a, b, "--overwrite", "--json", "-q")
    assert replaced.exit_code == 0, replaced.output
    assert [json.loads(r)["status"] for r in replaced.stdout.splitlines()] == ["done", "done"]


def test_several_existing_outputs_are_named_in_one_line(tmp_path, tiny, no_model):
    cases = [volume(tmp_path / f"c{i}.nii.gz") for i in range(5)]
    for i in range(5):
        (tmp_path / f"c{i}_seg.nii.gz").write_bytes(b"old")
    line = one_error(run(tiny, *cases, "-q"))
    assert line.startswith(f"segtool: error: {tmp_path / 'c0_seg.nii.gz'}: output exists (and 4 more outputs: "
                           "c1_seg.nii.gz, c2_seg.nii.gz, c3_seg.nii.gz and 1 more); pass --overwrite to replace them")


def test_an_existing_probability_map_is_refused_even_with_skip_existing(tmp_path, tiny, no_model):
    src = volume(tmp_path / "a.nii.gz")
    (tmp_path / "a_prob.nii.gz").write_bytes(b"old")
    line = one_error(run(tiny, src, "--prob", "--skip-existing", "-q"))
    assert "a_prob.nii.gz: output exists; pass --overwrite to replace it" in line
    assert hinted_flags(line) == ["--overwrite"]


# --------------------------------------------------------------------------- --stack after a single-slice run (point 2)


def _patient_with_a_blob(tmp_path):
    """Slices 1-4 hold one tumour, slice 6 a small blob: alone, slice 6 keeps its 9-pixel blob with
    --keep-largest; stacked, the blob is not the largest 3D component and goes."""
    big = ((4, 14), (4, 12))
    return patient(tmp_path / "p", [big, big, big, big, None, ((18, 21), (15, 18))] + [None] * 5)


def test_stack_after_a_single_slice_run_fails_once_naming_the_mask_and_overwrite_makes_it_stacked(
        tmp_path, tri, monkeypatch):
    paths = _patient_with_a_blob(tmp_path)
    alone = run(tri, paths[5], "--keep-largest", "-q")
    assert alone.exit_code == 0, alone.output
    mask = tmp_path / "p" / f"{paths[5].stem}_seg.tif"
    assert read_mask(mask).sum() == 9
    with monkeypatch.context() as patch:
        from segtool.segmenter import Segmenter

        patch.setattr(Segmenter, "from_task", lambda *a, **k: pytest.fail("model loaded before the refusal"))
        line = one_error(run(tri, "--stack", tmp_path / "p", "--keep-largest"))  # not -q: still one line
    assert line == (f"segtool: error: {tmp_path / 'p'}: 1 of this patient's outputs already exists "
                    f"({mask.name}); a stacked run writes all 11 slices from one 3D segmentation, "
                    "so pass --overwrite to replace it with the stacked result")
    assert sorted(p.name for p in (tmp_path / "p").glob("*_seg.tif")) == [mask.name]
    assert hinted_flags(line) == ["--overwrite"]
    stacked = run(tri, "--stack", tmp_path / "p", "--keep-largest", "--overwrite", "-q")
    assert stacked.exit_code == 0, stacked.output
    assert len(stacked.stdout.splitlines()) == 11
    assert read_mask(mask).sum() == 0  # now the stacked result, not the single-slice one


def test_stack_skip_existing_never_keeps_an_unstacked_mask_inside_a_stacked_patient(tmp_path, tri, no_model):
    paths = _patient_with_a_blob(tmp_path)
    from segtool.segmenter import Segmenter

    refuse = Segmenter.from_task
    no_model.undo()
    assert run(tri, paths[5], "--keep-largest", "-q").exit_code == 0
    before = files_under(tmp_path / "p")
    no_model.setattr(Segmenter, "from_task", refuse)
    line = one_error(run(tri, "--stack", tmp_path / "p", "--keep-largest", "--skip-existing", "-q"))
    assert "1 of this patient's outputs already exists" in line
    assert "--skip-existing skips only patients whose masks all exist" in line
    assert files_under(tmp_path / "p") == before
    no_model.undo()
    args = ["--stack", tmp_path / "p", "--keep-largest", "--skip-existing", *hinted_flags(line)]
    assert hinted_flags(line) == ["--overwrite"]
    redone = run(tri, *args, "--json", "-q")
    assert redone.exit_code == 0, redone.output
    assert {json.loads(r)["status"] for r in redone.stdout.splitlines()} == {"done"}
    assert read_mask(tmp_path / "p" / f"{paths[5].stem}_seg.tif").sum() == 0


def test_two_patients_with_old_masks_are_both_named_in_one_line(tmp_path, tri, no_model):
    box = ((2, 8), (2, 8))
    a = patient(tmp_path / "a", [box] * 3, stem="A")
    b = patient(tmp_path / "b", [box] * 2, stem="B")
    for path in (a[0], a[2], b[1]):
        path.with_name(f"{path.stem}_seg.tif").write_bytes(b"old")
    line = one_error(run(tri, "--stack", tmp_path / "a", tmp_path / "b", "-q"))
    assert line == (f"segtool: error: {tmp_path / 'a'}: 2 of this patient's outputs already exist (A_1_seg.tif, "
                    "A_3_seg.tif); a stacked run writes all 3 slices from one 3D segmentation, so pass --overwrite "
                    f"to replace them with the stacked result (and 1 more patients with outputs: {tmp_path / 'b'})")


def test_run_stacks_from_python_fails_a_partly_written_patient_instead_of_keeping_its_mask(tmp_path, tri):
    """The Python API has no preflight: the stack fails as a whole, the unstacked mask is left as it was."""
    from segtool.segmenter import Segmenter
    from segtool.cases import OutputPlan, RunRequest
    from segtool.stacking import plan_stacks, run_stacks

    paths = _patient_with_a_blob(tmp_path)
    assert run(tri, paths[5], "--keep-largest", "-q").exit_code == 0
    before = files_under(tmp_path / "p")
    segmenter = Segmenter.from_task("tri", app=app_with(tri), device="cpu", keep_largest=True)
    plan = OutputPlan(skip_existing=True, suffix="_seg")
    results = run_stacks(RunRequest(tri, segmenter, "default", plan), plan_stacks([tmp_path / "p"], tri))
    assert len(results) == 11 and {r.status for r in results} == {"failed"}
    assert "--skip-existing skips only patients whose masks all exist" in results[0].error
    assert files_under(tmp_path / "p") == before


# --------------------------------------------------------------------------- folders that take no file (point 3)


def test_an_output_dir_inside_a_file_is_refused_before_the_model_loads_and_the_hint_runs(tmp_path, tiny, no_model):
    src = volume(tmp_path / "a.nii.gz")
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    before = files_under(tmp_path)
    line = one_error(run(tiny, src, "--output-dir", tmp_path / "notes.txt" / "out", "-q"))
    assert line == (f"segtool: error: {tmp_path / 'notes.txt' / 'out'}: cannot be made, {tmp_path / 'notes.txt'} "
                    "is not a folder; write the masks elsewhere with --output-dir DIR")
    assert files_under(tmp_path) == before
    no_model.undo()
    done = run(tiny, src, "--output-dir", tmp_path / "masks", "-q")
    assert done.exit_code == 0 and (tmp_path / "masks" / "a_seg.nii.gz").exists()
    assert not list((tmp_path / "masks").glob(".segtool-write-check-*"))  # the probe file is gone


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (no file can be made there)")
def test_an_output_dir_where_no_file_can_be_made_is_refused(tmp_path, tiny, no_model):
    src = volume(tmp_path / "a.nii.gz")
    line = one_error(run(tiny, src, "--output-dir", "/proc/segtool-masks", "-q"))
    assert line.startswith("segtool: error: /proc/segtool-masks: cannot be made in /proc (")
    assert line.endswith("; write the masks elsewhere with --output-dir DIR")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_dir_is_refused(tmp_path, tiny, no_model):
    src = volume(tmp_path / "a.nii.gz")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        line = one_error(run(tiny, src, "--output-dir", locked, "-q"))
    finally:
        locked.chmod(0o755)
    assert f"{locked}: cannot write there (Permission denied)" in line


def test_a_qc_folder_that_cannot_be_made_is_refused(tmp_path, tiny, no_model):
    src = volume(tmp_path / "a.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    line = one_error(run(tiny, src, "--qc", tmp_path / "notes.txt" / "qc", "-q"))
    assert line.endswith("is not a folder; choose another --qc folder")


# --------------------------------------------------------------------------- -i/--input (8), -o with two cases (9)


def test_dash_i_and_input_are_inputs_as_sct_users_type_them(tmp_path, tiny):
    a, b, c = (volume(tmp_path / f"{n}.nii.gz") for n in "abc")
    result = run(tiny, "-i", a, "--input", b, c, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / f"{n}_seg.nii.gz") for n in "abc"]  # -i first, in order


def test_no_input_at_all_is_still_clicks_missing_argument(tmp_path, tiny):
    line = one_error(run(tiny))
    assert "Missing argument 'INPUTS...'" in line and "run --help" in line


def test_o_with_two_cases_exits_2_like_every_refusal_before_work_and_the_hint_runs(tmp_path, tiny, no_model):
    a, b = volume(tmp_path / "a.nii.gz"), volume(tmp_path / "b.nii.gz")
    line = one_error(run(tiny, a, b, "-o", tmp_path / "m.nii.gz", "-q"))
    assert line == ("segtool: error: -o/--output takes one case, got 2; write each case's mask into one folder "
                    "with --output-dir DIR instead of -o")
    no_model.undo()
    done = run(tiny, a, b, "--output-dir", tmp_path / "masks", "-q")
    assert done.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["a_seg.nii.gz", "b_seg.nii.gz"]


def test_run_help_documents_which_refusals_are_exit_2_and_which_failures_exit_1():
    text = " ".join(CliRunner().invoke(cli, ["run", "--help"]).output.split())
    assert "Exit status:" in text
    assert "1 the run started and a case failed" in text
    assert ("2 refused before any work, nothing written: a usage error (an option, -o with several cases, "
            "an output name), an input missing or not a readable file, a photo for a 3D task, an output that "
            "exists, a folder that cannot be written") in text
    assert "-i, --input" in text

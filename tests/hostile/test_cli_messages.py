"""Messages of the CLI itself: one-line usage errors, whole names in tables, exit codes, -q, SEGTOOL_DEBUG."""

from __future__ import annotations

import os
import warnings

import nibabel as nib
import numpy as np
import pytest

from hostile.helpers import app_with, error_lines, invoke, make_task, refused, snapshot

RAS2 = np.diag([1.0, 1.0, 2.0, 1.0])


def cube():
    data = np.zeros((12, 10, 6), np.float32)
    data[3:8, 2:7, 1:4] = 100
    return data


def save(path):
    nib.save(nib.Nifti1Image(cube(), RAS2), path)
    return path


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run"], "Missing argument 'TASK'"),
        (["run", "tiny"], "Missing argument 'INPUTS...'"),
        (["--bogus"], "No such option '--bogus'"),
        (["nosuch"], "No such command 'nosuch'"),
        (["evaluate", "a.nii.gz"], "Missing argument 'GT'"),
        (["evaluate", "a", "b", "--surface", "mesh"], "--surface"),
        (["evaluate", "a", "b", "--tolerance", "two"], "--tolerance"),
        (["models", "pull", "--bogus"], "No such option"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_click_usage_errors_take_one_line(tmp_path, app3d, args, expected):
    before = snapshot(tmp_path)
    result = invoke(app3d(), args)
    refused(result, 2, before, tmp_path, expected, "--help")
    assert "Try '" not in result.output and "Usage:" not in result.output


def test_task_names_are_never_cut_in_the_tasks_table(site):
    long_name = "a-task-with-a-rather-long-name-for-a-narrow-terminal"
    app = app_with(make_task(site, long_name, with_weights=False, labels={1: "a-label-with-a-long-name"}))
    result = invoke(app, ["tasks"], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    assert long_name in result.output


def test_case_names_are_never_cut_in_evaluate_tables(tmp_path):
    long_case = "sub-0123456789_ses-baseline_acq-highres_run-01"
    for side in ("pred", "gt"):
        (tmp_path / side).mkdir()
        data = np.zeros((8, 8, 4), np.uint8)
        data[2:6, 2:6, 1:3] = 1
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / side / f"{long_case}.nii.gz")
    result = invoke(None, ["evaluate", tmp_path / "pred", tmp_path / "gt"], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    assert long_case in result.stdout


def test_models_pull_all_with_nothing_to_pull_fails(tmp_path, site):
    app = app_with(make_task(site, "untrained-a", with_weights=False))
    result = invoke(app, ["models", "pull", "--all", "--offline", "--cache-dir", tmp_path / "cache"])
    assert result.exit_code == 3, result.output
    errors = [line for line in error_lines(result) if line.startswith("segtool: error:")]
    assert len(errors) == 1 and "nothing pulled" in errors[0]


def _noisy_read(real):
    """A reader that talks like nibabel, numpy and GDCM do: a Python warning, a log record, raw fd-2 output."""

    def read(*args, **kwargs):
        import logging

        warnings.warn("pixdim[0] (qfac) should be 1 (default) or -1", UserWarning)
        logging.getLogger("nibabel").warning("nibabel says hello")
        os.write(2, b"Stream too short (GDCM talking straight to fd 2)\n")
        return real(*args, **kwargs)

    return read


def test_quiet_silences_library_output(tmp_path, app3d, monkeypatch, capfd):
    import segtool.io

    monkeypatch.setattr(segtool.io, "read_channels", _noisy_read(segtool.io.read_channels))
    src = save(tmp_path / "a.nii.gz")
    result = invoke(app3d(), ["run", "tiny", src, "-q"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "Stream too short" not in capfd.readouterr().err


def test_without_quiet_library_warnings_are_one_line_each(tmp_path, app3d, monkeypatch, capfd):
    import segtool.io

    monkeypatch.setattr(segtool.io, "read_channels", _noisy_read(segtool.io.read_channels))
    src = save(tmp_path / "a.nii.gz")
    result = invoke(app3d(), ["--verbose", "run", "tiny", src])  # by default they go to the log only
    assert result.exit_code == 0, result.output
    lines = [line for line in error_lines(result) if "warning" in line]
    assert any("UserWarning: pixdim[0] (qfac)" in line for line in lines), lines
    assert any("nibabel says hello" in line for line in lines), lines


def _broken_read(*args, **kwargs):
    raise RuntimeError("a bug deep inside a reader")


def test_an_unexpected_error_in_a_case_is_one_line(tmp_path, app3d, monkeypatch):
    import segtool.io

    monkeypatch.setattr(segtool.io, "read_channels", _broken_read)
    monkeypatch.delenv("SEGTOOL_DEBUG", raising=False)
    src = save(tmp_path / "a.nii.gz")
    before = snapshot(tmp_path)
    result = invoke(app3d(), ["run", "tiny", src, "-q"])
    refused(result, 1, before, tmp_path, "unexpected RuntimeError: a bug deep inside a reader", "SEGTOOL_DEBUG=1")


def test_segtool_debug_shows_the_traceback_of_an_error_inside_a_case(tmp_path, app3d, monkeypatch, capsys):
    import segtool.io

    monkeypatch.setattr(segtool.io, "read_channels", _broken_read)
    src = save(tmp_path / "a.nii.gz")
    result = invoke(app3d(), ["run", "tiny", src, "-q"], env={"SEGTOOL_DEBUG": "1"})
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "_broken_read" in result.stderr
    assert not (tmp_path / "a_seg.nii.gz").exists()


def test_failed_cases_get_a_failed_row_in_the_qc_report(tmp_path, app3d):
    good = save(tmp_path / "good.nii.gz")
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    result = invoke(app3d(), ["run", "tiny", good, tmp_path / "bad.nii.gz", "-q", "--qc", tmp_path / "qc"])
    assert result.exit_code == 1
    html = (tmp_path / "qc" / "index.html").read_text(encoding="utf-8")
    assert "bad.nii.gz" in html and 'class="st-failed"' in html and "good.nii.gz" in html


def test_a_task_declared_output_suffix_names_the_mask(tmp_path, site):
    import dataclasses

    spec = make_task(site, "gm-like")
    gm = dataclasses.replace(spec, output_suffix="_gmseg")  # a renamed field fails here, it does not skip
    src = save(tmp_path / "t2s.nii.gz")
    result = invoke(app_with(gm), ["run", "gm-like", src, "-q", "--prob"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t2s_gmseg.nii.gz").exists() and (tmp_path / "t2s_prob.nii.gz").exists()
    assert not (tmp_path / "t2s_seg.nii.gz").exists()

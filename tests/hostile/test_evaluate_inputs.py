"""`segtool evaluate` on malformed label files and options: no silent wrong metric, no input touched."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest

from hostile.helpers import app_with, error_lines, invoke, make_task, refused, snapshot

AFFINE = np.diag([0.8, 0.8, 1.5, 1.0])


def labels_map(shift=0, extra=None):
    a = np.zeros((16, 14, 8), np.uint8)
    a[3 + shift : 11 + shift, 3:11, 2:6] = 1
    a[5 + shift : 9 + shift, 5:9, 3:5] = 2
    if extra is not None:
        a[0, 0, 0] = extra
    return a


def save(path, data, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.fixture(scope="module")
def task_app(tmp_path_factory):
    site = tmp_path_factory.mktemp("eval-site")
    spec = make_task(site, "two-labels", labels={1: "core", 2: "centre"}, with_weights=False)
    return lambda: app_with(spec)


@pytest.fixture
def pair(tmp_path):
    return save(tmp_path / "pred.nii.gz", labels_map(1)), save(tmp_path / "gt.nii.gz", labels_map())


def strict_json(text: str):
    def no_constant(name):
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=no_constant)


# --------------------------------------------------------------------------- silent wrong results before issue 17


def test_float_labels_are_refused_not_rounded(tmp_path, task_app):
    gt = save(tmp_path / "gt.nii.gz", labels_map().astype(np.float32) * 0.6)  # 0.6 and 1.2
    pred = save(tmp_path / "pred.nii.gz", labels_map())
    before = snapshot(tmp_path)
    refused(invoke(task_app(), ["evaluate", pred, gt]), 1, before, tmp_path, "non-integer", "gt.nii.gz")


@pytest.mark.parametrize("side", ["gt", "pred"])
def test_labels_unknown_to_the_task_are_an_error(tmp_path, task_app, side):
    files = {"pred": labels_map(1), "gt": labels_map()}
    files[side] = labels_map(1 if side == "pred" else 0, extra=7)
    pred = save(tmp_path / "pred.nii.gz", files["pred"])
    gt = save(tmp_path / "gt.nii.gz", files["gt"])
    before = snapshot(tmp_path)
    result = invoke(task_app(), ["evaluate", pred, gt, "--task", "two-labels"])
    refused(result, 1, before, tmp_path, "label value 7", "task 'two-labels'", f"{side}.nii.gz", "--labels")


def test_unknown_labels_can_be_reported_as_extra_classes(tmp_path, task_app):
    pred = save(tmp_path / "pred.nii.gz", labels_map(1, extra=7))
    gt = save(tmp_path / "gt.nii.gz", labels_map(extra=7))
    result = invoke(task_app(), ["evaluate", pred, gt, "--task", "two-labels", "--labels", "1,2,7", "--json"])
    assert result.exit_code == 0, result.output
    names = [m["name"] for m in strict_json(result.stdout)["metrics"]]
    assert names[:3] == ["core", "centre", "7"]


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "-inf"])
def test_tolerance_must_be_finite_and_non_negative(pair, tmp_path, value):
    before = snapshot(tmp_path)
    result = invoke(None, ["evaluate", *pair, f"--tolerance={value}"])
    refused(result, 2, before, tmp_path, "--tolerance")


@pytest.mark.parametrize("value", ["nan", "inf", "-2"])
def test_empty_distance_must_be_finite_and_non_negative(pair, tmp_path, value):
    before = snapshot(tmp_path)
    refused(invoke(None, ["evaluate", *pair, f"--empty-distance={value}"]), 2, before, tmp_path, "--empty-distance")


def test_json_has_null_where_a_number_is_undefined(tmp_path):
    gt = save(tmp_path / "gt.nii.gz", labels_map())
    pred = save(tmp_path / "pred.nii.gz", np.zeros_like(labels_map()))  # precision 0/0, distances inf
    result = invoke(None, ["evaluate", pred, gt, "--json"])
    assert result.exit_code == 0, result.output
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    strict_json(result.stdout)


def test_json_output_writes_null_for_nan_and_inf(capsys):
    """Before issue 17, `--tolerance nan` put a bare NaN token in --json output; any left is now null."""
    from segtool.commands.common import echo_json

    echo_json({"tolerance": float("nan"), "hd": [float("inf"), 1.5], "n": np.float64("nan")})
    assert strict_json(capsys.readouterr().out) == {"tolerance": None, "hd": [None, 1.5], "n": None}


def test_folder_json_has_no_nan_in_the_summary(tmp_path):
    save(tmp_path / "gt" / "c1.nii.gz", labels_map())
    save(tmp_path / "pred" / "c1.nii.gz", np.zeros_like(labels_map()))
    result = invoke(None, ["evaluate", tmp_path / "pred", tmp_path / "gt", "--json"])
    assert result.exit_code == 0, result.output
    strict_json(result.stdout)


# --------------------------------------------------------------------------- inputs never changed


def test_csv_onto_the_ground_truth_is_refused(pair, tmp_path):
    pred, gt = pair
    before = snapshot(tmp_path)
    refused(invoke(None, ["evaluate", pred, gt, "--csv", gt]), 2, before, tmp_path, "refusing to overwrite an input")


def test_csv_onto_the_prediction_through_a_link_is_refused(pair, tmp_path):
    pred, gt = pair
    os.symlink(pred, tmp_path / "metrics.csv")
    before = snapshot(tmp_path)
    result = invoke(None, ["evaluate", pred, gt, "--csv", tmp_path / "metrics.csv"])
    refused(result, 2, before, tmp_path, "refusing to overwrite an input")


def test_csv_onto_a_file_of_the_gt_folder_is_refused(tmp_path):
    save(tmp_path / "gt" / "c1.nii.gz", labels_map())
    save(tmp_path / "pred" / "c1.nii.gz", labels_map(1))
    before = snapshot(tmp_path)
    result = invoke(None, ["evaluate", tmp_path / "pred", tmp_path / "gt", "--csv", tmp_path / "gt" / "c1.nii.gz"])
    refused(result, 2, before, tmp_path, "refusing to overwrite an input")


def test_csv_into_a_missing_folder(pair, tmp_path):
    before = snapshot(tmp_path)
    result = invoke(None, ["evaluate", *pair, "--csv", tmp_path / "nodir" / "m.csv"])
    refused(result, 2, before, tmp_path, "does not exist")


# --------------------------------------------------------------------------- unreadable inputs and bad options


def _fifo(d):
    os.mkfifo(d / "gt.nii.gz")


def _dev_zero_link(d):
    os.symlink("/dev/zero", d / "gt.nii.gz")


def _colour_png(d):
    from PIL import Image

    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(d / "gt.png")


def _complex_labels(d):
    save(d / "gt.nii.gz", labels_map().astype(np.complex64))


def _truncated(d):
    raw = (d / "pred.nii.gz").read_bytes()
    (d / "gt.nii.gz").write_bytes(raw[: len(raw) // 2])


def _other_grid(d):
    save(d / "gt.nii.gz", labels_map(), affine=np.diag([1.0, 1.0, 1.0, 1.0]))


def _zero_affine(d):
    from hostile.helpers import save_nifti_with_zero_affine

    save_nifti_with_zero_affine(d / "gt.nii.gz", labels_map())


BAD_GT = {
    "FIFO": (_fifo, "gt.nii.gz", "named pipe"),
    "link to /dev/zero": (_dev_zero_link, "gt.nii.gz", "character device"),
    "colour PNG": (_colour_png, "gt.png", "colour image"),
    "complex labels": (_complex_labels, "gt.nii.gz", "complex"),
    "truncated file": (_truncated, "gt.nii.gz", "corrupt or truncated"),
    "another grid": (_other_grid, "gt.nii.gz", "different grids"),
    "zero affine": (_zero_affine, "gt.nii.gz", "degenerate"),
}


@pytest.mark.parametrize("case", list(BAD_GT))
def test_bad_ground_truth_in_one_line(tmp_path, case):
    make, name, expected = BAD_GT[case]
    pred = save(tmp_path / "pred.nii.gz", labels_map(1))
    make(tmp_path)
    before = snapshot(tmp_path)
    result = invoke(None, ["evaluate", pred, tmp_path / name])
    refused(result, 1, before, tmp_path, expected, warnings_ok=case == "zero affine")  # nibabel: "pixdim[1,2,3]..."


@pytest.mark.parametrize(
    "option, expected",
    [("-1", "negative"), ("0", "background"), ("one", "not a label number"), (",", "no labels")],
)
def test_bad_labels_option(pair, tmp_path, option, expected):
    before = snapshot(tmp_path)
    refused(invoke(None, ["evaluate", *pair, f"--labels={option}"]), 2, before, tmp_path, expected)


def test_missing_prediction(tmp_path):
    gt = save(tmp_path / "gt.nii.gz", labels_map())
    before = snapshot(tmp_path)
    refused(invoke(None, ["evaluate", tmp_path / "nope.nii.gz", gt]), 2, before, tmp_path, "no such file")


def test_file_against_folder(tmp_path, pair):
    (tmp_path / "folder").mkdir()
    before = snapshot(tmp_path)
    refused(invoke(None, ["evaluate", pair[0], tmp_path / "folder"]), 2, before, tmp_path, "both be files")


# --------------------------------------------------------------------------- folder mode: a bad pair fails its row only


@pytest.mark.parametrize("bad", ["unreadable", "other grid", "non-integer"])
def test_folder_mode_fails_only_the_bad_row(tmp_path, bad):
    for case in ("c1", "c3"):
        save(tmp_path / "gt" / f"{case}.nii.gz", labels_map())
        save(tmp_path / "pred" / f"{case}.nii.gz", labels_map(1))
    save(tmp_path / "gt" / "c2.nii.gz", labels_map())
    if bad == "unreadable":
        (tmp_path / "pred" / "c2.nii.gz").write_bytes(b"\x1f\x8b broken")
    elif bad == "other grid":
        save(tmp_path / "pred" / "c2.nii.gz", labels_map(), affine=np.eye(4))
    else:
        save(tmp_path / "pred" / "c2.nii.gz", labels_map().astype(np.float32) + 0.5)
    csv_path = tmp_path / "m.csv"
    result = invoke(None, ["evaluate", tmp_path / "pred", tmp_path / "gt", "--json", "--csv", csv_path])
    assert result.exit_code == 1, result.output
    lines = error_lines(result)
    # one error line for the case, then the closing count (not an error of its own)
    assert len(lines) == 2 and lines[0].startswith("segtool: error: ") and "c2.nii.gz" in lines[0], lines
    assert lines[1] == "segtool: 1 of 3 cases could not be scored; the summary is over the other 2 only", lines
    doc = strict_json(result.stdout)
    assert [c["case"] for c in doc["cases"]] == ["c1", "c3"]
    assert [f["case"] for f in doc["failed"]] == ["c2"]
    assert "c1" in csv_path.read_text() and "Traceback" not in result.output


def test_folder_mode_failed_rows_reach_the_qc_report(tmp_path):
    save(tmp_path / "gt" / "c1.nii.gz", labels_map())
    save(tmp_path / "pred" / "c1.nii.gz", labels_map(1))
    save(tmp_path / "gt" / "c2.nii.gz", labels_map())
    (tmp_path / "pred" / "c2.nii.gz").write_bytes(b"broken")
    result = invoke(None, ["evaluate", tmp_path / "pred", tmp_path / "gt", "--qc", tmp_path / "qc"])
    assert result.exit_code == 1, result.output
    html = (tmp_path / "qc" / "index.html").read_text(encoding="utf-8")
    assert "failed" in html and "c2.nii.gz" in html

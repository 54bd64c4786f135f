"""`segtool evaluate` through Click's CliRunner on real NIfTI and PNG files."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from segtool import metrics as M
from segtool.cli import cli
from segtool.evaluation import case_key, pair_folders

SPACING = (0.8, 0.8, 1.5)
AFFINE = np.diag([*SPACING, 1.0])


def save(path: Path, data: np.ndarray, affine=AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), affine), str(path))
    return path


def tumour(shift: int = 0) -> np.ndarray:
    """A BraTS-like label map: edema 2 around core 1, enhancing 4 inside."""
    a = np.zeros((24, 22, 14), np.uint8)
    a[4 + shift : 18 + shift, 4:18, 2:12] = 2
    a[7 + shift : 15 + shift, 7:15, 4:10] = 1
    a[9 + shift : 13 + shift, 9:13, 5:9] = 4
    return a


def run(*args):
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)])


def spacing_of(path: Path):
    return nib.load(str(path)).header.get_zooms()[:3]


@pytest.fixture
def pair(tmp_path):
    gt = save(tmp_path / "gt.nii.gz", tumour())
    pred = save(tmp_path / "pred.nii.gz", tumour(shift=1))
    return pred, gt


def test_table_output(pair):
    result = run(*pair)
    assert result.exit_code == 0, result.output
    for word in ("Dice", "HD95", "ASSD", "MHD", "NSD", "MSD pred→GT", "distances in mm"):
        assert word in result.stdout


def test_json_matches_the_python_api(pair):
    pred, gt = pair
    result = run(pred, gt, "--json", "--tolerance", "2")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["mode"] == "pair" and doc["unit"] == "mm" and doc["tolerance"] == 2.0
    rows = {r["name"]: r for r in doc["metrics"]}
    assert set(rows) == {"1", "2", "4"}
    spacing = spacing_of(gt)
    expected = {r.name: r for r in M.evaluate(tumour(1), tumour(), spacing, tolerance=2.0)}
    for name, row in rows.items():
        want = expected[name].as_dict()
        for key in M.METRIC_KEYS:
            assert row[key] == pytest.approx(want[key], rel=1e-12), (name, key)
        assert row["empty"] is None and row["infinite"] == []


def test_task_gives_names_and_regions_and_empty_flags(tmp_path):
    gt = save(tmp_path / "gt.nii.gz", tumour())
    no_enh = tumour(shift=1)
    no_enh[no_enh == 4] = 1
    pred = save(tmp_path / "pred.nii.gz", no_enh)
    result = run(pred, gt, "--task", "brain-tumour", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["metrics"]}
    assert list(rows) == [
        "necrosis", "edema", "non_enhancing", "enhancing", "whole_tumour", "tumour_core", "enhancing_tumour"
    ]
    assert rows["whole_tumour"]["labels"] == [1, 2, 3, 4] and rows["whole_tumour"]["region"] is True
    # label 3 is in neither file: both empty -> Dice 1, distances 0
    assert rows["non_enhancing"]["empty"] == "both" and rows["non_enhancing"]["dice"] == 1.0
    assert rows["non_enhancing"]["hd"] == 0.0
    # enhancing missing from the prediction: Dice 0, distances inf -> null + flag
    enh = rows["enhancing"]
    assert enh["empty"] == "pred" and enh["dice"] == 0.0 and enh["hd"] is None and enh["hd95"] is None
    assert {"hd", "hd95", "assd", "mhd"} <= set(enh["infinite"])
    table = run(pred, gt, "--task", "brain-tumour")
    assert "inf" in table.stdout and "empty mask" in table.stdout
    penalised = json.loads(run(pred, gt, "--task", "brain-tumour", "--json", "--empty-distance", "373.1").stdout)
    enh = {r["name"]: r for r in penalised["metrics"]}["enhancing"]
    assert enh["hd"] == 373.1 and enh["penalised"] is True and enh["infinite"] == []


def test_labels_option(pair):
    result = run(*pair, "--labels", "1=core,4", "--json")
    assert result.exit_code == 0, result.output
    assert [r["name"] for r in json.loads(result.stdout)["metrics"]] == ["core", "4"]
    bad = run(*pair, "--labels", "one")
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines()[-1].startswith("segtool: error: --labels:")


def test_csv_single_pair(pair, tmp_path):
    out = tmp_path / "m.csv"
    result = run(*pair, "--csv", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["name"] for r in rows] == ["1", "2", "4"]
    assert all(r["statistic"] == "" and r["case"] == "gt" for r in rows)
    assert 0 < float(rows[0]["dice"]) < 1 and float(rows[0]["hd95"]) > 0


def test_different_grids_refused_then_resampled(tmp_path):
    gt_data = tumour()
    gt = save(tmp_path / "gt.nii.gz", gt_data)
    # the same labels on a bigger grid whose origin is 3 voxels further
    big = np.zeros((30, 22, 14), np.uint8)
    big[3:27] = gt_data
    shifted = AFFINE.copy()
    shifted[0, 3] = -3 * SPACING[0]
    pred = save(tmp_path / "pred.nii.gz", big, shifted)
    result = run(pred, gt)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segtool: error:")
    assert "different grids" in lines[0] and "--resample-pred" in lines[0]
    ok = run(pred, gt, "--resample-pred", "--json")
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["resampled"] is True
    assert all(r["dice"] == 1.0 and r["hd"] == 0.0 for r in doc["metrics"])
    moved = AFFINE.copy()
    moved[1, 3] = 0.5  # same shape, origin off by 0.5 mm
    off = save(tmp_path / "off.nii.gz", gt_data, moved)
    result = run(off, gt)
    assert result.exit_code == 1 and "affines differ" in result.output


def test_folder_mode_pairs_nnunet_and_bids_names(tmp_path):
    preds, gts = tmp_path / "pred", tmp_path / "gt"
    save(preds / "case_001.nii.gz", tumour(1))  # nnU-Net: same name in both folders
    save(gts / "case_001.nii.gz", tumour())
    save(preds / "sub-02_T1w.nii.gz", tumour(2))  # BIDS-style _seg / _dseg names
    save(gts / "sub-02_T1w_dseg.nii.gz", tumour())
    save(preds / "BraTS_003.nii.gz", tumour())
    save(gts / "BraTS_003_seg.nii.gz", tumour())
    save(preds / "orphan.nii.gz", tumour())  # unmatched on both sides
    save(gts / "lonely_seg.nii.gz", tumour())
    (preds / "plans.json").write_text("{}")  # not an image: ignored
    result = run(preds, gts, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["case"] for c in doc["cases"]] == ["BraTS_003", "case_001", "sub-02_T1w"]
    assert [Path(p).name for p in doc["unmatched"]["pred"]] == ["orphan.nii.gz"]
    assert [Path(p).name for p in doc["unmatched"]["gt"]] == ["lonely_seg.nii.gz"]
    assert "orphan.nii.gz" in result.stderr and "lonely_seg.nii.gz" in result.stderr
    dice = {c["case"]: {r["name"]: r["dice"] for r in c["metrics"]} for c in doc["cases"]}
    summary = {s["name"]: s["stats"] for s in doc["summary"]}
    values = [dice[c]["2"] for c in dice]
    assert summary["2"]["dice"]["mean"] == pytest.approx(np.mean(values))
    assert summary["2"]["dice"]["std"] == pytest.approx(np.std(values))
    assert summary["2"]["dice"]["median"] == pytest.approx(np.median(values))
    assert summary["2"]["dice"]["n"] == 3 and summary["2"]["dice"]["n_inf"] == 0
    table = run(preds, gts)
    assert table.exit_code == 0
    assert "summary over 3 cases" in table.stdout and "median" in table.stdout and "BraTS_003" in table.stdout


def test_folder_mode_csv_and_infinite_cases(tmp_path):
    preds, gts = tmp_path / "pred", tmp_path / "gt"
    for i in range(3):
        save(gts / f"c{i}.nii.gz", tumour())
        p = tumour(i)
        if i == 2:
            p[p == 4] = 1  # enhancing missing in one case
        save(preds / f"c{i}.nii.gz", p)
    out = tmp_path / "all.csv"
    result = run(preds, gts, "--csv", out, "--json")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    case_rows = [r for r in rows if r["statistic"] == ""]
    assert len(case_rows) == 9 and {r["case"] for r in case_rows} == {"c0", "c1", "c2"}
    bad = [r for r in case_rows if r["case"] == "c2" and r["name"] == "4"][0]
    assert bad["hd"] == "inf" and bad["empty"] == "pred"
    assert math.isinf(float(bad["hd95"]))
    mean4 = [r for r in rows if r["statistic"] == "mean" and r["name"] == "4"][0]
    n_inf4 = [r for r in rows if r["statistic"] == "n_inf" and r["name"] == "4"][0]
    assert n_inf4["hd"] == "1"
    finite = [float(r["hd"]) for r in case_rows if r["name"] == "4" and r["hd"] != "inf"]
    assert float(mean4["hd"]) == pytest.approx(np.mean(finite))
    doc = json.loads(result.stdout)
    s4 = {s["name"]: s for s in doc["summary"]}["4"]["stats"]
    assert s4["hd"]["n_inf"] == 1 and s4["hd"]["n"] == 2
    assert s4["dice"]["n"] == 3


def test_folder_mode_reports_labels_absent_from_a_case(tmp_path):
    preds, gts = tmp_path / "pred", tmp_path / "gt"
    save(gts / "a.nii.gz", tumour())
    save(preds / "a.nii.gz", tumour(1))
    no4 = tumour()
    no4[no4 == 4] = 1
    save(gts / "b.nii.gz", no4)
    save(preds / "b.nii.gz", no4)
    doc = json.loads(run(preds, gts, "--json").stdout)
    b = {r["name"]: r for r in doc["cases"][1]["metrics"]}
    assert list(b) == ["1", "2", "4"]
    assert b["4"]["empty"] == "both" and b["4"]["dice"] == 1.0 and b["4"]["hd"] == 0.0
    assert {s["name"]: s for s in doc["summary"]}["4"]["stats"]["dice"]["n"] == 2


def test_folder_mode_needs_pairs(tmp_path):
    save(tmp_path / "p" / "a.nii.gz", tumour())
    save(tmp_path / "g" / "b.nii.gz", tumour())
    result = run(tmp_path / "p", tmp_path / "g")
    assert result.exit_code == 2 and "no file in" in result.output
    mixed = run(tmp_path / "p", tmp_path / "g" / "b.nii.gz")
    assert mixed.exit_code == 2 and "both be files or both be folders" in mixed.output
    missing = run(tmp_path / "nope.nii.gz", tmp_path / "g" / "b.nii.gz")
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_photos_are_measured_in_pixels(tmp_path):
    from PIL import Image

    gt = np.zeros((40, 50), np.uint8)
    gt[10:30, 10:40] = 1
    gt[15:20, 15:20] = 2
    pred = np.roll(gt, 3, axis=1)
    Image.fromarray(gt).save(tmp_path / "gt.png")
    Image.fromarray(pred).save(tmp_path / "pred.png")
    result = run(tmp_path / "pred.png", tmp_path / "gt.png", "--json", "--surface", "surfel")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["unit"] == "px" and doc["surface"] == "surfel"
    rows = {r["name"]: r for r in doc["metrics"]}
    assert rows["1"]["hd"] == pytest.approx(3.0) and rows["2"]["hd"] == pytest.approx(3.0)


def test_case_key_rule():
    assert case_key("BraTS_001_seg.nii.gz") == "BraTS_001"
    assert case_key("case_001.nii.gz") == "case_001"
    assert case_key("sub-01_ses-1_T1w_dseg.nii.gz") == "sub-01_ses-1_T1w"
    assert case_key("img_MASK.png") == "img"
    assert case_key("_seg.nii.gz") == "_seg"
    assert case_key("scan.mha") == "scan"


def test_ambiguous_cases_are_an_error(tmp_path):
    save(tmp_path / "g" / "a.nii.gz", tumour())
    save(tmp_path / "g" / "a_seg.nii.gz", tumour())
    save(tmp_path / "p" / "a.nii.gz", tumour())
    with pytest.raises(Exception, match="all name case 'a'"):
        pair_folders(tmp_path / "p", tmp_path / "g")
    result = run(tmp_path / "p", tmp_path / "g")
    assert result.exit_code == 2 and result.output.startswith("segtool: error:")


def test_evaluate_does_not_import_torch(pair):
    pred, gt = pair
    code = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from segtool.cli import cli\n"
        f"r = CliRunner().invoke(cli, ['evaluate', {str(pred)!r}, {str(gt)!r}, '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(json.dumps('torch' in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "false"


def test_qc_shows_prediction_and_ground_truth_per_case(tmp_path):
    from PIL import Image

    for case in ("c1", "c2"):
        save(tmp_path / "pred" / f"{case}.nii.gz", tumour(shift=1))
        save(tmp_path / "gt" / f"{case}.nii.gz", tumour())
    qc_dir = tmp_path / "qc"
    result = run(str(tmp_path / "pred"), str(tmp_path / "gt"), "--qc", str(qc_dir), "--json")
    assert result.exit_code == 0, result.output
    html = (qc_dir / "index.html").read_text(encoding="utf-8")
    assert "c1" in html and "c2" in html and "dice" in html
    pngs = sorted(qc_dir.rglob("*.png"))
    assert len(pngs) == 2 * 3
    with Image.open(pngs[0]) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    assert (pixels.reshape(-1, 3) != 0).any(axis=1).sum() > 0  # masks drawn on black


def test_qc_image_needs_qc_and_one_pair(tmp_path):
    pred = save(tmp_path / "p.nii.gz", tumour())
    gt = save(tmp_path / "g.nii.gz", tumour())
    result = run(str(pred), str(gt), "--qc-image", str(pred))
    assert result.exit_code == 2 and "--qc-image" in result.output
    image = save(tmp_path / "img.nii.gz", (tumour() * 20).astype(np.uint8))
    ok = run(str(pred), str(gt), "--qc", str(tmp_path / "qc"), "--qc-image", str(image))
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "qc" / "index.html").exists()

"""benchmarks/accuracy.py: a thin dispatcher over one module per task, every documented command parsing,
every Dice through `segtool.metrics` (with the benchmarks' own empty-mask conventions), and gm_label's
fallback. No real data and no `segtool run` here: tiny arrays and files in tmp_path."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
TASK_MODULES = {"spinal-gm": "accuracy_spinal_gm", "brain-tumour-2d": "accuracy_lgg", "disc": "accuracy_disc",
                "clothing": "accuracy_clothing", "brain-tissue": "accuracy_brain_tissue",
                "brain-tumour": "accuracy_brain_tumour"}


@pytest.fixture
def bench(monkeypatch):
    """Import benchmarks/NAME.py as `python benchmarks/accuracy.py` does: its folder first on the path."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module


def test_each_task_is_its_own_module_and_the_dispatcher_only_dispatches(bench):
    accuracy = bench("accuracy")
    assert {task: b.run.__module__ for task, b in accuracy.TASKS.items()} == TASK_MODULES
    for module in TASK_MODULES.values():
        assert (BENCH / f"{module}.py").is_file()
    assert len((BENCH / "accuracy.py").read_text().splitlines()) < 100
    for path in BENCH.glob("accuracy*.py"):
        text = path.read_text()
        assert len(text.splitlines()) <= 400, path.name
        assert "sys.path.insert" not in text and "except:" not in text, path.name


#: Commands as docs/models.md, docs/training.md and the model cards give them (placeholders kept).
DOCUMENTED = [
    ("spinal-gm --model-dir sgm", {"model_dir": Path("sgm"), "published": "challenge,large"}),
    ("brain-tumour-2d --model-dir ATTENTION --model-dir UNET", {"model_dir": [Path("ATTENTION"), Path("UNET")]}),
    ("brain-tumour --cv unet=F1,F2,F3,F4", {"cv": ["unet=F1,F2,F3,F4"], "model_dir": []}),
    ("disc --loso unet=F25,F11,F20 --model-dir RES_SE_F25 --loso deeplabv3plus=F25,F11,F20",
     {"loso": ["unet=F25,F11,F20", "deeplabv3plus=F25,F11,F20"], "model_dir": [Path("RES_SE_F25")]}),
    ("disc --loso res_se_unet=F25,F11,F20 --partial-fov", {"partial_fov": True}),
    ("clothing --run-args '--model deeplabv3plus'", {"run_args": "--model deeplabv3plus"}),
    ("clothing --model-dir plugins/segtool_clothing --model-dir plugins/segtool_clothing/unet",
     {"model_dir": [Path("plugins/segtool_clothing"), Path("plugins/segtool_clothing/unet")]}),
    ("brain-tissue --model-dir plugins/segtool_brain_tissue/ventricular-csf",
     {"model_dir": [Path("plugins/segtool_brain_tissue/ventricular-csf")], "models": None}),
]


@pytest.mark.parametrize("command, expected", DOCUMENTED, ids=[c.split()[0] + str(i) for i, (c, _) in
                                                                 enumerate(DOCUMENTED)])
def test_documented_commands_parse(bench, command, expected):
    import shlex

    args = bench("accuracy").build_parser().parse_args(shlex.split(command))
    assert {key: getattr(args, key) for key in expected} == expected


def test_every_task_help_runs_as_a_file():
    """`python benchmarks/accuracy.py TASK --help`, as the docs run it (the task modules import by name)."""
    for task, module in TASK_MODULES.items():
        proc = subprocess.run([sys.executable, str(BENCH / "accuracy.py"), task, "--help"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert f"benchmarks/{module}.py" in proc.stdout and "--json" in proc.stdout


def test_absent_data_is_a_message_and_status_0(bench, tmp_path, capsys):
    main = bench("accuracy").main
    for task in TASK_MODULES:
        assert main([task, "--data", str(tmp_path / "none")]) == 0
    err = capsys.readouterr().err
    assert err.count("nothing to do") == len(TASK_MODULES)


# ----------------------------------------------------------------------------- Dice through segtool.metrics


def lgg_patient(folder: Path, preds: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, dict]:
    """A patient folder of slices NAME_k.tif with NAME_k_mask.tif, and `segtool run` records of predictions."""
    folder.mkdir()
    records = {}
    for k, (pred, truth) in enumerate(zip(preds, truths), start=1):
        image = folder / f"{folder.name}_{k}.tif"
        Image.fromarray(np.zeros((*truth.shape, 3), np.uint8)).save(image)
        Image.fromarray(truth.astype(np.uint8) * 255).save(folder / f"{folder.name}_{k}_mask.tif")
        out = folder.parent / f"{folder.name}_{k}_seg.png"
        Image.fromarray(pred.astype(np.uint8)).save(out)
        records[str(image.resolve())] = {"status": "done", "output": str(out), "seconds": 0.5}
    return records


def test_lgg_patient_dice_is_over_the_stack_and_both_empty_is_1(bench, tmp_path):
    lgg = bench("accuracy_lgg")
    truth = [np.zeros((4, 4), bool) for _ in range(2)]
    truth[0][0, :3] = True  # 3 tumour pixels on slice 1, none on slice 2
    pred = [np.zeros((4, 4), bool) for _ in range(2)]
    pred[0][0, :2] = True
    pred[1][3, 3] = True  # 2 hits, 1 false positive: Dice = 2*2 / (3 + 3)
    score = lgg.score_patient(tmp_path / "TCGA_AA_0001_20000101", lgg_patient(tmp_path / "TCGA_AA_0001_20000101",
                                                                                pred, truth))
    assert score["dice"] == 4 / 6 and score["slices"] == 2 and score["seconds"] == 1.0
    assert (score["tumour_pixels"], score["predicted_pixels"]) == (3, 3)
    empty = [np.zeros((4, 4), bool)] * 2
    folder = tmp_path / "TCGA_AA_0002_20000101"
    assert lgg.score_patient(folder, lgg_patient(folder, empty, empty))["dice"] == 1.0


def test_lgg_per_slice_runs_every_slice_file_alone_and_stacked_runs_the_folders(bench, tmp_path, monkeypatch):
    lgg = bench("accuracy_lgg")
    folder = tmp_path / "TCGA_AA_0001_20000101"
    lgg_patient(folder, [np.zeros((4, 4), bool)] * 3, [np.zeros((4, 4), bool)] * 3)
    (folder / f"{folder.name}_10.tif").write_bytes((folder / f"{folder.name}_1.tif").read_bytes())
    (folder / f"{folder.name}_10_mask.tif").write_bytes((folder / f"{folder.name}_1_mask.tif").read_bytes())
    calls = []
    monkeypatch.setattr(lgg, "segtool_records", lambda task, args, model, timeout: calls.append(args) or (0, [{}], ""))
    lgg.run_stacks([folder], tmp_path / "out", None, ["--tta"], per_slice=True)
    lgg.run_stacks([folder], tmp_path / "out", None, [])
    alone, stacked = calls
    assert "--stack" not in alone and alone[-3:] == ["--output-dir", str(tmp_path / "out"), "--tta"]
    assert [Path(a).name for a in alone[:-3]] == [f"{folder.name}_{k}.tif" for k in (1, 2, 3, 10)]  # slice order
    assert stacked == ["--stack", str(folder), "--output-dir", str(tmp_path / "out")]
    args = bench("accuracy").build_parser().parse_args(["brain-tumour-2d", "--per-slice"])
    assert args.per_slice is True


def test_tissue_dice_leaves_a_tissue_neither_image_holds_out_of_the_mean(bench):
    tissue = bench("accuracy_brain_tissue")
    truth = np.array([1, 1, 2, 2, 0, 0])
    pred = np.array([1, 2, 2, 2, 0, 0])  # CSF 2*1/3, GM 2*2/5, no WM anywhere
    scores = tissue.tissue_dice(pred, truth)
    assert scores == {"csf": 2 / 3, "gray_matter": 4 / 5, "white_matter": None, "mean": float(np.mean([2 / 3, 4 / 5]))}
    nothing = tissue.tissue_dice(pred, truth, np.zeros(6, bool))
    assert nothing == {"csf": None, "gray_matter": None, "white_matter": None, "mean": None}


def test_clothing_scores_come_from_segtool_metrics_counts(bench):
    clothing = bench("accuracy_clothing")
    # a class present but never predicted: IoU 0, precision 0 (segtool.metrics' rule for an empty prediction)
    missed = np.array([[1, 0, 0], [0, 0, 2]])  # class 0: TP 1; class 1: TP 0, FN 2
    s = clothing.seed_scores([missed])
    assert s["iou"] == [1.0, 0.0] and s["precision"] == [1.0, 0.0] and s["photos"] == [1, 1]
    # predicted but absent everywhere: no per-photo value, pooled IoU 0; absent and not predicted: None
    phantom = np.array([[1, 0, 0], [0, 3, 0], [0, 0, 0]])
    s = clothing.seed_scores([phantom])
    assert s["iou"] == [1.0, None, None] and s["dataset_iou"] == [1.0, 0.0, None]
    assert s["dataset_precision"] == [1.0, 0.0, None] and s["mean_dataset_iou"] == 0.5


# ----------------------------------------------------------------------------- gm_label, JSON


def test_gm_label_reads_the_config_and_says_when_it_cannot(bench, tmp_path, capsys):
    gm_label = bench("accuracy_spinal_gm").gm_label
    assert gm_label(None) == 1
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"labels": {"0": "background", "2": "Grey_Matter"}}))
    assert gm_label(model) == 2
    (model / "config.json").write_text(json.dumps({"labels": {"1": "wm"}}))
    assert gm_label(model) == 1 and capsys.readouterr().err == ""  # readable, no GM name: the default, silently
    for bad in ("{not json", json.dumps({"task": "spinal-gm"}), json.dumps({"labels": ["gm"]}),
                json.dumps({"labels": {"x": "gm"}})):
        (model / "config.json").write_text(bad)
        assert gm_label(model) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "scoring label 1" in err and str(model / "config.json") in err
    assert gm_label(tmp_path / "missing") == 1 and "FileNotFoundError" in capsys.readouterr().err


def test_json_report_writes_infinite_distances_as_null_inside_row_lists(bench, tmp_path):
    common = bench("accuracy_common")
    out = tmp_path / "r.json"
    common.write_json(out, {"rows": [{"models": {"a": {"dice": 0.0, "hd95": math.inf}}}], "n": 1.5})
    assert json.loads(out.read_text()) == {"rows": [{"models": {"a": {"dice": 0.0, "hd95": None}}}], "n": 1.5}
    common.write_json(None, {"x": 1})  # no --json: nothing written
    assert common.column_names([Path("a/unet"), Path("b/unet"), None]) == ["a/unet", "b/unet", "default"]
    assert common.column_names([Path("a/unet"), None]) == ["unet", "default"]

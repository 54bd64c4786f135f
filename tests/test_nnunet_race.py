"""benchmarks/nnunet_race.py and its modules, their pure parts: the split nnU-Net gets (race_split.py), the
configuration rule, the budget trainer's source (nnunet_budget_trainer.py, run against a stand-in nnUNetTrainer
on a fake clock), names and grids of predictions and scores (race_scoring.py) and the table (race_report.py).
No nnunetv2 here."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """benchmarks/NAME.py, loaded by path as nnunet_race.py loads its siblings (benchmarks/ is not a package)."""
    loaded = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def race():
    return load_benchmark("nnunet_race")


@pytest.fixture(scope="module")
def race_split():
    return load_benchmark("race_split")


@pytest.fixture(scope="module")
def budget_trainer():
    return load_benchmark("nnunet_budget_trainer")


@pytest.fixture(scope="module")
def race_scoring():
    return load_benchmark("race_scoring")


@pytest.fixture(scope="module")
def race_report():
    return load_benchmark("race_report")


NAMES = ["10062Ses1", "10062Ses2", "9418", "9584", "9604", "mt1", "t2s_uncropped"]


def test_val_cases_make_one_fold_and_the_file_nnunet_reads(race_split, tmp_path):
    splits = race_split.make_splits(NAMES, val_cases=["mt1", "9604"])
    assert splits == [{"train": ["10062Ses1", "10062Ses2", "9418", "9584", "t2s_uncropped"], "val": ["9604", "mt1"]}]
    path = race_split.write_splits(tmp_path, splits)
    assert path == tmp_path / "splits_final.json" and json.loads(path.read_text()) == splits
    assert race_split.fold_of(splits) == {"9604": 0, "mt1": 0}
    with pytest.raises(SystemExit, match="no case named nope"):
        race_split.make_splits(NAMES, val_cases=["mt1", "nope"])


def test_folds_are_segtools_folds(race_split):
    from segtool.training.cross_validation import assign_folds

    names = [f"sub-{s}_slice{i}" for s in "abcde" for i in range(3)]
    splits = race_split.make_splits(names, folds=3, group_by=r"^(sub-[^_]+)")
    assert [s["val"] for s in splits] == assign_folds(names, 3, 0, r"^(sub-[^_]+)")
    for split in splits:
        assert sorted(split["train"] + split["val"]) == sorted(names) and not set(split["train"]) & set(split["val"])
        subjects = lambda cases: {c.split("_")[0] for c in cases}  # noqa: E731
        assert not subjects(split["train"]) & subjects(split["val"])  # a subject is never on both sides
    assert sorted(race_split.fold_of(splits)) == sorted(names)
    assert race_split.row_fold(splits, r"^(sub-[^_]+)") == {
        s: i for i, split in enumerate(splits) for s in {c.split("_")[0] for c in split["val"]}}


def test_val_fraction_is_segtools_split_on_both_sides(race, race_split, tmp_path):
    from segtool.training.datasets import split_cases

    group = r"^(sub-[^_]+)"
    names = [f"sub-{s}_slice{i}" for s in "abcdefghij" for i in range(3)]
    args, _ = race.parse_args(["DATA", "--task", "t", "--val-fraction", "0.2", "--seed", "3", "--group-by", group])
    splits = race_split.make_splits(names, args.folds, args.group_by, args.val_cases, args.seed, args.val_fraction)
    train, held = split_cases(names, 3, 0.2, group_by=group)  # what segtool train --val-fraction 0.2 --seed 3 holds out
    assert splits == [{"train": train, "val": held}] and len({c.split("_")[0] for c in held}) == 2
    assert splits != race_split.make_splits(names, None, group, None, 0, 0.2)  # the seed reaches the split
    assert race_split.split_options(args) == ["--val-fraction", "0.2", "--seed", "3", "--group-by", group]
    assert race_split.split_description(args, splits, len(names)).startswith(
        "--val-fraction 0.2 --seed 3 (1 fold: 24 training, 6 held out)")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"training": {"data": {"validation_cases": list(reversed(held))}}}))
    race_split.check_same_split(config, splits[0])  # same cases, any order
    config.write_text(json.dumps({"training": {"data": {"validation_cases": held[:-1]}}}))
    with pytest.raises(RuntimeError, match="not the same split"):
        race_split.check_same_split(config, splits[0])
    with pytest.raises(SystemExit):  # one way to split at a time
        race.parse_args(["DATA", "--task", "t", "--val-fraction", "0.2", "--folds", "3"])


def test_configuration_rule(race):
    both = {"configurations": {"2d": {}, "3d_fullres": {}, "3d_lowres": {}}}
    assert race.choose_configuration(both, 3)[0] == "3d_fullres"
    assert race.choose_configuration(both, 2) == ("2d", "the data is 2D")
    assert race.choose_configuration({"configurations": {"2d": {}}}, 3) == ("2d", "nnU-Net planned no 3d_fullres")


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def time(self):
        return self.now


@pytest.fixture
def trainer_module(budget_trainer, monkeypatch):
    """TRAINER_SOURCE executed against a stand-in nnUNetTrainer whose steps advance a fake clock."""
    clock = FakeClock()

    class Scheduler:
        max_steps = 1000

    class StandIn:
        def __init__(self):
            self.current_epoch, self.num_epochs = 0, 1000
            self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 250, 50
            self.lr_scheduler = Scheduler()
            self.dataloader_train = self.dataloader_val = iter(int, 1)  # endless
            self.calls, self.logged = [], []

        def on_train_start(self):
            self.calls.append("start")

        def on_epoch_start(self):
            pass

        def on_train_epoch_start(self):
            self.calls.append(("lr_max_steps", self.lr_scheduler.max_steps))

        def train_step(self, batch):
            clock.now += 1.0
            return {}

        def on_train_epoch_end(self, outputs):
            self.calls.append(("train", len(outputs)))

        def on_validation_epoch_start(self):
            pass

        def validation_step(self, batch):
            clock.now += 0.1
            return {}

        def on_validation_epoch_end(self, outputs):
            self.calls.append(("val", len(outputs)))

        def on_epoch_end(self):
            self.current_epoch += 1

        def on_train_end(self):
            self.calls.append("end")

        def print_to_log_file(self, *args):
            self.logged.append(args)

    base = types.ModuleType("nnunetv2.training.nnUNetTrainer.nnUNetTrainer")
    base.nnUNetTrainer = StandIn
    for name in ("nnunetv2", "nnunetv2.training", "nnunetv2.training.nnUNetTrainer"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, base.__name__, base)
    namespace: dict = {}
    exec(compile(budget_trainer.TRAINER_SOURCE, "nnUNetTrainer_segtoolBudget.py", "exec"), namespace)
    namespace["time"] = clock
    return namespace, clock


def test_trainer_source_names_and_helpers(budget_trainer, trainer_module):
    namespace, _ = trainer_module
    assert namespace["DEADLINE_ENV"] == budget_trainer.DEADLINE_ENV == "SEGTOOL_NNUNET_DEADLINE"
    assert budget_trainer.TRAINER_NAME in namespace and "run_training" in vars(namespace[budget_trainer.TRAINER_NAME])
    for change in budget_trainer.TRAINER_CHANGES:
        assert change in budget_trainer.TRAINER_SOURCE  # the trainer's docstring says what the report says
    share = namespace["last_epoch_share"]
    assert share(10.0, 95.0) == pytest.approx(0.45)  # 5 s over: half an epoch, x 0.9
    assert share(10.0, 92.0) == 0.0 and share(10.0, 2.4) == 0.0  # under a quarter of an epoch: none
    assert share(10.0, 7.0) == pytest.approx(0.63) and share(0.0, 5.0) == 0.0 and share(10.0, -1.0) == 0.0
    fit = namespace["epochs_that_fit"]
    assert fit(1, 10.0, 95.0) == 10 and fit(4, 10.0, 5.0) == 4 and fit(0, 10.0, -3.0) == 1 and fit(2, 0.0, 50.0) == 2


def test_trainer_stops_training_by_the_deadline(budget_trainer, trainer_module, monkeypatch, tmp_path):
    namespace, clock = trainer_module
    cls = namespace[budget_trainer.TRAINER_NAME]
    monkeypatch.setenv(budget_trainer.DEADLINE_ENV, repr(clock.now + 60.0))
    trainer = cls()
    trainer.output_folder = str(tmp_path)
    trainer.run_training()

    # first epoch: a tenth of the 60 s -> 6 steps of 1 s; then round(6 x 0.2) = 1 validation step
    assert trainer.calls[:4] == ["start", ("lr_max_steps", 1000), ("train", 6), ("val", 1)]
    assert trainer.num_iterations_per_epoch == 6 and trainer.num_val_iterations_per_epoch == 1
    assert trainer.calls[-1] == "end"
    assert trainer.current_epoch == trainer.num_epochs == trainer.lr_scheduler.max_steps
    # 6.1 s epochs: 9 x 6.1 = 54.9 s <= 60 s < 10 x 6.1; the 5.1 s left over (0.84 of an epoch) buy a tenth,
    # shorter epoch: int(0.9 x 0.84 x 6) = 4 training steps and one validation step, ending at 59.0 s
    assert trainer.current_epoch == 10
    assert trainer.calls[-3:] == [("train", 4), ("val", 1), "end"]
    assert trainer.calls.count(("train", 6)) == 9
    assert clock.now == pytest.approx(1000.0 + 59.0)  # training ends by the deadline; nothing is reserved
    record = json.loads((tmp_path / "segtool_budget.json").read_text())
    assert record["epochs"] == 10 and record["iterations_per_epoch"] == 6 and record["last_epoch_iterations"] == 4
    assert "validation_reserve_s" not in record and record["seconds_left_after_training"] == pytest.approx(1.0)


def test_trainer_first_epoch_keeps_nnunets_250_when_time_allows(budget_trainer, trainer_module, monkeypatch, tmp_path):
    namespace, clock = trainer_module
    cls = namespace[budget_trainer.TRAINER_NAME]
    monkeypatch.setenv(budget_trainer.DEADLINE_ENV, repr(clock.now + 10_000.0))
    trainer = cls()
    trainer.output_folder = str(tmp_path)
    trainer.run_training()
    assert trainer.calls[2:4] == [("train", 250), ("val", 50)]
    assert trainer.current_epoch == 39  # 255 s epochs in 10,000 s


def test_prediction_names_and_2d_grids(race, race_scoring, tmp_path):
    (tmp_path / "TCGA_CS_4942_19970222_10.nii.gz").touch()
    (tmp_path / "sub-01_ses-1.nii.gz").touch()
    (tmp_path / "summary.json").touch()
    found, missing = race_scoring.prediction_files(tmp_path, ["TCGA_CS_4942_19970222_10", "sub-01_ses-1", "gone"],
                                                   ".nii.gz")
    assert found == {"TCGA_CS_4942_19970222_10": tmp_path / "TCGA_CS_4942_19970222_10.nii.gz",
                     "sub-01_ses-1": tmp_path / "sub-01_ses-1.nii.gz"} and missing == ["gone"]

    assert race_scoring.eval_names({"9604": ".nii.gz", "slice_seg": ".png", "a.b": ".nii.gz"}) == {
        "9604": "9604", "slice": "slice_seg", "a.b": "a.b"}  # segtool evaluate drops a role suffix such as _seg
    with pytest.raises(RuntimeError, match="both pair as 'x'"):
        race_scoring.eval_names({"x": ".png", "x_mask": ".png"})
    assert race_scoring.image_suffix(Path("a.b_seg.nii.gz")) == ".nii.gz"
    assert race_scoring.image_suffix(Path("s_seg.png")) == ".png"

    mask = np.zeros((20, 30), np.uint8)  # rows x cols, as the PNG
    mask[5:10, 3:20] = 1
    written = race.pvn.nifti_of(mask, np.eye(3), 2, np.uint8)  # what conversion gives nnU-Net: (cols, rows, 1)
    np.testing.assert_array_equal(race_scoring.case_array(np.asarray(written.dataobj), 2), mask)
    volume = np.arange(24).reshape(2, 3, 4)
    assert race_scoring.case_array(volume, 3) is not None and (race_scoring.case_array(volume, 3) == volume).all()
    with pytest.raises(ValueError):
        race_scoring.case_array(volume, 2)


def evaluate_row(case, dice, hd95, tp, fp, fn, empty=None, infinite=()):
    return {"case": case, "metrics": [{"name": "gm", "region": False, "dice": dice, "hd95": hd95, "tp": tp, "fp": fp,
                                       "fn": fn, "empty": empty, "infinite": list(infinite)}]}


def test_scores_means_and_pooling(race_scoring):
    report = {"cases": [evaluate_row("a_1", 0.8, 1.5, 8, 2, 2), evaluate_row("a_2", 0.0, None, 0, 3, 0, "gt", ["hd95"]),
                        evaluate_row("b_1", 1.0, 0.0, 0, 0, 0, "both")]}
    per_case = race_scoring.scores_from_report(report, {"a_1": "a_1", "a_2": "a_2", "b_1": "b_1"})
    assert per_case["a_1"]["gm"]["dice"] == 0.8 and math.isinf(per_case["a_2"]["gm"]["hd95"])
    assert per_case["b_1"]["gm"]["dice"] is None  # empty in both: no Dice, as segtool's validation
    m = race_scoring.means(per_case, ["gm"])["gm"]
    assert m == {"dice": 0.4, "hd95": 1.5, "cases": 2, "missed": 1}
    pooled = race_scoring.pool_by_subject(per_case, r"^([a-z])_")
    assert pooled["a"]["gm"]["dice"] == pytest.approx(16 / (16 + 5 + 2)) and pooled["b"]["gm"]["dice"] is None


def result_fixture(budget_trainer, group_by=None):
    names = [{"name": "gm", "region": False}, {"name": "whole", "region": True}]
    seg = {"per_case": {"9604": {"gm": {"dice": 0.9, "hd95": 0.6}, "whole": {"dice": 0.95, "hd95": 0.5}},
                        "mt1": {"gm": {"dice": 0.7, "hd95": math.inf}, "whole": {"dice": 0.8, "hd95": 1.0}}},
           "mean": {"gm": {"dice": 0.8, "hd95": 0.6, "cases": 2, "missed": 1},
                    "whole": {"dice": 0.875, "hd95": 0.75, "cases": 2, "missed": 0}},
           "steps": [{"step": "segtool train", "wall_s": 181.0, "max_rss_mb": 900.0, "peak_pss_mb": 1100.0}],
           "wall_s": 181.0, "own_mean": {"gm": {"dice": 0.81}}, "scoring_s": 12.0}
    nn = {"per_case": {"9604": {"gm": {"dice": 0.5, "hd95": 3.0}}},
          "mean": {"gm": {"dice": 0.5, "hd95": 3.0, "cases": 1, "missed": 0}},
          "steps": [{"step": "conversion", "wall_s": 1.0, "max_rss_mb": None, "peak_pss_mb": None},
                    {"step": "nnUNetv2_train fold 0", "wall_s": 170.0, "max_rss_mb": 2500.0, "peak_pss_mb": 3000.0}],
          "wall_s": 171.0, "configuration": "3d_fullres", "configuration_reason": "nnU-Net planned 3d_fullres and the data is 3D",
          "folds": [{"fold": 0, "over_deadline_s": -9.0, "own_foreground_dice": 0.51, "missing": ["mt1"],
                     "trainer": {"epochs": 4, "iterations_per_epoch": 6, "val_iterations_per_epoch": 1,
                                 "validation_reserve_s": 30.2}}]}
    return {"task": "spinal-gm", "budget": "3m", "budget_s": 180.0, "cpu": "Test CPU, 2 cores usable", "device": "cpu",
            "trainer": budget_trainer.TRAINER_NAME, "trainer_changes": list(budget_trainer.TRAINER_CHANGES),
            "names": names, "fold_of": {"9604": 0, "mt1": 0}, "row_fold": {"9604": 0, "mt1": 0},
            "split": {"description": "--val-cases 9604,mt1", "folds": [{"train": [], "val": ["9604", "mt1"]}],
                      "group_by": group_by},
            "sides": {"segtool": seg, "nnunet": nn}}


def test_race_table_from_hand_made_numbers(race_report, budget_trainer):
    result = result_fixture(budget_trainer)
    text = race_report.race_table(result)
    lines = text.splitlines()
    assert lines[0] == "## segtool vs nnU-Net: spinal-gm, budget 3m (180 s) per fold model"
    assert "CPU: Test CPU, 2 cores usable; device cpu." in text and "nnU-Net configuration: 3d_fullres" in text
    assert (f"; trainer {budget_trainer.TRAINER_NAME}: " + "; ".join(budget_trainer.TRAINER_CHANGES) + ".") in text
    assert "| held out | fold | label | segtool Dice | nnU-Net Dice | segtool HD95 mm | nnU-Net HD95 mm |" in lines
    assert "| 9604 | 0 | gm | 0.900 | 0.500 | 0.60 | 3.00 |" in lines
    assert "| mt1 | 0 | gm | 0.700 | - | ∞ | - |" in lines  # nnU-Net has no mt1 prediction here
    assert "| **mean** | | gm | **0.800** (2) | **0.500** (1) | 0.60 (1 ∞) | 3.00 |" in lines
    assert "| mt1 | 0 | whole (region) | 0.800 | - | 1.00 | - |" in lines
    assert "| segtool | 181 s | segtool train 181 s | 900 MB | 1.07 GB | 180 s allowed: 1 s over |" in lines
    assert ("| nnU-Net | 171 s | conversion 1 s; nnUNetv2_train fold 0 170 s | 2.44 GB | 2.93 GB | 180 s allowed: 9 s unused |"
            in lines)
    assert "segtool's own held-out Dice (its training run's validation): gm 0.810." in text
    result["sides"]["segtool"]["own_mean"]["whole_tumour"] = {"dice": None, "cases": 0}  # a region it does not score
    assert "segtool's own held-out Dice (its training run's validation): gm 0.810." in race_report.race_table(result)
    assert "nnU-Net fold 0: 4 epoch(s) of 6 iteration(s) (+1 validation)" in text and "no prediction for mt1" in text
    assert "ended 9 s before its deadline" in text


def test_race_table_pooled_and_with_a_failed_side(race_report, budget_trainer):
    result = result_fixture(budget_trainer, group_by=r"^(\d+)")
    result["sides"]["nnunet"] = {"error": "nnUNetv2_train exited 1"}
    text = race_report.race_table(result)
    assert "**nnU-Net failed**: nnUNetv2_train exited 1" in text
    assert "| held out | fold | label | segtool Dice | nnU-Net Dice |" in text and "HD95 mm" not in text
    assert "| 9604 | 0 | gm | 0.900 | - |" in text


def test_rescore_keeps_an_earlier_runs_training_and_reads_its_predictions_again(race, race_report, budget_trainer,
                                                                                tmp_path):
    earlier = {"steps": [{"step": "nnUNetv2_train fold 0", "wall_s": 170.0}], "wall_s": 171.0, "device": "cpu",
               "configuration": "2d", "configuration_reason": "the data is 2D", "folds": [{"fold": 0}],
               "predictions": {"a": str(tmp_path / "a.nii.gz")}, "per_case": {"a": {"gm": {"dice": 0.1}}},
               "mean": {"gm": {"dice": 0.1}}}
    args, _ = race.parse_args(["DATA", "--task", "t", "--val-cases", "a", "--rescore", str(tmp_path / "old.json")])
    assert args.rescore == tmp_path / "old.json"
    kept = race.rescored_side("nnunet", earlier, args, None, [], tmp_path)
    assert kept["predictions"] == {"a": tmp_path / "a.nii.gz"}  # read again, as files
    assert kept["steps"] == earlier["steps"] and kept["wall_s"] == 171.0 and kept["configuration"] == "2d"
    assert "per_case" not in kept and "mean" not in kept  # the old scores are not carried over
    result = result_fixture(budget_trainer)
    result["rescored_from"] = "old.json"
    assert "Scored again (`--rescore old.json`)" in race_report.race_table(result)


def one_fold(budget_trainer, case, seg_dice, nn_dice, nn_over):
    """A one-fold race record holding out ``case`` (result_fixture's numbers, one case)."""
    result = result_fixture(budget_trainer)
    result.update(fold_of={case: 0}, row_fold={case: 0})
    result["split"] = {"description": f"--val-cases {case}", "folds": [{"train": [], "val": [case]}], "group_by": None}
    seg, nn = result["sides"]["segtool"], result["sides"]["nnunet"]
    seg["per_case"] = {case: {"gm": {"dice": seg_dice, "hd95": 1.0}}}
    seg["own_per_case"] = {case: {"gm": {"dice": seg_dice - 0.01}}}
    nn["per_case"] = {case: {"gm": {"dice": nn_dice, "hd95": 2.0}}}
    nn["folds"][0]["over_deadline_s"] = nn_over
    return result


@pytest.fixture(scope="module")
def race_merge():
    return load_benchmark("race_merge")


def test_one_fold_races_merge_into_one_table_with_means_over_all_held_out_cases(race_merge, race_report,
                                                                                budget_trainer, tmp_path):
    runs = [one_fold(budget_trainer, "9604", 0.9, 0.8, -5.0), one_fold(budget_trainer, "mt1", 0.6, 0.7, -12.0)]
    paths = []
    for i, run in enumerate(runs):
        paths.append(tmp_path / f"fold{i}.json")
        paths[-1].write_text(json.dumps(run))
    merged = race_merge.merge(runs)
    assert merged["sides"]["segtool"]["mean"]["gm"]["dice"] == pytest.approx(0.75)
    assert merged["sides"]["nnunet"]["mean"]["gm"]["dice"] == pytest.approx(0.75)
    assert merged["sides"]["segtool"]["own_mean"]["gm"]["dice"] == pytest.approx(0.74)
    assert merged["sides"]["segtool"]["wall_s"] == 362.0 and merged["sides"]["nnunet"]["wall_s"] == 342.0
    assert merged["fold_of"] == {"9604": 0, "mt1": 1}
    text = race_report.race_table(merged)
    lines = text.splitlines()
    assert "| 9604 | 0 | gm | 0.900 | 0.800 | 1.00 | 2.00 |" in lines and "| mt1 | 1 | gm | 0.600 | 0.700 | 1.00 | 2.00 |" in lines
    assert "| **mean** | | gm | **0.750** (2) | **0.750** (2) | 1.00 | 2.00 |" in lines
    assert "360 s allowed: 2 s over" in text  # two folds of 180 s; 181 s of segtool train each
    assert "nnU-Net fold 1:" in text and "ended 12 s before its deadline" in text
    out = tmp_path / "merged.json"
    assert race_merge.main([*map(str, paths), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["merged_from"] == [str(p) for p in paths]


def test_merging_refuses_runs_that_do_not_belong_together(race_merge, budget_trainer):
    first = one_fold(budget_trainer, "9604", 0.9, 0.8, -5.0)
    with pytest.raises(ValueError, match=r"run 1 runs nnunet, segtool again on an earlier run's split"):
        race_merge.merge([first, one_fold(budget_trainer, "9604", 0.5, 0.5, -1.0)])
    overlapping = one_fold(budget_trainer, "mt1", 0.6, 0.7, -12.0)
    overlapping.update(fold_of={"mt1": 0, "9604": 0})
    with pytest.raises(ValueError, match="case 9604 is held out by run 0 and run 1"):
        race_merge.merge([first, overlapping])
    other_budget = one_fold(budget_trainer, "mt1", 0.6, 0.7, -12.0)
    other_budget["budget_s"] = 5400.0
    with pytest.raises(ValueError, match="budget_s"):
        race_merge.merge([first, other_budget])
    failed = one_fold(budget_trainer, "mt1", 0.6, 0.7, -12.0)
    failed["sides"]["nnunet"] = {"error": "nnUNetv2_train exited 1"}
    assert race_merge.merge([first, failed])["sides"]["nnunet"] == {"error": "run 1: nnUNetv2_train exited 1"}


def test_a_folds_two_sides_run_apart_are_joined_before_the_folds_merge(race_merge, race_report, budget_trainer):
    """At 90 minutes a side a fold's two sides run in different sessions (``--sides segtool`` / ``--sides nnunet``)."""
    def side_only(case, side, seg_dice, nn_dice, cpu="Test CPU, 2 cores usable"):
        run = one_fold(budget_trainer, case, seg_dice, nn_dice, -5.0)
        run["sides"] = {side: run["sides"][side]}
        run["order"], run["cpu"] = [side], cpu
        return run

    runs = [side_only("9604", "nnunet", 0.9, 0.8), one_fold(budget_trainer, "mt1", 0.6, 0.7, -12.0),
            side_only("9604", "segtool", 0.9, 0.8)]
    merged = race_merge.merge(runs)
    assert merged["fold_of"] == {"9604": 0, "mt1": 1}  # fold 0: the first split named, its two runs joined
    assert merged["sides"]["segtool"]["mean"]["gm"]["dice"] == pytest.approx(0.75)
    assert merged["sides"]["nnunet"]["mean"]["gm"]["dice"] == pytest.approx(0.75)
    assert merged["sides"]["nnunet"]["wall_s"] == 342.0 and merged["cpu"] == "Test CPU, 2 cores usable"
    assert "| 9604 | 0 | gm | 0.900 | 0.800 | 1.00 | 2.00 |" in race_report.race_table(merged).splitlines()
    alone = race_merge.merge([side_only("9604", "segtool", 0.9, 0.8), side_only("9604", "nnunet", 0.9, 0.8, "Other")])
    assert set(alone["sides"]) == {"segtool", "nnunet"}
    assert alone["cpu"] == "Other / Test CPU, 2 cores usable (the runs differ)"
    with pytest.raises(ValueError, match="run 1 runs segtool again"):
        race_merge.merge([side_only("9604", "segtool", 0.9, 0.8), side_only("9604", "segtool", 0.5, 0.5)])
    # a fold whose nnU-Net side is still to run: nnU-Net's means over the other fold, and the table says so
    half = race_merge.merge([side_only("9604", "segtool", 0.9, 0.8), one_fold(budget_trainer, "mt1", 0.6, 0.7, -1.0)])
    assert half["sides"]["nnunet"]["folds_not_run"] == [0] and "folds_not_run" not in half["sides"]["segtool"]
    assert half["sides"]["nnunet"]["mean"]["gm"]["dice"] == pytest.approx(0.7)
    assert [f["fold"] for f in half["sides"]["nnunet"]["folds"]] == [1]
    assert half["sides"]["segtool"]["mean"]["gm"]["dice"] == pytest.approx(0.75)
    table = race_report.race_table(half)
    assert "**nnU-Net not run yet in fold(s) 0**: its means, wall time and budget are over its other folds only." in table
    lines = table.splitlines()
    assert "| 9604 | 0 | gm | 0.900 | - | 1.00 | - |" in lines
    assert "| **mean** | | gm | **0.750** (2) | **0.700** (1) | 1.00 | 2.00 |" in lines
    nn_time = next(line for line in lines if line.startswith("| nnU-Net | "))
    assert "180 s allowed" in nn_time  # one fold's budget, not two
    failed = side_only("9604", "nnunet", 0.9, 0.8)
    failed["sides"]["nnunet"] = {"error": "nnUNetv2_train exited 1"}
    assert race_merge.merge([failed, one_fold(budget_trainer, "mt1", 0.6, 0.7, -1.0)])["sides"]["nnunet"] == {
        "error": "run 0: nnUNetv2_train exited 1"}


def test_merging_reads_an_infinite_distance_back_from_the_records_json(race_merge, race_report, budget_trainer,
                                                                        tmp_path):
    """A record's JSON holds an infinite HD95 (one mask empty) as "inf"; merged, it is infinite again."""
    runs = [one_fold(budget_trainer, "9604", 0.9, 0.8, -5.0), one_fold(budget_trainer, "mt1", 0.6, 0.0, -12.0)]
    runs[1]["sides"]["nnunet"]["per_case"]["mt1"]["gm"]["hd95"] = math.inf
    paths = [tmp_path / "fold0.json", tmp_path / "fold1.json"]
    for path, run in zip(paths, runs):
        path.write_text(json.dumps(race_report.json_safe(run)))
    assert '"hd95": "inf"' in paths[1].read_text()
    out = tmp_path / "merged.json"
    assert race_merge.main([*map(str, paths), "--json", str(out)]) == 0
    table = json.loads(out.read_text())["table"].splitlines()
    assert "| mt1 | 1 | gm | 0.600 | 0.000 | 1.00 | ∞ |" in table
    assert "| **mean** | | gm | **0.750** (2) | **0.400** (2) | 1.00 | 2.00 (1 ∞) |" in table


def test_race_table_says_the_final_validation_is_not_counted(race_report, budget_trainer):
    result = result_fixture(budget_trainer)
    fold = result["sides"]["nnunet"]["folds"][0]
    del fold["trainer"]["validation_reserve_s"]  # the trainer since 2026-12-07 evening reserves nothing
    fold["final_validation_s"] = 523.0
    text = race_report.race_table(result)
    assert ("nnU-Net fold 0: 4 epoch(s) of 6 iteration(s) (+1 validation); training ended 9 s before its deadline; "
            "final validation (the held-out prediction, not counted) 523 s;") in text
    assert "reserved" not in text
    nnunet = result["sides"]["nnunet"]
    nnunet["steps"][1]["wall_s"], nnunet["prediction_s"], nnunet["wall_s"] = 693.0, 523.0, 171.0
    assert ("| nnU-Net | 171 s | conversion 1 s; nnUNetv2_train fold 0 693 s; less its final validation 523 s "
            "(not counted) | 2.44 GB | 2.93 GB | 180 s allowed: 9 s unused |") in race_report.race_table(result).splitlines()

"""The planner on hand-made fingerprints, the budget, overrides, the fingerprint of real files, and folds.

The planner is given a device as a function: seconds per step of a candidate. Tests use one
proportional to `planner.cost` (a fixed speed), so each decision below follows from the
fingerprint and the budget alone.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from segtool.errors import UsageError
from segtool.training.cross_validation import assign_folds
from segtool.training.plan import TrainingPlan
from segtool.training.plan_grid import plan_grid
from segtool.training.planner import MIN_STEPS, STEP_TIME_MARGIN, Candidate, TaskFacts, choose, cost, make_plan
from segtool.training.planning import apply_overrides, parse_budget


def device(seconds_per_unit: float = 2e-7):
    """A device whose step time is proportional to the planner's cost model (and which counts its calls)."""
    calls = []

    def measure(candidate):
        calls.append(candidate)
        return cost(candidate) * seconds_per_unit

    measure.calls = calls
    return measure


def channel(name="mri", outside=None, outside_share=0.0, cases=4, low=0.0):
    return {"name": name, "image": {"mean": 100.0, "std": 30.0, "percentile_00_5": low, "median": 90.0,
                                    "percentile_99_5": 300.0},
            "foreground": {"mean": 150.0, "std": 20.0}, "constant_outside_cases": cases if outside is not None else 0,
            "nonzero_outside_cases": cases if outside not in (None, 0.0) else 0,
            "outside_values": [] if outside is None else [outside], "median_outside_share": outside_share,
            "min": low, "max": 400.0}


def case(labels=(1,), pieces=1):
    largest = 1.0 if pieces == 1 else 0.6
    return {"objects": {"labels": {str(v): {"components": pieces, "largest_share": largest} for v in labels},
                        "union_components": pieces, "union_largest_share": largest}}


def fingerprint(shape=(160, 160, 120), spacing=(1.0, 1.0, 1.0), channels=None, fg_extent=(60.0, 60.0, 50.0),
                thickness=20.0, cases=4, foreground_share=0.02, empty=0.0, labels=(1,), pieces=1):
    spacing = list(spacing)
    return {
        "ndim": len(shape), "photo": False, "channels": channels or [channel(cases=cases)], "cases": cases,
        "cases_read": cases, "median_shape": list(map(float, shape)), "median_spacing": spacing,
        "anisotropy": max(spacing) / min(spacing), "median_extent_mm": [n * s for n, s in zip(shape, spacing)],
        "median_foreground_extent_mm": list(fg_extent), "foreground_thickness_mm": thickness,
        "foreground_share": foreground_share, "empty_case_share": empty, "labels": {},
        "per_case": [case(labels, pieces) for _ in range(cases)],
    }


def facts(ndim=3, channels=("mri",), labels=None, regions=None, photo=False, relabel=None):
    labels = labels or {1: "thing"}
    return TaskFacts("t", ndim, tuple(channels), labels, dict(regions or {}), photo, relabel)


def plan(fp, task=None, budget=30 * 60, subjects=4, measure=None) -> TrainingPlan:
    return make_plan(fp, task or facts(), budget, measure or device(), subjects)


def test_anisotropic_volumes_go_slice_wise_along_the_coarse_axis():
    p = plan(fingerprint(shape=(320, 320, 24), spacing=(0.5, 0.5, 5.0), fg_extent=(40, 40, 100), thickness=8))
    assert p.network_dims == 2 and p.slice_axis == 2
    assert p.target_spacing == [0.5, 0.5, None]
    assert "anisotropic" in p.reasons["network_dims"]
    assert len(p.patch_size) == 2 and all(s % 16 == 0 for s in p.patch_size)


def test_a_thin_structure_gets_a_finer_in_plane_grid_at_most_twice_the_median():
    p = plan(fingerprint(shape=(60, 60, 15), spacing=(0.6, 0.6, 3.0), fg_extent=(10, 10, 45), thickness=1.8))
    assert p.slice_axis == 2
    assert p.target_spacing[:2] == [0.3, 0.3]  # 1.8 mm / 6 voxels, the 2x limit is 0.3 too
    thick = plan(fingerprint(shape=(60, 60, 15), spacing=(0.6, 0.6, 3.0), fg_extent=(10, 10, 45), thickness=12))
    assert thick.target_spacing[:2] == [0.6, 0.6]


def test_slices_cover_the_context_where_it_fits_in_the_slice_and_the_slice_where_it_does_not():
    """spinal-gm's shape: a 10 mm gray matter in a 36 x 32 mm crop; the patch covers 1.5x the labelled
    extent (15 mm: 51 voxels at 0.293 mm), never less than the extent itself. disc's: the labelled column
    spans the sagittal slice one way (1.5 x 149 mm > 221 mm): the slice, as before."""
    gm = plan(fingerprint(shape=(61, 55, 17), spacing=(0.586, 0.586, 3.0), fg_extent=(10.0, 10.0, 51.0),
                          thickness=1.17))
    assert gm.network_dims == 2 and gm.slice_axis == 2 and gm.target_spacing[:2] == [0.293, 0.293]
    assert "of the context (1.5x the labelled extent" in gm.reasons["patch_size"]
    assert all(10.0 / 0.293 <= n <= 56 for n in gm.patch_size)  # the extent (34 voxels) up to the rounded context
    disc = plan(fingerprint(shape=(67, 221, 221), spacing=(1.0, 1.0, 1.0), fg_extent=(43.0, 51.0, 149.0),
                            thickness=4.9), measure=device(5e-5))
    assert disc.network_dims == 2 and disc.slice_axis == 0 and "of the slice" in disc.reasons["patch_size"]


def test_isotropic_volumes_go_3d_when_the_budget_buys_it_and_2d_when_it_does_not():
    fp = fingerprint()
    fast = plan(fp, measure=device(2e-8))
    assert fast.network_dims == 3 and fast.slice_axis is None and len(fast.patch_size) == 3
    assert fast.batch_size == 2
    slow = plan(fp, measure=device(5e-5))
    assert slow.network_dims == 2 and slow.slice_axis == 2  # the thinnest side of the field of view
    assert "2D slices" in slow.reasons["network_dims"]
    longer = plan(fp, budget=40 * 3600, measure=device(5e-5))
    assert longer.network_dims == 3


def brats_like(rim_largest_share: float) -> dict:
    """BraTS's fingerprint: a 14 mm-thick tumour (1.5x its extent is the context) with a 4.5 mm enhancing rim."""
    fp = fingerprint(shape=(240, 240, 155), fg_extent=(58.0, 91.5, 75.0), thickness=14.3, labels=(1, 4))
    fp["labels"] = {"1": {"name": "core", "median_thickness_mm": 12.0, "median_largest_share": 0.9},
                    "4": {"name": "rim", "median_thickness_mm": 4.5, "median_largest_share": rim_largest_share}}
    for one in fp["per_case"]:
        one["objects"]["labels"]["4"]["largest_share"] = rim_largest_share
    return fp


def test_the_thinnest_solid_label_bounds_the_3d_spacing_and_the_patch_gives_up_context_instead():
    """A device on which 600 steps of a 3D patch of 64^3 voxels (batch 2, width 16) fit in 30 minutes,
    not of 80^3: the context (a 110 mm cube: the tumour is compact) then costs 1.72 mm; a solid 4.5 mm
    rim asks for 3 voxels (1.5 mm) and gets them, the patch covering less (never less than the
    labelled extent). A rim in fragments does not count."""
    measure = device(3.3e-6)
    solid = plan(brats_like(0.98), task=facts(labels={1: "core", 4: "rim"}), measure=measure)
    assert solid.network_dims == 3
    assert solid.target_spacing == [1.5, 1.5, 1.5]
    assert "3 voxels across the rim" in solid.reasons["target_spacing"]
    field = [n * 1.5 for n in solid.patch_size]
    assert all(f >= fg for f, fg in zip(field, (58.0, 91.5, 75.0)))  # at least the labelled extent
    fragments = plan(brats_like(0.3), task=facts(labels={1: "core", 4: "rim"}), measure=measure)
    assert fragments.network_dims == 3 and fragments.target_spacing[0] == pytest.approx(1.72, abs=0.01)
    assert "1.5x the labelled extent" in fragments.reasons["target_spacing"]


def test_a_compact_object_gets_a_cubic_field_and_an_elongated_one_follows_its_shape():
    """A tumour-like object 40x70x55 mm (under 2x longer one way than another): its per-axis medians
    come from different cases, so the field is a cube of the same volume as 1.5x its extent (80 mm).
    A cord-like one 20x20x100 mm keeps its shape (30x30x150 mm)."""
    compact = plan(fingerprint(fg_extent=(40.0, 70.0, 55.0)), measure=device(2e-8))
    side = 1.5 * (40.0 * 70.0 * 55.0) ** (1 / 3)
    assert compact.network_dims == 3 and compact.target_spacing == [1.0, 1.0, 1.0]
    assert len(set(compact.patch_size)) == 1 and side <= compact.patch_size[0] < side + 8
    assert "a cube of 1.5x the labelled extent's volume" in compact.reasons["patch_size"]
    elongated = plan(fingerprint(shape=(160, 160, 200), fg_extent=(20.0, 20.0, 100.0), thickness=8.0),
                     measure=device(2e-8))
    assert elongated.network_dims == 3 and elongated.target_spacing == [1.0, 1.0, 1.0]
    assert elongated.patch_size[0] == elongated.patch_size[1] < 40 and elongated.patch_size[2] >= 150
    assert "(1.5x the labelled extent)" in elongated.reasons["patch_size"]


def test_a_field_too_large_for_any_3d_patch_goes_2d_even_with_no_labelled_foreground():
    """No labels at all (thickness None): the context is the whole 600 mm image, which no 3D patch holds
    at 2x the spacing; the reason says so instead of failing to format a missing thickness."""
    grid = plan_grid(fingerprint(shape=(600, 600, 600), fg_extent=(0.0, 0.0, 0.0), thickness=None), facts())
    assert {o["dims"] for o in grid["options"]} == {2}
    assert "no labelled foreground" in grid["reasons"]["network_dims"]


def test_more_budget_buys_more_steps_or_a_larger_network():
    fp = fingerprint(shape=(320, 320, 24), spacing=(0.5, 0.5, 5.0))
    short, long = plan(fp, budget=10 * 60), plan(fp, budget=120 * 60)
    assert long.steps > short.steps or (long.network_args["features"][0] > short.network_args["features"][0])
    assert long.max_minutes > short.max_minutes


def test_only_affordable_candidates_are_measured_and_the_first_affordable_is_taken():
    measure = device(2e-6)
    p = plan(fingerprint(), measure=measure)
    assert len(measure.calls) <= 4  # the cheapest of each kind, then only those predicted affordable
    timed = cost(measure.calls[-1]) * 2e-6
    assert p.seconds_per_step == pytest.approx(timed * STEP_TIME_MARGIN, rel=1e-3)  # the trainer's step, not the timer's
    assert p.measurements[-1]["measured_seconds"] == pytest.approx(timed, rel=1e-3)


@pytest.mark.parametrize("timer_steps, taken", [(1150, False), (1250, True)])
def test_the_margin_counts_the_trainer_s_steps_and_keeps_the_old_bar_in_the_timer_s(timer_steps, taken):
    """A 2D candidate must buy MIN_STEPS (1,000) of the trainer's steps, which run STEP_TIME_MARGIN slower
    than the timer's: 1,150 timed steps (958 trained) are not enough, 1,250 (1,041) are; as under the
    timer's 1,200 before the margin."""
    one = Candidate(2, (128, 128), (16, 32, 64, 128), 8, 1, 2, label="only")
    train_seconds = 600.0
    chosen, log = choose([({}, one)], lambda c: train_seconds / timer_steps, train_seconds, 30.0)
    assert MIN_STEPS[2] == 1000 and (chosen is not None) == taken
    assert log[0]["steps_in_budget"] == int(timer_steps / STEP_TIME_MARGIN)


@pytest.mark.parametrize("outside, share, expected", [
    (-3.62, 0.83, "zscore-foreground"),  # a z-scored copy: -mean/std outside the brain
    (0.0, 0.6, "zscore-foreground"),  # a raw skull-stripped scan
    (97.0, 0.03, "zscore"),  # a constant border strip is not an outside
    (None, 0.0, "zscore"),
])
def test_normalisation_follows_the_outside_of_the_image(outside, share, expected):
    p = plan(fingerprint(channels=[channel(outside=outside, outside_share=share)]))
    assert p.normalization == expected


def test_ct_ranges_are_clipped_by_percentiles():
    p = plan(fingerprint(channels=[channel(low=-1024.0)]))
    assert p.normalization == "percentile"


def test_four_mri_channels_with_regions_get_region_dice_and_the_strong_recipe():
    names = ("flair", "t1", "t1c", "t2")
    fp = fingerprint(channels=[channel(n, outside=0.0, outside_share=0.8) for n in names], labels=(1, 2, 3), pieces=5)
    task = facts(channels=names, labels={1: "necrosis", 2: "edema", 3: "enhancing"},
                 regions={"wt": (1, 2, 3), "tc": (1, 3), "et": (3,)})
    p = plan(fp, task, subjects=20)
    assert p.normalization == "zscore-foreground" and p.region_dice and p.loss == "region-dice+ce"
    assert p.augmentation == "mri-strong" and p.threshold is None
    assert not p.keep_largest and p.keep_largest_union == []  # five pieces
    many = plan(fp, task, subjects=400)
    assert many.augmentation == "default"


def test_rgb_photos_get_rgb_statistics_photo_augmentation_and_a_fixed_input():
    fp = fingerprint(shape=(600, 400), spacing=(1.0, 1.0), fg_extent=(300, 200), channels=[
        channel(c) for c in ("red", "green", "blue")])
    fp["photo"] = True
    p = plan(fp, facts(ndim=2, channels=("red", "green", "blue"), photo=True), subjects=900)
    assert p.normalization == "rgb" and p.augmentation == "photo"
    assert p.input_size == p.patch_size and p.input_size[0] > p.input_size[1]  # keeps the aspect
    assert all(s % 32 == 0 for s in p.input_size)


def test_labels_in_one_piece_keep_the_largest_component_and_position_names_never_flip():
    fp = fingerprint(labels=(1, 2), pieces=1)
    p = plan(fp, facts(labels={1: "a", 2: "b"}, relabel="S"), subjects=100)
    assert p.keep_largest and p.augmentation == "mri-strong"


def test_parse_budget():
    assert parse_budget("30m") == 1800 and parse_budget("1h30m") == 5400 and parse_budget("90s") == 90
    assert parse_budget("1.5h") == 5400 and parse_budget("45") == 2700 and parse_budget("2min") == 120
    for bad in ("", "soon", "0m", "-5"):
        with pytest.raises(UsageError):
            parse_budget(bad)


def test_hand_set_values_win_and_are_recorded():
    p = plan(fingerprint(shape=(320, 320, 24), spacing=(0.5, 0.5, 5.0)))
    apply_overrides(p, {"patch_size": (64, 64), "epochs": 3, "lr": 3e-4})
    assert p.patch_size == [64, 64] and p.steps == 3 * p.steps_per_epoch and p.lr == 3e-4
    assert set(p.overridden) == {"patch_size", "epochs", "lr"}
    rows = {what: value for what, value, _ in p.table()}
    assert rows["patch"].endswith("(by hand)") and not rows["batch"].endswith("(by hand)")
    with pytest.raises(UsageError, match="2D"):
        apply_overrides(p, {"patch_size": (64, 64, 64)})


def test_a_plan_survives_json_and_applies_to_a_spec():
    from tiny_task import make_spec

    p = plan(fingerprint(shape=(320, 320, 24), spacing=(0.5, 0.5, 5.0)))
    again = TrainingPlan.from_json(json.loads(json.dumps(p.to_json())))
    assert again == p
    spec = again.apply_to_spec(make_spec("planned-one"))
    assert spec.slice_axis == 2 and spec.patch_size == tuple(p.patch_size) and spec.network == "unet"
    assert spec.postprocess.threshold == 0.5 and spec.normalization == p.normalization


def test_folds_keep_subjects_whole_and_are_seeded():
    names = [f"sub-{s:02d}_{i}" for s in range(7) for i in range(3)]
    folds = assign_folds(names, 3, seed=0, group_by=r"^(sub-\d+)_")
    assert sorted(n for f in folds for n in f) == sorted(names)
    subjects = [{n.split("_")[0] for n in f} for f in folds]
    assert all(not (a & b) for i, a in enumerate(subjects) for b in subjects[i + 1:])
    assert sorted(len(s) for s in subjects) == [2, 2, 3]
    assert assign_folds(names, 3, seed=0, group_by=r"^(sub-\d+)_") == folds
    assert assign_folds(names, 3, seed=1, group_by=r"^(sub-\d+)_") != folds
    with pytest.raises(UsageError, match="only 7 subject"):
        assign_folds(names, 8, seed=0, group_by=r"^(sub-\d+)_")


def test_fingerprint_of_real_files_finds_the_constant_outside_thickness_and_anisotropy(tmp_path):
    import nibabel as nib

    from segtool.training.datasets import discover
    from segtool.training.fingerprint import load_or_compute
    from tiny_task import make_spec

    rng = np.random.default_rng(0)
    for i in range(2):
        label = np.zeros((40, 40, 10), np.uint8)
        label[10:30, 12:15, 2:8] = 1  # a slab 3 voxels (1.5 mm) thick in-plane
        image = np.full(label.shape, -3.5, np.float32)  # a z-scored copy's outside
        image[5:35, 5:35, :] = rng.normal(0.0, 1.0, (30, 30, 10))
        image[label == 1] += 3.0
        affine = np.diag([0.5, 0.5, 4.0, 1.0])
        nib.save(nib.Nifti1Image(image, affine), tmp_path / f"c{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), tmp_path / f"c{i}_seg.nii.gz")
    spec = make_spec("fp-task", channels=("t2",))
    cases = discover(tmp_path, spec.channels).cases
    fp, cached = load_or_compute(spec, cases, None, tmp_path / "model")
    assert not cached and (tmp_path / "model" / "fingerprint.json").is_file()
    assert fp["median_spacing"] == [0.5, 0.5, 4.0] and fp["anisotropy"] == 8.0
    ch = fp["channels"][0]
    assert ch["outside_values"] == [-3.5] and ch["median_outside_share"] > 0.4
    assert fp["foreground_thickness_mm"] == pytest.approx(1.5, abs=0.25)
    assert fp["labels"]["1"]["one_component_share"] == 1.0
    assert fp["median_foreground_extent_mm"] == [10.0, 1.5, 24.0]
    again, cached = load_or_compute(spec, cases, None, tmp_path / "model")
    assert cached and again["data_key"] == fp["data_key"]
    p = make_plan(fp, TaskFacts.of(spec), 600, device(), 2)
    assert p.normalization == "zscore-foreground" and p.slice_axis == 2
    assert 0.25 <= p.target_spacing[0] < 0.3 and p.target_spacing[1] == p.target_spacing[0]  # 3 voxels: finer


def test_fingerprint_labels_carry_the_median_largest_piece_share_and_older_caches_are_recomputed(tmp_path, monkeypatch):
    import nibabel as nib

    from segtool.training import fingerprint as fingerprint_module
    from segtool.training.datasets import discover
    from tiny_task import make_spec

    for i, second_slices in enumerate((0, 1, 2)):  # the largest piece holds 1, 72/108 and 72/144 of the label
        label = np.zeros((24, 24, 8), np.uint8)
        label[2:8, 2:8, 2:4] = 1  # 72 voxels
        label[14:20, 14:20, 4:4 + second_slices] = 1  # a second piece of 36 voxels a slice
        nib.save(nib.Nifti1Image(np.ones(label.shape, np.float32) + label, np.eye(4)), tmp_path / f"c{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), tmp_path / f"c{i}_seg.nii.gz")
    spec = make_spec("fp-pieces", channels=("t2",))
    cases = discover(tmp_path, spec.channels).cases
    fp, _ = fingerprint_module.load_or_compute(spec, cases[:2], None, tmp_path / "two")
    assert fp["labels"]["1"]["median_largest_share"] == pytest.approx((1.0 + 2 / 3) / 2)  # a median of two, not the upper
    fp, _ = fingerprint_module.load_or_compute(spec, cases, None, tmp_path / "three")
    assert fp["labels"]["1"]["median_largest_share"] == pytest.approx(2 / 3)
    assert fp["version"] == fingerprint_module.FINGERPRINT_VERSION
    monkeypatch.setattr(fingerprint_module, "FINGERPRINT_VERSION", fingerprint_module.FINGERPRINT_VERSION - 1)
    older, cached = fingerprint_module.load_or_compute(spec, cases, None, tmp_path / "three")
    assert not cached and older["data_key"] != fp["data_key"]  # another version's cache is never reused


def test_the_step_timer_measures_real_steps_and_picks_the_faster_thread_count():
    import torch

    from segtool.training.plan_measure import StepTimer
    from segtool.training.planner import Candidate

    before = torch.get_num_threads()
    try:
        timer = StepTimer("cpu", "fp32", steps=1)
        probe = Candidate(2, (32, 32), (4, 8), 2, 1, 2, "probe", "mri-strong")
        threads = timer.pick_threads(probe)
        assert set(timer.thread_timings) == ({1, before} if before > 1 else set())
        assert threads == (min(timer.thread_timings, key=timer.thread_timings.get) if before > 1 else 1)
        assert torch.get_num_threads() == threads
        bigger = Candidate(2, (64, 64), (4, 8), 2, 1, 2, "bigger")
        assert timer(bigger) > 0 and timer.forward_seconds[bigger] > 0
        assert timer(bigger) == timer.cache[bigger]  # measured once
    finally:
        torch.set_num_threads(before)


def test_a_batch_worker_overlaps_augmentation_so_a_step_costs_the_slower_of_the_two(monkeypatch):
    """With a worker beside training, the augmentation runs while the network trains: the step is
    max(network, augmentation), not their sum; without one, their sum. On a clock that only the
    augmentation (0.3 s) and the network step (0.05 s) move, so a busy CPU cannot change the answer."""
    import types

    import torch

    import segtool.training.augment_recipes as recipes
    import segtool.training.plan_measure as plan_measure
    import segtool.training.step as training_step
    from segtool.training.plan_measure import StepTimer
    from segtool.training.planner import Candidate

    clock = [0.0]
    real_apply, real_step = recipes.apply_recipe, training_step.optimisation_step

    def slow_apply(*args, **kwargs):
        clock[0] += 0.3
        return real_apply(*args, **kwargs)

    def network_step(*args, **kwargs):
        clock[0] += 0.05
        return real_step(*args, **kwargs)

    monkeypatch.setattr(recipes, "apply_recipe", slow_apply)
    monkeypatch.setattr(training_step, "optimisation_step", network_step)
    monkeypatch.setattr(plan_measure, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    before = torch.get_num_threads()
    try:
        candidate = Candidate(2, (16, 16), (4, 8), 1, 1, 2, "tiny", "mri-strong")
        apart = StepTimer("cpu", "fp32", steps=2)
        apart.augment_overlaps = True
        together = StepTimer("cpu", "fp32", steps=2)
        together.augment_overlaps = False
        overlapped, summed = apart(candidate), together(candidate)
    finally:
        torch.set_num_threads(before)
    assert overlapped == pytest.approx(0.3)  # the augmentation, the slower of the two
    assert summed == pytest.approx(0.35)  # plus the network step

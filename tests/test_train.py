"""`segtool train`: tiny 2D and 3D tasks train on synthetic data on the CPU.

Covers the model folder (and `segtool run --model-dir` with it), determinism with
--seed, --max-minutes, --resume (which must give the same weights as an
uninterrupted run), the nnU-Net layout with several channels and a labels map, and
the pieces (layouts, labels maps, split, sampling, augmentation, loss) on their own.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segtool.cli import cli
from segtool.errors import UsageError
from segtool.spec import TaskSpec
from tiny_task import app_with

FEATURES = {"features": (4, 8), "strides": (2,)}


def tiny_3d(channels=("t1",), labels=None) -> TaskSpec:
    labels = labels or {1: "ball"}
    return TaskSpec(
        name="tiny-train-3d",
        description="tiny 3D training test task",
        channels=tuple(channels),
        ndim=3,
        labels=labels,
        network="unet",
        model_kwargs=FEATURES,
        patch_size=(16, 16, 16),
        orientation="RAS",
        target_spacing=(1.0, 1.0, 1.0),
        batch_size=2,
    )


def tiny_2d() -> TaskSpec:
    return TaskSpec(
        name="tiny-train-2d",
        description="tiny 2D photo training test task",
        modality="photo (RGB)",
        channels=("red", "green", "blue"),
        ndim=2,
        labels={1: "square"},
        network="unet",
        model_kwargs=FEATURES,
        patch_size=(32, 32),
        orientation=None,
        target_spacing=None,
        normalization="rgb",
        batch_size=2,
        licence="MIT",
    )


def ball_case(rng, shape=(22, 20, 14)) -> tuple[np.ndarray, np.ndarray]:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    centre = np.array([rng.uniform(7, n - 7) for n in shape])[:, None, None, None]
    ball = (((grid - centre) ** 2).sum(0) < 16).astype(np.uint8)
    image = rng.normal(100.0, 10.0, shape) + 80.0 * ball
    return image.astype(np.float32), ball


def write_3d_simple(folder: Path, n: int = 4, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    affine = np.diag([-1.0, 1.0, 1.5, 1.0])  # LAS with thick slices: reoriented and resampled
    for i in range(n):
        image, ball = ball_case(rng)
        nib.save(nib.Nifti1Image(image, affine), folder / f"case{i}.nii.gz")
        nib.save(nib.Nifti1Image(ball, affine), folder / f"case{i}_seg.nii.gz")
    return folder


def write_2d_photos(folder: Path, n: int = 4, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        rgb = rng.integers(0, 90, (40, 36, 3)).astype(np.uint8)
        label = np.zeros((40, 36), np.uint8)
        r, c = rng.integers(4, 20), rng.integers(4, 16)
        label[r : r + 14, c : c + 12] = 1
        rgb[label == 1] = (220, 180, 40)
        Image.fromarray(rgb).save(folder / f"photo{i}.png")
        Image.fromarray(label).save(folder / f"photo{i}_seg.png")
    return folder


def invoke(spec: TaskSpec, *args: str, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args], obj=app_with(spec))
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def train(spec, data, out, *extra, ok=True):
    return invoke(spec, "train", spec.name, data, "-o", out, "--epochs", "2", "--steps-per-epoch", "3", *extra, ok=ok)


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- end to end


def test_train_3d_writes_the_model_folder_and_run_uses_it(tmp_path):
    spec = tiny_3d()
    data = write_3d_simple(tmp_path / "data")
    out = tmp_path / "model"
    result = train(spec, data, out, "--json", "--val-fraction", "0.25", "--dataset", "someone/balls")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs_trained"] == 2 and summary["steps"] == 6
    assert summary["validation"]["cases"] == 1 and "ball" in summary["validation"]["dice"]

    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "README.md", "train_log.jsonl", ".train"}
    from segtool.model_config import ModelConfig

    config = ModelConfig.read(out / "config.json")
    config.check_matches(spec)
    assert config.network == "unet"
    assert config.architecture == {"features": [4, 8], "strides": [2]}
    assert config.seed == 0 and config.segtool_version and config.target_spacing == [1.0, 1.0, 1.0]
    assert set(config.normalization_stats["channels"]) == {"t1"}
    assert config.training["command"].startswith(f"segtool train {spec.name} {data} -o {out} --epochs 2")
    assert config.training["data"]["validation_cases"] and len(config.training["data"]["train_cases"]) == 3

    card = (out / "README.md").read_text(encoding="utf-8")
    from huggingface_hub import ModelCard

    meta = ModelCard(card).data
    assert meta.library_name == "segtool" and meta.license == "other" and meta.pipeline_tag == "image-segmentation"
    assert meta.tags == ["segtool", "image-segmentation", "medical-imaging", "3d", spec.name]
    assert meta.datasets == ["someone/balls"] and meta.metrics == ["dice"]
    assert "| ball |" in card and config.training["command"] in card

    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and [r["step"] for r in log] == [3, 6]
    assert all("validation" in r and "train_loss" in r and "lr" in r for r in log)

    image = data / "case0.nii.gz"
    pred = tmp_path / "pred.nii.gz"
    invoke(spec, "run", spec.name, "--model-dir", out, image, "-o", pred, "--device", "cpu")
    src, got = nib.load(image), nib.load(pred)
    assert got.shape == src.shape and np.allclose(got.affine, src.affine)
    assert set(np.unique(np.asarray(got.dataobj))) <= {0, 1}


def test_train_2d_photos_and_run(tmp_path):
    spec = tiny_2d()
    data = write_2d_photos(tmp_path / "photos")
    out = tmp_path / "model"
    train(spec, data, out, "--val-cases", "photo3", "--patch-size", "32,32", "--lr", "0.01")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["training"]["data"]["validation_cases"] == ["photo3"]
    assert config["patch_size"] == [32, 32]
    assert "license: mit" in (out / "README.md").read_text(encoding="utf-8")
    pred = tmp_path / "pred.png"
    invoke(spec, "run", spec.name, "--model-dir", out, data / "photo0.png", "-o", pred, "--device", "cpu")
    assert np.asarray(Image.open(pred)).shape == (40, 36)


def test_nnunet_layout_with_channels_and_labels_map(tmp_path):
    spec = tiny_3d(channels=("t1", "t2"), labels={1: "core", 2: "edge"})
    data = tmp_path / "Dataset001_Balls"
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        image, ball = ball_case(rng, (18, 18, 18))
        label = np.where(ball == 1, 42, 0).astype(np.int16)
        label[ball == 0] = np.where(rng.random((ball == 0).sum()) < 0.01, 7, 0)  # stray label 7 -> "edge"
        label[:2] = 99  # a source label the map leaves out: background
        nib.save(nib.Nifti1Image(image, np.eye(4)), data / "imagesTr" / f"b{i}_0000.nii.gz")
        nib.save(nib.Nifti1Image(-image, np.eye(4)), data / "imagesTr" / f"b{i}_0001.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), data / "labelsTr" / f"b{i}.nii.gz")
    (data / "dataset.json").write_text(json.dumps({
        "name": "Balls", "channel_names": {"0": "t1", "1": "t2"}, "file_ending": ".nii.gz",
        "labels": {"background": 0, "whatever": 42}, "numTraining": 3,
    }))
    spec_app = spec
    bad = train(spec_app, data, tmp_path / "refused", ok=False)
    assert bad.exit_code == 2 and "--labels-map" in bad.output and "42" in bad.output
    out = tmp_path / "model"
    train(spec_app, data, out, "--labels-map", "42:core,7:2", "--epochs", "1", "--steps-per-epoch", "2")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["training"]["labels_map"] == "7:2,42:1"
    assert config["training"]["data"]["layout"] == "nnunet" and config["training"]["data"]["name"] == "Balls"
    assert set(config["normalization_stats"]["channels"]) == {"t1", "t2"}


# --------------------------------------------------------------------------- reproducibility


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted 2-epoch run of the 2D task: data folder and model folder."""
    root = tmp_path_factory.mktemp("reference")
    data = write_2d_photos(root / "photos")
    out = root / "model"
    train(tiny_2d(), data, out, "--seed", "3", "--val-fraction", "0")
    return data, out


def test_same_seed_gives_the_same_weights(reference_run, tmp_path):
    data, reference = reference_run
    again = tmp_path / "again"  # batches depend on (seed, step) only, not on who makes them
    train(tiny_2d(), data, again, "--seed", "3", "--val-fraction", "0", "--num-workers", "2")
    assert same_weights(weights(reference), weights(again))
    other = tmp_path / "other"
    train(tiny_2d(), data, other, "--seed", "4", "--val-fraction", "0")
    assert not same_weights(weights(reference), weights(other))


def test_max_minutes_then_resume_continues_from_the_saved_step(reference_run, tmp_path):
    data, reference = reference_run
    out = tmp_path / "model"
    stopped = train(tiny_2d(), data, out, "--seed", "3", "--val-fraction", "0", "--max-minutes", "0.00001", "--json")
    summary = json.loads(stopped.stdout.strip().splitlines()[-1])
    assert summary["stopped"] == "max-minutes" and summary["steps"] == 1
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert log[-1]["partial"] and log[-1]["stopped"] == "max-minutes" and log[-1]["step"] == 1

    refused = train(tiny_2d(), data, out, "--seed", "3", ok=False)
    assert refused.exit_code != 0 and "--resume" in refused.output

    resumed = train(tiny_2d(), data, out, "--resume", "--json")
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 6 and summary["epochs_trained"] == 2 and summary["stopped"] is None
    assert "resuming at step 1" in resumed.output
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["epoch"], r["step"]) for r in log] == [(1, 1), (1, 3), (2, 6)]
    assert same_weights(weights(reference), weights(out))


def test_resume_without_checkpoint_is_a_one_line_error(tmp_path):
    spec = tiny_2d()
    data = write_2d_photos(tmp_path / "photos", n=2)
    result = train(spec, data, tmp_path / "nothing", "--resume", ok=False)
    assert result.exit_code == 2 and "no checkpoint" in result.output


# --------------------------------------------------------------------------- pieces


def test_simple_layout_discovery(tmp_path):
    from segtool.training.datasets import discover

    for name in ("a.nii.gz", "a_seg.nii.gz", "b_0000.nii.gz", "b_0001.nii.gz", "b_seg.nii.gz",
                 "c_t1.nii.gz", "c_t2.nii.gz", "c_seg.nii.gz", "unlabelled.nii.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    ds = discover(tmp_path, ("t1", "t2"))
    assert ds.layout == "simple" and ds.names == ["a", "b", "c"]
    assert [p.name for p in ds.cases[1].images] == ["b_0000.nii.gz", "b_0001.nii.gz"]
    assert [p.name for p in ds.cases[2].images] == ["c_t1.nii.gz", "c_t2.nii.gz"]
    assert ds.ignored == ("unlabelled",)


def test_nnunet_layout_errors(tmp_path):
    from segtool.training.datasets import DataLayoutError, discover

    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "imagesTr" / "x_0000.nii.gz").write_bytes(b"")
    (tmp_path / "imagesTr" / "x_0002.nii.gz").write_bytes(b"")
    (tmp_path / "labelsTr" / "x.nii.gz").write_bytes(b"")
    with pytest.raises(DataLayoutError, match="channels"):
        discover(tmp_path, ("a",))
    with pytest.raises(DataLayoutError, match="no labelled cases"):
        discover(tmp_path / "imagesTr", ("a",))


def test_labels_map_parsing(tmp_path):
    from segtool.labels_map import parse_labels_map
    from segtool.training.datasets import map_from_dataset_json

    labels = {1: "csf", 2: "gm", 3: "wm"}
    assert parse_labels_map("4:1, 43:csf,5-6:gm", {1: "csf", 2: "gm"}) == {4: 1, 43: 1, 5: 2, 6: 2}
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"csf": [4, 43], "2": [3, 42], "41": "wm"}))
    assert parse_labels_map(str(path), labels) == {4: 1, 43: 1, 3: 2, 42: 2, 41: 3}
    # an inline map longer than a file name may be (a model's recorded map of 59 source values)
    long_map = ",".join(f"{v}:{1 + v % 3}" for v in range(100, 160))
    assert len(long_map) > 255
    assert parse_labels_map(long_map, labels) == {v: 1 + v % 3 for v in range(100, 160)}
    for text, message in (("4", "SOURCE:TARGET"), ("4:9", "outside"), ("4:bone", "label name"),
                          ("x:1", "range"), ("4:1,4:2", "twice")):
        with pytest.raises(UsageError, match=message):
            parse_labels_map(text, labels)
    assert map_from_dataset_json({"labels": {"background": 0, "wm": 1, "gm": 2, "csf": 3}}, labels) == {3: 1, 2: 2, 1: 3}
    assert map_from_dataset_json({"labels": {"0": "background", "1": "csf", "2": "gm", "3": "wm"}}, labels) is None


def test_split_is_seeded_and_by_case():
    from segtool.training.datasets import split_cases

    names = [f"c{i}" for i in range(10)]
    train_a, val_a = split_cases(names, seed=1, val_fraction=0.3)
    assert split_cases(reversed(names), seed=1, val_fraction=0.3) == (train_a, val_a)
    assert len(val_a) == 3 and not set(train_a) & set(val_a) and set(train_a) | set(val_a) == set(names)
    assert split_cases(names, seed=2, val_fraction=0.3)[1] != val_a
    assert split_cases(["a", "b"], seed=0, val_fraction=0.01)[1] != []
    assert split_cases(["a"], seed=0, val_fraction=0.5) == (["a"], [])
    assert split_cases(names, seed=0, val_cases=["c9"]) == (names[:9], ["c9"])
    with pytest.raises(UsageError, match="unknown"):
        split_cases(names, seed=0, val_cases=["nope"])


class _Source:
    def __init__(self, image, label):
        from segtool.training.prepare import foreground_positions

        self.name, self.image, self.label = "s", image, label
        self.foreground = foreground_positions(label, "s")


def test_sampler_oversamples_foreground_and_pads_small_volumes():
    from segtool.training.sampling import PatchSampler

    label = np.zeros((40, 40, 40), np.uint8)
    label[30:32, 5:7, 20:22] = 1
    image = np.random.default_rng(0).normal(size=(2, 40, 40, 40)).astype(np.float32)
    sampler = PatchSampler([_Source(image, label)], (8, 8, 8), batch_size=3, foreground_fraction=0.33)
    rng = np.random.default_rng(0)
    for _ in range(20):
        images, labels = sampler.sample(rng)
        assert images.shape == (3, 2, 8, 8, 8) and labels.shape == (3, 8, 8, 8)
        assert labels[2].any()  # the last third of the batch is centred on the label
    small = PatchSampler([_Source(image[:, :5, :6, :7], label[:5, :6, :7])], (8, 8, 8), batch_size=2)
    images, labels = small.sample(rng)
    assert images.shape == (2, 2, 8, 8, 8)
    assert (images[0] == 0).sum() >= 2 * (8**3 - 5 * 6 * 7)  # padded with zeros


def test_augmentation_keeps_shapes_and_label_values():
    import torch

    from segtool.training.augment import AugmentSettings, augment_batch

    settings = AugmentSettings(flip_axes=(0, 1, 2), p_rotate=1, p_scale=1, p_elastic=1, p_brightness=1,
                               p_contrast=1, p_noise=1, p_blur=1)
    images = torch.randn(2, 1, 12, 10, 8)
    labels = torch.randint(0, 3, (2, 12, 10, 8))
    a = augment_batch(images, labels, settings, torch.Generator().manual_seed(0))
    b = augment_batch(images, labels, settings, torch.Generator().manual_seed(0))
    assert a[0].shape == images.shape and a[1].shape == labels.shape and a[1].dtype == labels.dtype
    assert set(a[1].unique().tolist()) <= {0, 1, 2}
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], images)
    flips_only = AugmentSettings(flip_axes=(1,), p_rotate=0, p_scale=0, p_brightness=0, p_contrast=0, p_noise=0, p_blur=0)
    x, y = augment_batch(images[:, :, :, :, 0], labels[:, :, :, 0], flips_only, torch.Generator().manual_seed(1))
    for i in range(2):  # each sample is left alone or mirrored left-right, image and label together
        assert torch.equal(x[i], images[i, :, :, :, 0]) and torch.equal(y[i], labels[i, :, :, 0]) or (
            torch.equal(x[i], images[i, :, :, :, 0].flip(2)) and torch.equal(y[i], labels[i, :, :, 0].flip(1))
        )


def test_dice_ce_loss_is_small_for_right_answers():
    import torch

    from segtool.training.loss import DiceCELoss

    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 2:5, 2:5] = 1
    right = torch.nn.functional.one_hot(target, 2).movedim(-1, 1).float() * 20 - 10
    loss = DiceCELoss()
    assert float(loss(right, target)) < 1e-3
    assert float(loss(-right, target)) > 1.5


def test_train_help_and_bad_options(tmp_path):
    spec = tiny_2d()
    assert "--labels-map" in invoke(spec, "train", "--help").output
    data = write_2d_photos(tmp_path / "p", n=2)
    result = train(spec, data, tmp_path / "m", "--patch-size", "32,32,32", ok=False)
    assert result.exit_code == 2 and "patch" in result.output
    result = invoke(spec, "train", "nope", data, "-o", tmp_path / "m", ok=False)
    assert result.exit_code == 2 and "unknown task" in result.output


def test_random_intensity_remap_is_monotone_keeps_the_range_and_changes_contrast():
    """mri-contrast's remap: a random monotone piecewise-linear curve from the image's minimum to its maximum."""
    import torch

    from segtool.training.augment_recipes import random_intensity_remap

    x = torch.linspace(-3.0, 5.0, 1000).reshape(1, 10, 100)
    changed = 0
    for seed in range(10):
        torch.manual_seed(seed)
        y = random_intensity_remap(x)
        assert y.shape == x.shape and y.dtype == torch.float32
        assert abs(float(y.min()) + 3.0) < 1e-5 and abs(float(y.max()) - 5.0) < 1e-5
        assert bool((y.flatten().diff() >= -1e-5).all()), "order of intensities kept"
        changed += not torch.allclose(y, x, atol=1e-3)
        torch.manual_seed(seed)
        assert torch.equal(random_intensity_remap(x), y), "a pure function of the seed"
    assert changed == 10
    flat = torch.full((1, 4, 4), 2.0)
    assert torch.equal(random_intensity_remap(flat), flat)


def test_the_mri_contrast_recipe_adds_the_remap_to_mri_strong():
    import torchio as tio

    from segtool.training.augment_recipes import build_recipe

    strong, contrast = build_recipe("mri-strong", 2, (0,)), build_recipe("mri-contrast", 2, (0,))
    assert len(contrast.transforms) == len(strong.transforms) + 1
    assert isinstance(contrast.transforms[-2], tio.Lambda)  # before the flip


@pytest.mark.parametrize("stop_early", [False, True])
def test_export_checkpoint_writes_the_final_step_and_says_which_weights_were_validated(tmp_path, stop_early):
    import torch

    data = write_2d_photos(tmp_path / "photos", n=6)
    out = tmp_path / "model"
    extra = ("--max-minutes", "0.00001") if stop_early else ()  # stopped by time after its first step
    train(tiny_2d(), data, out, "--seed", "3", "--val-fraction", "0.34", "--val-every", "1", *extra)
    final = tmp_path / "final"
    done = CliRunner().invoke(cli, ["models", "export-checkpoint", str(out), str(final)], obj=app_with(tiny_2d()))
    assert done.exit_code == 0, done.output
    state = torch.load(out / ".train" / "last.pt", map_location="cpu", weights_only=False)
    assert same_weights(weights(final), {k.removeprefix("module."): v for k, v in state["model"].items()})
    training = json.loads((final / "config.json").read_text())["training"]
    assert training["selected"] == f"final step {state['global_step']}"
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert (state["global_step"] < 6) if stop_early else (state["global_step"] == 6)
    # the run validates the step it stops at; the exported config reports that, not the best epoch's
    (record,) = [r for r in log if r.get("step") == state["global_step"] and "validation" in r]
    assert training["validation"] == record["validation"]
    assert training["validation_of"] == f"final step {state['global_step']}"


def test_the_card_counts_a_last_shorter_epoch_among_the_epochs():
    """A budget's run ends with a shorter epoch (2,329 steps of 100: 23 whole, then 29); when that one
    validates best, the card must not say "epoch 24 of 23"."""
    from segtool.training.model_folder import _best_epoch

    leftover = {"best_epoch": 24, "epochs_trained": 23, "steps": 2329, "steps_per_epoch": 100}
    assert _best_epoch(leftover) == "Best epoch 24 of 24 (the last a shorter one of 29 steps)"
    whole = {"best_epoch": 5, "epochs_trained": 20, "steps": 2000, "steps_per_epoch": 100}
    assert _best_epoch(whole) == "Best epoch 5 of 20"

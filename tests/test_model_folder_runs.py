"""The model folder is the one source of truth at run time; slice-wise 2D on 3D; network families in specs.

`segtool train` -> `segtool run --model-dir` end to end, on synthetic volumes, for a
slice-wise task (3D input, 2D network) and a 3D task; the run must use the trained
patch size and normalisation even when the registered spec says otherwise, and a
tampered, NaN-holding or badly configured folder is refused with exit 3.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from segtool.cli import cli
from segtool.errors import InvalidSpecError
from segtool.spec import Postprocess, TaskSpec
from tiny_task import app_with

AFFINE = np.diag([-0.8, 0.8, 3.0, 1.0])  # LAS, thick slices


def slice_spec(**overrides) -> TaskSpec:
    values = dict(
        name="tiny-slices",
        description="tiny slice-wise test task",
        channels=("t2s",),
        ndim=3,
        labels={1: "disk"},
        network="unet",
        model_kwargs={"features": (4, 8), "strides": (2,)},
        slice_axis=2,
        target_spacing=(0.8, 0.8, None),
        patch_size=(16, 16),
        normalization="zscore",
        batch_size=4,
        augmentation="default",
        postprocess=Postprocess(),
        licence="MIT",
    )
    values.update(overrides)
    return TaskSpec(**values)


def volume_3d_spec(**overrides) -> TaskSpec:
    values = dict(
        name="tiny-volume",
        description="tiny 3D test task",
        channels=("t1",),
        ndim=3,
        labels={1: "disk"},
        network="unet",
        model_kwargs={"features": (4, 8), "strides": ((2, 2, 1),)},
        target_spacing=(0.8, 0.8, 3.0),
        patch_size=(16, 16, 4),
        normalization="zscore",
        batch_size=2,
        postprocess=Postprocess(),
        licence="MIT",
    )
    values.update(overrides)
    return TaskSpec(**values)


def disk_case(rng, shape=(28, 26, 5)) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    cx, cy = rng.uniform(8, shape[0] - 8), rng.uniform(8, shape[1] - 8)
    disk = ((x - cx) ** 2 + (y - cy) ** 2 < 20).astype(np.uint8)
    label = np.repeat(disk[..., None], shape[2], axis=2)
    image = rng.normal(100.0, 8.0, shape) + 90.0 * label
    return image.astype(np.float32), label


def write_cases(folder: Path, n: int = 4, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, label = disk_case(rng)
        nib.save(nib.Nifti1Image(image, AFFINE), folder / f"sub-{i // 2}_ses-{i % 2}.nii.gz")
        nib.save(nib.Nifti1Image(label, AFFINE), folder / f"sub-{i // 2}_ses-{i % 2}_seg.nii.gz")
    return folder


def invoke(spec: TaskSpec, *args, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args], obj=app_with(spec))
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def train_folder(spec: TaskSpec, tmp_path: Path, *extra) -> Path:
    data = write_cases(tmp_path / "data")
    out = tmp_path / "model"
    invoke(spec, "train", spec.name, data, "-o", out, "--epochs", "1", "--steps-per-epoch", "2",
           "--group-by", r"^(sub-\d+)", "--precision", "fp32", *extra)
    return out


@pytest.mark.parametrize("make_spec, trained_patch", [(slice_spec, "24,24"), (volume_3d_spec, "24,24,4")])
def test_run_uses_the_trained_patch_size_and_normalisation(tmp_path, monkeypatch, make_spec, trained_patch):
    import segtool.preprocess
    import segtool.sliding_window

    trained = make_spec(normalization="percentile")
    model_dir = train_folder(trained, tmp_path, "--patch-size", trained_patch)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    assert config["normalization"] == "percentile" and config["patch_size"] == [int(p) for p in trained_patch.split(",")]
    assert config["network"] == "unet" and "in_channels" not in config["architecture"]
    assert config["slice_axis"] == trained.slice_axis

    seen = {}
    real_window, real_normalize = segtool.sliding_window.stream_probabilities, segtool.preprocess.normalize

    def recording_window(model, image, settings, *args, **kwargs):
        seen["patch"] = settings.patch_size
        seen["slice_axis"] = settings.slice_axis
        return real_window(model, image, settings, *args, **kwargs)

    def recording_normalize(array, method, **options):
        seen["normalization"] = method
        return real_normalize(array, method, **options)

    monkeypatch.setattr(segtool.sliding_window, "stream_probabilities", recording_window)
    monkeypatch.setattr(segtool.preprocess, "normalize", recording_normalize)
    image, _ = disk_case(np.random.default_rng(7), shape=(30, 27, 4))
    source = tmp_path / "new.nii.gz"
    nib.save(nib.Nifti1Image(image, AFFINE), source)
    registered = make_spec()  # zscore and the default patch: the folder must win
    out = tmp_path / "new_mask.nii.gz"
    invoke(registered, "run", registered.name, source, "--model-dir", model_dir, "-o", out, "--precision", "fp32")
    assert seen == {
        "patch": tuple(int(p) for p in trained_patch.split(",")),
        "slice_axis": trained.slice_axis,
        "normalization": "percentile",
    }
    mask = nib.load(str(out))
    assert mask.shape == image.shape and np.allclose(mask.affine, AFFINE)


def test_a_model_trained_on_the_native_grid_runs_on_it_whatever_the_task_declares(tmp_path, monkeypatch):
    """config.json's ``target_spacing: null`` (a planned model on the images' own grid) wins over the task's
    declared spacing; only a config without the key (an older folder) takes the task's. Before, null meant
    "the task's": a planned brain-tumour-2d model trained on whole 256² slices was run on the plugin's 128²
    and found nothing (the race of 2026-12-07)."""
    import segtool.sliding_window

    model_dir = train_folder(volume_3d_spec(), tmp_path)
    seen = []
    real_window = segtool.sliding_window.stream_probabilities

    def recording_window(model, image, settings, *args, **kwargs):
        seen.append(tuple(image.shape[-3:]))
        return real_window(model, image, settings, *args, **kwargs)

    monkeypatch.setattr(segtool.sliding_window, "stream_probabilities", recording_window)
    image, _ = disk_case(np.random.default_rng(7), shape=(30, 28, 4))
    source = tmp_path / "new.nii.gz"
    nib.save(nib.Nifti1Image(image, np.diag([0.8, 0.8, 3.0, 1.0])), source)
    registered = volume_3d_spec(target_spacing=(1.6, 1.6, 3.0))  # what the task declares: half the resolution
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for name, edit, expected in (("native", lambda c: c.update(target_spacing=None), (30, 28, 4)),
                                 ("older", lambda c: c.pop("target_spacing"), (15, 14, 4)),
                                 ("trained", lambda c: None, (30, 28, 4))):
        changed = dict(config)
        edit(changed)
        config_path.write_text(json.dumps(changed), encoding="utf-8")
        invoke(registered, "run", registered.name, source, "--model-dir", model_dir, "-o", tmp_path / f"{name}.nii.gz",
               "--precision", "fp32")
        assert seen.pop() == expected, name


def test_a_config_without_resize_runs_photos_at_their_own_size():
    from segtool.model_config import ModelConfig
    from tiny_task import make_spec

    spec = make_spec("tiny-photo", ndim=2, input_size=(16, 16))
    native = ModelConfig.for_spec(spec, input_size=None)
    assert native.apply_to(spec).input_size is None
    reread = ModelConfig.from_dict(json.loads(native.to_json()))
    assert "absent_grid_keys" not in json.loads(native.to_json()) and reread.apply_to(spec).input_size is None
    older = {k: v for k, v in json.loads(native.to_json()).items() if k != "input_size"}
    assert ModelConfig.from_dict(older).apply_to(spec).input_size == (16, 16)


def test_group_by_keeps_sessions_of_a_subject_together():
    from segtool.training.datasets import split_cases

    names = [f"sub-{s}_ses-{k}" for s in range(5) for k in range(2)]
    for seed in range(6):
        train, val = split_cases(names, seed, 0.4, group_by=r"^(sub-\d+)")
        subjects = lambda cases: {n.split("_")[0] for n in cases}  # noqa: E731
        assert subjects(train).isdisjoint(subjects(val)) and len(subjects(val)) == 2
    with pytest.raises(Exception, match="splits subject"):
        split_cases(names, 0, val_cases=["sub-1_ses-0"], group_by=r"^(sub-\d+)")


@pytest.fixture(scope="module")
def trained_slices(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    spec = slice_spec()
    model_dir = train_folder(spec, tmp)
    image, _ = disk_case(np.random.default_rng(3))
    source = tmp / "case.nii.gz"
    nib.save(nib.Nifti1Image(image, AFFINE), source)
    return spec, model_dir, source


def copy_folder(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ("model.safetensors", "config.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_tampered_weights_in_model_dir_are_refused(trained_slices, tmp_path):
    spec, model_dir, source = trained_slices
    folder = copy_folder(model_dir, tmp_path / "m")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-3] ^= 0x01  # one flipped bit in the last tensor
    (folder / "model.safetensors").write_bytes(bytes(data))
    out = tmp_path / "out.nii.gz"
    result = invoke(spec, "run", spec.name, source, "--model-dir", folder, "-o", out, ok=False)
    assert result.exit_code == 3 and "sha256" in result.output and not out.exists()
    assert len(result.output.strip().splitlines()) == 1


def test_nan_weights_are_refused_even_with_a_matching_hash(trained_slices, tmp_path):
    from safetensors.torch import load_file, save_file

    from segtool.weights import sha256_file

    spec, model_dir, source = trained_slices
    folder = copy_folder(model_dir, tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    key = sorted(k for k in state if state[k].is_floating_point())[0]
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["weights_sha256"] = sha256_file(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    out = tmp_path / "out.nii.gz"
    result = invoke(spec, "run", spec.name, source, "--model-dir", folder, "-o", out, ok=False)
    assert result.exit_code == 3 and "NaN" in result.output and key in result.output and not out.exists()


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("patch_size", [0, -4, 99999], "patch_size"),
        ("target_spacing", [0.8, -1.0, None], "target_spacing"),
        ("network", "resnet-9000", "unknown family"),
        ("architecture", {"in_channels": 3}, "must not set in_channels"),
        ("slice_axis", 5, "slice_axis"),
        ("normalization", "magic", "normalization"),
    ],
)
def test_bad_config_values_are_one_line_errors_naming_file_and_key(trained_slices, tmp_path, key, value, words):
    spec, model_dir, source = trained_slices
    folder = copy_folder(model_dir, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    result = invoke(spec, "run", spec.name, source, "--model-dir", folder, "-o", tmp_path / "o.nii.gz", ok=False)
    assert result.exit_code == 3
    line = result.output.strip()
    assert "\n" not in line and "config.json" in line and key in line and words in line


def test_spec_refuses_core_arguments_and_unknown_families():
    with pytest.raises(InvalidSpecError, match="tiny-slices.*in_channels"):
        slice_spec(model_kwargs={"in_channels": 1})
    with pytest.raises(InvalidSpecError, match="unknown network family"):
        slice_spec(network="resnet-9000")
    with pytest.raises(InvalidSpecError, match="no 3D form"):
        volume_3d_spec(network="deeplabv3plus")
    with pytest.raises(InvalidSpecError, match="patch_size must have 2"):
        slice_spec(patch_size=(16, 16, 4))


def test_core_supplies_channels_and_classes():
    spec = slice_spec(channels=("a", "b"), labels={1: "x", 2: "y", 3: "z"})
    model = spec.build_network()
    out = model(torch.zeros(1, 2, 20, 18))
    assert tuple(out.shape) == (1, 4, 20, 18)


class CountingModel(torch.nn.Module):
    """A fixed 3x3 2D convolution that records the batch sizes it sees."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.conv(x)


def test_slicewise_inference_batches_slices_and_equals_per_slice_inference():
    from segtool.sliding_window import WindowSettings, sliding_window_inference

    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.normal(size=(1, 23, 19, 7)).astype(np.float32))
    model = CountingModel().eval()
    stacked = sliding_window_inference(model, image, WindowSettings((16, 16), 3, overlap=0.5, batch_size=6, slice_axis=2))
    assert tuple(stacked.shape) == (3, 23, 19, 7)
    assert max(model.batches) == 6, "several slices' windows go through the network in one forward pass"
    for z in range(7):
        single = sliding_window_inference(model, image[..., z], WindowSettings((16, 16), 3, overlap=0.5, batch_size=1))
        assert torch.allclose(stacked[..., z], single, atol=1e-6)
    # Along another axis (sagittal slices of a volume): the slices go back where they came from.
    sagittal = sliding_window_inference(model, image.permute(0, 3, 1, 2),
                                        WindowSettings((16, 16), 3, batch_size=6, overlap=0.5, slice_axis=0))
    assert torch.allclose(sagittal.permute(0, 2, 3, 1), stacked, atol=1e-6)


def test_precision_auto_follows_the_cpu():
    from segtool.errors import UsageError
    from segtool.precision import cpu_has_native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(UsageError):
        resolve_precision("fp16", cpu)
    with pytest.raises(UsageError):
        resolve_precision("fp8", cpu)


def test_bf16_and_fp32_inference_agree_on_a_trained_model(trained_slices, tmp_path):
    spec, model_dir, source = trained_slices
    masks = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.nii.gz"
        invoke(spec, "run", spec.name, source, "--model-dir", model_dir, "-o", out, "--precision", precision)
        masks[precision] = np.asarray(nib.load(str(out)).dataobj)
    differ = np.mean(masks["fp32"] != masks["bf16"])
    assert differ < 0.01


def test_replace_keeps_a_spec_valid():
    spec = slice_spec()
    assert replace(spec, patch_size=(32, 32)).patch_size == (32, 32)
    with pytest.raises(InvalidSpecError):
        replace(spec, slice_axis=None)  # a 2D patch no longer fits a 3D network


def test_train_another_network_family_and_run_it(tmp_path):
    spec = slice_spec()
    model_dir = train_folder(spec, tmp_path, "--network", "attention_unet", "--network-args",
                             '{"features": [4, 8], "strides": [2]}')
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    assert config["network"] == "attention_unet" and config["architecture"] == {"features": [4, 8], "strides": [2]}
    from safetensors.torch import load_file

    assert any("gate" in key or "attention" in key for key in load_file(str(model_dir / "model.safetensors")))
    image, _ = disk_case(np.random.default_rng(5))
    source = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(image, AFFINE), source)
    invoke(spec, "run", spec.name, source, "--model-dir", model_dir, "-o", tmp_path / "x_mask.nii.gz")
    assert (tmp_path / "x_mask.nii.gz").exists()
    bad = invoke(spec, "train", spec.name, tmp_path / "data", "-o", tmp_path / "m2", "--network-args", "{nope", ok=False)
    assert bad.exit_code == 2 and "--network-args" in bad.output
    wrong = invoke(spec, "train", spec.name, tmp_path / "data", "-o", tmp_path / "m3", "--network", "resnet", ok=False)
    assert wrong.exit_code == 2 and "unknown network family" in wrong.output


def biased_folder(tmp_path: Path, spec: TaskSpec) -> Path:
    """A one-conv model that calls everything label 1 unless the image says otherwise (bias +1)."""
    from safetensors.torch import save_file

    from segtool.model_config import ModelConfig

    folder = tmp_path / "biased"
    folder.mkdir()
    weight = torch.zeros(2, 1, 1, 1)
    save_file({"weight": weight, "bias": torch.tensor([0.0, 1.0])}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(ModelConfig.for_spec(spec).to_json(), encoding="utf-8")
    return folder


def conv_factory(spatial_dims, in_channels, out_channels):
    return torch.nn.Conv2d(in_channels, out_channels, 1)


@pytest.mark.parametrize("value", [0.0, 417.0])
def test_a_constant_image_gives_an_empty_mask_and_a_warning(tmp_path, value):
    spec = slice_spec(network=None, model_factory=conv_factory, model_kwargs={})
    folder = biased_folder(tmp_path, spec)
    source = tmp_path / "blank.nii.gz"
    nib.save(nib.Nifti1Image(np.full((20, 18, 3), value, np.float32), AFFINE), source)
    out = tmp_path / "blank_mask.nii.gz"
    result = invoke(spec, "run", spec.name, source, "--model-dir", folder, "-o", out)
    assert not np.asarray(nib.load(str(out)).dataobj).any()  # the model alone would label every voxel
    assert "constant" in result.stderr


def test_an_absurd_voxel_size_is_one_line_not_a_huge_allocation(tmp_path, trained_slices):
    spec, model_dir, _ = trained_slices
    image, _ = disk_case(np.random.default_rng(1))
    source = tmp_path / "huge.nii.gz"
    nib.save(nib.Nifti1Image(image, np.diag([-1e6, 1e6, 3.0, 1.0])), source)
    out = tmp_path / "huge_mask.nii.gz"
    result = invoke(spec, "run", spec.name, source, "--model-dir", model_dir, "-o", out, ok=False)
    assert result.exit_code == 1 and "more than segtool handles" in result.output and not out.exists()


def test_a_config_asking_for_a_huge_network_is_refused_with_exit_3(trained_slices, tmp_path):
    spec, model_dir, source = trained_slices
    folder = copy_folder(model_dir, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["architecture"] = {"features": [100000, 200000], "strides": [2]}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    result = invoke(spec, "run", spec.name, source, "--model-dir", folder, "-o", tmp_path / "o.nii.gz", ok=False)
    assert result.exit_code == 3 and "500 million" in result.output


def test_validation_pools_a_subjects_cases_with_group_by():
    """Dice of the stacked cases, 2·ΣI / (ΣP + ΣG), not the mean of per-slice Dice."""
    from segtool.training.validate import overlap_counts, pool_by_group, summarise

    spec = slice_spec()
    truth = np.zeros((4, 4), dtype=np.uint8)
    truth[:2, :2] = 1  # 4 voxels
    hit = truth.copy()
    speck = np.zeros_like(truth)
    speck[3, 3] = 1  # a slice without tumour where the model marks one pixel
    counts = {"sub-1_a": overlap_counts(spec, hit, truth), "sub-1_b": overlap_counts(spec, speck, np.zeros_like(truth)),
              "sub-2_a": overlap_counts(spec, np.zeros_like(truth), truth)}
    assert counts["sub-1_a"]["disk"] == (4, 4, 4) and counts["sub-1_b"]["disk"] == (0, 1, 0)
    pooled = pool_by_group(spec, counts, r"^(sub-\d+)")
    assert list(pooled) == ["sub-1", "sub-2"]
    assert pooled["sub-1"]["disk"] == {"dice": 2 * 4 / (5 + 4), "hd95": None}  # per-slice mean would say 0.5
    assert pooled["sub-2"]["disk"]["dice"] == 0.0
    result = summarise(spec, pooled, 0.0)
    assert result.mean_dice == pytest.approx((8 / 9 + 0.0) / 2)


def test_training_with_group_by_validates_per_subject(tmp_path):
    model_dir = train_folder(slice_spec(), tmp_path, "--val-fraction", "0.4")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    validation = config["training"]["validation"]
    assert len(validation["per_case"]) == 1 and set(validation["per_case"]) <= {"sub-0", "sub-1"}
    assert all(scores["hd95"] is None for scores in next(iter(validation["per_case"].values())).values())

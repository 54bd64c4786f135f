"""benchmarks/plans_vs_nnunet.py: a segtool training folder as an nnU-Net raw dataset, and the table
that puts nnU-Net's plan beside segtool's. No nnunetv2 here: the plans are a real excerpt."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tiny_task import make_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    loaded = importlib.util.spec_from_file_location("plans_vs_nnunet", ROOT / "benchmarks" / "plans_vs_nnunet.py")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


#: An LPS, anisotropic, slightly shifted affine (voxel axes x, y, z).
AFFINE_LPS = np.array([[-0.8, 0, 0, 10.0], [0, -0.8, 0, -5.0], [0, 0, 2.5, 3.0], [0, 0, 0, 1]])


def write_3d_case(folder: Path, name: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    channels = {ch: rng.normal(100, 20, (12, 10, 6)).astype(np.float32) for ch in ("t1", "t2")}
    label = np.zeros((12, 10, 6), np.uint8)
    label[2:5, 2:5, 1:3] = 3  # source values 3 and 7 become the task's 1 and 2
    label[6:9, 5:8, 3:5] = 7
    label[0, 0, 0] = 9  # a value the map does not name: background
    for ch, array in channels.items():
        nib.save(nib.Nifti1Image(array, AFFINE_LPS), folder / f"{name}_{ch}.nii.gz")
    nib.save(nib.Nifti1Image(label, AFFINE_LPS), folder / f"{name}_seg.nii.gz")
    return channels


def test_3d_simple_folder_becomes_nnunet_raw(bench, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    arrays = {name: write_3d_case(data, name, seed) for seed, name in enumerate(("caseA", "caseB"))}
    spec = make_spec(channels=("t1", "t2"), labels={1: "core", 2: "edge"}, labels_map={3: 1, 7: 2})

    info = bench.convert(spec, data, tmp_path / "raw", dataset_id=991)

    folder = tmp_path / "raw" / "Dataset991_tiny"
    assert info["folder"] == str(folder) and info["cases"] == 2 and not info["linked"]
    assert info["axcodes"] == ["L", "P", "S"]
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        "caseA_0000.nii.gz", "caseA_0001.nii.gz", "caseB_0000.nii.gz", "caseB_0001.nii.gz"]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["caseA.nii.gz", "caseB.nii.gz"]
    assert json.loads((folder / "dataset.json").read_text()) == {
        "channel_names": {"0": "t1", "1": "t2"},
        "labels": {"background": 0, "core": 1, "edge": 2},
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    for name, channels in arrays.items():
        for index, ch in enumerate(("t1", "t2")):
            img = nib.load(folder / "imagesTr" / f"{name}_{index:04d}.nii.gz")
            assert img.shape == (12, 10, 6)
            np.testing.assert_allclose(img.affine, AFFINE_LPS, atol=1e-5)
            np.testing.assert_allclose(img.get_fdata(), channels[ch], rtol=1e-6)
        seg = nib.load(folder / "labelsTr" / f"{name}.nii.gz")
        np.testing.assert_allclose(seg.affine, AFFINE_LPS, atol=1e-5)
        values = np.asarray(seg.dataobj)
        assert set(np.unique(values).tolist()) == {0, 1, 2}
        assert (values[2:5, 2:5, 1:3] == 1).all() and (values[6:9, 5:8, 3:5] == 2).all() and values[0, 0, 0] == 0


def test_2d_photos_become_pseudo_3d_nifti(bench, tmp_path):
    """An RGB PNG and a grey PNG (grey as RGB, as `segtool train` reads it for an RGB task), H x W:
    one NIfTI per channel that nnU-Net (SimpleITK) reads as (1, H, W), spacing 999 on the dummy axis."""
    import SimpleITK as sitk

    data = tmp_path / "photos"
    data.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    grey = rng.integers(0, 255, (20, 30), dtype=np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 3:20] = 1
    Image.fromarray(rgb, "RGB").save(data / "colour.png")
    Image.fromarray(grey, "L").save(data / "grey.png")
    for name in ("colour", "grey"):
        Image.fromarray(mask, "L").save(data / f"{name}_seg.png")
    spec = make_spec(name="photo-task", ndim=2, channels=("r", "g", "b"), normalization="rgb")

    info = bench.convert(spec, data, tmp_path / "raw")

    folder = Path(info["folder"])
    assert folder.name == "Dataset990_photo_task" and info["axcodes"] is None
    assert json.loads((folder / "dataset.json").read_text())["channel_names"] == {"0": "r", "1": "g", "2": "b"}
    expected = {"colour": [rgb[..., c] for c in range(3)], "grey": [grey] * 3}
    for name, channels in expected.items():
        for c, channel in enumerate(channels):
            path = folder / "imagesTr" / f"{name}_{c:04d}.nii.gz"
            img = nib.load(path)
            assert img.shape == (30, 20, 1)  # NIfTI voxels (W, H, 1)
            assert img.header.get_zooms() == (1.0, 1.0, 999.0)
            itk = sitk.ReadImage(str(path))
            assert sitk.GetArrayFromImage(itk).shape == (1, 20, 30)  # what nnU-Net sees: (1, H, W)
            np.testing.assert_array_equal(sitk.GetArrayFromImage(itk)[0], channel)
        seg = sitk.ReadImage(str(folder / "labelsTr" / f"{name}.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(seg)[0], mask)
        assert seg.GetSpacing() == (1.0, 1.0, 999.0)


def test_nnunet_layout_is_linked(bench, tmp_path):
    data = tmp_path / "Dataset001_x"
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir()
    array = np.zeros((6, 5, 4), np.float32)
    nib.save(nib.Nifti1Image(array, np.eye(4)), data / "imagesTr" / "a_0000.nii.gz")
    nib.save(nib.Nifti1Image(array.astype(np.uint8), np.eye(4)), data / "labelsTr" / "a.nii.gz")
    (data / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1"}, "labels": {"background": 0, "bright": 1},
                                                   "numTraining": 7, "file_ending": ".nii.gz"}))

    info = bench.convert(make_spec(), data, tmp_path / "raw")

    folder = Path(info["folder"])
    assert info["linked"] and (folder / "imagesTr").is_symlink() and (folder / "labelsTr").resolve() == (data / "labelsTr").resolve()
    written = json.loads((folder / "dataset.json").read_text())
    assert written["channel_names"] == {"0": "T1"} and written["numTraining"] == 1  # the folder's names, counted cases


#: A real nnUNetPlans.json (nnunetv2 2.8.1 on the spinal-gm training folder), trimmed to what the table reads.
SPINAL_GM_PLANS = {
    "dataset_name": "Dataset990_spinal_gm",
    "original_median_spacing_after_transp": [3.0, 0.5859375, 0.5859374403953552],
    "original_median_shape_after_transp": [17, 59, 61],
    "image_reader_writer": "SimpleITKIO",
    "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2],
    "configurations": {
        "2d": {
            "batch_size": 7, "patch_size": [56, 64], "median_image_size_in_voxels": [55.0, 61.0],
            "spacing": [0.5859375, 0.5859374403953552],
            "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {"n_stages": 4, "features_per_stage": [32, 64, 128, 256],
                                "strides": [[1, 1], [2, 2], [2, 2], [2, 2]]}}},
        "3d_fullres": {
            "batch_size": 2, "patch_size": [20, 56, 64], "median_image_size_in_voxels": [20.0, 55.0, 61.0],
            "spacing": [2.5000016689300537, 0.5859375, 0.5859374403953552],
            "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {"n_stages": 5, "features_per_stage": [32, 64, 128, 256, 320],
                                "strides": [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 1, 2]]}}},
    },
}

SEGTOOL_OUTPUT = {
    "fingerprint": {"median_spacing": [0.5859, 0.5859, 3.0], "median_shape": [61, 59, 17]},
    "plan": {"network_dims": 2, "slice_axis": 2, "target_spacing": [0.25, 0.25, None], "patch_size": [96, 96],
             "network": "unet", "network_args": {"features": [16, 32, 64, 128]}, "batch_size": 8,
             "normalization": "zscore", "steps": 900, "lr": 0.001, "planning_seconds": 12.5,
             "reasons": {"patch_size": "the cord at 0.25 mm fits 96 x 96"}},
}
SPEC = {"name": "spinal-gm", "channels": ["t2s"], "ndim": 3, "orientation": "RAS"}
NNUNET = {"plans": SPINAL_GM_PLANS, "wall_s": {"nnUNetv2_extract_fingerprint": 12.7, "nnUNetv2_plan_experiment": 3.0}}


def rows(text: str) -> dict[str, list[str]]:
    """The markdown table's rows: name -> cells."""
    out = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| |"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[cells[0]] = cells[1:]
    return out


def test_table_puts_nnunet_axes_in_segtools_frame(bench):
    """LAS files: nnU-Net's (z, y, x) comes back as RAS x, y, z; its 2d configuration slices along z."""
    text = bench.report(SPEC, {"output": SEGTOOL_OUTPUT, "wall_s": 14.2}, NNUNET, {"axcodes": ["L", "A", "S"], "wall_s": 0.3})
    header = next(line for line in text.splitlines() if line.startswith("| |"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == ["segtool", "nnU-Net 2d", "nnU-Net 3d_fullres"]
    table = rows(text)
    assert table["median spacing (data)"] == ["0.586 × 0.586 × 3"] * 3
    assert table["median shape (data)"] == ["61 × 59 × 17"] * 3
    assert table["target spacing"] == ["0.25 × 0.25 × ·", "0.586 × 0.586 × ·", "0.586 × 0.586 × 2.5"]
    assert table["2D / 3D"] == ["2D, slices along axis 2", "2D, slices along axis 2", "3D"]
    assert table["patch size"] == ["96 × 96", "64 × 56", "64 × 56 × 20"]
    assert table["network"] == ["unet", "PlainConvUNet", "PlainConvUNet"]
    assert table["stages / features"] == ["4: 16-32-64-128", "4: 32-64-128-256", "5: 32-64-128-256-320"]
    assert table["batch size"] == ["8", "7", "2"]
    assert table["normalisation"] == ["t2s: zscore"] * 3
    assert "segtool 14.2 s (its own count 12.5 s); nnU-Net 15.7 s" in text
    assert "- patch_size: the cord at 0.25 mm fits 96 x 96" in text and "steps 900" in text


def test_table_without_segtool_plan_and_with_missing_keys(bench):
    text = bench.report(SPEC, {"output": None, "wall_s": 0.1, "message": "exit 2: No such option '--plan-only'"},
                        NNUNET, {"axcodes": ["L", "A", "S"]})
    assert "segtool's plan is not available (exit 2: No such option '--plan-only')" in text
    assert "segtool 0.1 s" not in text and all(len(cells) == 2 for cells in rows(text).values())
    sparse = bench.segtool_column({"plan": {"network_dims": 3}}, ["t2s"])
    assert sparse["2D / 3D"] == "3D" and sparse["patch size"] == sparse["batch size"] == sparse["normalisation"] == "-"
    resized = bench.segtool_column({"plan": {"target_spacing": None, "input_size": [192, 192]}}, ["r"])
    assert resized["target spacing"] == "native, images resized to 192 × 192"


def test_axis_map(bench):
    plans = {"transpose_forward": [2, 0, 1]}  # nnU-Net put its x axis first (the coarsest)
    assert bench.nnunet_axes(plans, 3, ["L", "A", "S"], "RAS") == [0, 2, 1]
    assert bench.nnunet_axes(plans, 3, ["I", "P", "L"], "RAS") == [2, 0, 1]
    assert bench.nnunet_axes({"transpose_forward": [0, 1, 2]}, 3, ["I", "P", "L"], "RAS") == [0, 1, 2]
    assert bench.nnunet_axes({"transpose_forward": [0, 1, 2]}, 3, None, None) == [2, 1, 0]
    assert bench.nnunet_axes({"transpose_forward": [0, 1, 2]}, 2, None, None) == [None, 0, 1]

"""Tests for segtool.io: real (tiny, synthetic) files on disk, no mocks."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from segtool.errors import GeometryError, ImageReadError, OutputExistsError, SegtoolError, UsageError
from segtool.io import (
    Volume,
    default_output_path,
    ras_affine_to_sitk,
    read_channels,
    read_labels,
    read_volume,
    sitk_to_ras_affine,
    write_labels,
    write_probabilities,
)

RNG = np.random.default_rng(0)
SHAPE = (5, 6, 4)


def _rot_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


def _affine(rot: np.ndarray, zooms, origin) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag(zooms)
    a[:3, 3] = origin
    return a


AFFINES = {
    "ras": _affine(np.eye(3), (1.0, 1.0, 1.0), (-10.0, 20.0, 5.0)),
    "lps": _affine(np.diag([-1.0, -1.0, 1.0]), (1.0, 1.0, 1.0), (50.0, 60.0, -30.0)),
    "oblique": _affine(_rot_z(30) @ np.array([[1, 0, 0], [0, 0.8, -0.6], [0, 0.6, 0.8]]), (1.0, 1.2, 1.5), (3, -4, 7)),
    "anisotropic": _affine(np.eye(3), (0.7, 0.7, 3.0), (-88.0, -120.5, 30.25)),
}


def _image(shape=SHAPE, dtype=np.float32) -> np.ndarray:
    return (RNG.random(shape) * 100).astype(dtype)


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, qcode: int = 1, scode: int = 1) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=qcode)
    img.header.set_sform(affine, code=scode)
    img.header.set_xyzt_units("mm", "sec")
    img.to_filename(str(path))
    return path


def _raw_nifti_header(path: Path) -> nib.Nifti1Header:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        return nib.Nifti1Header.from_fileobj(fh)


def _labels_for(vol: Volume, high: int = 4) -> np.ndarray:
    return RNG.integers(0, high, size=vol.spatial_shape).astype(np.int64)


def _assert_one_line_naming(exc_info, path) -> None:
    message = str(exc_info.value)
    assert "\n" not in message and "\r" not in message
    assert str(path) in message
    assert "Traceback" not in message


def _sitk_image(arr_zyx: np.ndarray, spacing, origin, direction) -> sitk.Image:
    img = sitk.GetImageFromArray(arr_zyx)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def _expected_ras(spacing, origin, direction) -> np.ndarray:
    """Hand-built voxel->RAS affine for ITK (LPS) geometry."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, dtype=float).reshape(3, 3) @ np.diag(spacing)
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


# 3-4-5 rotation: exact in decimal, so DICOM's decimal strings keep it exact.
OBLIQUE_DIR = (0.6, -0.8, 0.0, 0.8, 0.6, 0.0, 0.0, 0.0, 1.0)


def _write_dicom_series(directory: Path, arr_zyx, spacing, origin, direction, series_uid: str, prefix="s") -> None:
    """A synthetic CT series, one file per slice, via SimpleITK's DICOM writer."""
    directory.mkdir(parents=True, exist_ok=True)
    img = _sitk_image(arr_zyx, spacing, origin, direction)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = direction
    tags = [
        ("0008|0031", "120000"),
        ("0008|0021", "20240101"),
        ("0008|0008", "DERIVED\\SECONDARY"),
        ("0020|000d", "1.2.826.0.1.3680043.2.1125.1.99"),
        ("0020|000e", series_uid),
        ("0020|0037", "\\".join(str(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7]))),
        ("0008|103e", "synthetic"),
        ("0008|0060", "CT"),
    ]
    for k in range(img.GetDepth()):
        sl = img[:, :, k]
        for tag, value in tags:
            sl.SetMetaData(tag, value)
        sl.SetMetaData("0020|0032", "\\".join(str(v) for v in img.TransformIndexToPhysicalPoint((0, 0, k))))
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")
        sl.SetMetaData("0018|0050", str(spacing[2]))
        writer.SetFileName(str(directory / f"{prefix}{k:03d}.dcm"))
        writer.Execute(sl)


# --------------------------------------------------------------------------- import cost


def test_import_is_cheap():
    code = (
        "import sys, segtool.io; "
        "heavy = [m for m in ('torch', 'SimpleITK', 'pydicom', 'PIL', 'nibabel') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- NIfTI


@pytest.mark.parametrize("name", sorted(AFFINES))
@pytest.mark.parametrize("ext", [".nii.gz", ".nii"])
def test_nifti_round_trip_keeps_geometry_and_header(tmp_path, name, ext):
    affine = AFFINES[name]
    src = _save_nifti(tmp_path / f"img{ext}", _image(), affine, qcode=1, scode=2)
    vol = read_volume(src)
    assert vol.kind == "nifti"
    assert vol.array.shape == (1,) + SHAPE and vol.array.dtype == np.float32
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    labels = _labels_for(vol)
    out = write_labels(labels, vol, tmp_path / "out.nii.gz")
    back = nib.load(str(out))
    hin, hout = nib.load(str(src)).header, back.header
    np.testing.assert_array_equal(back.affine, nib.load(str(src)).affine)
    assert back.shape == SHAPE
    assert int(hout["qform_code"]) == int(hin["qform_code"]) == 1
    assert int(hout["sform_code"]) == int(hin["sform_code"]) == 2
    np.testing.assert_array_equal(hout["pixdim"][1:4], hin["pixdim"][1:4])
    assert hout.get_xyzt_units() == hin.get_xyzt_units()
    np.testing.assert_array_equal(hout.get_qform(), hin.get_qform())
    np.testing.assert_array_equal(hout.get_sform(), hin.get_sform())
    assert back.get_data_dtype() == np.uint8
    raw = _raw_nifti_header(out)  # nibabel's loaded header hides scl_* (it moves them to dataobj)
    assert float(raw["scl_slope"]) == 1.0 and float(raw["scl_inter"]) == 0.0
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), labels)


def test_nifti_qform_only_header_is_kept(tmp_path):
    affine = AFFINES["oblique"]
    src = _save_nifti(tmp_path / "q.nii.gz", _image(), affine, qcode=1, scode=0)
    vol = read_volume(src)
    out = write_labels(_labels_for(vol), vol, tmp_path / "q_seg.nii.gz")
    hout = nib.load(str(out)).header
    assert int(hout["qform_code"]) == 1 and int(hout["sform_code"]) == 0
    np.testing.assert_array_equal(nib.load(str(out)).affine, nib.load(str(src)).affine)


def test_labels_above_255_use_16_bits(tmp_path):
    vol = read_volume(_save_nifti(tmp_path / "a.nii.gz", _image(), AFFINES["ras"]))
    labels = np.zeros(SHAPE, dtype=np.int32)
    labels[0, 0, 0] = 300
    out = write_labels(labels, vol, tmp_path / "big.nii.gz")
    img = nib.load(str(out))
    assert img.get_data_dtype() == np.uint16
    assert read_labels(out).array[0, 0, 0, 0] == 300


def test_4d_with_trailing_singleton_is_squeezed(tmp_path):
    src = _save_nifti(tmp_path / "s.nii.gz", _image(SHAPE + (1,)), AFFINES["ras"])
    vol = read_channels([src], 3, ("ct",))
    assert vol.array.shape == (1,) + SHAPE
    out = write_labels(_labels_for(vol), vol, tmp_path / "s_seg.nii.gz")
    assert nib.load(str(out)).shape == SHAPE


def test_read_labels_rounds_to_exact_int32(tmp_path):
    data = np.zeros(SHAPE, dtype=np.float32)
    data[1, 1, 1] = 0.9999
    data[2, 2, 2] = 2.00001
    vol = read_labels(_save_nifti(tmp_path / "lab.nii.gz", data, AFFINES["ras"]))
    assert vol.array.dtype == np.int32
    assert vol.array[0, 1, 1, 1] == 1 and vol.array[0, 2, 2, 2] == 2


# --------------------------------------------------------------------------- Analyze


def test_analyze_pair_read_from_either_file_and_written_back(tmp_path):
    data = _image(dtype=np.int16)
    nib.AnalyzeImage(data, np.diag([2.0, 3.0, 4.0, 1.0])).to_filename(str(tmp_path / "an.hdr"))
    for given in ("an.hdr", "an.img"):
        vol = read_volume(tmp_path / given)
        assert vol.kind == "analyze"
        np.testing.assert_array_equal(vol.array[0], data)
        assert set(vol.meta["input_paths"]) == {tmp_path / "an.hdr", tmp_path / "an.img"}
    ref_affine = nib.load(str(tmp_path / "an.hdr")).affine
    np.testing.assert_array_equal(vol.affine, ref_affine)
    labels = _labels_for(vol)
    out = write_labels(labels, vol, tmp_path / "an_seg.hdr")
    assert (tmp_path / "an_seg.img").exists()
    back = nib.load(str(out))
    assert not isinstance(back.header, nib.Nifti1Header)
    np.testing.assert_array_equal(back.affine, ref_affine)
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), labels)


def test_nifti_reference_to_hdr_writes_nifti_pair_with_exact_affine(tmp_path):
    src = _save_nifti(tmp_path / "o.nii.gz", _image(), AFFINES["oblique"])
    vol = read_volume(src)
    out = write_labels(_labels_for(vol), vol, tmp_path / "o_seg.hdr")
    back = nib.load(str(out))
    assert isinstance(back, nib.Nifti1Pair)
    np.testing.assert_array_equal(back.affine, nib.load(str(src)).affine)


# --------------------------------------------------------------------------- DICOM


@pytest.mark.parametrize("direction", [(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), OBLIQUE_DIR])
def test_dicom_series_directory(tmp_path, direction):
    arr = RNG.integers(-100, 1000, size=(3, 6, 5)).astype(np.int16)  # (z, y, x)
    spacing, origin = (0.5, 0.75, 2.5), (-12.5, 30.25, 100.0)
    _write_dicom_series(tmp_path / "ct", arr, spacing, origin, direction, "1.2.826.0.1.3680043.2.1125.1.1")
    vol = read_volume(tmp_path / "ct")
    assert vol.kind == "dicom"
    assert vol.array.shape == (1, 5, 6, 3)
    np.testing.assert_array_equal(vol.array[0], arr.transpose(2, 1, 0))
    np.testing.assert_allclose(vol.affine, _expected_ras(spacing, origin, direction), atol=1e-4)
    # The same geometry written as NIfTI by ITK, read by nibabel, gives the same affine.
    sitk.WriteImage(_sitk_image(arr, spacing, origin, direction), str(tmp_path / "same.nii.gz"))
    np.testing.assert_allclose(vol.affine, nib.load(str(tmp_path / "same.nii.gz")).affine, atol=1e-4)
    # NIfTI output from a DICOM reference: RAS affine, qform and sform code 1.
    out = write_labels(_labels_for(vol), vol, default_output_path(tmp_path / "ct", vol.kind))
    assert out == tmp_path / "ct_seg.nii.gz"
    back = nib.load(str(out))
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    assert int(back.header["qform_code"]) == 1 and int(back.header["sform_code"]) == 1


def test_dicom_directory_with_two_series_lists_them(tmp_path):
    arr = np.zeros((3, 4, 4), dtype=np.int16)
    geometry = ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    _write_dicom_series(tmp_path / "mix", arr, *geometry, "1.2.826.0.1.3680043.2.1125.1.1", prefix="a")
    _write_dicom_series(tmp_path / "mix", arr, *geometry, "1.2.826.0.1.3680043.2.1125.1.2", prefix="b")
    with pytest.raises(ImageReadError) as info:
        read_volume(tmp_path / "mix")
    _assert_one_line_naming(info, tmp_path / "mix")
    assert "2 DICOM series" in str(info.value)
    assert "1.2.826.0.1.3680043.2.1125.1.1" in str(info.value) and "1.2.826.0.1.3680043.2.1125.1.2" in str(info.value)


def test_directory_without_dicom_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError) as info:
        read_volume(tmp_path / "empty")
    _assert_one_line_naming(info, tmp_path / "empty")


@pytest.mark.parametrize("name", ["slice.dcm", "IM0001"])
def test_single_dicom_file(tmp_path, name):
    arr = RNG.integers(0, 500, size=(1, 6, 5)).astype(np.int16)
    spacing, origin = (0.8, 0.9, 3.0), (1.0, 2.0, 3.0)
    _write_dicom_series(tmp_path / "one", arr, spacing, origin, OBLIQUE_DIR, "1.2.826.0.1.3680043.2.1125.1.3")
    (tmp_path / "one" / "s000.dcm").rename(tmp_path / name)
    vol = read_volume(tmp_path / name)
    assert vol.kind == "dicom"
    assert vol.array.shape == (1, 5, 6, 1)
    np.testing.assert_array_equal(vol.array[0, :, :, 0], arr[0].T)
    np.testing.assert_allclose(vol.affine[:3, :2], _expected_ras(spacing, origin, OBLIQUE_DIR)[:3, :2], atol=1e-4)
    np.testing.assert_allclose(vol.affine[:3, 3], _expected_ras(spacing, origin, OBLIQUE_DIR)[:3, 3], atol=1e-4)
    assert default_output_path(tmp_path / name, vol.kind) == tmp_path / f"{name.removesuffix('.dcm')}_seg.nii.gz"


# --------------------------------------------------------------------------- MHA / NRRD


@pytest.mark.parametrize("ext", [".mha", ".nrrd"])
def test_mha_nrrd_affine_matches_nifti_and_round_trips(tmp_path, ext):
    arr = _image((4, 6, 5))  # (z, y, x)
    spacing, origin = (0.7, 0.8, 2.0), (10.0, -20.0, 30.0)
    direction = tuple((_rot_z(25) @ np.diag([1.0, -1.0, -1.0])).ravel())
    img = _sitk_image(arr, spacing, origin, direction)
    sitk.WriteImage(img, str(tmp_path / f"v{ext}"))
    sitk.WriteImage(img, str(tmp_path / "v_ref.nii.gz"))
    vol = read_volume(tmp_path / f"v{ext}")
    assert vol.kind == "sitk" and vol.array.shape == (1, 5, 6, 4)
    np.testing.assert_array_equal(vol.array[0], arr.transpose(2, 1, 0))
    np.testing.assert_allclose(vol.affine, nib.load(str(tmp_path / "v_ref.nii.gz")).affine, atol=1e-4)
    np.testing.assert_allclose(vol.affine, _expected_ras(spacing, origin, direction), atol=1e-9)
    labels = _labels_for(vol)
    out = write_labels(labels, vol, tmp_path / f"v_seg{ext}")
    back = sitk.ReadImage(str(out))
    np.testing.assert_allclose(back.GetOrigin(), origin, atol=1e-6)
    np.testing.assert_allclose(back.GetSpacing(), spacing, atol=1e-6)
    np.testing.assert_allclose(back.GetDirection(), direction, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels.transpose(2, 1, 0))


def test_mhd_detached_header_written_atomically(tmp_path):
    vol = read_volume(_save_nifti(tmp_path / "a.nii.gz", _image(), AFFINES["anisotropic"]))
    labels = _labels_for(vol)
    out = write_labels(labels, vol, tmp_path / "a_seg.mhd")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "a.nii.gz" and "a_seg.mhd" in names and len(names) == 3  # + data file
    assert not any(n.startswith(".seg-tmp") for n in names)
    back = read_volume(out)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    np.testing.assert_array_equal(back.array[0], labels)


def test_sitk_affine_helpers_are_inverse():
    for affine in AFFINES.values():
        origin, spacing, direction = ras_affine_to_sitk(affine, 3)
        np.testing.assert_allclose(sitk_to_ras_affine(origin, spacing, direction), affine, atol=1e-12)


# --------------------------------------------------------------------------- photos


def test_png_rgb_and_grey(tmp_path):
    rgb = RNG.integers(0, 256, size=(7, 9, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    vol = read_volume(tmp_path / "rgb.png")
    assert vol.kind == "photo" and vol.array.shape == (3, 7, 9)
    np.testing.assert_array_equal(vol.array, rgb.transpose(2, 0, 1))
    np.testing.assert_array_equal(vol.affine, np.eye(4))
    assert vol.meta["mode"] == "RGB" and vol.meta["format"] == "PNG"
    grey = rgb[..., 0]
    Image.fromarray(grey).save(tmp_path / "grey.png")
    gvol = read_volume(tmp_path / "grey.png")
    assert gvol.array.shape == (1, 7, 9)
    np.testing.assert_array_equal(gvol.array[0], grey)
    labels = RNG.integers(0, 3, size=(7, 9))
    out = write_labels(labels, vol, default_output_path(tmp_path / "rgb.png", vol.kind))
    assert out == tmp_path / "rgb_seg.png"
    with Image.open(out) as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), labels)


def test_rgba_palette_and_16bit_png(tmp_path):
    rgba = RNG.integers(0, 256, size=(4, 5, 4)).astype(np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    vol = read_volume(tmp_path / "rgba.png")
    np.testing.assert_array_equal(vol.array, rgba[..., :3].transpose(2, 0, 1))
    deep = RNG.integers(0, 65535, size=(4, 5)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    dvol = read_volume(tmp_path / "deep.png")
    np.testing.assert_array_equal(dvol.array[0], deep)
    pal = Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), mode="L").convert("P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.save(tmp_path / "pal.png")
    assert read_volume(tmp_path / "pal.png").array.shape == (3, 2, 2)
    # As a label map, a palette image gives its indices.
    np.testing.assert_array_equal(read_labels(tmp_path / "pal.png").array[0], [[0, 1], [2, 1]])


def test_colour_image_is_not_a_label_map(tmp_path):
    Image.fromarray(RNG.integers(0, 256, size=(4, 5, 3)).astype(np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(ImageReadError) as info:
        read_labels(tmp_path / "c.png")
    _assert_one_line_naming(info, tmp_path / "c.png")


def test_tiff_in_and_16_bit_tiff_mask_out(tmp_path):
    data = RNG.random((6, 8)).astype(np.float32)
    Image.fromarray(data).save(tmp_path / "scan.tif")
    vol = read_volume(tmp_path / "scan.tif")
    assert vol.array.shape == (1, 6, 8)
    np.testing.assert_allclose(vol.array[0], data)
    labels = np.zeros((6, 8), dtype=np.int64)
    labels[2, 3] = 1000
    out = write_labels(labels, vol, default_output_path(tmp_path / "scan.tif", vol.kind))
    assert out == tmp_path / "scan_seg.tif"
    with Image.open(out) as im:
        assert im.mode == "I;16"
    np.testing.assert_array_equal(read_labels(out).array[0], labels)


def test_jpeg_input_gives_png_mask_and_jpeg_output_is_refused(tmp_path):
    Image.fromarray(RNG.integers(0, 256, size=(8, 10, 3)).astype(np.uint8)).save(tmp_path / "photo.JPG")
    vol = read_volume(tmp_path / "photo.JPG")
    assert vol.array.shape == (3, 8, 10) and vol.meta["format"] == "JPEG"
    out = default_output_path(tmp_path / "photo.JPG", vol.kind)
    assert out == tmp_path / "photo_seg.png"
    labels = RNG.integers(0, 2, size=(8, 10))
    write_labels(labels, vol, out)
    np.testing.assert_array_equal(read_labels(out).array[0], labels)
    with pytest.raises(UsageError):
        write_labels(labels, vol, tmp_path / "mask.jpg")
    assert not (tmp_path / "mask.jpg").exists()


def test_3d_labels_cannot_be_png(tmp_path):
    vol = read_volume(_save_nifti(tmp_path / "a.nii.gz", _image(), AFFINES["ras"]))
    with pytest.raises(UsageError):
        write_labels(_labels_for(vol), vol, tmp_path / "a_seg.png")


# --------------------------------------------------------------------------- read_channels


def test_read_channels_stacks_files_on_one_grid(tmp_path):
    a = _save_nifti(tmp_path / "t1.nii.gz", _image(), AFFINES["oblique"])
    b = _save_nifti(tmp_path / "t2.nii.gz", _image(), AFFINES["oblique"])
    vol = read_channels([a, b], 3, ("t1", "t2"))
    assert vol.array.shape == (2,) + SHAPE
    np.testing.assert_array_equal(vol.array[1], nib.load(str(b)).get_fdata(dtype=np.float32))
    assert vol.path == a and vol.meta["channel_paths"] == [a, b]
    assert set(vol.meta["input_paths"]) == {a, b}


def test_read_channels_rgb_photo_gives_three(tmp_path):
    Image.fromarray(RNG.integers(0, 256, size=(4, 5, 3)).astype(np.uint8)).save(tmp_path / "p.png")
    vol = read_channels(tmp_path / "p.png", 2, ("r", "g", "b"))
    assert vol.array.shape == (3, 4, 5)


def test_4d_volume_for_3d_task(tmp_path):
    src = _save_nifti(tmp_path / "four.nii.gz", _image(SHAPE + (3,)), AFFINES["ras"])
    assert read_volume(src).meta["extra_dims"] == (3,)
    with pytest.raises(GeometryError) as info:
        read_channels([src], 3, ("ct",))
    _assert_one_line_naming(info, src)
    assert "4D volume for a 3D task" in str(info.value)


def test_2d_image_for_3d_task_and_3d_for_2d(tmp_path):
    Image.fromarray(np.zeros((4, 5), dtype=np.uint8)).save(tmp_path / "flat.png")
    with pytest.raises(GeometryError) as info:
        read_channels([tmp_path / "flat.png"], 3, ("ct",))
    _assert_one_line_naming(info, tmp_path / "flat.png")
    assert "2D image for a 3D task" in str(info.value)
    src = _save_nifti(tmp_path / "v.nii.gz", _image(), AFFINES["ras"])
    with pytest.raises(GeometryError) as info:
        read_channels([src], 2, ("grey",))
    assert "3D volume for a 2D task" in str(info.value)


def test_wrong_channel_count(tmp_path):
    a = _save_nifti(tmp_path / "t1.nii.gz", _image(), AFFINES["ras"])
    with pytest.raises(GeometryError) as info:
        read_channels([a], 3, ("t1", "t2"))
    _assert_one_line_naming(info, a)
    assert "task expects 2 channels (t1, t2), got 1" in str(info.value)
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(GeometryError) as info:
        read_channels([tmp_path / "rgb.png"], 2, ("grey",))
    assert "got 3" in str(info.value)


@pytest.mark.parametrize("what", ["shape", "affine"])
def test_channels_on_different_grids(tmp_path, what):
    a = _save_nifti(tmp_path / "t1.nii.gz", _image(), AFFINES["ras"])
    if what == "shape":
        b = _save_nifti(tmp_path / "t2.nii.gz", _image((5, 6, 3)), AFFINES["ras"])
    else:
        b = _save_nifti(tmp_path / "t2.nii.gz", _image(), AFFINES["anisotropic"])
    with pytest.raises(GeometryError) as info:
        read_channels([a, b], 3, ("t1", "t2"))
    _assert_one_line_naming(info, a)
    assert str(b) in str(info.value) and "different grids" in str(info.value)


def test_tiny_affine_difference_is_the_same_grid(tmp_path):
    a = _save_nifti(tmp_path / "t1.nii.gz", _image(), AFFINES["ras"])
    shifted = AFFINES["ras"].copy()
    shifted[0, 3] += 2e-5
    b = _save_nifti(tmp_path / "t2.nii.gz", _image(), shifted)
    assert read_channels([a, b], 3, ("t1", "t2")).channels == 2


# --------------------------------------------------------------------------- read errors


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError) as info:
        read_volume(tmp_path / "nope.nii.gz")
    _assert_one_line_naming(info, tmp_path / "nope.nii.gz")


@pytest.mark.parametrize("name", ["notes.txt", "fake.nii.gz", "fake.nii", "fake.png", "fake.mha", "fake.dcm", "fake.hdr"])
def test_not_an_image(tmp_path, name):
    (tmp_path / name).write_text("this is not an image\nsecond line\n")
    with pytest.raises(ImageReadError) as info:
        read_volume(tmp_path / name)
    _assert_one_line_naming(info, tmp_path / name)


@pytest.mark.parametrize("ext", [".nii.gz", ".nii"])
def test_truncated_nifti(tmp_path, ext):
    path = _save_nifti(tmp_path / f"cut{ext}", _image((20, 20, 20)), AFFINES["ras"])
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError) as info:
        read_volume(path)
    _assert_one_line_naming(info, path)


def test_corrupt_gzip_stream(tmp_path):
    path = tmp_path / "bad.nii.gz"
    good = gzip.compress(_save_nifti(tmp_path / "x.nii", _image(), AFFINES["ras"]).read_bytes())
    path.write_bytes(good[:200] + bytes(len(good) - 200))
    with pytest.raises(ImageReadError) as info:
        read_volume(path)
    _assert_one_line_naming(info, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_voxels(tmp_path, bad):
    data = _image()
    data[1, 2, 3] = bad
    path = _save_nifti(tmp_path / "nan.nii.gz", data, AFFINES["ras"])
    with pytest.raises(ImageReadError) as info:
        read_volume(path)
    _assert_one_line_naming(info, path)
    assert "NaN/inf" in str(info.value)


def test_nan_in_float_tiff(tmp_path):
    data = np.zeros((3, 4), dtype=np.float32)
    data[0, 0] = np.nan
    Image.fromarray(data).save(tmp_path / "nan.tif")
    with pytest.raises(ImageReadError, match="NaN/inf"):
        read_volume(tmp_path / "nan.tif")


def test_zero_size_image(tmp_path):
    path = tmp_path / "empty.nii.gz"
    nib.Nifti1Image(np.zeros((0, 4, 4), dtype=np.float32), np.eye(4)).to_filename(str(path))
    with pytest.raises(ImageReadError) as info:
        read_volume(path)
    _assert_one_line_naming(info, path)
    assert "zero size" in str(info.value)


# --------------------------------------------------------------------------- writing rules


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_unknown_output_suffix_fails_cleanly(tmp_path):
    vol = read_volume(_save_nifti(tmp_path / "a.nii.gz", _image(), AFFINES["ras"]))
    before = _listing(tmp_path)
    with pytest.raises(UsageError) as info:
        write_labels(_labels_for(vol), vol, tmp_path / "a_seg.xyz")
    _assert_one_line_naming(info, tmp_path / "a_seg.xyz")
    assert _listing(tmp_path) == before


def test_failure_inside_writer_leaves_directory_clean(tmp_path):
    Image.fromarray(np.zeros((4, 5), dtype=np.uint8)).save(tmp_path / "g.png")
    vol = read_volume(tmp_path / "g.png")
    before = _listing(tmp_path)
    labels = np.full((4, 5), 70000)  # too large for a 16-bit PNG
    with pytest.raises(SegtoolError) as info:
        write_labels(labels, vol, tmp_path / "g_seg.png")
    assert "\n" not in str(info.value)
    assert _listing(tmp_path) == before


def test_refuses_to_overwrite_an_input_even_with_overwrite(tmp_path):
    src = _save_nifti(tmp_path / "a.nii.gz", _image(), AFFINES["ras"])
    raw = src.read_bytes()
    vol = read_volume(src)
    with pytest.raises(OutputExistsError):
        write_labels(_labels_for(vol), vol, src, overwrite=True)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "link.nii.gz").symlink_to(src)  # another name for the input
    with pytest.raises(OutputExistsError) as info:
        write_probabilities(np.zeros((2,) + SHAPE, np.float32), vol, tmp_path / "sub" / "link.nii.gz", overwrite=True)
    assert "input" in str(info.value)
    assert src.read_bytes() == raw
    (tmp_path / "sub" / "link.nii.gz").unlink()
    (tmp_path / "sub").rmdir()
    # Through read_channels too, for the second channel.
    b = _save_nifti(tmp_path / "b.nii.gz", _image(), AFFINES["ras"])
    both = read_channels([src, b], 3, ("t1", "t2"))
    with pytest.raises(OutputExistsError):
        write_labels(_labels_for(both), both, b, overwrite=True)
    assert _listing(tmp_path) == ["a.nii.gz", "b.nii.gz"]


def test_refuses_companion_of_an_analyze_input(tmp_path):
    nib.AnalyzeImage(_image(dtype=np.int16), np.eye(4)).to_filename(str(tmp_path / "an.hdr"))
    vol = read_volume(tmp_path / "an.hdr")
    with pytest.raises(OutputExistsError):
        write_labels(_labels_for(vol), vol, tmp_path / "an.img", overwrite=True)


def test_refuses_a_dicom_series_file(tmp_path):
    arr = np.zeros((3, 4, 4), dtype=np.int16)
    _write_dicom_series(tmp_path / "ct", arr, (1.0, 1.0, 1.0), (0, 0, 0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), "1.2.3.4")
    vol = read_volume(tmp_path / "ct")
    with pytest.raises(OutputExistsError):
        write_labels(_labels_for(vol), vol, tmp_path / "ct" / "s001.dcm", overwrite=True)


def test_existing_output_needs_overwrite(tmp_path):
    vol = read_volume(_save_nifti(tmp_path / "a.nii.gz", _image(), AFFINES["ras"]))
    out = tmp_path / "out" / "a_seg.nii.gz"  # the output directory is created
    write_labels(_labels_for(vol), vol, out)
    with pytest.raises(OutputExistsError) as info:
        write_labels(_labels_for(vol), vol, out)
    _assert_one_line_naming(info, out)
    assert "overwrite=True" in str(info.value) and "--overwrite" not in str(info.value)  # API words
    new = _labels_for(vol)
    write_labels(new, vol, out, overwrite=True)
    np.testing.assert_array_equal(read_labels(out).array[0], new)
    assert _listing(out.parent) == ["a_seg.nii.gz"]


def test_label_shape_must_match_reference(tmp_path):
    vol = read_volume(_save_nifti(tmp_path / "a.nii.gz", _image(), AFFINES["ras"]))
    with pytest.raises(GeometryError):
        write_labels(np.zeros((2, 2, 2), dtype=np.uint8), vol, tmp_path / "x.nii.gz")


# --------------------------------------------------------------------------- probabilities


def test_probabilities_3d_are_a_4d_nifti(tmp_path):
    src = _save_nifti(tmp_path / "a.nii.gz", _image(), AFFINES["oblique"], qcode=1, scode=2)
    vol = read_volume(src)
    probs = RNG.random((3,) + SHAPE).astype(np.float32)
    out = write_probabilities(probs, vol, tmp_path / "a_probs.nii.gz")
    img = nib.load(str(out))
    assert img.shape == SHAPE + (3,) and img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(img.affine, nib.load(str(src)).affine)
    assert int(img.header["sform_code"]) == 2
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), np.moveaxis(probs, 0, -1))


def test_probabilities_2d_and_bad_suffix(tmp_path):
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    vol = read_volume(tmp_path / "p.png")
    probs = RNG.random((2, 4, 5)).astype(np.float32)
    out = write_probabilities(probs, vol, tmp_path / "p_probs.nii.gz")
    assert nib.load(str(out)).shape == (4, 5, 1, 2)
    with pytest.raises(UsageError):
        write_probabilities(probs, vol, tmp_path / "p_probs.tif")


# --------------------------------------------------------------------------- default output path


@pytest.mark.parametrize(
    "name, kind, expected",
    [
        ("brain.nii.gz", "nifti", "brain_seg.nii.gz"),
        ("brain.NII", "nifti", "brain_seg.nii.gz"),
        ("old.hdr", "analyze", "old_seg.nii.gz"),
        ("old.img", "analyze", "old_seg.nii.gz"),
        ("ct.mha", "sitk", "ct_seg.nii.gz"),
        ("ct.v1.nrrd", "sitk", "ct.v1_seg.nii.gz"),
        ("slice.dcm", "dicom", "slice_seg.nii.gz"),
        ("1.2.840.113619.2.55.3", "dicom", "1.2.840.113619.2.55.3_seg.nii.gz"),
        ("cell.png", "photo", "cell_seg.png"),
        ("cell.tiff", "photo", "cell_seg.tiff"),
        ("cell.TIF", "photo", "cell_seg.tif"),
        ("cell.jpeg", "photo", "cell_seg.png"),
    ],
)
def test_default_output_path(tmp_path, name, kind, expected):
    assert default_output_path(tmp_path / name, kind) == tmp_path / expected
    assert default_output_path(tmp_path / name, kind, output_dir=tmp_path / "o") == tmp_path / "o" / expected
    assert default_output_path(tmp_path / name, kind, suffix="_mask").name == expected.replace("_seg", "_mask")


def test_default_output_path_for_dicom_directory(tmp_path):
    (tmp_path / "series1").mkdir()
    assert default_output_path(tmp_path / "series1", "dicom") == tmp_path / "series1_seg.nii.gz"


# --------------------------------------------------------------------------- more formats


def test_analyze_reference_to_nifti_gets_codes_and_mm(tmp_path):
    nib.AnalyzeImage(_image(dtype=np.int16), np.diag([2.0, 3.0, 4.0, 1.0])).to_filename(str(tmp_path / "an.hdr"))
    vol = read_volume(tmp_path / "an.hdr")
    out = write_labels(_labels_for(vol), vol, tmp_path / "an_seg.nii.gz")
    img = nib.load(str(out))
    np.testing.assert_allclose(img.affine, vol.affine, atol=1e-6)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    assert img.header.get_xyzt_units()[0] == "mm"


def test_vector_nrrd_gives_channels(tmp_path):
    arr = RNG.integers(0, 255, size=(4, 5, 6, 3)).astype(np.uint8)  # (z, y, x, C)
    sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=True), str(tmp_path / "rgb.nrrd"))
    vol = read_volume(tmp_path / "rgb.nrrd")
    assert vol.array.shape == (3, 6, 5, 4)
    np.testing.assert_array_equal(vol.array, arr.transpose(3, 2, 1, 0))


def test_2d_mha_round_trip_and_png_orientation(tmp_path):
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)  # (y, x) as ITK stores it
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 2.0))
    img.SetOrigin((1.0, 2.0))
    sitk.WriteImage(img, str(tmp_path / "two.mha"))
    vol = read_volume(tmp_path / "two.mha")
    assert vol.ndim == 2 and vol.spatial_shape == (4, 3) and vol.spacing == (0.5, 2.0)
    labels = (vol.array[0] > 5).astype(np.int64)
    back = sitk.ReadImage(str(write_labels(labels, vol, tmp_path / "two_seg.mha")))
    assert back.GetSpacing() == (0.5, 2.0) and back.GetOrigin() == (1.0, 2.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels.T)
    with Image.open(write_labels(labels, vol, tmp_path / "two_seg.png")) as im:
        np.testing.assert_array_equal(np.asarray(im), labels.T)  # rows = y, as ITK writes PNG


def test_reading_dicom_keeps_the_process_locale(tmp_path):
    import locale

    arr = np.zeros((3, 4, 4), dtype=np.int16)
    geometry = ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    _write_dicom_series(tmp_path / "s", arr, *geometry, "1.2.826.0.1.3680043.2.1125.1.9")
    locale.setlocale(locale.LC_ALL, "")  # the user's locale, whatever writing the series did
    before = locale.setlocale(locale.LC_ALL)
    read_volume(tmp_path / "s")
    read_volume(sorted((tmp_path / "s").iterdir())[0])
    assert locale.setlocale(locale.LC_ALL) == before


# --------------------------------------------------------------------------- naming and atomic writes


def test_file_naming():
    from segtool.io.formats import TRAINING_SUFFIXES, is_photo_path, split_suffix

    assert split_suffix("Case.NII.GZ") == ("Case", ".NII.GZ")
    assert split_suffix("scan.v2.nrrd") == ("scan.v2", ".nrrd")
    assert split_suffix("notes.txt") == ("notes.txt", "")
    assert split_suffix(".nii.gz") == (".nii.gz", "")  # nothing but the suffix: no stem to give
    assert split_suffix("pair.hdr", TRAINING_SUFFIXES) == ("pair.hdr", "")  # an Analyze pair counts once, by .img
    assert [is_photo_path(n) for n in ("a.JPG", "b.tiff", "c.nii.gz", "d.dcm")] == [True, True, False, False]


def test_replacing_moves_the_file_into_place_only_on_success(tmp_path):
    from segtool.io.atomic import replacing, write_text_atomic

    target = tmp_path / "out.txt"
    write_text_atomic(target, "old", mode=0o640)
    assert target.read_text() == "old" and target.stat().st_mode & 0o777 == 0o640
    with pytest.raises(RuntimeError):
        with replacing(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    with replacing(target, suffix=".npy") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.txt.") and tmp.name.endswith(".npy")
        np.save(tmp, np.arange(3))
    assert np.array_equal(np.load(target), np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temporary file left

"""Output names (issue 37): every name comes from `segtool.io.formats.split_suffix`, so `-o out.mhd --prob`
writes `out_prob.nii.gz` beside `out.mhd`, never `out.mhd_prob.nii.gz`; and `TaskSpec.is_photo`."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segtool.cli import cli
from segtool.errors import UsageError
from segtool.io.formats import (
    KNOWN_SUFFIXES,
    READABLE_SUFFIXES,
    WRITABLE_SUFFIXES,
    default_output_path,
    output_format,
    split_suffix,
)
from segtool.cases import Case, OutputPlan
from tiny_task import app_with, make_bundled_package, make_spec

_counter = itertools.count()
BOTH_CASES = [s for suffix in WRITABLE_SUFFIXES for s in dict.fromkeys((suffix, suffix.upper()))]
VOLUME_SUFFIXES = [s for s in WRITABLE_SUFFIXES if s not in (".png", ".tif", ".tiff", ".dcm", ".dicom")]


# --------------------------------------------------------------------------- split_suffix


@pytest.mark.parametrize("suffix", KNOWN_SUFFIXES)
def test_split_suffix_knows_every_suffix_read_or_written_in_any_case(suffix):
    assert split_suffix(f"scan.v2{suffix}") == ("scan.v2", suffix)
    assert split_suffix(f"scan.v2{suffix.upper()}") == ("scan.v2", suffix.upper())


def test_the_tables_hold_what_segtool_reads_and_writes():
    assert set(READABLE_SUFFIXES) | set(WRITABLE_SUFFIXES) == set(KNOWN_SUFFIXES)
    assert {".nii.gz", ".nii", ".hdr", ".img", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm", ".dicom", ".png", ".tif",
            ".tiff"} == set(WRITABLE_SUFFIXES)
    assert ".jpg" in READABLE_SUFFIXES and ".jpg" not in WRITABLE_SUFFIXES  # masks are lossless


def test_a_double_suffix_is_one_suffix():
    assert split_suffix("a.nii.gz") == ("a", ".nii.gz")
    assert split_suffix("A.Nii.Gz") == ("A", ".Nii.Gz")
    assert split_suffix("a.gz") == ("a.gz", "")


@pytest.mark.parametrize("suffix", BOTH_CASES)
def test_every_writable_suffix_picks_a_format(suffix):
    expected = {".nii.gz": "nifti", ".nii": "nifti", ".hdr": "analyze", ".img": "analyze", ".dcm": "dicom-seg",
                ".dicom": "dicom-seg", ".png": "photo", ".tif": "photo", ".tiff": "photo"}
    assert output_format(Path(f"out{suffix}")) == expected.get(suffix.lower(), "sitk")


@pytest.mark.parametrize("name, words", [("out.vtk", "does not write .vtk"), ("out.jpg", "lossless"),
                                         ("out", "no suffix")])
def test_a_name_segtool_cannot_write_is_one_line(name, words):
    with pytest.raises(UsageError) as info:
        output_format(Path(name))
    assert words in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- OutputPlan names


@pytest.mark.parametrize("suffix", BOTH_CASES)
def test_o_with_every_writable_suffix_names_probabilities_and_overlay_from_its_stem(tmp_path, suffix):
    plan = OutputPlan(output=tmp_path / f"out{suffix}", probabilities=True, overlay=True)
    targets = plan.targets(Case((tmp_path / "in.nii.gz",)))
    analyze = {".hdr": ["out.img"], ".img": ["out.hdr"]}.get(suffix.lower(), [])
    assert [p.name for p in targets] == [f"out{suffix}", *analyze, "out_prob.nii.gz", "out_overlay.png"]
    assert all(p.parent == tmp_path for p in targets)


@pytest.mark.parametrize("suffix", BOTH_CASES)
def test_default_and_task_suffix_names_lose_the_role_too(tmp_path, suffix):
    plan = OutputPlan(suffix="_gmseg")
    for mask in (f"scan.v2_gmseg{suffix}", f"scan.v2_seg{suffix}", f"scan.v2{suffix}"):
        assert plan.probabilities_path(tmp_path / mask) == tmp_path / "scan.v2_prob.nii.gz"
        assert plan.overlay_path(tmp_path / mask) == tmp_path / "scan.v2_overlay.png"


@pytest.mark.parametrize("source, kind, fmt, expected", [
    ("brain.NII.GZ", "volume", None, ["brain_seg.nii.gz", "brain_prob.nii.gz"]),
    ("old.HDR", "volume", None, ["old_seg.nii.gz", "old_prob.nii.gz"]),
    ("ct.v1.nrrd", "volume", "dicom-seg", ["ct.v1_seg.dcm", "ct.v1_prob.nii.gz"]),
    ("Photo.TIF", "photo", None, ["Photo_seg.tif", "Photo_prob.nii.gz"]),
    ("photo.jpeg", "photo", None, ["photo_seg.png", "photo_prob.nii.gz"]),
])
def test_default_names_in_an_output_dir(tmp_path, source, kind, fmt, expected):
    plan = OutputPlan(output_dir=tmp_path / "out", probabilities=True, format=fmt)
    labels = plan.labels_path(Case((tmp_path / source,)), kind)
    assert [labels.name, plan.probabilities_path(labels).name] == expected
    assert labels.parent == tmp_path / "out"
    if fmt is None:
        assert labels == default_output_path(tmp_path / source, kind, tmp_path / "out")


# --------------------------------------------------------------------------- segtool run


@pytest.fixture
def tiny3d(tmp_path, monkeypatch):
    package = f"tiny_names_{next(_counter)}"
    ref = make_bundled_package(tmp_path / "site", package, make_spec("tiny"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return make_spec("tiny", models={"default": ref})


@pytest.fixture
def tiny2d(tmp_path, monkeypatch):
    package = f"tiny2d_names_{next(_counter)}"
    ref = make_bundled_package(tmp_path / "site2d", package, make_spec("tiny2d", ndim=2))
    monkeypatch.syspath_prepend(str(tmp_path / "site2d"))
    return make_spec("tiny2d", ndim=2, models={"default": ref})


def _cube(path: Path) -> tuple[Path, np.ndarray]:
    data = np.zeros((12, 10, 6), dtype=np.float32)
    data[3:8, 2:7, 1:4] = 100.0
    nib.save(nib.Nifti1Image(data, np.diag([-1.0, -1.0, 2.0, 1.0])), path)
    return path, (data > 0).astype(np.uint8)


def _run(spec, *args):
    result = CliRunner().invoke(cli, ["run", spec.name, *map(str, args), "-q"], obj=app_with(spec))
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("suffix", VOLUME_SUFFIXES)
def test_run_o_volume_suffix_with_prob_writes_prob_beside_the_mask(tmp_path, tiny3d, suffix):
    from segtool.io import read_labels

    src, expected = _cube(tmp_path / "in.nii.gz")
    out = tmp_path / "res" / f"out{suffix}"
    result = _run(tiny3d, src, "-o", out, "--prob")
    assert result.stdout.strip() == str(out)
    assert np.array_equal(np.asarray(read_labels(out).array).reshape(expected.shape), expected)
    assert [p.name for p in (tmp_path / "res").iterdir() if "_prob" in p.name] == ["out_prob.nii.gz"]
    probs = nib.load(str(tmp_path / "res" / "out_prob.nii.gz"))
    assert probs.shape == (12, 10, 6, 2)
    np.testing.assert_allclose(np.asarray(probs.dataobj).sum(-1), 1.0, atol=1e-4)


def test_run_o_with_a_suffix_segtool_cannot_write_is_a_usage_error(tmp_path, tiny3d):
    src, _ = _cube(tmp_path / "in.nii.gz")
    result = CliRunner().invoke(cli, ["run", "tiny", str(src), "-o", str(tmp_path / "res" / "out.vtk"), "--prob"],
                                obj=app_with(tiny3d))
    assert result.exit_code == 2
    expected = f"{tmp_path / 'res' / 'out.vtk'}: segtool does not write .vtk masks; use one of .nii.gz, .nii, .hdr"
    assert result.stderr.strip().splitlines() == [f"segtool: error: {expected}, " + ", ".join(WRITABLE_SUFFIXES[3:])]
    assert not (tmp_path / "res").exists()


def test_run_o_tif_with_prob_and_overlay(tmp_path, tiny2d):
    pixels = np.zeros((24, 24), dtype=np.uint8)
    pixels[4:16, 4:16] = 255
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    _run(tiny2d, tmp_path / "photo.png", "-o", tmp_path / "res" / "out.TIF", "--prob", "--overlay")
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["out.TIF", "out_overlay.png", "out_prob.nii.gz"]
    mask = np.asarray(Image.open(tmp_path / "res" / "out.TIF"))
    assert mask[6:14, 6:14].all() and not mask[20:, 20:].any()
    assert nib.load(str(tmp_path / "res" / "out_prob.nii.gz")).shape == (24, 24, 1, 2)
    assert Image.open(tmp_path / "res" / "out_overlay.png").format == "PNG"


# --------------------------------------------------------------------------- TaskSpec.is_photo


@pytest.mark.parametrize("overrides, photo", [
    ({}, False),
    ({"normalization": "rgb"}, True),
    ({"modality": "Clothing photo"}, True),
    ({"modality": "MRI T2*"}, False),
])
def test_is_photo_is_a_property_of_the_task(overrides, photo):
    assert make_spec("pic", ndim=2, **overrides).is_photo is photo


def test_photo_tasks_flip_left_right_only():
    assert make_spec("pic", ndim=2, normalization="rgb").flip_axes == (1,)
    assert make_spec("pic", ndim=2).flip_axes == (0, 1)


def test_io_formats_does_not_import_the_spec():
    code = "import sys, segtool.io.formats; print(sorted(m for m in sys.modules if m.startswith('segtool')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "segtool.spec" not in out and not hasattr(__import__("segtool.io.formats").io.formats, "is_photo_task")

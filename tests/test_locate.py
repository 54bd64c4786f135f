"""Localise, then segment: a task whose `locate` runs another task first and segments a crop around it.

Both tasks use the one-convolution test model (bright voxels become label 1), so
what each stage sees and returns is predictable. The spinal-gm task uses the same
path with a cord localiser.
"""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from segtool.cli import cli
from segtool.locate import box_around, crop_volume, margins_in_voxels
from segtool.spec import Locate
from tiny_task import app_with, make_bundled_package, make_spec

_counter = itertools.count()
AFFINE = np.array([[-0.5, 0, 0, 30.0], [0, 0.5, 0, -12.0], [0, 0, 3.0, 7.0], [0, 0, 0, 1]])  # LAS


@pytest.fixture
def two_stage(tmp_path, monkeypatch):
    """A coarse localiser task and a fine task that crops around the localiser's result."""
    specs = {}
    for name, extra in (("coarse", {}), ("fine", {"locate": Locate("coarse", margin_mm=(3.0, 3.0, 0.0), min_extent_mm=15.0)})):
        package = f"two_stage_{name}_{next(_counter)}"
        bare = make_spec(name, target_spacing=(0.5, 0.5, 3.0), **extra)
        ref = make_bundled_package(tmp_path / "site", package, bare)
        specs[name] = make_spec(name, target_spacing=(0.5, 0.5, 3.0), models={"default": ref}, **extra)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return specs


def neck(shape=(80, 72, 4)) -> tuple[np.ndarray, np.ndarray]:
    """A large dark field of view with one bright 'cord' off centre, and its mask."""
    image = np.full(shape, 10.0, dtype=np.float32)
    cord = np.zeros(shape, dtype=np.uint8)
    cord[55:63, 8:15, :] = 1
    image[cord == 1] = 200.0
    return image, cord


def run(specs, *args):
    return CliRunner().invoke(cli, [str(a) for a in args], obj=app_with(*specs.values()))


def test_fine_task_segments_only_a_crop_around_the_located_structure(tmp_path, two_stage, monkeypatch):
    from segtool.segmenter import Segmenter

    shapes = {}

    def recording(real):
        def record(self, volume, on_batch=None, **options):
            shapes.setdefault(self.spec.name, []).append(volume.spatial_shape)
            return real(self, volume, on_batch, **options)
        return record

    # the volumes the networks see: labels (the lean path) or probabilities (--prob, --tta)
    monkeypatch.setattr(Segmenter, "probabilities", recording(Segmenter.probabilities))
    monkeypatch.setattr(Segmenter, "labels", recording(Segmenter.labels))
    image, cord = neck()
    source = tmp_path / "neck.nii.gz"
    nib.save(nib.Nifti1Image(image, AFFINE), source)
    out = tmp_path / "neck_mask.nii.gz"
    result = run(two_stage, "run", "fine", source, "-o", out)
    assert result.exit_code == 0, result.output
    assert shapes["coarse"] == [(80, 72, 4)]
    # the cord's box (8 x 7 voxels) grown by 3 mm = 6 voxels on each in-plane side, clipped at the border
    assert shapes["fine"] == [(8 + 12, 7 + 6 + 6, 4)]
    mask = nib.load(str(out))
    assert mask.shape == image.shape and np.allclose(mask.affine, AFFINE)
    assert np.array_equal(np.asarray(mask.dataobj) > 0, cord > 0)


def test_a_small_field_of_view_is_segmented_whole(tmp_path, two_stage, monkeypatch):
    from segtool.segmenter import Segmenter

    names = []
    for method in ("probabilities", "labels"):
        real = getattr(Segmenter, method)
        monkeypatch.setattr(Segmenter, method,
                            lambda self, v, on_batch=None, real=real, **options:
                            names.append(self.spec.name) or real(self, v, on_batch, **options))
    image, cord = neck()
    small, small_cord = image[50:70, 4:22], cord[50:70, 4:22]  # 10 x 9 mm: already a crop
    source = tmp_path / "crop.nii.gz"
    nib.save(nib.Nifti1Image(small, AFFINE), source)
    out = tmp_path / "crop_mask.nii.gz"
    assert run(two_stage, "run", "fine", source, "-o", out).exit_code == 0
    assert names == ["fine"]
    assert np.array_equal(np.asarray(nib.load(str(out)).dataobj) > 0, small_cord > 0)


def test_nothing_located_falls_back_to_the_whole_image_with_a_warning(tmp_path, monkeypatch):
    """The localiser keeps only components of 100 mm3 or more, so it finds nothing here: the fine task warns
    and segments the whole image, giving exactly what the same model gives without a localiser."""
    from segtool.spec import Postprocess

    specs = {}
    stages = (("coarse", {"postprocess": Postprocess(min_size_mm3=100.0)}),
              ("fine", {"locate": Locate("coarse", margin_mm=(3.0, 3.0, 0.0), min_extent_mm=15.0)}),
              ("plain", {}))
    for name, extra in stages:
        bare = make_spec(name, target_spacing=(0.5, 0.5, 3.0), **extra)
        ref = make_bundled_package(tmp_path / "site", f"fallback_{name}_{next(_counter)}", bare)
        specs[name] = make_spec(name, target_spacing=(0.5, 0.5, 3.0), models={"default": ref}, **extra)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    image = np.full((80, 72, 4), 10.0, dtype=np.float32)
    image[0, 0, 0] = 11.0  # one bright voxel in a corner, far from the block: a crop would miss it
    image[40:44, 30:34, :] = 12.0  # 4 x 4 x 4 voxels = 48 mm3: below the localiser's 100 mm3
    source = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(image, AFFINE), source)
    result = run(specs, "run", "fine", source, "-o", tmp_path / "flat_mask.nii.gz")
    assert result.exit_code == 0, result.output
    assert "coarse found nothing to crop around; segmenting the whole image (slower)" in result.stderr
    plain = run(specs, "run", "plain", source, "-o", tmp_path / "plain_mask.nii.gz")
    assert plain.exit_code == 0, plain.output
    assert "found nothing" not in plain.stderr
    mask = np.asarray(nib.load(str(tmp_path / "flat_mask.nii.gz")).dataobj)
    expected = np.zeros(image.shape, dtype=bool)
    expected[0, 0, 0] = True
    expected[40:44, 30:34, :] = True
    assert np.array_equal(mask > 0, expected)
    assert np.array_equal(mask, np.asarray(nib.load(str(tmp_path / "plain_mask.nii.gz")).dataobj))


def test_crop_keeps_world_positions_and_margins_follow_world_axes():
    from segtool.io import Volume

    image, cord = neck()
    volume = Volume(image[None], AFFINE)
    margins = margins_in_voxels(AFFINE, (3.0, 1.5, 6.0))
    assert margins == (6, 3, 2)  # mm / voxel size, per voxel axis (L, A, S here)
    box = box_around(cord > 0, margins)
    assert box.start == (49, 5, 0) and box.stop == (69, 18, 4)
    cropped = crop_volume(volume, box)
    corner = AFFINE @ np.array([*box.start, 1.0])
    assert np.allclose(cropped.affine[:3, 3], corner[:3])
    assert cropped.spatial_shape == (20, 13, 4)
    permuted = AFFINE[:, [1, 0, 2, 3]]  # first voxel axis now runs along A
    assert margins_in_voxels(permuted, (3.0, 1.5, 6.0)) == (3, 6, 2)


@pytest.mark.parametrize("within_mm, kept", [(None, True), (1.0, False)])
def test_labels_far_from_the_located_structure_are_dropped_on_request(tmp_path, monkeypatch, within_mm, kept):
    package = f"two_stage_within_{next(_counter)}"
    specs = {}
    for name, extra in (("coarse", {}), ("fine", {"locate": Locate("coarse", margin_mm=(6.0, 6.0, 0.0),
                                                                  min_extent_mm=15.0, within_mm=within_mm)})):
        bare = make_spec(name, target_spacing=(0.5, 0.5, 3.0), **extra)
        ref = make_bundled_package(tmp_path / "site", f"{package}_{name}", bare)
        specs[name] = make_spec(name, target_spacing=(0.5, 0.5, 3.0), models={"default": ref}, **extra)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    image, cord = neck()
    image[66:68, 18:20, :] = 200.0  # a small bright spot 2.5 mm beyond the cord: inside the crop, not the cord
    source = tmp_path / "neck.nii.gz"
    nib.save(nib.Nifti1Image(image, AFFINE), source)
    out = tmp_path / "mask.nii.gz"
    assert run(specs, "run", "fine", source, "-o", out).exit_code == 0
    mask = np.asarray(nib.load(str(out)).dataobj) > 0
    assert np.array_equal(mask & (cord > 0), cord > 0)
    assert bool(mask[66:68, 18:20].any()) is kept

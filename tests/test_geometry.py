import nibabel as nib
import numpy as np
import pytest
import torch

from segtool.geometry import reorient, resample, resampled_shape, spacing_of


def oblique_affine():
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.8, 1.2, 3.0])
    affine[:3, 3] = [-12.0, 30.5, 7.25]
    return affine


AFFINES = {
    "RAS": np.diag([1.0, 1.0, 1.0, 1.0]),
    "LPS": np.diag([-0.5, -0.5, 2.5, 1.0]),
    "LAS-anisotropic": np.array([[-0.5, 0, 0, 40], [0, 0.5, 0, -20], [0, 0, 7.5, 3], [0, 0, 0, 1.0]]),
    "permuted": np.array([[0, 0, 2.0, 1], [-1.0, 0, 0, 2], [0, 1.5, 0, 3], [0, 0, 0, 1]]),
    "oblique": oblique_affine(),
}


@pytest.mark.parametrize("name", AFFINES)
@pytest.mark.parametrize("target", ["RAS", "LPS", "PIR"])
def test_reorient_round_trip_is_exact(name, target):
    affine = AFFINES[name]
    rng = np.random.default_rng(0)
    array = rng.random((2, 5, 6, 7)).astype(np.float32)
    out, new_affine, info = reorient(array, affine, target)
    assert nib.aff2axcodes(new_affine) == tuple(target)
    # The same physical point: voxel (i,j,k) in the input maps to the same world coordinate.
    ijk = np.array([1, 2, 3])
    world = affine[:3, :3] @ ijk + affine[:3, 3]
    new_ijk = np.linalg.solve(new_affine[:3, :3], world - new_affine[:3, 3])
    assert np.allclose(new_ijk, np.round(new_ijk))
    assert out[(0, *np.round(new_ijk).astype(int))] == array[0, 1, 2, 3]
    back = info.undo(out)
    assert back.shape == array.shape
    assert np.array_equal(back, array)


def test_reorient_identity_when_already_in_target():
    _, affine, info = reorient(np.zeros((1, 2, 3, 4)), np.eye(4), "RAS")
    assert info.is_identity
    assert np.array_equal(affine, np.eye(4))


def test_spacing_and_resampled_shape():
    affine = AFFINES["LAS-anisotropic"]
    assert spacing_of(affine) == (0.5, 0.5, 7.5)
    assert resampled_shape((49, 54, 9), (0.5, 0.5, 7.5), (1.0, 1.0, 5.0)) == (24, 27, 14)
    assert resampled_shape((3,), (0.1,), (10.0,)) == (1,)


def test_resample_linear_and_back_keeps_shape_and_constant_values():
    array = np.full((2, 10, 12, 5), 3.0, dtype=np.float32)
    up = resample(array, (20, 24, 9))
    assert up.shape == (2, 20, 24, 9)
    assert np.allclose(up, 3.0)
    back = resample(torch.from_numpy(up), (10, 12, 5))
    assert isinstance(back, torch.Tensor)
    assert tuple(back.shape) == (2, 10, 12, 5)


def test_resample_nearest_keeps_label_values():
    labels = np.zeros((1, 8, 8, 8), dtype=np.int64)
    labels[0, 2:6, 2:6, 2:6] = 3
    out = resample(labels, (16, 16, 16), mode="nearest")
    assert out.dtype == np.int64
    assert set(np.unique(out)) == {0, 3}
    assert (out == 3).sum() == 8 * 64

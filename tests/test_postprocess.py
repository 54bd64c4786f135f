import numpy as np
import pytest

from segtool.postprocess import (
    apply_postprocess,
    fill_holes,
    keep_largest_component,
    labels_from_probabilities,
    override,
    remove_small_objects,
)
from segtool.spec import Postprocess


def two_blobs():
    labels = np.zeros((10, 10, 4), dtype=np.uint8)
    labels[0:4, 0:4, :] = 1  # 64 voxels
    labels[7:9, 7:9, 0] = 1  # 4 voxels
    labels[5, 5, 2] = 2  # 1 voxel of label 2
    return labels


def test_keep_largest_keeps_one_component_per_label():
    out = keep_largest_component(two_blobs())
    assert (out == 1).sum() == 64
    assert (out == 2).sum() == 1  # a label's only component stays


def test_remove_small_objects_by_voxel_count():
    out = remove_small_objects(two_blobs(), 5)
    assert (out == 1).sum() == 64 and (out == 2).sum() == 0
    assert np.array_equal(remove_small_objects(two_blobs(), 1), two_blobs())


def test_fill_holes_fills_enclosed_background_only():
    ring = np.zeros((7, 7), dtype=np.uint8)
    ring[1:6, 1:6] = 3
    ring[3, 3] = 0
    out = fill_holes(ring)
    assert out[3, 3] == 3 and out[0, 0] == 0


def test_threshold_and_argmax():
    probs = np.array([[0.7, 0.4], [0.3, 0.6]], dtype=np.float32)  # (K=2, N=2)
    assert labels_from_probabilities(probs).tolist() == [0, 1]
    assert labels_from_probabilities(probs, threshold=0.25).tolist() == [1, 1]
    three = np.array([[0.2], [0.3], [0.5]])
    assert labels_from_probabilities(three, threshold=0.25).tolist() == [2]  # threshold only for binary


def test_apply_postprocess_converts_mm3_to_voxels_and_override_keeps_defaults():
    steps = Postprocess(min_size_mm3=10.0)
    out = apply_postprocess(two_blobs(), steps, voxel_volume_mm3=2.0)  # 10 mm3 = 5 voxels
    assert (out == 1).sum() == 64 and (out == 2).sum() == 0
    changed = override(Postprocess(threshold=0.5, fill_holes=True), threshold=None, keep_largest=True)
    assert changed == Postprocess(threshold=0.5, keep_largest=True, fill_holes=True)

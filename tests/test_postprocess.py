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


# --------------------------------------------------------------------------- levels by position

#: The disc data's voxel axes: axis 0 runs inferior, axis 1 posterior, axis 2 left (1 mm).
IPL = np.array([[0.0, 0, -1, 0], [0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]])
RAS = np.diag([0.8, 0.8, 2.0, 1.0])


def stacked_discs(affine=IPL):
    """Five blobs stacked along S, labelled by level: 1 (lowest, L5-S1) ... 5 (highest, L1-L2)."""
    labels = np.zeros((100, 20, 12), dtype=np.uint8)
    for level in range(1, 6):
        row = 90 - 20 * (level - 1)  # axis 0 runs inferior: level 1 at the largest row
        labels[row - 3 : row + 3, 5:15, 3:9] = level
    if affine is RAS:  # the same column with S along axis 2
        labels = np.ascontiguousarray(labels.transpose(2, 1, 0)[:, :, ::-1])
    return labels


def cranio_caudal_axis(affine):
    return 0 if affine is IPL else 2


def crop_lowest_two(labels, affine):
    """Keep the top three discs only (a partial field of view)."""
    if affine is IPL:
        return labels[:60].copy()
    return labels[:, :, 40:].copy()


def blobs_by_position(labels, affine):
    """(label, voxels) of each blob, lowest first."""
    from scipy import ndimage

    components, n = ndimage.label(labels > 0)
    axis = cranio_caudal_axis(affine)
    out = []
    for i in range(1, n + 1):
        mask = components == i
        centre = np.argwhere(mask)[:, axis].mean()
        out.append((centre, mask))
    out.sort(key=lambda t: -t[0] if affine is IPL else t[0])  # lowest (inferior) first
    return [(sorted(set(labels[m].tolist())), m) for _, m in out]


@pytest.mark.parametrize("affine", [IPL, RAS], ids=["IPL", "RAS"])
def test_relabel_by_position_keeps_correct_names(affine):
    from segtool.postprocess import relabel_by_position

    labels = stacked_discs(affine)
    assert np.array_equal(relabel_by_position(labels, affine, "S", 5), labels)
    cropped = crop_lowest_two(labels, affine)
    out = relabel_by_position(cropped, affine, "S", 5)
    assert np.array_equal(out, cropped)  # the discs it sees, not shifted to 1, 2, 3
    assert [names for names, _ in blobs_by_position(out, affine)] == [[3], [4], [5]]


@pytest.mark.parametrize("affine", [IPL, RAS], ids=["IPL", "RAS"])
def test_relabel_by_position_corrects_a_network_mistake_on_a_cropped_volume(affine):
    from segtool.postprocess import relabel_by_position

    truth = crop_lowest_two(stacked_discs(affine), affine)
    predicted = truth.copy()
    blobs = blobs_by_position(truth, affine)
    middle = np.argwhere(blobs[1][1])
    half = middle[: len(middle) * 2 // 5]
    predicted[tuple(half.T)] = 3  # L2-L3 blob: 60 % "4", 40 % "3"
    predicted[blobs[2][1]] = 4  # L1-L2 blob called "4" everywhere (a duplicate name)
    out = relabel_by_position(predicted, affine, "S", 5)
    assert np.array_equal(out, truth)


def test_relabel_by_position_anchors_on_the_lowest_confident_disc():
    from segtool.postprocess import relabel_by_position

    truth = crop_lowest_two(stacked_discs(), IPL)
    predicted = truth.copy()
    lowest = blobs_by_position(truth, IPL)[0][1]
    voxels = np.argwhere(lowest)
    predicted[tuple(voxels[: len(voxels) // 2].T)] = 2  # the lowest blob: half "2", half "3"
    out = relabel_by_position(predicted, IPL, "S", 5)
    assert np.array_equal(out, truth)  # anchored on the next blob up ("4"), counted down to 3


def test_relabel_by_position_groups_pieces_side_by_side_and_drops_specks():
    from segtool.postprocess import relabel_by_position

    labels = stacked_discs()
    labels[47:53, :, 6] = 0  # split L3-L4 (rows 47-52) in two, left and right
    labels[47:53, :, 7:9][labels[47:53, :, 7:9] > 0] = 4  # one half called "4"
    labels[60, 10, 6] = 2  # a one-voxel speck between L3-L4 and L4-L5
    labels[88, 17, 10] = 5  # a fragment beside L5-S1, within its extent
    from scipy import ndimage

    assert ndimage.label(labels[40:56] > 0, np.ones((3, 3, 3)))[1] == 2
    out = relabel_by_position(labels, IPL, "S", 5)
    assert set(np.unique(out[47:53])) == {0, 3}
    assert (out[47:53, 5:15, 3:9] > 0).sum() == 6 * 10 * 5
    assert out[60, 10, 6] == 0
    assert out[88, 17, 10] == 1


def test_relabel_by_position_drops_levels_beyond_the_labels_and_keeps_empty_maps():
    from segtool.postprocess import relabel_by_position

    labels = stacked_discs()
    labels[labels > 0] += 1  # the network calls L5-S1 "2": the top disc would be level 6
    out = relabel_by_position(labels, IPL, "S", 5)
    assert set(np.unique(out)) == {0, 2, 3, 4, 5}
    assert (out[7:13] == 0).all()
    empty = np.zeros((4, 4, 4), dtype=np.uint8)
    assert np.array_equal(relabel_by_position(empty, IPL, "S", 5), empty)


def test_apply_postprocess_relabels_before_keeping_the_largest_component():
    truth = crop_lowest_two(stacked_discs(), IPL)
    predicted = truth.copy()
    blobs = blobs_by_position(truth, IPL)
    predicted[blobs[2][1]] = 4
    steps = Postprocess(keep_largest=True, relabel_by_position="S")
    out = apply_postprocess(predicted, steps, 1.0, affine=IPL, num_labels=5)
    assert np.array_equal(out, truth)
    with pytest.raises(ValueError):
        apply_postprocess(predicted, steps, 1.0)
    with pytest.raises(Exception, match="relabel_by_position"):
        Postprocess(relabel_by_position="X")


def test_keep_largest_union_keeps_the_largest_object_with_its_own_labels():
    from segtool.postprocess import keep_largest_union

    labels = np.zeros((12, 12), dtype=np.uint8)
    labels[1:6, 1:4] = 2  # the large object: oedema around ...
    labels[2:4, 4:6] = 4  # ... an enhancing part touching it: one object of 19 pixels
    labels[9:11, 9:11] = 1  # a separate 4-pixel blob of a member label: removed
    labels[9:11, 1:3] = 7  # a label outside the union: untouched
    out = keep_largest_union(labels, (1, 2, 3, 4))
    expected = labels.copy()
    expected[9:11, 9:11] = 0
    assert np.array_equal(out, expected)
    # per-label largest components would have dropped nothing here, and the union step nothing of label 7
    assert np.array_equal(keep_largest_union(np.zeros((3, 3), np.uint8), (1,)), np.zeros((3, 3), np.uint8))


def test_keep_largest_union_runs_in_apply_postprocess_and_rejects_background():
    from segtool.postprocess import apply_postprocess
    from segtool.errors import InvalidSpecError
    from segtool.spec import Postprocess

    labels = np.zeros((4, 9), dtype=np.uint8)
    labels[1:3, 0:4] = 1
    labels[1:3, 6:8] = 2
    out = apply_postprocess(labels, Postprocess(keep_largest_union=[1, 2]), 1.0)
    assert out[1:3, 0:4].tolist() == [[1] * 4] * 2 and not out[:, 5:].any()
    with pytest.raises(InvalidSpecError, match="keep_largest_union"):
        Postprocess(keep_largest_union=(0, 1))


def test_no_keep_largest_also_turns_off_the_union_step(tmp_path):
    from segtool.segmenter import Segmenter

    default = Segmenter.from_task("brain-tumour", offline=True, cache_dir=tmp_path)
    assert default.options.postprocess.keep_largest_union == (1, 2, 3, 4)
    every = Segmenter.from_task("brain-tumour", offline=True, cache_dir=tmp_path, keep_largest=False)
    assert every.options.postprocess.keep_largest_union == () and not every.options.postprocess.keep_largest

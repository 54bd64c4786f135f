"""Partial field-of-view training patches for tasks that name levels by position (discs)."""

import numpy as np
import torch

from segtool.app import App
from segtool.spec import Postprocess, TaskSpec
from segtool.training.batches import StepBatches, choose_field_of_view
from segtool.training.field_of_view import FieldOfViewCut, cut_field_of_view


def _column(length=40, width=6):
    """A 2D (1, 1, width, length) image whose value is its row number (from 1) along axis 1, labels 1..4 in bands."""
    image = torch.arange(1, length + 1, dtype=torch.float32).repeat(width, 1)[None, None]
    labels = torch.zeros(1, width, length, dtype=torch.int64)
    for level, start in enumerate((5, 14, 23, 32), start=1):
        labels[0, :, start : start + 3] = level
    return image, labels


def test_every_cut_patch_is_a_centred_band_of_the_original_with_its_own_levels():
    image, labels = _column()
    cut = FieldOfViewCut(axis=1, probability=1.0, keep=(0.3, 0.6), restandardise=False)
    seen_lengths = set()
    for seed in range(30):
        x, y = cut_field_of_view(image, labels, cut, torch.Generator().manual_seed(seed))
        kept = np.flatnonzero(x[0, 0, 0].numpy() != 0)
        rows = x[0, 0, 0, kept].numpy()
        assert np.all(np.diff(rows) == 1)  # contiguous rows of the original, in order
        seen_lengths.add(len(rows))
        start = int(rows[0]) - 1
        # placed centred, as inference pads a smaller image
        assert kept[0] == (40 - len(rows)) // 2
        # labels moved with the image: each kept row keeps its level; outside the band nothing
        expected = labels[0, 0, start : start + len(rows)]
        assert torch.equal(y[0, 0, kept[0] : kept[0] + len(rows)], expected)
        assert int((y[0] > 0).sum()) == int((expected > 0).sum()) * 6
        assert 12 <= len(rows) <= 24
    assert len(seen_lengths) > 3  # the band's length varies


def test_probability_zero_leaves_patches_and_restandardise_gives_a_zscored_band():
    image, labels = _column()
    untouched, same = cut_field_of_view(image, labels, FieldOfViewCut(axis=1, probability=0.0), torch.Generator())
    assert torch.equal(untouched, image) and torch.equal(same, labels)
    cut = FieldOfViewCut(axis=1, probability=1.0, keep=(0.5, 0.5), restandardise=True)
    x, _ = cut_field_of_view(image, labels, cut, torch.Generator().manual_seed(3))
    band = x[0, 0, :, 10:30]
    assert abs(float(band.mean())) < 1e-5 and abs(float(band.std(unbiased=False)) - 1) < 1e-4  # numpy's std, as run
    assert float(x[0, 0, :, :10].abs().sum()) == 0 and float(x[0, 0, :, 30:].abs().sum()) == 0


def _levels_spec(**changes):
    base = dict(name="levels", description="d", modality="MRI", channels=("t2",), ndim=3, orientation="RAS",
                slice_axis=0, target_spacing=(None, 1.0, 1.0), patch_size=(32, 32), normalization="zscore",
                augmentation="mri-strong", labels={1: "a", 2: "b"}, network="unet",
                postprocess=Postprocess(relabel_by_position="S"), citation="c", licence="MIT")
    base.update(changes)
    return TaskSpec(**base)


def test_column_axis_follows_orientation_and_slice_axis():
    assert _levels_spec().column_axis == 1  # RAS, sagittal slices: S is the second in-plane axis
    assert _levels_spec(orientation="SAR", slice_axis=2).column_axis == 0
    assert _levels_spec(slice_axis=None, patch_size=(16, 16, 16)).column_axis == 2
    assert _levels_spec(postprocess=Postprocess(relabel_by_position="I")).column_axis == 1
    assert _levels_spec(postprocess=Postprocess()).column_axis is None
    assert _levels_spec(slice_axis=2).column_axis is None  # the column crosses the slices


def test_disc_training_cuts_its_column_and_other_tasks_do_not():
    registry = App().registry
    disc = choose_field_of_view(registry.get("disc"), augment=True)
    assert disc is not None and disc.axis == 1 and disc.restandardise
    assert choose_field_of_view(registry.get("disc"), augment=False) is None
    assert choose_field_of_view(registry.get("spinal-gm"), augment=True) is None


class _Sampler:
    def sample(self, rng):
        image, labels = _column()
        return image[:, :, None].numpy(), labels[:, None].numpy()  # one sagittal slice (axis 0)


def test_step_batches_apply_the_cut_reproducibly():
    cut = FieldOfViewCut(axis=1, probability=1.0, restandardise=False)
    batches = StepBatches(_Sampler(), None, seed=4, rank=0, slice_axis=0, field_of_view=cut)
    plain = StepBatches(_Sampler(), None, seed=4, rank=0, slice_axis=0)
    x, y = batches[7]
    again, _ = batches[7]
    assert torch.equal(x, again)
    assert int((x != 0).sum()) < int((plain[7][0] != 0).sum())
    assert int((y > 0).sum()) <= int((plain[7][1] > 0).sum())

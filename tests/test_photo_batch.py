"""Photos of a fixed-input-size task go through the network several at a time, each mapped back to its own size."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from segtool.app import App
from segtool.io.volume import Volume
from segtool.photo_batch import batchable, predict_photos
from segtool.pipeline import InferenceOptions, Segmenter


class CountingConvs(torch.nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        torch.manual_seed(4)
        self.first, self.second = torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.Conv2d(6, classes, 3, padding=1)
        with torch.no_grad():
            self.second.weight.mul_(6.0)
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.second(torch.tanh(self.first(x)))


def photo(rows: int, cols: int, seed: int) -> Volume:
    rng = np.random.default_rng(seed)
    return Volume(np.clip(rng.normal(120, 50, (3, rows, cols)), 0, 255).astype(np.float32), np.eye(4), None, "photo")


def test_photos_are_batched_and_each_gets_the_mask_it_gets_alone():
    spec = replace(App().registry.get("clothing"), input_size=(40, 30), patch_size=(40, 30), batch_size=4)
    model = CountingConvs(spec.num_classes).eval()
    segmenter = Segmenter(spec, model, InferenceOptions(device="cpu", precision="fp32"))
    assert batchable(spec, segmenter)
    photos = [photo(53, 47, 0), photo(20, 90, 1), photo(40, 30, 2), photo(71, 33, 3), photo(64, 64, 4)]
    photos.append(Volume(np.full((3, 12, 9), 7.0, np.float32), np.eye(4), None, "photo"))  # constant: empty mask
    model.batches.clear()
    batched = predict_photos(segmenter, photos)
    assert model.batches == [4, 1], "five non-constant photos: one pass of four, one of one"
    for volume, prediction in zip(photos, batched):
        alone = segmenter.predict(volume)
        assert prediction.labels.shape == volume.spatial_shape and prediction.labels.dtype == np.uint8
        full = segmenter.predict(volume, keep_probabilities=True).probabilities
        ordered = np.sort(full, axis=0)
        tied = (ordered[-1] - ordered[-2]) < 1e-5  # batched float32 sums may differ by rounding only
        assert np.array_equal(prediction.labels[~tied], alone.labels[~tied])
        assert (prediction.labels != alone.labels).mean() <= 1e-3
    assert not batched[-1].labels.any()


def test_tasks_without_a_fixed_input_size_are_not_batched_this_way():
    spec = App().registry.get("spinal-cord")
    segmenter = Segmenter(spec, torch.nn.Identity(), InferenceOptions(device="cpu", precision="fp32"))
    assert not batchable(spec, segmenter)


def test_batched_labels_are_assembled_row_by_row_like_a_single_photos():
    """Without --prob no photo's class probabilities are held at its own size: labels come a few rows at a time
    (`segtool.label_assembly`), as `Segmenter.predict` makes them for one photo; with --prob, from the full
    probabilities (the two may differ only where classes tie within float32 rounding)."""
    spec = replace(App().registry.get("clothing"), input_size=(40, 30), patch_size=(40, 30), batch_size=4)
    model = CountingConvs(spec.num_classes).eval()
    segmenter = Segmenter(spec, model, InferenceOptions(device="cpu", precision="fp32"))
    photos = [photo(97, 61, 5), photo(40, 30, 6), photo(23, 150, 7)]
    lean = predict_photos(segmenter, photos)
    full = predict_photos(segmenter, photos, keep_probabilities=True)
    for volume, a, b in zip(photos, lean, full):
        assert a.probabilities is None and b.probabilities.shape == (spec.num_classes, *volume.spatial_shape)
        assert a.labels.dtype == np.uint8 and a.labels.shape == volume.spatial_shape
        assert len(np.unique(a.labels)) > 1
        ordered = np.sort(b.probabilities, axis=0)
        tied = (ordered[-1] - ordered[-2]) < 1e-5
        assert np.array_equal(a.labels[~tied], b.labels[~tied]) and (a.labels != b.labels).mean() <= 1e-3
        alone = segmenter.predict(volume).labels  # batched float32 forward passes may differ by rounding only
        assert np.array_equal(a.labels[~tied], alone[~tied])

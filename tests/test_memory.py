"""`segtool run`'s lean path gives the masks of an independent float64 computation, for every built-in task.

`Segmenter.predict` never holds a volume of class probabilities (windows are summed a
few planes at a time and turned into uint8 labels as soon as they are finished,
`segtool.label_assembly`). Here each task's geometry (orientation, spacing, slice
axis, fixed input size, threshold) runs on a synthetic volume with a small patch (many
overlapping windows) and a seeded two-convolution network, and the labels are compared
with a plain numpy computation: every window's softmax weighted by the Gaussian map,
summed in float64, divided by the summed weights, resampled in float64, reoriented
back, argmax. The lean path sums in float32, so a voxel may differ only where two
classes are tied within float32 rounding: at most ``TIE`` apart in the reference
(and such voxels are rare: at most ``MAX_TIE_SHARE`` of the volume).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segtool.app import App
from segtool.inference import gaussian_importance, plan_windows
from segtool.io.volume import Volume
from segtool.pipeline import InferenceOptions, Segmenter, preprocess

#: Two classes closer than this in the float64 reference may come out either way (float32 sums).
TIE = 1e-5
MAX_TIE_SHARE = 1e-3

#: Voxel axis 0 runs toward I (1.3 mm), axis 1 toward R (0.9 mm), axis 2 toward A (2.2 mm): reoriented and resampled.
AFFINE = np.array([[0.0, 0.9, 0.0, 4.0], [0.0, 0.0, 2.2, -3.0], [-1.3, 0.0, 0.0, 7.0], [0.0, 0.0, 0.0, 1.0]])


def builtin_specs():
    return sorted(App().registry, key=lambda spec: spec.name)


class TwoConvs(torch.nn.Module):
    """A seeded stand-in for the task's network: same dimensions, channels and classes."""

    def __init__(self, dims: int, in_channels: int, classes: int):
        super().__init__()
        conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
        torch.manual_seed(3)
        self.first, self.second = conv(in_channels, 6, 3, padding=1), conv(6, classes, 3, padding=1)
        with torch.no_grad():
            self.second.weight.mul_(6.0)  # confident enough that ties are rare

    def forward(self, x):
        return self.second(torch.tanh(self.first(x)))


def small_task(spec):
    """The task with a small patch and fixed input size (many windows), no localiser and batches of 3."""
    patch = (12, 10, 6) if spec.network_dims == 3 else (16, 12)
    input_size = (40, 30) if spec.input_size is not None else None
    return replace(spec, patch_size=patch, input_size=input_size, locate=None, batch_size=3,
                   overlap=max(spec.overlap, 0.3))


def synthetic(spec) -> Volume:
    rng = np.random.default_rng(5)
    if spec.ndim == 2:
        shape = (spec.in_channels, 53, 47)
        array = rng.normal(120.0, 40.0, shape)
        if spec.normalization == "rgb":
            array = np.clip(array, 0, 255)
        array[:, :6] = 0.0
        return Volume(array.astype(np.float32), np.eye(4), None, "photo" if spec.normalization == "rgb" else "nifti")
    shape = (spec.in_channels, 19, 31, 17)
    array = rng.normal(300.0, 60.0, shape)
    array[:, :3] = 0.0
    return Volume(array.astype(np.float32), AFFINE, None, "nifti")


def reference(spec, model, volume) -> tuple[np.ndarray, np.ndarray]:
    """(labels, margin between the deciding probabilities) from float64 numpy sums."""
    prepared = preprocess(spec, volume)
    image = prepared.array.astype(np.float64)
    stack = np.moveaxis(image, spec.slice_axis + 1, 0) if spec.slice_axis is not None else image[None]
    patch = spec.patch_size
    plan = plan_windows(stack.shape[2:], patch, spec.overlap)
    padded = np.pad(stack, [(0, 0), (0, 0), *plan.pads])
    importance = gaussian_importance(patch).double().numpy()
    total = np.zeros((stack.shape[0], spec.num_classes, *plan.padded_shape))
    weight = np.zeros(plan.padded_shape)
    for where in plan.slices(patch):
        window = padded[(slice(None), slice(None), *where)].astype(np.float32)
        with torch.no_grad():
            logits = model(torch.from_numpy(window)).double().numpy()
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        total[(slice(None), slice(None), *where)] += exp / exp.sum(axis=1, keepdims=True) * importance
        weight[where] += importance
    total /= weight
    crop = tuple(slice(a, a + n) for (a, _), n in zip(plan.pads, stack.shape[2:]))
    probs = total[(slice(None), slice(None), *crop)]
    if spec.slice_axis is not None:  # (slices, K, *in-plane) -> (K, *spatial)
        probs = np.moveaxis(np.moveaxis(probs, 0, 1), 1, spec.slice_axis + 1)
    else:
        probs = probs[0]
    if probs.shape[1:] != prepared.oriented_shape:
        mode = "trilinear" if probs.ndim == 4 else "bilinear"
        probs = F.interpolate(torch.from_numpy(probs)[None], size=prepared.oriented_shape, mode=mode,
                              align_corners=False)[0].numpy()
    if prepared.reorientation is not None:
        probs = prepared.reorientation.undo(probs)
    threshold = spec.postprocess.threshold
    if threshold is not None and spec.num_classes == 2:
        return (probs[1] >= threshold).astype(np.uint8), np.abs(probs[1] - threshold)
    ordered = np.sort(probs, axis=0)
    return probs.argmax(axis=0).astype(np.uint8), ordered[-1] - ordered[-2]


@pytest.mark.parametrize("spec", builtin_specs(), ids=lambda spec: spec.name)
def test_lean_labels_equal_a_float64_reference(spec):
    task = small_task(spec)
    model = TwoConvs(task.network_dims, task.in_channels, task.num_classes).eval()
    segmenter = Segmenter(task, model, InferenceOptions(device="cpu", precision="fp32"))
    volume = synthetic(task)
    expected, margin = reference(task, model, volume)
    labels = segmenter.labels(volume)
    assert labels.dtype == np.uint8 and labels.shape == volume.spatial_shape
    assert len(np.unique(expected)) > 1, "the synthetic case must give more than one class"
    differ = labels != expected
    assert (margin[differ] < TIE).all(), f"labels differ where the reference is not tied: {margin[differ].max()}"
    assert differ.mean() <= MAX_TIE_SHARE
    # --prob keeps every probability on the input grid (the whole-image path): the same labels
    full = segmenter.predict(volume, keep_probabilities=True)
    lean = segmenter.predict(volume)
    assert np.array_equal(full.labels, lean.labels)
    assert lean.probabilities is None and full.volumes_mm3 == lean.volumes_mm3


def test_spinal_gm_crop_and_within_mm_give_the_labels_of_pasted_probabilities():
    """Localised: labels pasted into the box and cleared beyond within_mm equal the probability path's."""
    from test_spinal_gm import synthetic_neck

    from segtool.weights import HubSettings, build_model, resolve_model

    app = App()
    hub = HubSettings.from_env(offline_flag=True)

    def bundled(name):
        spec = app.registry.get(name)
        resolved = resolve_model(spec, None, hub, app.plugin_manager)
        return resolved.config.apply_to(spec), build_model(spec, resolved)

    options = InferenceOptions(device="cpu", precision="fp32")
    locator = Segmenter(*bundled("spinal-cord"), options)
    gm_spec, gm_model = bundled("spinal-gm")
    segmenter = Segmenter(gm_spec, gm_model, options, locator=locator)
    volume = Volume(synthetic_neck((200, 180, 3))[None], np.diag([-0.5, 0.5, 3.0, 1.0]), None, "nifti")
    lean = segmenter.predict(volume)
    full = segmenter.predict(volume, keep_probabilities=True)
    assert lean.labels.any() and np.array_equal(lean.labels, full.labels)

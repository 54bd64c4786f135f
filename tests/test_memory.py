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
from segtool.io.volume import Volume
from segtool.preprocess import preprocess
from segtool.segmenter import InferenceOptions, Segmenter
from segtool.windows import gaussian_importance, plan_windows

#: Two classes closer than this in the float64 reference may come out either way (float32 sums).
TIE = 1e-5
MAX_TIE_SHARE = 1e-3

#: Voxel axis 0 runs toward I (1.3 mm), axis 1 toward R (0.9 mm), axis 2 toward A (2.2 mm): reoriented and resampled.
AFFINE = np.array([[0.0, 0.9, 0.0, 4.0], [0.0, 0.0, 2.2, -3.0], [-1.3, 0.0, 0.0, 7.0], [0.0, 0.0, 0.0, 1.0]])


def builtin_specs(with_context: bool = False):
    """The installed tasks; with ``with_context`` also each slice-wise one as 2.5D (2 neighbours a side)."""
    specs = sorted(App().registry, key=lambda spec: spec.name)
    if with_context:
        specs += [replace(spec, name=f"{spec.name}-25d", slice_context=2)
                  for spec in specs if spec.slice_axis is not None and not spec.slice_context]
    return specs


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


def seeded_segmenter(task):
    """The seeded stand-in network for ``task`` and an fp32 CPU segmenter around it."""
    model = TwoConvs(task.network_dims, task.network_in_channels, task.num_classes).eval()
    return model, Segmenter(task, model, InferenceOptions(device="cpu", precision="fp32"))


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
    inputs, k = stack, spec.slice_context
    if k:  # 2.5D: each slice with its k neighbours on each side (zero beyond the volume), channel-major
        beyond = np.pad(stack, [(k, k)] + [(0, 0)] * (stack.ndim - 1))
        slabs = np.stack([beyond[i : i + 2 * k + 1] for i in range(stack.shape[0])])  # (S, 2k+1, C, *plane)
        inputs = np.swapaxes(slabs, 1, 2).reshape(stack.shape[0], -1, *stack.shape[2:])
    padded = np.pad(inputs, [(0, 0), (0, 0), *plan.pads])
    importance = gaussian_importance(patch).double().numpy()
    total = np.zeros((stack.shape[0], spec.num_classes, *plan.padded_shape))
    weight = np.zeros(plan.padded_shape)
    floor = stack.min(axis=(0, *range(2, stack.ndim)))  # each channel's lowest value
    for where in plan.slices(patch):
        window = padded[(slice(None), slice(None), *where)].astype(np.float32)
        with torch.no_grad():
            logits = model(torch.from_numpy(window)).double().numpy()
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = exp / exp.sum(axis=1, keepdims=True)
        # a window whose image part (padding aside) holds only the image's lowest values is background
        inner = tuple(slice(max(w.start - a, 0), min(w.stop - a, n)) for w, (a, _), n in zip(where, plan.pads,
                                                                                               stack.shape[2:]))
        part = stack[(slice(None), slice(None), *inner)]
        empty = (part.max(axis=tuple(range(2, part.ndim))) <= floor).all(axis=1)
        probs[empty] = np.eye(spec.num_classes)[0].reshape((1, -1) + (1,) * len(patch))
        total[(slice(None), slice(None), *where)] += probs * importance
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


@pytest.mark.parametrize("spec", builtin_specs(with_context=True), ids=lambda spec: spec.name)
def test_lean_labels_equal_a_float64_reference(spec):
    task = small_task(spec)
    model, segmenter = seeded_segmenter(task)
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


# --- the lean steps give the values of the plain whole-array computation they replace ---------------------------


@pytest.mark.parametrize("dtype, scaling, shape, cls, suffix", [
    (np.int16, (2.5, -3.0), (7, 9, 5), "Nifti1Image", ".nii.gz"),
    (np.float32, None, (7, 9, 5, 1), "Nifti1Image", ".nii"),
    (np.uint8, (0.1, 0.0), (6, 8), "Nifti2Image", ".nii"),
    (np.float64, None, (5, 4, 3), "Nifti2Image", ".nii.gz"),
    (np.int32, (1.0, 7.25), (11, 3, 6), "Nifti1Image", ".nii.gz"),
    (np.dtype(">f4"), None, (4, 5, 6), "Nifti1Image", ".nii"),
])
def test_nifti_images_are_read_plane_by_plane_with_get_fdata_values(tmp_path, monkeypatch, dtype, scaling, shape, cls,
                                                                    suffix):
    import nibabel as nib

    from segtool.io import nifti
    from segtool.io.readers import read_volume

    monkeypatch.setattr(nifti, "READ_CHUNK_BYTES", 64)  # a few planes per read: many slabs
    rng = np.random.default_rng(2)
    data = (rng.normal(0.0, 1000.0, shape) if np.dtype(dtype).kind == "f" else rng.integers(0, 120, shape)).astype(dtype)
    img = getattr(nib, cls)(data, np.diag([0.9, 1.1, 2.0, 1.0]), dtype=dtype)
    if scaling is not None:
        img.header.set_slope_inter(*scaling)
    path = tmp_path / f"img{suffix}"
    img.to_filename(str(path))
    assert nifti._read_float32_nifti(path) is not None, "the plane-by-plane path reads it"
    expected = nib.load(str(path)).get_fdata(dtype=np.float32)
    while expected.ndim > 3 and expected.shape[-1] == 1:
        expected = expected[..., 0]
    volume = read_volume(path)
    assert volume.array.dtype == np.float32 and volume.array.flags.c_contiguous
    assert volume.array.shape == (1, *expected.shape) and np.array_equal(volume.array[0], expected)
    if scaling is not None:
        assert not np.array_equal(volume.array[0], np.asarray(img.dataobj, dtype=np.float32)) or scaling == (1.0, 0.0)


def test_channel_files_are_read_into_one_array_never_all_held_with_their_stack(tmp_path, monkeypatch):
    """Three channel files: each moves into the stack as it is read, so the peak is the stack plus one file.

    Reading all three and concatenating (the old way) held 2x the input; numpy reports its
    buffers to tracemalloc, so the peak is counted exactly, without RSS noise.
    """
    import tracemalloc

    import nibabel as nib

    from segtool.io import nifti
    from segtool.io.channels import read_channels
    from segtool.io.readers import read_volume

    monkeypatch.setattr(nifti, "READ_CHUNK_BYTES", 40 * 50 * 4)  # one plane per read: the read buffer is small
    rng = np.random.default_rng(6)
    paths = []
    for name in ("a", "b", "c"):
        paths.append(tmp_path / f"{name}.nii")
        nib.save(nib.Nifti1Image(rng.normal(0.0, 1.0, (40, 50, 60)).astype(np.float32), np.eye(4)), paths[-1])
    expected = np.concatenate([read_volume(path).array for path in paths])
    tracemalloc.start()
    try:
        volume = read_channels(paths, 3, ("a", "b", "c"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert volume.array.dtype == np.float32 and volume.array.flags.c_contiguous and volume.array.flags.owndata
    assert np.array_equal(volume.array, expected) and volume.meta["channel_paths"] == paths
    assert peak < 1.5 * expected.nbytes  # stack + one file: 4/3; all files + their concatenation: 2


def test_a_channel_file_on_another_grid_is_still_refused_after_reading_into_one_array(tmp_path):
    import nibabel as nib

    from segtool.errors import GeometryError
    from segtool.io.channels import read_channels

    first, second = tmp_path / "a.nii", tmp_path / "b.nii"
    nib.save(nib.Nifti1Image(np.ones((6, 7, 8), dtype=np.float32), np.eye(4)), first)
    nib.save(nib.Nifti1Image(np.ones((6, 7, 9), dtype=np.float32), np.eye(4)), second)
    with pytest.raises(GeometryError, match="different grids: shape 6x7x8 vs 6x7x9"):
        read_channels([first, second], 3, ("a", "b"))


def test_damaged_nifti_files_still_get_the_whole_file_message(tmp_path):
    import nibabel as nib

    from segtool.errors import ImageReadError
    from segtool.io import nifti
    from segtool.io.readers import read_volume

    nib.save(nib.Nifti1Image(np.arange(600, dtype=np.float32).reshape(10, 6, 10), np.eye(4)), tmp_path / "a.nii.gz")
    nib.save(nib.Nifti1Image(np.arange(600, dtype=np.float32).reshape(10, 6, 10), np.eye(4)), tmp_path / "a.nii")
    raw, plain = (tmp_path / "a.nii.gz").read_bytes(), (tmp_path / "a.nii").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) - 6])
    crc = bytearray(raw)
    crc[-8] ^= 0xFF
    (tmp_path / "crc.nii.gz").write_bytes(bytes(crc))
    (tmp_path / "short.nii").write_bytes(plain[:-40])
    for name in ("cut.nii.gz", "crc.nii.gz", "short.nii"):
        assert nifti._read_float32_nifti(tmp_path / name) is None
        with pytest.raises(ImageReadError, match="corrupt or truncated"):
            read_volume(tmp_path / name)


def _whole_array_normalize(array: np.ndarray, method: str) -> np.ndarray:
    """The plain computation `segtool.normalize` does in slabs: whole-channel temporaries, float64 statistics."""
    out = np.empty_like(array)
    for c, channel in enumerate(array):
        mask = None
        if method == "zscore-nonzero":
            mask = channel != 0
        elif method == "zscore-foreground":
            border = np.concatenate([np.take(channel, i, axis=a).ravel() for a in range(channel.ndim) for i in (0, -1)])
            values, counts = np.unique(border, return_counts=True)
            mask = channel != (values[counts.argmax()] if counts.max() >= 0.5 * border.size else 0.0)
        values = channel
        if method == "percentile":
            lo, hi = np.percentile(channel, [0.5, 99.5])
            values = np.clip(channel, lo, hi)
        sample = values if mask is None else values[mask]
        if sample.size == 0:
            out[c] = 0.0
            continue
        wide = None if method == "zscore" else np.float64  # zscore keeps numpy's float32 statistics
        z = (values - float(sample.mean(dtype=wide))) / max(float(sample.std(dtype=wide)), 1e-8)
        if mask is not None:
            z[~mask] = 0.0
        out[c] = z
    return out


@pytest.mark.parametrize("method", ["zscore", "zscore-nonzero", "zscore-foreground", "percentile"])
def test_normalize_in_slabs_equals_the_whole_array_computation(monkeypatch, method):
    from segtool import normalize as normalize_module

    monkeypatch.setattr(normalize_module, "CHUNK_VOXELS", 50)  # a plane or two per slab
    rng = np.random.default_rng(4)
    array = (np.abs(rng.normal(300.0, 80.0, (2, 13, 11, 7))) ** 1.5).astype(np.float32)
    array[:, :2] = 0.0
    array[1] = np.where(rng.random(array[1].shape) < 0.3, 0.0, array[1])
    array[1, :, 0] = -2.5  # channel 1: a background value other than 0 on most of its border
    array[1, :, -1] = -2.5
    array[1, :, :, 0] = -2.5
    array[1, :, :, -1] = -2.5
    got = normalize_module.normalize(array, method)
    # masked or clipped samples are summed in float64 slabs, in another order than numpy's: the statistics
    # may differ in their last bits, the float32 values by one unit in the last place at most
    assert got.dtype == np.float32
    if method == "zscore":
        assert np.array_equal(got, _whole_array_normalize(array, method))
    else:
        np.testing.assert_array_max_ulp(got, _whole_array_normalize(array, method), maxulp=1)
    empty = np.zeros((1, 4, 5), np.float32)
    assert np.array_equal(normalize_module.normalize(empty, method), _whole_array_normalize(empty, method))


def test_postprocess_counts_and_looks_up_int32_components_in_chunks(monkeypatch):
    from scipy import ndimage

    from segtool import postprocess

    rng = np.random.default_rng(6)
    labels = (ndimage.uniform_filter(rng.random((24, 20, 18)), 3) * 6).astype(np.uint8) % 4
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    whole = [postprocess.keep_largest_component(labels), postprocess.remove_small_objects(labels, 9),
             postprocess.relabel_by_position(labels, affine, "S", 3)]
    assert all(np.array_equal(*pair) is False for pair in [(whole[0], labels), (whole[1], labels)])
    monkeypatch.setattr(postprocess, "CHUNK_VOXELS", 37)
    chunked = [postprocess.keep_largest_component(labels), postprocess.remove_small_objects(labels, 9),
               postprocess.relabel_by_position(labels, affine, "S", 3)]
    for a, b in zip(whole, chunked):
        assert a.dtype == b.dtype == np.uint8 and np.array_equal(a, b)
    _, components, sizes = next(postprocess._components(labels))
    assert components.dtype == np.uint16  # int32 only past 65,535 components
    assert np.array_equal(sizes[1:], np.bincount(components.ravel())[1:])


def test_component_maps_are_uint16_until_the_count_needs_int32():
    from scipy import ndimage

    from segtool import postprocess

    dots = np.zeros((520, 520), dtype=bool)
    dots[::2, ::2] = True  # 67,600 isolated pixels: more than uint16 can number
    structure = ndimage.generate_binary_structure(2, 1)
    components, count = postprocess.label_components(dots, structure)
    expected, expected_count = ndimage.label(dots, structure)
    assert components.dtype == np.int32 and count == expected_count == 67_600
    assert np.array_equal(components, expected)
    few, few_count = postprocess.label_components(dots[:20, :20], structure)
    assert few.dtype == np.uint16 and few_count == 100 and np.array_equal(few, ndimage.label(dots[:20, :20], structure)[0])
    labels = dots.astype(np.uint8)
    labels[100:140, 100:140] = 1  # one large component among the dots
    kept = postprocess.keep_largest_component(labels)  # over 65,535 components at full connectivity: int32
    full, _ = ndimage.label(labels == 1, ndimage.generate_binary_structure(2, 2))
    largest = np.bincount(full.ravel())[1:].argmax() + 1
    assert np.array_equal(kept, (full == largest).astype(np.uint8)) and kept[100:140, 100:140].all()


def test_argmax_over_classes_is_numpys_first_maximum():
    from segtool.label_assembly import argmax_classes

    rng = np.random.default_rng(8)
    for classes in (2, 3, 14):
        probs = rng.integers(0, 4, (9, classes, 11, 5)).astype(np.float32) / 4  # many exact ties
        assert np.array_equal(argmax_classes(probs), np.argmax(probs, axis=1))
    probs[0, 1, 0, 0] = probs[3, 2, 4, 1] = np.nan
    assert np.array_equal(argmax_classes(probs), np.argmax(probs, axis=1))


def test_outputs_onto_an_input_by_another_name_are_refused_with_the_inputs_indexed_once(tmp_path, monkeypatch):
    """The inputs' real paths and inodes are found once per call; each write then costs one lookup (thousands of photos)."""
    import os

    from segtool.errors import OutputExistsError
    from segtool.io.atomic import InputIndex, _check_target

    paths = [tmp_path / f"in{i}.png" for i in range(3)]
    for path in paths:
        path.write_bytes(b"x")
    inputs = [InputIndex(paths)]
    (tmp_path / "hard.png").hardlink_to(paths[1])
    (tmp_path / "soft.png").symlink_to(paths[2])
    calls = []
    real = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p, *a, **k: calls.append(p) or real(p, *a, **k))
    for target in (tmp_path / "hard.png", tmp_path / "soft.png", paths[0]):
        with pytest.raises(OutputExistsError, match="refusing to overwrite an input image"):
            _check_target(target, inputs, overwrite=True)
    _check_target(tmp_path / "new.png", inputs, overwrite=False)  # missing: no input's other name
    (tmp_path / "old.png").write_bytes(b"y")
    _check_target(tmp_path / "old.png", inputs, overwrite=True)
    with pytest.raises(OutputExistsError, match="output exists"):
        _check_target(tmp_path / "old.png", inputs, overwrite=False)
    assert len(calls) == 6  # one per check, none per input

@pytest.mark.parametrize("out_shape", [(97, 61), (23, 11), (40, 30)])
@pytest.mark.parametrize("threshold", [None, 0.3])
def test_image_labels_equal_bilinear_probabilities_then_argmax(monkeypatch, out_shape, threshold):
    """Only boundary pixels are interpolated, a few rows at a time; the labels are those of the whole bilinear map."""
    import segtool.label_assembly as assembly

    monkeypatch.setattr(assembly, "PLANES_BYTES", 2000)  # many row groups
    rng = np.random.default_rng(11)
    classes = 2 if threshold is not None else 5
    logits = F.interpolate(torch.from_numpy(rng.normal(0, 3, (1, classes, 6, 5))).float(), size=(40, 30),
                           mode="bilinear", align_corners=False)[0]
    probs = torch.softmax(logits, dim=0)
    full = F.interpolate(probs[None].double(), size=out_shape, mode="bilinear", align_corners=False)[0].numpy()
    if threshold is None:
        expected = full.argmax(axis=0)
        ordered = np.sort(full, axis=0)
        margin = ordered[-1] - ordered[-2]
    else:
        expected, margin = full[1] >= threshold, np.abs(full[1] - threshold)
    labels = assembly.image_labels(probs, out_shape, threshold)
    assert labels.dtype == np.uint8 and labels.shape == out_shape
    assert len(np.unique(expected)) > 1
    assert (margin[labels != expected] < TIE).all()
    streamed = assembly.LabelAssembler((40, 30), out_shape, 0, threshold)
    streamed.add(0, probs.movedim(1, 0))
    assert np.array_equal(labels, streamed.finish())


def test_image_labels_rank_nan_as_numpy_does():
    from segtool.label_assembly import image_labels

    probs = torch.full((3, 4, 4), 0.2)
    probs[1] = 0.5
    probs[2, 1, 1] = float("nan")
    labels = image_labels(probs, (8, 8))
    expected = np.argmax(F.interpolate(probs[None], size=(8, 8), mode="bilinear", align_corners=False)[0].numpy(), axis=0)
    assert np.array_equal(labels, expected) and (labels == 2).any() and (labels == 1).any()


@pytest.mark.parametrize("patch", [(16, 12), (40, 30)], ids=["windows", "one-window"])
def test_batched_photos_get_the_labels_of_a_float64_reference(patch):
    """Photos of other sizes than the input size, batched through one forward pass: each photo's labels as alone.

    With the patch equal to the input size (clothing's own setting) each photo is one
    window, whose Gaussian weight `segtool.sliding_window` leaves out; the reference keeps it.
    """
    from segtool.windows import plan_windows
    from segtool.photo_batch import predict_photos

    task = replace(small_task(App().registry.get("clothing")), patch_size=patch)
    assert (len(plan_windows((40, 30), patch, task.overlap).starts) == 1) == (patch == (40, 30))
    model, segmenter = seeded_segmenter(task)
    rng = np.random.default_rng(8)
    volumes = [Volume(np.clip(rng.normal(120.0, 60.0, (3, *shape)), 0, 255).astype(np.float32), np.eye(4), None,
                      "photo") for shape in [(53, 47), (17, 90), (40, 30), (120, 77)]]
    predictions = predict_photos(segmenter, volumes)
    for volume, prediction in zip(volumes, predictions):
        expected, margin = reference(task, model, volume)
        assert prediction.labels.shape == volume.spatial_shape and len(np.unique(expected)) > 1
        differ = prediction.labels != expected
        assert (margin[differ] < TIE).all() and differ.mean() <= MAX_TIE_SHARE


@pytest.mark.parametrize("method", ["zscore", "zscore-nonzero", "zscore-foreground", "percentile", "none"])
def test_normalising_in_place_gives_the_same_values_in_the_same_array(method):
    from segtool.normalize import normalize

    rng = np.random.default_rng(2)
    array = rng.normal(50.0, 20.0, (2, 9, 8, 7)).astype(np.float32)
    array[:, :2] = 0.0
    expected = normalize(array, method)
    result = normalize(array, method, in_place=True)
    assert result is array and np.array_equal(result, expected)


@pytest.mark.parametrize("spacing", [1.0, 0.7], ids=["same grid", "resampled"])
def test_preprocess_never_writes_over_the_input_volume(spacing):
    """The model-grid copy is normalised in place only when it is preprocess's own (resampled), never the input."""
    spec = replace(App().registry.get("spinal-cord"), target_spacing=(spacing, spacing, None))
    rng = np.random.default_rng(4)
    array = rng.normal(300.0, 60.0, (1, 20, 18, 5)).astype(np.float32)
    volume = Volume(array, np.eye(4), None, "nifti")
    before = array.copy()
    prepared = preprocess(spec, volume)
    assert np.array_equal(volume.array, before)
    assert abs(float(prepared.array.mean())) < 0.5  # normalised
    assert not np.may_share_memory(prepared.array, volume.array)


@pytest.mark.parametrize("spec", builtin_specs(), ids=lambda spec: spec.name)
def test_consuming_the_input_gives_the_same_prediction(spec):
    """`segtool run` lets the image be normalised in place (no overlay, no QC): the same labels and volumes."""
    task = small_task(spec)
    model, segmenter = seeded_segmenter(task)
    volume = synthetic(task)
    shape = volume.array.shape
    kept = segmenter.predict(replace(volume, array=volume.array.copy()))
    consumed = segmenter.predict(volume, consume_input=True)
    assert np.array_equal(kept.labels, consumed.labels) and kept.volumes_mm3 == consumed.volumes_mm3
    assert volume.array.shape == shape and set(volume.array.strides) == {0} and not volume.array.any()



def test_a_consumed_input_on_the_model_grid_is_normalised_in_its_own_array():
    spec = replace(App().registry.get("spinal-cord"), target_spacing=None)
    array = np.random.default_rng(4).normal(300.0, 60.0, (1, 20, 18, 5)).astype(np.float32)
    volume = Volume(array, np.eye(4), None, "nifti")
    expected = preprocess(spec, replace(volume, array=array.copy())).array
    prepared = preprocess(spec, volume, consume_input=True)
    assert np.shares_memory(prepared.array, array) and np.array_equal(prepared.array, expected)

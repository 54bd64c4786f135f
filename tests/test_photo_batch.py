"""Photos of a fixed-input-size task go through the network several at a time, each mapped back to its own size."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from segtool.app import App
from segtool.io.volume import Volume
from segtool.photo_batch import batchable, predict_photos
from segtool.segmenter import InferenceOptions, Segmenter


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


def test_photos_are_batched_with_test_time_flips_too():
    spec = replace(App().registry.get("clothing"), input_size=(40, 30), patch_size=(40, 30), batch_size=4)
    model = CountingConvs(spec.num_classes).eval()
    flipping = Segmenter(spec, model, InferenceOptions(device="cpu", precision="fp32", tta=True))
    plain = Segmenter(spec, model, InferenceOptions(device="cpu", precision="fp32"))
    assert batchable(flipping)
    photos = [photo(53, 47, 0), photo(20, 90, 1), photo(40, 30, 2), photo(71, 33, 3), photo(64, 64, 4)]
    model.batches.clear()
    batched = predict_photos(flipping, photos, keep_probabilities=True)
    assert model.batches == [4, 1, 4, 1], "each flip: one pass of four, one of one"
    for volume, prediction in zip(photos, batched):
        alone = flipping.predict(volume, keep_probabilities=True).probabilities
        np.testing.assert_allclose(prediction.probabilities, alone, atol=1e-5)
    unflipped = predict_photos(plain, photos, keep_probabilities=True)
    assert max(np.abs(a.probabilities - b.probabilities).max() for a, b in zip(batched, unflipped)) > 0.05


def test_tasks_without_a_fixed_input_size_are_not_batched_this_way():
    spec = App().registry.get("spinal-cord")
    segmenter = Segmenter(spec, torch.nn.Identity(), InferenceOptions(device="cpu", precision="fp32"))
    assert not batchable(segmenter)


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


# ----------------------------------------------------------------------------- `segtool run` on many photos


#: the batch size of every forward pass of `counting_one_conv` networks, in order
FORWARD_PASSES: list[int] = []


def counting_one_conv(spatial_dims: int, in_channels: int, out_channels: int):
    """The one-conv network, recording each forward pass's batch size in FORWARD_PASSES."""
    from tiny_task import one_conv

    network = one_conv(spatial_dims, in_channels, out_channels)
    network.register_forward_pre_hook(lambda module, inputs: FORWARD_PASSES.append(int(inputs[0].shape[0])))
    return network


def _skin_model_folder(folder, factory=None):
    """The clothing task with a one-conv network (bright -> skin 2, dark -> background) and its model folder."""
    from output_tasks import skin_photo_folder

    return skin_photo_folder(folder, factory)

def _block_photo(path, rows, cols, top, left, size):
    from PIL import Image

    rgb = np.full((rows, cols, 3), 20, np.uint8)
    rgb[top : top + size, left : left + size] = 240
    Image.fromarray(rgb).save(path)


@pytest.mark.parametrize("batch", [2, 16])
def test_run_on_many_photos_writes_each_the_mask_it_gets_alone_in_input_order(tmp_path, batch):
    """--batch-size 2 and 16, read ahead and written behind: an unreadable photo in the middle fails alone with one
    line, the others get the masks they get one by one, and results come in input order. (On the CPU each photo
    still has a forward pass of its own: see the test above.)"""
    import json

    from click.testing import CliRunner
    from PIL import Image

    from segtool.cli import cli
    from tiny_task import app_with

    spec = _skin_model_folder(tmp_path)
    shapes = [(60, 40, 5, 3, 20), (33, 90, 10, 50, 15), (48, 48, 0, 0, 30), (120, 70, 70, 10, 40), (25, 25, 5, 5, 9)]
    photos = []
    for i, shape in enumerate(shapes):
        photos.append(tmp_path / f"p{i}.png")
        _block_photo(photos[-1], *shape)
    broken = tmp_path / "p2b.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    photos.insert(3, broken)
    base = ["run", "clothing", "--model-dir", str(tmp_path), "--precision", "fp32"]
    result = CliRunner().invoke(cli, [*base, *map(str, photos), "--batch-size", str(batch), "--output-dir",
                                      str(tmp_path / "together"), "--json"], obj=app_with(spec))
    assert result.exit_code != 0
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["input"] for r in rows] == [str(p) for p in photos]
    assert [r["status"] for r in rows] == ["done", "done", "done", "failed", "done", "done"]
    assert "p2b" in rows[3]["error"] and "\n" not in rows[3]["error"]
    for photo in photos:
        if photo == broken:
            assert not (tmp_path / "together" / "p2b_seg.png").exists()
            continue
        alone = CliRunner().invoke(cli, [*base, str(photo), "--output-dir", str(tmp_path / "alone")],
                                   obj=app_with(spec))
        assert alone.exit_code == 0, alone.output
        with Image.open(tmp_path / "together" / f"{photo.stem}_seg.png") as a, \
                Image.open(tmp_path / "alone" / f"{photo.stem}_seg.png") as b:
            together, single = np.asarray(a), np.asarray(b)
        with Image.open(photo) as im:
            assert together.shape == (im.height, im.width)
        assert set(np.unique(together)) == {0, 2}
        assert np.array_equal(together, single)


def test_run_on_photos_finds_each_block_one_forward_pass_a_photo_on_the_cpu_and_none_for_a_constant_one(tmp_path):
    """`segtool run` on photos of several sizes: each bright block becomes skin (2) at its photo's own size, the
    constant photo gets an empty mask without going through the network, and on the CPU (`forward_step`) each
    photo has a forward pass of its own whatever --batch-size says."""
    from click.testing import CliRunner
    from PIL import Image

    from segtool.cli import cli
    from tiny_task import app_with

    spec = _skin_model_folder(tmp_path, counting_one_conv)
    shapes = [(60, 40, 5, 3, 20), (33, 90, 10, 50, 15), (48, 48, 0, 0, 30), (120, 70, 70, 10, 40), (64, 64, 12, 20, 25)]
    photos = []
    for i, shape in enumerate(shapes):
        photos.append(tmp_path / f"p{i}.png")
        _block_photo(photos[-1], *shape)
    photos.insert(2, tmp_path / "flat.png")
    Image.fromarray(np.full((12, 9, 3), 7, np.uint8)).save(photos[2])
    FORWARD_PASSES.clear()
    result = CliRunner().invoke(cli, ["run", "clothing", "--model-dir", str(tmp_path), "--precision", "fp32",
                                      *map(str, photos), "--batch-size", "4", "--output-dir", str(tmp_path / "out")],
                                obj=app_with(spec))
    assert result.exit_code == 0, result.output
    assert FORWARD_PASSES == [1] * 5
    with Image.open(tmp_path / "out" / "flat_seg.png") as mask:
        assert mask.size == (9, 12) and not np.asarray(mask).any()
    for photo, (rows, cols, top, left, size) in zip([p for p in photos if p.stem != "flat"], shapes):
        with Image.open(tmp_path / "out" / f"{photo.stem}_seg.png") as mask:
            labels = np.asarray(mask)
        block = np.zeros((rows, cols), dtype=bool)
        block[top:top + size, left:left + size] = True
        assert labels.shape == (rows, cols) and set(np.unique(labels)) == {0, 2}
        found = labels == 2
        assert 2 * (found & block).sum() / (found.sum() + block.sum()) > 0.85, photo.name  # 0.91-0.98 measured


def test_read_ahead_keeps_at_most_depth_reads_in_flight_and_yields_in_order():
    import threading
    import time as clock

    from segtool.cases import read_ahead

    lock, started, done = threading.Lock(), [], set()

    def read(item):
        with lock:
            started.append(item)
        clock.sleep(0.005)
        done.add(item)
        return item * 10

    seen = []
    for item, future in read_ahead(list(range(9)), read, depth=3):
        assert future.result() == item * 10
        clock.sleep(0.02)  # the caller's work: the reader runs ahead meanwhile, but no further than depth
        assert max(started) <= item + 3
        seen.append(item)
    assert seen == list(range(9)) and started == list(range(9))


def test_reads_handed_out_complete_even_when_the_caller_takes_them_all_at_once():
    """A caller that collects a whole batch of futures before waiting on any (as the photo pipeline does for
    its last, short batch) gets every read, not a cancelled one."""
    import time as clock

    from segtool.cases import read_ahead

    def slow(item):
        clock.sleep(0.01)
        return item + 100

    pairs = list(read_ahead(list(range(6)), slow, depth=16))
    assert [future.result() for _, future in pairs] == list(range(100, 106))


def test_a_caller_that_stops_early_leaves_no_read_running():
    from segtool.cases import read_ahead

    reads = []
    generator = read_ahead(list(range(20)), reads.append, depth=4)
    next(generator)
    generator.close()
    count = len(reads)
    assert count <= 5
    import time as clock

    clock.sleep(0.05)
    assert len(reads) == count


def test_spacing_of_is_nibabels_voxel_sizes_for_rotated_and_sheared_affines():
    import nibabel as nib

    from segtool.io.volume import spacing_of

    rng = np.random.default_rng(2)
    for _ in range(5):
        affine = np.eye(4)
        affine[:3, :3] = rng.normal(size=(3, 3))
        affine[:3, 3] = rng.normal(size=3)
        assert np.allclose(spacing_of(affine), nib.affines.voxel_sizes(affine), rtol=0, atol=1e-12)


def test_running_a_photo_task_does_not_import_nifti_dicom_or_scipy(tmp_path):
    """Photo runs start faster: nibabel, pydicom and scipy are only imported by the steps that use them."""
    import subprocess
    import sys

    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 40, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    code = (
        "import sys\n"
        "from segtool.cli import main\n"
        f"sys.argv = ['segtool', 'run', 'clothing', {str(tmp_path / 'a.jpg')!r}, '--offline', '-q', '--output-dir', "
        f"{str(tmp_path / 'out')!r}]\n"
        "try:\n    main()\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n"
        "print(sorted(m for m in ('nibabel', 'pydicom', 'scipy', 'SimpleITK', 'highdicom') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "a_seg.png").is_file()


NETWORK_INPUTS: list = []


def recording_one_conv(spatial_dims: int, in_channels: int, out_channels: int):
    """The one-conv network, recording for each image of a forward pass its size and how many of its pixels
    are bright (above the middle of its range) in NETWORK_INPUTS."""
    from tiny_task import one_conv

    def record(module, inputs):
        for image in inputs[0]:
            first = image[0]
            middle = (first.max() + first.min()) / 2
            NETWORK_INPUTS.append((tuple(first.shape), int((first > middle).sum())))

    network = one_conv(spatial_dims, in_channels, out_channels)
    network.register_forward_pre_hook(record)
    return network


@pytest.mark.parametrize("trained_size, window, block", [([48, 40], (48, 40), 256), (None, (60, 50), 400)])
def test_photos_go_through_the_network_at_the_size_the_model_was_trained_at(tmp_path, trained_size, window, block):
    """The task declares 32 x 24; a model folder trained at 48 x 40, or on photos at their own size (null), is
    run at that size, one photo alone and two in a batch: the 20 x 20 block of a 60 x 50 photo covers
    20·20·(48/60)·(40/50) = 256 pixels, or all 400 (at the task's 32 x 24 it would be ~102). Before, the photo
    path resized to the task's size (and padded to the model's window): a planned brain-tumour-2d model
    trained on whole 256² slices saw 128² ones and found nothing."""
    import json

    from click.testing import CliRunner

    from segtool.cli import cli
    from tiny_task import app_with

    spec = _skin_model_folder(tmp_path, recording_one_conv)
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    config.update(input_size=trained_size, patch_size=list(window))
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    photos = [tmp_path / "a.png", tmp_path / "b.png"]
    for path in photos:
        _block_photo(path, 60, 50, 10, 10, 20)
    for inputs in ([photos[0]], photos):
        NETWORK_INPUTS.clear()
        result = CliRunner().invoke(cli, ["run", "clothing", "--model-dir", str(tmp_path), "--precision", "fp32",
                                          "--output-dir", str(tmp_path / f"out{len(inputs)}"), "--overwrite",
                                          *map(str, inputs)], obj=app_with(spec))
        assert result.exit_code == 0, result.output
        assert len(NETWORK_INPUTS) == len(inputs)
        for shape, bright in NETWORK_INPUTS:
            assert shape == window and bright == pytest.approx(block, rel=0.1), NETWORK_INPUTS

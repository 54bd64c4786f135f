"""Multi-channel 2D inputs and `segtool run --stack`, on synthetic TIFF slices made here.

The test task is a 3-channel 2D task (pre, flair, post) whose model is one 1x1
convolution: bright pixels (positive z-score) become label 1 (see tiny_task.py).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segtool.cli import cli
from segtool.runner import group_cases
from segtool.stacking import natural_key, plan_stacks, stack_files
from tiny_task import app_with, make_bundled_package, make_spec

CHANNELS = ("pre", "flair", "post")
_counter = itertools.count()


def bundled_tri(tmp_path, monkeypatch, **overrides):
    """A 3-channel 2D test task with bundled one-conv weights (``overrides``: other spec fields)."""
    package = f"tiny_tri_{next(_counter)}"
    ref = make_bundled_package(tmp_path / "site", package, make_spec("tri", ndim=2, channels=CHANNELS, **overrides))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return make_spec("tri", ndim=2, channels=CHANNELS, models={"default": ref}, **overrides)


@pytest.fixture
def tri(tmp_path, monkeypatch):
    return bundled_tri(tmp_path, monkeypatch)


def invoke(spec, args):
    return CliRunner().invoke(cli, args, obj=app_with(spec))


def save_rgb(path: Path, pixels: np.ndarray) -> Path:
    """A 3-channel uint8 TIFF, (rows, cols, 3), as the LGG slices are stored."""
    Image.fromarray(pixels.astype(np.uint8), mode="RGB").save(path, compression="tiff_deflate")
    return path


def blob_slice(shape=(24, 20), box=None) -> np.ndarray:
    pixels = np.zeros(shape + (3,), dtype=np.uint8)
    if box is not None:
        (r0, r1), (c0, c1) = box
        pixels[r0:r1, c0:c1] = 200
    return pixels


def patient(folder: Path, boxes: list, shapes=None, stem: str = "TCGA_XX_0001_20000101") -> list[Path]:
    """Slices stem_1.tif ... stem_N.tif (with a _mask.tif beside each, as in the dataset)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, box in enumerate(boxes, start=1):
        shape = shapes[i - 1] if shapes else (24, 20)
        paths.append(save_rgb(folder / f"{stem}_{i}.tif", blob_slice(shape, box)))
        Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(folder / f"{stem}_{i}_mask.tif")
    return paths


def read_mask(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


# --------------------------------------------------------------------------- grouping and planning


def test_natural_sort_orders_slice_numbers():
    names = ["P_10.tif", "P_2.tif", "P_1.tif", "P_11.tif", "P_3.tif"]
    assert [p.name for p in sorted(map(Path, names), key=natural_key)] == [
        "P_1.tif", "P_2.tif", "P_3.tif", "P_10.tif", "P_11.tif"]


def test_folder_stack_skips_masks_outputs_and_other_files(tmp_path, tri):
    paths = patient(tmp_path / "p", [None] * 11)
    (tmp_path / "p" / "TCGA_XX_0001_20000101_1_seg.tif").write_bytes(b"x")
    (tmp_path / "p" / "notes.txt").write_text("x")
    (tmp_path / "p" / ".hidden.tif").write_bytes(b"x")
    assert stack_files(tmp_path / "p") == paths  # _1, _2, ..., _10, _11
    (stack,) = plan_stacks([tmp_path / "p"], tri)
    assert [c.inputs for c in stack.cases] == [(p,) for p in paths]


def test_one_file_with_all_channels_or_one_file_per_channel(tmp_path, tri):
    rgb = save_rgb(tmp_path / "rgb.tif", blob_slice(box=((2, 9), (3, 8))))
    greys = []
    for name in CHANNELS:
        greys.append(tmp_path / f"{name}.tif")
        Image.fromarray(blob_slice(box=((2, 9), (3, 8)))[..., 0]).save(greys[-1])
    cases = group_cases([rgb, *greys, rgb], tri)
    assert [c.inputs for c in cases] == [(rgb,), tuple(greys), (rgb,)]


def test_three_channel_tiff_is_one_case_channels_in_file_order(tmp_path, tri):
    pixels = blob_slice(box=((2, 9), (3, 8)))
    pixels[..., 0], pixels[..., 2] = 0, 0  # only the middle channel (flair) is bright
    src = save_rgb(tmp_path / "slice.tif", pixels)
    from segtool.io import read_channels

    vol = read_channels([src], 2, CHANNELS)
    assert vol.array.shape == (3, 24, 20)
    assert vol.array[0].max() == 0 and vol.array[1].max() == 200 and vol.array[2].max() == 0
    result = invoke(tri, ["run", "tri", str(src), "-q"])
    assert result.exit_code == 0, result.output
    mask = read_mask(tmp_path / "slice_seg.tif")
    assert mask.shape == (24, 20) and mask[2:9, 3:8].all() and mask.sum() == 7 * 5


def test_three_single_channel_files_make_one_case(tmp_path, tri):
    paths = []
    for name in CHANNELS:
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(blob_slice(box=((2, 9), (3, 8)))[..., 0]).save(paths[-1])
    result = invoke(tri, ["run", "tri", *map(str, paths), "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'pre_seg.png'}\n"
    assert read_mask(tmp_path / "pre_seg.png").sum() == 35


def test_single_channel_input_is_a_one_line_error_naming_the_channels(tmp_path, tri):
    grey = tmp_path / "flair.tif"
    Image.fromarray(blob_slice()[..., 0]).save(grey)
    result = invoke(tri, ["run", "tri", str(grey), "-q"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "3 channels" in lines[0] and "pre, flair, post" in lines[0] and "flair.tif holds 1" in lines[0]
    assert not list(tmp_path.glob("*_seg*"))


# --------------------------------------------------------------------------- --stack through the CLI


def test_stack_postprocesses_in_3d_and_writes_every_slice(tmp_path, tri):
    # slices 1-4: one tumour through the volume; slice 6: a small separate blob. In 2D the
    # blob is its slice's largest component; in 3D it is not, so --keep-largest drops it.
    big = ((4, 14), (4, 12))
    boxes = [big, big, big, big, None, ((18, 21), (15, 18))] + [None] * 5
    paths = patient(tmp_path / "p", boxes)
    out = tmp_path / "out"
    result = invoke(tri, ["run", "tri", "--stack", str(tmp_path / "p"), "--keep-largest", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    written = [out / f"{p.stem}_seg.tif" for p in paths]
    assert result.stdout.splitlines() == [str(w) for w in written]  # slice order 1..11
    masks = [read_mask(w) for w in written]
    assert all(m.shape == (24, 20) for m in masks)
    assert all(masks[i][4:14, 4:12].all() and masks[i].sum() == 80 for i in range(4))
    assert masks[5].sum() == 0  # removed in 3D
    # without --stack, each slice alone keeps its blob
    alone = invoke(tri, ["run", "tri", str(paths[5]), "--keep-largest", "--output-dir", str(tmp_path / "alone"), "-q"])
    assert alone.exit_code == 0, alone.output
    assert read_mask(tmp_path / "alone" / f"{paths[5].stem}_seg.tif").sum() == 9


def test_stack_with_a_fixed_network_input_makes_masks_at_the_slices_own_resolution(tmp_path, monkeypatch):
    """input_size 12x10 on 24x20 slices: the stacked masks equal the slice-by-slice ones (probabilities
    resized back linearly before labels), not 2x2 blocks of labels made at the network's size."""
    spec = bundled_tri(tmp_path, monkeypatch, input_size=(12, 10))
    rows = np.arange(24, dtype=float)[:, None] ** 3 * (230 / 23**3)  # a ramp: z-score 0 inside a 2x2 block
    ramp = np.repeat(np.repeat(rows, 20, axis=1)[..., None], 3, axis=2)
    folder = tmp_path / "p"
    folder.mkdir()
    paths = [save_rgb(folder / f"TCGA_XX_0001_20000101_{i}.tif", ramp) for i in (1, 2, 3)]
    stacked = invoke(spec, ["run", "tri", "--stack", str(folder), "--output-dir", str(tmp_path / "s"), "-q"])
    alone = invoke(spec, ["run", "tri", *map(str, paths), "--output-dir", str(tmp_path / "a"), "-q"])
    assert stacked.exit_code == 0 and alone.exit_code == 0, stacked.output + alone.output
    for p in paths:
        mask = read_mask(tmp_path / "s" / f"{p.stem}_seg.tif")
        assert mask.shape == (24, 20)
        assert np.array_equal(mask, read_mask(tmp_path / "a" / f"{p.stem}_seg.tif"))
        first = int(np.flatnonzero(mask[:, 0])[0])
        assert first % 2 == 1 and mask[first:].all() and not mask[:first].any()  # edge inside a 2x2 block


def test_stack_files_of_one_folder_and_own_sizes(tmp_path, tri):
    box = ((2, 8), (2, 8))
    paths = patient(tmp_path / "p", [box, box, box], shapes=[(24, 20), (30, 26), (24, 20)])
    result = invoke(tri, ["run", "tri", "--stack", *map(str, reversed(paths)), "--json", "-q"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in records] == [str(p) for p in paths]  # sorted by slice number
    assert all(r["status"] == "done" for r in records)
    shapes = [read_mask(r["output"]).shape for r in records]
    assert shapes == [(24, 20), (30, 26), (24, 20)]
    assert read_mask(records[1]["output"]).sum() > 0


def test_stack_two_patients_and_min_size(tmp_path, tri):
    a = patient(tmp_path / "a", [((2, 12), (2, 12))] * 3, stem="A")
    b = patient(tmp_path / "b", [((2, 4), (2, 4))] * 2, stem="B")  # 2x2x2 = 8 voxels in 3D
    result = invoke(tri, ["run", "tri", "--stack", str(tmp_path / "a"), str(tmp_path / "b"),
                          "--min-size", "6", "-q"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 5
    assert all(read_mask(p.with_name(f"{p.stem}_seg.tif")).sum() == 100 for p in a)
    # each slice alone holds 4 pixels (< 6) but the 3D component holds 8: kept
    assert all(read_mask(p.with_name(f"{p.stem}_seg.tif")).sum() == 4 for p in b)


def test_stack_fails_as_a_whole_and_writes_nothing(tmp_path, tri):
    paths = patient(tmp_path / "p", [((2, 8), (2, 8))] * 3)
    paths[1].write_bytes(b"II*\x00 not really a tiff")
    result = invoke(tri, ["run", "tri", "--stack", str(tmp_path / "p"), "--json", "-q"])
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 3 and all(r["status"] == "failed" for r in records)
    assert not list((tmp_path / "p").glob("*_seg.tif"))


def test_stack_skip_existing_and_overwrite(tmp_path, tri):
    patient(tmp_path / "p", [((2, 8), (2, 8))] * 2)
    first = invoke(tri, ["run", "tri", "--stack", str(tmp_path / "p"), "-q"])
    assert first.exit_code == 0, first.output
    again = invoke(tri, ["run", "tri", "--stack", str(tmp_path / "p"), "-q"])
    assert again.exit_code == 2 and "already exist" in again.stderr and "--overwrite" in again.stderr  # before work
    skipped = invoke(tri, ["run", "tri", "--stack", str(tmp_path / "p"), "--skip-existing", "--json", "-q"])
    assert skipped.exit_code == 0
    assert {json.loads(line)["status"] for line in skipped.stdout.splitlines()} == {"skipped"}
    redo = invoke(tri, ["run", "tri", "--stack", str(tmp_path / "p"), "--overwrite", "-q"])
    assert redo.exit_code == 0 and len(redo.stdout.splitlines()) == 2


def test_stack_usage_errors(tmp_path, tri):
    (tmp_path / "empty").mkdir()
    result = invoke(tri, ["run", "tri", "--stack", str(tmp_path / "empty"), "-q"])
    assert result.exit_code == 2 and "no image slices" in result.stderr
    three_d = make_spec("tiny3", models={"default": tri.models["default"]})
    result = invoke(three_d, ["run", "tiny3", "--stack", str(tmp_path / "empty"), "-q"])
    assert result.exit_code == 2 and "3D" in result.stderr


def test_run_help_mentions_stack():
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert result.exit_code == 0 and "--stack" in result.output


def test_brain_tumour_2d_declares_the_lgg_channels_and_takes_one_tiff(tmp_path):
    from segtool.app import App

    spec = App(warn=lambda message: None).registry.get("brain-tumour-2d")
    assert spec.channels == ("pre_contrast", "flair", "post_contrast")  # the dataset's order
    assert spec.network == "attention_unet" and dict(spec.labels) == {1: "tumour"}
    assert spec.input_size == spec.patch_size == (128, 128) and spec.augmentation == "photo"  # a whole slice a window
    slice_ = save_rgb(tmp_path / "TCGA_XX_0001_20000101_1.tif", blob_slice((256, 256), ((9, 40), (9, 40))))
    assert [c.inputs for c in group_cases([slice_, slice_], spec)] == [(slice_,), (slice_,)]
    grey = tmp_path / "flair.tif"
    Image.fromarray(blob_slice()[..., 0]).save(grey)
    result = CliRunner().invoke(cli, ["run", "brain-tumour-2d", str(grey), "-q"])
    assert result.exit_code == 2
    assert "pre_contrast, flair, post_contrast" in result.stderr and len(result.stderr.strip().splitlines()) == 1

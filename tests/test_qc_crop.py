"""QC shows the segmented structure: crops with a margin (whole field of view on request),
readable panel sizes, titled prediction/reference rows, no empty fields, and paths
relative to the QC folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segtool import qc
from segtool.cli import cli
from segtool.io import Volume
from segtool.qc.crop import balanced, fit_hw, structure_box
from segtool.qc.mosaic import TITLE_COLOUR, TITLE_HEIGHT

# a whole-neck-like field of view: 256 x 256 x 20 voxels of 0.5 x 0.5 x 5 mm, RAS
BIG = (256, 256, 20)
BIG_AFFINE = np.diag([0.5, 0.5, 5.0, 1.0])
GM = (slice(126, 129), slice(130, 132), slice(8, 12))  # a few voxels of "gray matter"


def big_case(seed: int = 0) -> tuple[Volume, np.ndarray]:
    rng = np.random.default_rng(seed)
    array = rng.normal(100.0, 20.0, (1, *BIG)).astype(np.float32)
    labels = np.zeros(BIG, np.int16)
    labels[GM] = 1
    return Volume(array=array, affine=BIG_AFFINE), labels


def rgb_of(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).astype(int)


def colour_box(pixels: np.ndarray, value: int) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(np.all(pixels == np.asarray(qc.label_colour(value)), axis=-1))
    assert rows.size, f"label {value} not drawn"
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def first_tile(pixels: np.ndarray, width: int) -> np.ndarray:
    return pixels[:, :width]


# --------------------------------------------------------------------------- the crop


def test_box_is_the_structure_plus_half_its_extent_or_20_mm():
    _, labels = big_case()
    spacing = (0.5, 0.5, 5.0)
    # x: 1.5 mm -> 20 mm = 40 voxels each side; y: 1 mm -> 40 voxels; z: 20 mm -> 10 mm < 20 mm -> 4 slices
    assert structure_box([labels], spacing, 20.0) == (slice(86, 169), slice(90, 172), slice(4, 16))
    wide = np.zeros(BIG, bool)
    wide[20:220, 100:110, 0:2] = True  # 100 mm along x: margin 50 mm = 100 voxels, clipped to the volume
    assert structure_box([wide], spacing, 20.0) == (slice(0, 256), slice(60, 150), slice(0, 6))
    assert structure_box([np.zeros(BIG, bool)], spacing, 20.0) == (slice(0, 256), slice(0, 256), slice(0, 20))


def test_thin_panels_are_widened_then_enlarged():
    # rows 100 mm, cols 20 mm (1 mm voxels): the columns grow, centred, to 50 mm, shifted inside the image
    shape, spacing = (300, 300), (1.0, 1.0)
    assert balanced((slice(100, 200), slice(140, 160)), shape, spacing, (0, 1)) == (slice(100, 200), slice(125, 175))
    assert balanced((slice(100, 200), slice(0, 20)), shape, spacing, (0, 1)) == (slice(100, 200), slice(0, 50))
    assert balanced((slice(0, 300), slice(290, 300)), shape, spacing, (0, 1)) == (slice(0, 300), slice(150, 300))
    assert fit_hw(40.0, 40.0, 256) == (256, 256)
    assert fit_hw(16.0, 43.0, 256) == (128, 344)  # shorter side at least 128 px
    assert fit_hw(20.0, 200.0, 256) == (102, 1024)  # ... unless the longer would pass 4 x 256


def test_small_structure_in_a_large_field_of_view_is_cropped(tmp_path):
    image, labels = big_case()
    cropped = qc.render_case(image, labels, {1: "gm"}, tmp_path / "crop", "c", n_slices=1)
    full = qc.render_case(image, labels, {1: "gm"}, tmp_path / "full", "c", n_slices=1, full_fov=True)
    # crop (x 41.5 mm, y 41 mm, z 60 mm): axial 41 x 41.5 mm, sagittal 60 x 41 mm, coronal 60 x 41.5 mm
    assert [rgb_of(p).shape[:2] for p in cropped] == [(253, 256), (256, 175), (256, 177)]
    # whole field of view: axial 128 x 128 mm, sagittal / coronal 100 x 128 mm
    assert [rgb_of(p).shape[:2] for p in full] == [(256, 256), (200, 256), (200, 256)]
    # axial, radiological: x runs right to left over the 83 cropped voxels, y bottom to top over 82
    r0, r1, c0, c1 = colour_box(rgb_of(cropped[0]), 1)
    assert abs(r0 - (172 - 132) * 253 / 82) <= 1.5 and abs(r1 - (172 - 130) * 253 / 82) <= 1.5
    assert abs(c0 - (169 - 129) * 256 / 83) <= 1.5 and abs(c1 - (169 - 126) * 256 / 83) <= 1.5
    r0, r1, c0, c1 = colour_box(rgb_of(full[0]), 1)
    assert (r1 - r0, c1 - c0) == (2, 3)  # a dot in the whole field of view: 1 px per voxel


def test_comparison_crop_holds_both_masks_and_titles_the_rows(tmp_path):
    image, _ = big_case()
    pred, gt = np.zeros(BIG, np.int16), np.zeros(BIG, np.int16)
    pred[100:103, 120:123, 9:11] = 1
    gt[150:153, 120:123, 9:11] = 2
    (axial, _, _) = qc.render_comparison(image, pred, gt, {}, tmp_path, "cmp", n_slices=1, size=128)
    pixels = rgb_of(axial)
    # x spans 100..153 (26.5 mm) + 20 mm each side = 133 voxels; y 3 voxels + 40 each side = 83
    # (balanced: 41.5 mm >= 66.5 / 2): tile 80 x 128, two rows under their title bands
    h, w = 80, 128
    assert pixels.shape[:2] == (2 * (TITLE_HEIGHT + h) + qc.GAP, w)
    top = pixels[TITLE_HEIGHT : TITLE_HEIGHT + h]
    bottom = pixels[2 * TITLE_HEIGHT + h + qc.GAP :]
    assert colour_box(top, 1) and colour_box(bottom, 2)
    for band in (pixels[:TITLE_HEIGHT], pixels[TITLE_HEIGHT + h + qc.GAP : 2 * TITLE_HEIGHT + h + qc.GAP]):
        assert np.all(band == TITLE_COLOUR, axis=-1).sum() > 20  # white title text
        assert np.all(band == qc.GAP_COLOUR, axis=-1).mean() > 0.5
    # prediction (label 1, smaller x) on the right of the radiological picture, reference on the left
    assert colour_box(top, 1)[2] > w // 2 > colour_box(bottom, 2)[3]


def test_photo_is_cropped_in_pixels(tmp_path):
    rgb = np.full((3, 200, 300), 90, np.uint8)
    labels = np.zeros((200, 300), np.uint8)
    labels[95:105, 145:155] = 1  # 10 px: + 32 px each side = 74 x 74 px
    photo = Volume(array=rgb, affine=np.eye(4), kind="photo")
    (crop,) = qc.render_case(photo, labels, {}, tmp_path / "a", "p")
    (full,) = qc.render_case(photo, labels, {}, tmp_path / "b", "p", full_fov=True)
    assert rgb_of(crop).shape[:2] == (512, 512) and rgb_of(full).shape[:2] == (341, 512)
    r0, r1, c0, c1 = colour_box(rgb_of(crop), 1)
    assert (r0, r1, c0, c1) == (221, 291, 221, 291)  # 32/74 and 42/74 of 512


# --------------------------------------------------------------------------- the page


def test_page_hides_empty_fields_and_names_prediction_and_reference(tmp_path):
    image, labels = big_case()
    row = {"task": "spinal-gm", "input": "in.nii.gz", "probabilities": None, "error": None, "note": "",
           "extra": {"a": None}, "seconds": 1.5}  # fmt: skip
    qc.qc_case(tmp_path, image, labels, {1: "gm"}, row, n_slices=1, size=64)
    qc.qc_comparison(tmp_path, image, labels, labels, {1: "gm"}, {"task": "evaluate", "input": "pred.nii.gz",
                     "output": "gt.nii.gz", "dice": {"gm": 1.0}}, n_slices=1, size=64)  # fmt: skip
    text = (tmp_path / "index.html").read_text(encoding="utf-8")
    for hidden in ("probabilities", "None", "note:", "extra"):
        assert hidden not in text, hidden
    assert '<span class="what">prediction:</span>' in text and "pred.nii.gz" in text
    assert '<span class="what">reference:</span>' in text and "gt.nii.gz" in text
    assert "reference volumes: gm: 30 mm³" in text  # 3 x 2 x 4 voxels of 1.25 mm³
    assert text.count("<figcaption>axial (top: prediction, bottom: reference)</figcaption>") == 1
    assert text.count("<figcaption>axial</figcaption>") == 1


def test_paths_in_the_page_are_relative_to_the_qc_folder(tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    image, labels = big_case()
    qc.qc_case("out/qc", image, labels, {}, {"input": "data/in.nii.gz", "output": str(tmp_path / "seg.nii.gz")},
               n_slices=1, size=32)  # fmt: skip
    (record,) = qc.QcReport("out/qc").read_records()
    assert record["row"]["input"] == "../../data/in.nii.gz"
    assert record["row"]["output"] == "../../../seg.nii.gz"
    assert [i["src"] for i in record["images"]] == [f"images/{record['case_id']}_{v}.png" for v in qc.VIEWS]
    moved = tmp_path / "elsewhere" / "qc"
    shutil.move("out/qc", moved)
    text = (moved / "index.html").read_text(encoding="utf-8")
    assert "../../data/in.nii.gz" in text and str(tmp_path) not in text
    for picture in record["images"]:
        assert f'src="{picture["src"]}"' in text and (moved / picture["src"]).is_file()


# --------------------------------------------------------------------------- the commands


def test_qc_command_full_fov(tmp_path):
    image, labels = big_case()
    nib.save(nib.Nifti1Image(image.array[0], BIG_AFFINE), tmp_path / "t2.nii.gz")
    nib.save(nib.Nifti1Image(labels, BIG_AFFINE), tmp_path / "gm.nii.gz")
    sizes = {}
    for flag in ((), ("--full-fov",)):
        out = tmp_path / ("full" if flag else "crop")
        args = ["qc", str(tmp_path / "t2.nii.gz"), str(tmp_path / "gm.nii.gz"), "--qc", str(out), "--slices", "1"]
        result = CliRunner().invoke(cli, [*args, *flag])
        assert result.exit_code == 0, result.output
        pngs = sorted((out / "images").glob("*.png"))  # axial, coronal, sagittal
        sizes[out.name] = [rgb_of(p).shape[:2] for p in pngs]
    assert sizes == {"crop": [(253, 256), (256, 177), (256, 175)], "full": [(256, 256), (200, 256), (200, 256)]}


@pytest.fixture
def tiny3d(tmp_path, monkeypatch):
    from tiny_task import app_with, make_bundled_package, make_spec

    ref = make_bundled_package(tmp_path / "site", "tiny_qc_crop_weights", make_spec("tiny"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return app_with(make_spec("tiny", models={"default": ref}))


def test_run_qc_full_fov(tmp_path, tiny3d):
    data = np.zeros((96, 96, 8), np.float32)
    data[40:43, 50:53, 3:5] = 100.0  # bright: the tiny model's label 1
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "b.nii.gz")
    widths = {}
    for flag in ((), ("--qc-full-fov",)):
        qc_dir = tmp_path / ("full" if flag else "crop")
        args = ["run", "tiny", str(tmp_path / "b.nii.gz"), "--qc", str(qc_dir), "--overwrite", "-q", "--json"]
        result = CliRunner().invoke(cli, [*args, *flag], obj=tiny3d)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout.splitlines()[0])["volumes_mm3"] == {"bright": 36.0}
        (sagittal,) = (qc_dir / "images").glob("*_sagittal.png")
        widths[qc_dir.name] = rgb_of(sagittal).shape[:2]
    # 3 sagittal slices; crop: y 3 + 2 x 20 voxels (43 mm) by z 16 mm -> 128 x 344 px tiles; whole: 96 mm -> 768 px
    assert widths == {"crop": (128, 3 * 344 + 2 * qc.GAP), "full": (128, 3 * 768 + 2 * qc.GAP)}
    result = CliRunner().invoke(cli, ["run", "tiny", str(tmp_path / "b.nii.gz"), "--qc-full-fov"], obj=tiny3d)
    assert result.exit_code == 2 and result.output.strip() == "segtool: error: --qc-full-fov needs --qc DIR"

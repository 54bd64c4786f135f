"""The clothing task (issue 12): the seed's 14 classes, photo input of any kind, palette masks, overlays, scores."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segtool.cli import cli
from tiny_task import app_with, one_conv

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "plugins", ROOT / "benchmarks", ROOT / "scripts"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from segtool_clothing import CCP_TAGS, CLASSES, CLOTHING  # noqa: E402

LABEL_LIST = ROOT.parent / "shared" / "data" / "clothing" / "label_list.mat"

#: The issue's table, verbatim: value, class, CCP tags (index: name).
ISSUE_TABLE = """\
0 | background | 0 null
1 | hair | 19 hair
2 | skin | 41 skin
3 | accessories | 1 accessories, 2 bag, 3 belt, 9 bracelet, 15 earrings, 17 glasses, 18 gloves, 29 necklace, 33 purse, 34 ring, 47 sunglasses, 56 wallet, 57 watch
4 | hat | 20 hat
5 | coat | 4 blazer, 10 cape, 11 cardigan, 13 coat, 22 hoodie, 24 jacket, 26 jumper, 46 suit, 48 sweater, 49 sweatshirt, 55 vest
6 | shirt | 5 blouse, 6 bodysuit, 38 shirt, 51 t-shirt, 54 top
7 | trousers | 25 jeans, 27 leggings, 31 pants, 40 shorts
8 | dress | 14 dress, 35 romper
9 | skirt | 42 skirt
10 | underwear | 8 bra, 23 intimate, 30 panties, 50 swimwear
11 | socks | 44 socks, 45 stockings, 53 tights
12 | scarf/tie | 37 scarf, 52 tie
13 | shoes | 7 boots, 12 clogs, 16 flats, 21 heels, 28 loafers, 32 pumps, 36 sandals, 39 shoes, 43 sneakers, 58 wedges
"""


def issue_rows():
    for line in ISSUE_TABLE.splitlines():
        value, name, tags = (part.strip() for part in line.split("|"))
        yield int(value), name, tuple((int(t.split(" ", 1)[0]), t.split(" ", 1)[1]) for t in tags.split(", "))


# ----------------------------------------------------------------------------- the class table


def test_class_table_is_the_issues_exactly():
    assert [(v, n, tags) for v, n, _, tags in CLASSES] == list(issue_rows())
    assert dict(CLOTHING.labels) == {v: n for v, n, _, _ in CLASSES if v}
    assert list(CLOTHING.labels) == list(range(1, 14)) and CLOTHING.num_classes == 14


def test_labels_map_covers_every_ccp_tag_once_by_name():
    mapping = dict(CLOTHING.labels_map)
    assert sorted(mapping) == list(range(59))
    for value, _, _, tags in CLASSES:
        for index, name in tags:
            assert CCP_TAGS[index] == name
            assert mapping[index] == value


@pytest.mark.skipif(not LABEL_LIST.is_file(), reason="CCP data folder absent")
def test_ccp_tags_match_label_list_mat():
    from scipy.io import loadmat

    names = tuple(str(x[0]) for x in loadmat(str(LABEL_LIST))["label_list"][0])
    assert names == CCP_TAGS


def test_colours_are_distinct_and_used_for_every_class():
    colours = CLOTHING.label_colours()
    assert sorted(colours) == list(range(14))
    assert len(set(colours.values())) == 14
    assert colours == {v: c for v, _, c, _ in CLASSES}


# ----------------------------------------------------------------------------- photos in, masks out

#: logit(skin) = 8 * mean(normalised RGB), logit(background) = 1: bright pixels become skin (2), the rest background.
SKIN = 2


def skin_state():
    import torch

    weight = torch.zeros((14, 3, 1, 1))
    weight[SKIN] = 8.0 / 3
    bias = torch.zeros(14)
    bias[0] = 1.0  # dark pixels: background, not a tie between the other classes
    return {"weight": weight, "bias": bias}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The clothing task with a one-conv network (bright -> skin), and its model folder."""
    from safetensors.torch import save_file

    from segtool.model_config import ModelConfig

    spec = replace(CLOTHING, network=None, model_factory=one_conv, model_kwargs={}, input_size=(32, 24),
                   patch_size=(32, 24), models={}, default_model=None)
    folder = tmp_path_factory.mktemp("clothing-model")
    save_file(skin_state(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(ModelConfig.for_spec(spec).to_json(), encoding="utf-8")
    return spec, folder


def run(spec, *args, ok=True):
    result = CliRunner().invoke(cli, [str(a) for a in args], obj=app_with(spec))
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def bright_square(rows=60, cols=40):
    """RGB uint8: a bright block in the top-left quarter, dark elsewhere."""
    rgb = np.full((rows, cols, 3), 20, np.uint8)
    rgb[: rows // 2, : cols // 2] = 240
    return rgb


def test_exif_rotated_jpeg_gives_a_mask_at_the_displayed_size(model, tmp_path):
    spec, folder = model
    stored = bright_square(60, 40)  # stored 40 wide x 60 high, bright top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # viewers rotate 90 degrees clockwise: displayed 60 wide x 40 high, bright top-right
    Image.fromarray(stored).save(tmp_path / "photo.jpg", quality=95, exif=exif)
    run(spec, "run", "clothing", "--model-dir", folder, tmp_path / "photo.jpg", "--precision", "fp32")
    with Image.open(tmp_path / "photo_seg.png") as im:
        assert im.size == (60, 40)
        mask = np.asarray(im)
    assert mask[5, 55] == SKIN and mask[35, 5] == 0
    assert (mask[:18, 32:] == SKIN).all() and (mask[22:, :] == 0).all() and (mask[:, :28] == 0).all()


@pytest.mark.parametrize("mode", ["RGBA", "L", "LA", "P"])
def test_rgba_grey_and_palette_photos_are_accepted(model, tmp_path, mode):
    spec, folder = model
    image = Image.fromarray(bright_square(50, 30)).convert(mode)
    image.save(tmp_path / "photo.png")
    run(spec, "run", "clothing", "--model-dir", folder, tmp_path / "photo.png", "--precision", "fp32")
    with Image.open(tmp_path / "photo_seg.png") as im:
        assert im.size == (30, 50)
        mask = np.asarray(im)
    assert mask[5, 5] == SKIN and mask[45, 25] == 0


@pytest.mark.parametrize("suffix", [".webp", ".tif"])
def test_webp_and_tiff_photos_of_any_size(model, tmp_path, suffix):
    spec, folder = model
    Image.fromarray(bright_square(123, 77)).save(tmp_path / f"photo{suffix}", **({"lossless": True} if suffix == ".webp" else {}))
    run(spec, "run", "clothing", "--model-dir", folder, tmp_path / f"photo{suffix}", "--precision", "fp32")
    out = tmp_path / ("photo_seg.png" if suffix == ".webp" else "photo_seg.tif")
    with Image.open(out) as im:
        assert im.size == (77, 123)


def test_mask_is_an_indexed_png_with_the_tasks_palette(model, tmp_path):
    spec, folder = model
    Image.fromarray(bright_square()).save(tmp_path / "photo.jpg")
    run(spec, "run", "clothing", "--model-dir", folder, tmp_path / "photo.jpg", "--precision", "fp32")
    with Image.open(tmp_path / "photo_seg.png") as im:
        assert im.mode == "P"
        palette = im.getpalette()[: 14 * 3]
        values = set(np.unique(np.asarray(im)).tolist())
    assert [tuple(palette[3 * v : 3 * v + 3]) for v in range(14)] == [c for _, _, c, _ in CLASSES]
    assert values == {0, SKIN}


def test_overlay_is_written_beside_the_mask_with_a_legend(model, tmp_path):
    spec, folder = model
    Image.fromarray(bright_square()).save(tmp_path / "photo.png")  # lossless: exact pixel values to compare
    result = run(spec, "run", "clothing", "--model-dir", folder, tmp_path / "photo.png", "--overlay",
                 "--precision", "fp32")
    assert "photo_seg.png" in result.output
    with Image.open(tmp_path / "photo_overlay.png") as im:
        assert im.mode == "RGB" and im.width > 40 and im.height >= 60
        picture = np.asarray(im).astype(int)
    skin = np.array(CLOTHING.label_colours()[SKIN])
    assert np.abs(picture[10, 10] - (0.5 * 240 + 0.5 * skin)).max() <= 3  # blended in the class colour
    assert np.abs(picture[50, 35] - 20).max() <= 3  # background untouched
    assert (np.abs(picture[:, 40:] - skin).max(axis=-1) == 0).any()  # the legend's swatch


def test_overlay_is_refused_for_3d_tasks(tmp_path):
    from tiny_task import make_spec

    spec = make_spec()
    result = run(spec, "run", spec.name, tmp_path / "x.nii.gz", "--overlay", ok=False)
    assert result.exit_code == 2 and "--overlay" in result.output


# ----------------------------------------------------------------------------- training: default map, @file


def test_val_cases_from_a_file(tmp_path):
    from segtool.commands.train import _names

    listing = tmp_path / "val.txt"
    listing.write_text("# held out\n0009\n0026, 0031\n\n", encoding="utf-8")
    assert _names(None, None, (f"@{listing}", "0040")) == ("0009", "0026", "0031", "0040")
    result = CliRunner().invoke(cli, ["train", "clothing", str(tmp_path), "-o", str(tmp_path / "m"),
                                      "--val-cases", f"@{tmp_path / 'missing.txt'}"])
    assert result.exit_code == 2 and "missing.txt" in result.output


def test_train_applies_the_tasks_labels_map_and_val_cases_file(tmp_path):
    """CCP tag values on disk, the task's map merges them: no --labels-map needed."""
    spec = replace(CLOTHING, network=None, model_factory=one_conv, model_kwargs={}, input_size=(16, 12),
                   patch_size=(16, 12), batch_size=2, augmentation="none", models={},
                   default_model=None)
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for name in ("0001", "0002", "0003", "0004"):
        Image.fromarray(rng.integers(0, 255, (20, 14, 3), dtype=np.uint8)).save(data / f"{name}.png")
        tags = np.zeros((20, 14), np.uint8)
        tags[:10] = 41  # skin
        tags[10:, :7] = 58  # wedges -> shoes
        Image.fromarray(tags).save(data / f"{name}_seg.png")
    (tmp_path / "val.txt").write_text("0004\n", encoding="utf-8")
    out = tmp_path / "model"
    run(spec, "train", "clothing", data, "-o", out, "--epochs", "1", "--steps-per-epoch", "1",
        "--val-cases", f"@{tmp_path / 'val.txt'}", "--precision", "fp32", "--device", "cpu", "-q")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    training = config["training"]
    assert training["data"]["validation_cases"] == ["0004"]
    assert "41:2" in training["labels_map"] and "58:13" in training["labels_map"]
    assert config["input_size"] == [16, 12]
    result = run(spec, "train", "clothing", data, "-o", tmp_path / "m2", "--epochs", "1", "--steps-per-epoch", "1",
                 "--labels-map", "none", "--precision", "fp32", "--device", "cpu", "-q", ok=False)
    assert result.exit_code != 0 and "41" in result.output  # CCP values are not the task's without the map


# ----------------------------------------------------------------------------- the seed's scores


def test_seed_iou_definition_on_a_hand_computed_example():
    from accuracy_clothing import clothing_counts, seed_scores

    # photo A: truth [0 0 1 1], prediction [0 1 1 1]; photo B: truth [0 0 0 0], prediction [0 0 1 0]
    a = clothing_counts(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), 3)
    b = clothing_counts(np.array([0, 0, 1, 0]), np.array([0, 0, 0, 0]), 3)
    assert a.tolist() == [[1, 0, 1], [2, 1, 0], [0, 0, 0]]
    s = seed_scores([a, b])
    # class 0 in both photos: A IoU 1/2, B IoU 3/4 -> 0.625; precision A 1/1, B 3/3 -> 1
    # class 1 only in A's truth (B's false positive does not count per photo): IoU 2/3, precision 2/3
    assert s["iou"][0] == pytest.approx(0.625) and s["precision"][0] == pytest.approx(1.0)
    assert s["iou"][1] == pytest.approx(2 / 3) and s["precision"][1] == pytest.approx(2 / 3)
    assert s["iou"][2] is None and s["photos"] == [2, 1, 0]
    assert s["mean_iou"] == pytest.approx((0.625 + 2 / 3) / 2)
    # pooled: class 0 TP 4, FP 0, FN 2 -> 4/6; class 1 TP 2, FP 2, FN 0 -> 2/4
    assert s["dataset_iou"][0] == pytest.approx(4 / 6) and s["dataset_iou"][1] == pytest.approx(0.5)
    assert s["mean_dataset_iou"] == pytest.approx((4 / 6 + 0.5) / 2)


def test_prepare_split_is_seeded_and_holds_out_the_count():
    from prepare_clothing import split

    names = [f"{i:04d}" for i in range(1, 901)]
    train, val = split(names, 100, 0)
    assert len(val) == 100 and len(train) == 800 and not set(train) & set(val)
    assert split(list(reversed(names)), 100, 0) == (train, val)
    assert split(names, 100, 1)[1] != val


@pytest.mark.parametrize("variant, network, adjusted", [(None, "ensemble", True), ("deeplabv3plus", "deeplabv3plus", False),
                                                       ("unet", "unet", False), ("res_se_unet", "res_se_unet", False)])
def test_the_bundled_model_verifies_and_parses_a_photo_offline(tmp_path, monkeypatch, variant, network, adjusted):
    """The shipped clothing models: pinned files hash right, and a photo gets a mask at its own size."""
    from click.testing import CliRunner
    from PIL import Image

    from segtool.app import App
    from segtool.cli import cli
    from segtool.weights import HubSettings, resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = App()
    spec = app.registry.get("clothing")
    resolved = resolve_model(spec, variant, HubSettings.from_env(offline_flag=True, cache_dir=tmp_path),
                             app.plugin_manager)
    assert resolved.pinned and resolved.config.network == network
    # the three networks run alone from the ensemble's one file: members 0, 1, 2 in its order
    assert resolved.member == {None: None, "deeplabv3plus": 0, "unet": 1, "res_se_unet": 2}[variant]
    # the default runs with flips and logit offsets (one per class, background 0); the others as trained
    assert resolved.config.tta is adjusted
    if adjusted:
        offsets = resolved.config.logit_offsets
        assert len(offsets) == 14 and offsets[0] == 0.0 and all(v > 0 for v in offsets[1:])
        assert resolved.config.training["logit_adjustment"]["tau"] == 0.1
    else:
        assert resolved.config.logit_offsets is None
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (123, 77, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    choose = ["--model", variant] if variant else []
    result = CliRunner().invoke(cli, ["run", "clothing", str(tmp_path / "photo.jpg"), "--offline", "-q", *choose])
    assert result.exit_code == 0, result.output
    mask = Image.open(tmp_path / "photo_seg.png")
    assert mask.size == (77, 123) and mask.mode == "P" and max(np.asarray(mask).ravel()) <= 13

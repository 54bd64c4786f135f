"""QC pictures and report (segtool.qc, `segtool qc`): sizes, colours where the mask is,
orientation, concurrent appends, escaping (the page in a browser: test_qc_browser.py;
cropping around the structure: test_qc_crop.py)."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segtool import qc
from segtool.io import Volume
from segtool.qc.mosaic import TITLE_COLOUR, TITLE_HEIGHT

from qc_page import parse

SHAPE = (20, 24, 16)
SPACING = (0.9, 1.2, 2.5)
CUBE = (slice(5, 10), slice(8, 14), slice(6, 10))  # label 2


# --------------------------------------------------------------------------- helpers


def make_volume(seed: int = 0) -> tuple[Volume, np.ndarray]:
    rng = np.random.default_rng(seed)
    array = rng.normal(100.0, 20.0, (1, *SHAPE)).astype(np.float32)
    labels = np.zeros(SHAPE, np.int16)
    labels[CUBE] = 2
    return Volume(array=array, affine=np.diag([*SPACING, 1.0])), labels


def make_photo(seed: int = 0) -> tuple[Volume, np.ndarray]:
    rng = np.random.default_rng(seed)
    rgb = np.stack(
        [rng.integers(20, 60, (30, 40)), rng.integers(40, 80, (30, 40)), rng.integers(180, 230, (30, 40))]
    ).astype(np.uint8)  # bluish: never equal to a label colour
    labels = np.zeros((30, 40), np.uint8)
    labels[10:20, 5:15] = 1
    labels[22:28, 30:38] = 3
    return Volume(array=rgb, affine=np.eye(4), kind="photo"), labels


def rgb_of(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB")).astype(int)


def exact(pixels: np.ndarray, colour) -> np.ndarray:
    return np.all(pixels == np.asarray(colour), axis=-1)


def tile_hw(view: str, size: int = 256) -> tuple[int, int]:
    """Expected tile size (the whole volume is within the crop): pixels square in mm, the
    tile's longer side = size px, unless its shorter side would be under size/2 px."""
    extent = [n * s for n, s in zip(SHAPE, SPACING)]
    rows_axis, cols_axis = {"axial": (1, 0), "sagittal": (2, 1), "coronal": (2, 0)}[view]
    mm = max(extent[rows_axis], extent[cols_axis]) / size
    mm = min(mm, min(extent[rows_axis], extent[cols_axis]) / (size // 2))
    return round(extent[rows_axis] / mm), round(extent[cols_axis] / mm)


def expected_box(view: str, h: int, w: int) -> tuple[float, float, float, float]:
    """(row0, row1, col0, col1) in display pixels of the cube: radiological, upright."""
    x, y, z = CUBE

    def flipped(sl: slice, n: int, px: float) -> tuple[float, float]:
        return (n - sl.stop) * px, (n - sl.start) * px

    if view == "axial":  # rows: anterior (y) at top; cols: right (x) at left
        r, c = flipped(y, SHAPE[1], h / SHAPE[1]), flipped(x, SHAPE[0], w / SHAPE[0])
    elif view == "coronal":  # rows: superior (z) at top; cols: right at left
        r, c = flipped(z, SHAPE[2], h / SHAPE[2]), flipped(x, SHAPE[0], w / SHAPE[0])
    else:  # sagittal: rows superior at top; cols anterior at left
        r, c = flipped(z, SHAPE[2], h / SHAPE[2]), flipped(y, SHAPE[1], w / SHAPE[1])
    return r[0], r[1], c[0], c[1]


def tiles_of(pixels: np.ndarray, h: int, w: int, rows: int = 1) -> list[list[np.ndarray]]:
    """The tiles of a mosaic; with 2 rows (a comparison) each row is under a title band."""
    band = TITLE_HEIGHT if rows == 2 else 0
    k = (pixels.shape[1] + qc.GAP) // (w + qc.GAP)
    assert pixels.shape[1] == k * w + (k - 1) * qc.GAP
    assert pixels.shape[0] == rows * (band + h) + (rows - 1) * qc.GAP
    step = band + h + qc.GAP
    return [
        [pixels[i * step + band : i * step + band + h, j * (w + qc.GAP) : j * (w + qc.GAP) + w] for j in range(k)]
        for i in range(rows)
    ]


def check_cube_tile(tile: np.ndarray, view: str) -> None:
    """Label 2's exact colour on the cube's outline, its tint inside, plain grey elsewhere."""
    h, w = tile.shape[:2]
    r0, r1, c0, c1 = expected_box(view, h, w)
    rr, cc = np.mgrid[0:h, 0:w] + 0.5  # pixel centres
    near = (rr > r0 - 1.5) & (rr < r1 + 1.5) & (cc > c0 - 1.5) & (cc < c1 + 1.5)
    deep = (rr > r0 + 3) & (rr < r1 - 3) & (cc > c0 + 3) & (cc < c1 - 3)
    colour = exact(tile, qc.label_colour(2))
    assert colour.any(), f"{view}: no pixel in label 2's colour"
    assert not (colour & ~near).any(), f"{view}: label colour outside the mask"
    rows, cols = np.nonzero(colour)
    assert abs(rows.min() - r0) <= 1.5 and abs(rows.max() + 1 - r1) <= 1.5, view
    assert abs(cols.min() - c0) <= 1.5 and abs(cols.max() + 1 - c1) <= 1.5, view
    red, green, blue = tile[..., 0], tile[..., 1], tile[..., 2]
    assert np.all(green[deep] > red[deep] + 20) and np.all(green[deep] > blue[deep] + 20), f"{view}: no tint"
    assert np.all((red == green) & (green == blue) | near), f"{view}: colour outside the mask"


# --------------------------------------------------------------------------- pictures


def test_label_colour_table_is_distinct_coloured_and_cycles():
    colours = qc.LABEL_COLOURS
    assert len(colours) == 20 and len(set(colours)) == 20
    assert all(len(set(c)) > 1 for c in colours), "a grey label colour would look like the image"
    assert qc.label_colour(1) == colours[0] and qc.label_colour(20) == colours[19]
    assert qc.label_colour(21) == colours[0] and qc.label_colour(42) == colours[1]


def test_3d_views_sizes_and_mask_in_label_colour(tmp_path):
    image, labels = make_volume()
    paths = qc.render_case(image, labels, {1: "cord", 2: "gm"}, tmp_path, "case1")
    assert [p.name for p in paths] == ["case1_axial.png", "case1_sagittal.png", "case1_coronal.png"]
    # slices through the mask: as many as the cube is thick along the view's axis, at most 5
    tiles_expected = {"axial": 4, "sagittal": 5, "coronal": 5}
    # (rows, cols): axial 28.8 x 18 mm, sagittal 40 x 28.8 mm, coronal 40 x 18 mm; longer side 256 px,
    # except coronal, whose 18 mm would be 115 px: shorter side 128 px, longer 284 px
    assert [tile_hw(v) for v in ("axial", "sagittal", "coronal")] == [(256, 160), (256, 184), (284, 128)]
    for path, view in zip(paths, ("axial", "sagittal", "coronal")):
        assert path.is_file()
        h, w = tile_hw(view)
        k = tiles_expected[view]
        pixels = rgb_of(path)
        assert pixels.shape[:2] == (h, k * w + (k - 1) * qc.GAP), view
        for tile in tiles_of(pixels, h, w)[0]:
            check_cube_tile(tile, view)


def test_views_do_not_depend_on_voxel_order(tmp_path):
    """The same anatomy stored as PSL (flipped, permuted axes) gives the same pictures."""
    image, labels = make_volume()
    ras = nib.Nifti1Image(image.array[0], image.affine)
    from nibabel.orientations import axcodes2ornt, ornt_transform

    to = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt("PSL"))
    img2 = ras.as_reoriented(to)
    lab2 = nib.Nifti1Image(labels, image.affine).as_reoriented(to)
    assert nib.aff2axcodes(img2.affine) == ("P", "S", "L")
    other = Volume(array=np.asarray(img2.dataobj)[None], affine=img2.affine)
    a = qc.render_case(image, labels, {}, tmp_path / "a", "c")
    b = qc.render_case(other, np.asarray(lab2.dataobj), {}, tmp_path / "b", "c")
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(rgb_of(pa), rgb_of(pb))


def test_photo_overlay_exact_colours_and_blend(tmp_path):
    photo, labels = make_photo()
    (path,) = qc.render_case(photo, labels[None], {1: "top", 3: "pants"}, tmp_path, "photo")
    (plain,) = qc.render_case(photo, np.zeros_like(labels), {}, tmp_path / "plain", "photo")
    pixels, base = rgb_of(path), rgb_of(plain)
    assert path.name == "photo_photo.png"
    assert pixels.shape == (384, 512, 3)  # longer side 512, aspect kept
    scale = 512 / 40
    for value, (r0, r1, c0, c1) in ((1, (10, 20, 5, 15)), (3, (22, 28, 30, 38))):
        colour = np.asarray(qc.label_colour(value))
        hit = exact(pixels, colour)
        rows, cols = np.nonzero(hit)
        assert hit.any()
        assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == tuple(
            round(v * scale) for v in (r0, r1, c0, c1)
        )
        inner = pixels[round(r0 * scale) + 3 : round(r1 * scale) - 3, round(c0 * scale) + 3 : round(c1 * scale) - 3]
        under = base[round(r0 * scale) + 3 : round(r1 * scale) - 3, round(c0 * scale) + 3 : round(c1 * scale) - 3]
        blend = (1 - qc.FILL_ALPHA) * under + qc.FILL_ALPHA * colour
        assert np.abs(inner - blend).max() <= 1
    outside = np.ones(labels.shape, bool)
    outside[9:21, 4:16] = False
    outside[21:29, 29:39] = False
    big = np.kron(outside, np.ones((13, 13), bool))[:384, :512]
    np.testing.assert_array_equal(pixels[big], base[big])


def test_empty_mask_shows_centre_slices_without_colour(tmp_path):
    image, labels = make_volume()
    paths = qc.render_case(image, np.zeros_like(labels), {}, tmp_path, "empty")
    for path, view in zip(paths, ("axial", "sagittal", "coronal")):
        pixels = rgb_of(path)
        assert pixels.shape[:2] == tile_hw(view)  # one tile
        assert np.all((pixels[..., 0] == pixels[..., 1]) & (pixels[..., 1] == pixels[..., 2]))


def test_multichannel_3d_shows_first_channel(tmp_path):
    image, labels = make_volume()
    two = Volume(array=np.concatenate([image.array, -image.array]), affine=image.affine)
    a = qc.render_case(image, labels, {}, tmp_path / "a", "c")
    b = qc.render_case(two, labels, {}, tmp_path / "b", "c")
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(rgb_of(pa), rgb_of(pb))


def test_comparison_prediction_above_ground_truth(tmp_path):
    image, gt = make_volume()
    pred = np.zeros_like(gt)
    pred[CUBE] = 2
    paths = qc.render_comparison(image, pred, gt, {2: "gm"}, tmp_path, "cmp")
    for path, view in zip(paths, ("axial", "sagittal", "coronal")):
        h, w = tile_hw(view)
        top, bottom = tiles_of(rgb_of(path), h, w, rows=2)
        for tile in top + bottom:
            check_cube_tile(tile, view)
    # a wrong prediction (label 1, elsewhere) is shown in its own colour on the top row only
    wrong = np.zeros_like(gt)
    wrong[12:16, 2:6, 2:12] = 1
    paths = qc.render_comparison(image, wrong, gt, {}, tmp_path / "wrong", "cmp")
    h, w = tile_hw("axial")
    top, bottom = tiles_of(rgb_of(paths[0]), h, w, rows=2)
    assert any(exact(t, qc.label_colour(1)).any() for t in top)
    assert not any(exact(t, qc.label_colour(1)).any() for t in bottom)
    assert any(exact(t, qc.label_colour(2)).any() for t in bottom)


def test_photo_comparison_side_by_side(tmp_path):
    photo, labels = make_photo()
    (path,) = qc.render_comparison(photo, labels, np.zeros_like(labels), {}, tmp_path, "p")
    pixels = rgb_of(path)
    assert pixels.shape[:2] == (TITLE_HEIGHT + 384, 2 * 512 + qc.GAP)
    assert exact(pixels[TITLE_HEIGHT:, :512], qc.label_colour(1)).any()
    assert not exact(pixels[TITLE_HEIGHT:, 512:], qc.label_colour(1)).any()
    band = pixels[:TITLE_HEIGHT]
    assert exact(band, TITLE_COLOUR)[:, :512].any() and exact(band, TITLE_COLOUR)[:, 512 + qc.GAP :].any()


def test_shape_mismatch_is_a_geometry_error(tmp_path):
    from segtool.errors import GeometryError

    image, labels = make_volume()
    with pytest.raises(GeometryError, match="shape"):
        qc.render_case(image, labels[:-1], {}, tmp_path, "bad")


def test_label_volumes_in_mm3():
    _, labels = make_volume()
    volumes = qc.label_volumes(labels, SPACING, {1: "cord", 2: "gm"})
    assert volumes == {"cord": 0.0, "gm": pytest.approx(5 * 6 * 4 * 0.9 * 1.2 * 2.5)}
    assert qc.label_volumes(labels, (1, 1, 1), {}) == {"label 2": 120.0}


# --------------------------------------------------------------------------- report




def _append_worker(directory: str, worker: int, barrier) -> None:
    image, labels = make_volume(seed=worker)
    barrier.wait(timeout=60)
    for i in range(3):
        qc.qc_case(
            directory,
            image,
            labels,
            {2: "gm"},
            {"task": "t", "input": f"w{worker}-{i}.nii.gz", "seconds": 0.1},
            case_id=f"w{worker}-{i}",
            n_slices=1,
            size=32,
        )


def test_report_keeps_every_row_when_processes_append_at_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(8)
    procs = [ctx.Process(target=_append_worker, args=(str(tmp_path), w, barrier)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    page = parse((tmp_path / "index.html").read_text(encoding="utf-8"))
    expected = {f"w{w}-{i}" for w in range(8) for i in range(3)}
    assert sorted(page.cases) == sorted(expected)
    assert len(list((tmp_path / "records").glob("*.json"))) == 24
    assert not [p for p in tmp_path.rglob("*.tmp")], "temporary files left behind"
    for img in page.images:
        assert (tmp_path / img["src"]).is_file()


def test_report_escapes_everything_and_needs_no_script(tmp_path):
    image, labels = make_volume()
    evil = "<script>alert('x')</script>"
    qc.qc_case(
        tmp_path,
        image,
        labels,
        {2: '<i>gm</i>"'},
        {"task": evil, "input": 'dir/a"b&c<d>.nii.gz', "model": "<b>m</b>", "note": {"<k>": "<v>"}},
    )
    text = (tmp_path / "index.html").read_text(encoding="utf-8")
    for raw in (evil, "<i>", "<b>", "<k>", "<v>", 'a"b'):
        assert raw not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "a&quot;b&amp;c&lt;d&gt;" in text and "&lt;i&gt;gm&lt;/i&gt;&quot;" in text
    page = parse(text)
    assert page.scripts == 0 and len(page.cases) == 1
    assert "http://" not in text and "https://" not in text  # nothing from a CDN


def test_report_row_fields_volumes_and_failures(tmp_path):
    image, labels = make_volume()
    qc.qc_case(tmp_path, image, labels, {1: "cord", 2: "gm"}, {"task": "spinal", "input": "in.nii.gz",
               "output": "out.nii.gz", "model": "v1", "seconds": 2.5})
    qc.record_failure(tmp_path, {"task": "spinal", "input": "broken.nii.gz", "error": "cannot read"})
    (tmp_path / "records" / "junk.json").write_text("{not json")  # skipped, not fatal
    qc.QcReport(tmp_path).rebuild()
    text = (tmp_path / "index.html").read_text(encoding="utf-8")
    page = parse(text)
    assert len(page.cases) == 2 and len(page.images) == 3
    assert all(not Path(i["src"]).is_absolute() and i["src"].startswith("images/") for i in page.images)
    for needle in ("spinal", "in.nii.gz", "out.nii.gz", "v1", "2.50", "gm: 324&nbsp;mm³", "cord: 0&nbsp;mm³",
                   "broken.nii.gz", "failed", "cannot read"):
        assert needle in text, needle
    r, g, b = qc.label_colour(2)
    assert f"background:rgb({r},{g},{b})" in text
    record = json.loads(sorted((tmp_path / "records").glob("0*.json"))[0].read_text(encoding="utf-8"))
    assert record["row"]["volumes"] == {"cord": 0.0, "gm": 324.0}


# --------------------------------------------------------------------------- command


@pytest.fixture
def nifti_pair(tmp_path):
    image, labels = make_volume()
    nib.save(nib.Nifti1Image(image.array[0], image.affine), tmp_path / "t2.nii.gz")
    nib.save(nib.Nifti1Image(labels, image.affine), tmp_path / "t2_seg.nii.gz")
    nib.save(nib.Nifti1Image(labels[:-2], image.affine), tmp_path / "small_seg.nii.gz")
    return tmp_path


def test_qc_command_writes_pictures_and_row(nifti_pair):
    from segtool.cli import cli

    d = nifti_pair
    out = d / "qc"
    args = ["qc", str(d / "t2.nii.gz"), str(d / "t2_seg.nii.gz"), "--qc", str(out)]
    result = CliRunner().invoke(cli, [*args, "--labels", "1=cord,2=grey matter"])
    assert result.exit_code == 0, result.output
    assert str(out / "index.html") in result.output
    result = CliRunner().invoke(cli, [*args, "--task", "spinal-gm", "--slices", "2"])
    assert result.exit_code == 0, result.output
    text = (out / "index.html").read_text(encoding="utf-8")
    page = parse(text)
    assert len(page.cases) == 2 and len(page.images) == 6
    assert "grey matter: 324&nbsp;mm³" in text and "spinal-gm" in text and "external" in text
    pngs = sorted((out / "images").glob("*.png"))
    assert len(pngs) == 6
    assert all(exact(rgb_of(p), qc.label_colour(2)).any() for p in pngs)


def test_qc_command_errors_are_one_line(nifti_pair):
    from segtool.cli import cli

    d = nifti_pair
    result = CliRunner().invoke(cli, ["qc", str(d / "t2.nii.gz"), str(d / "small_seg.nii.gz"), "--qc", str(d / "q")])
    assert result.exit_code == 1
    assert result.output.startswith("segtool: error: ") and result.output.count("\n") == 1
    assert "shape" in result.output
    result = CliRunner().invoke(
        cli, ["qc", str(d / "t2.nii.gz"), str(d / "t2_seg.nii.gz"), "--qc", str(d / "q"), "--labels", "0=bg"]
    )
    assert result.exit_code == 2 and "segtool: error: --labels" in result.output
    assert not (d / "q" / "index.html").exists()


def test_parse_labels_option():
    from segtool.commands.common import parse_labels_option
    from segtool.errors import UsageError

    assert parse_labels_option("gm, wm", bare_names=True) == {1: "gm", 2: "wm"}
    assert parse_labels_option("2=wm,1=gm", bare_names=True) == {2: "wm", 1: "gm"}
    assert parse_labels_option("1=core,4") == {1: "core", 4: "4"}
    assert parse_labels_option("2:edema, 3 = grey matter,") == {2: "edema", 3: "grey matter"}
    assert parse_labels_option("gm,3=wm", bare_names=True) == {1: "gm", 3: "wm"}
    bad_cases = {
        ("", False): "no labels", ("a=b", True): "not a label number", ("1=x,1=y", True): "named twice",
        ("gm", False): "not a label number", ("0=bg", True): "background", ("-2", False): "negative",
    }
    for (bad, bare_names), message in bad_cases.items():
        with pytest.raises(UsageError, match=message) as info:
            parse_labels_option(bad, bare_names=bare_names)
        assert str(info.value).startswith("--labels: ")


def test_qc_command_on_a_photo(tmp_path):
    from segtool.cli import cli

    photo, labels = make_photo()
    Image.fromarray(np.moveaxis(photo.array, 0, -1)).save(tmp_path / "p.png")
    Image.fromarray(labels).save(tmp_path / "m.png")
    result = CliRunner().invoke(
        cli, ["qc", str(tmp_path / "p.png"), str(tmp_path / "m.png"), "--qc", str(tmp_path / "qc"), "--task", "clothing"]
    )
    assert result.exit_code == 0, result.output
    (png,) = (tmp_path / "qc" / "images").glob("*_photo.png")
    pixels = rgb_of(png)
    assert pixels.shape == (384, 512, 3)
    assert exact(pixels, qc.label_colour(1)).any() and exact(pixels, qc.label_colour(3)).any()
    text = (tmp_path / "qc" / "index.html").read_text(encoding="utf-8")
    assert "hair: 100&nbsp;px" in text and "accessories: 48&nbsp;px" in text  # the task's class names

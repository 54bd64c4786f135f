"""`segtool run` end to end, with a one-convolution test task and real files on disk."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from segtool.cli import cli
from tiny_task import app_with, make_bundled_package, make_spec

_counter = itertools.count()

LPS = np.array([[-1.0, 0, 0, 10], [0, -1.0, 0, 20], [0, 0, 2.0, -5], [0, 0, 0, 1]])


@pytest.fixture
def tiny3d(tmp_path, monkeypatch):
    """A 3D test task with bundled weights in a package on sys.path."""
    package = f"tiny_weights_{next(_counter)}"
    bare = make_spec("tiny")
    ref = make_bundled_package(tmp_path / "site", package, bare)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return make_spec("tiny", models={"default": ref}), tmp_path / "site" / package


@pytest.fixture
def duo(tmp_path, monkeypatch):
    """A two-channel (flair, t1c) 3D test task with bundled weights."""
    package = f"tiny_duo_{next(_counter)}"
    ref = make_bundled_package(tmp_path / "site", package, make_spec("duo", channels=("flair", "t1c")))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return make_spec("duo", channels=("flair", "t1c"), models={"default": ref})


@pytest.fixture
def tiny2d(tmp_path, monkeypatch):
    package = f"tiny2d_weights_{next(_counter)}"
    bare = make_spec("tiny2d", ndim=2)
    ref = make_bundled_package(tmp_path / "site2d", package, bare)
    monkeypatch.syspath_prepend(str(tmp_path / "site2d"))
    return make_spec("tiny2d", ndim=2, models={"default": ref})


def cube_image(shape=(12, 10, 6)):
    data = np.zeros(shape, dtype=np.float32)
    data[3:8, 2:7, 1:4] = 100.0
    return data


def save_nifti(path: Path, data, affine=LPS, qform_code=1, sform_code=1) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=qform_code)
    img.set_sform(affine, code=sform_code)
    nib.save(img, path)
    return path


def invoke(app, args, input=None):
    return CliRunner().invoke(cli, args, obj=app, input=input)


def test_nifti_round_trip_on_the_exact_input_grid(tmp_path, tiny3d):
    spec, _ = tiny3d
    src = save_nifti(tmp_path / "case.nii.gz", cube_image(), qform_code=2, sform_code=4)
    result = invoke(app_with(spec), ["run", "tiny", str(src), "-q"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "case_seg.nii.gz"
    assert result.stdout == f"{out}\n"
    seg, ref = nib.load(out), nib.load(src)
    assert seg.shape == ref.shape
    assert np.array_equal(seg.affine, ref.affine)
    assert int(seg.header["qform_code"]) == 2 and int(seg.header["sform_code"]) == 4
    assert np.array_equal(seg.header.get_zooms(), ref.header.get_zooms())
    assert np.array_equal(np.asarray(seg.dataobj), (cube_image() > 0).astype(np.uint8))


@pytest.mark.parametrize("affine_name", ["ras", "oblique", "anisotropic"])
def test_other_affines_map_back_exactly(tmp_path, tiny3d, affine_name):
    spec, _ = tiny3d
    affines = {
        "ras": np.diag([1.0, 1.0, 2.0, 1.0]),
        "oblique": np.array([[0.94, -0.34, 0, 1], [0.34, 0.94, 0, 2], [0, 0, 2.0, 3], [0, 0, 0, 1]]),
        "anisotropic": np.diag([0.5, 0.7, 3.5, 1.0]),
    }
    src = save_nifti(tmp_path / "img.nii", cube_image(), affine=affines[affine_name])
    result = invoke(app_with(spec), ["run", "tiny", str(src), "-q", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    seg = nib.load(tmp_path / "out" / "img_seg.nii.gz")
    assert seg.shape == (12, 10, 6)
    assert np.allclose(seg.affine, nib.load(src).affine)
    labels = np.asarray(seg.dataobj)
    if affine_name != "anisotropic":  # no resampling: exact
        assert np.array_equal(labels, (cube_image() > 0).astype(np.uint8))
    else:  # resampled and back: the cube's core survives
        assert labels[4:7, 3:6, 2].all() and labels.sum() > 0


def test_analyze_input(tmp_path, tiny3d):
    spec, _ = tiny3d
    img = nib.AnalyzeImage(cube_image(), np.diag([1.0, 1.0, 2.0, 1.0]))
    nib.save(img, tmp_path / "scan.hdr")
    result = invoke(app_with(spec), ["run", "tiny", str(tmp_path / "scan.img"), "-q"])
    assert result.exit_code == 0, result.output
    seg = nib.load(tmp_path / "scan_seg.nii.gz")
    assert np.array_equal(np.asarray(seg.dataobj), (cube_image() > 0).astype(np.uint8))
    assert np.allclose(seg.affine, nib.load(tmp_path / "scan.hdr").affine)


def test_dicom_series_input(tmp_path, tiny3d):
    import SimpleITK as sitk

    spec, _ = tiny3d
    data = cube_image()  # x, y, z
    image = sitk.GetImageFromArray(np.transpose(data, (2, 1, 0)).astype(np.int16))
    image.SetSpacing((1.0, 1.0, 2.0))
    image.SetOrigin((-10.0, -20.0, 5.0))
    series = tmp_path / "dicom"
    series.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(data.shape[2]):
        slice_ = image[:, :, k]
        for tag, value in {
            "0008|0060": "MR",
            "0020|000e": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.2",
            "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0013": str(k),
            "0018|0050": "2.0",
        }.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(series / f"slice{k:03d}.dcm"))
        writer.Execute(slice_)
    result = invoke(app_with(spec), ["run", "tiny", str(series), "-q", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = Path(result.stdout.strip())
    seg = nib.load(out)
    assert seg.shape == data.shape
    assert np.array_equal(np.asarray(seg.dataobj), (data > 0).astype(np.uint8))
    # LPS origin (-10, -20, 5) is RAS (10, 20, 5); spacing 1, 1, 2
    assert np.allclose(seg.affine, np.array([[-1, 0, 0, 10], [0, -1, 0, 20], [0, 0, 2, 5], [0, 0, 0, 1.0]]))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_photo_inputs_keep_their_format_and_size(tmp_path, tiny2d, suffix):
    from PIL import Image

    pixels = np.zeros((20, 30), dtype=np.uint8)
    pixels[5:12, 8:20] = 200
    Image.fromarray(pixels).save(tmp_path / f"slice{suffix}")
    result = invoke(app_with(tiny2d), ["run", "tiny2d", str(tmp_path / f"slice{suffix}"), "-q"])
    assert result.exit_code == 0, result.output
    out = tmp_path / f"slice_seg{suffix}"
    assert result.stdout == f"{out}\n"
    mask = np.asarray(Image.open(out))
    assert mask.shape == (20, 30)
    assert np.array_equal(mask, (pixels > 0).astype(np.uint8))


def test_jpeg_gives_a_lossless_png_mask(tmp_path, tiny2d):
    from PIL import Image

    pixels = np.zeros((24, 24), dtype=np.uint8)
    pixels[4:16, 4:16] = 255
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", quality=95)
    result = invoke(app_with(tiny2d), ["run", "tiny2d", str(tmp_path / "photo.jpg"), "-q"])
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(tmp_path / "photo_seg.png"))
    assert mask[6:14, 6:14].all() and not mask[20:, 20:].any()


def test_output_suffix_picks_the_format(tmp_path, tiny3d):
    import SimpleITK as sitk

    spec, _ = tiny3d
    src = save_nifti(tmp_path / "a.nii.gz", cube_image())
    result = invoke(app_with(spec), ["run", "tiny", str(src), "-o", str(tmp_path / "mask.mha"), "-q"])
    assert result.exit_code == 0, result.output
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "mask.mha")))
    assert np.array_equal(np.transpose(mask, (2, 1, 0)), (cube_image() > 0).astype(np.uint8))


@pytest.mark.parametrize("folder", ["new/", "existing"])
def test_o_naming_a_folder_writes_the_default_name_inside_it(tmp_path, tiny3d, folder):
    """`-o out/` (as the disc issue writes it) or `-o` an existing folder means --output-dir."""
    spec, _ = tiny3d
    src = save_nifti(tmp_path / "a.nii.gz", cube_image())
    (tmp_path / "existing").mkdir()
    result = invoke(app_with(spec), ["run", "tiny", str(src), "-o", str(tmp_path) + "/" + folder, "-q"])
    assert result.exit_code == 0, result.output
    written = tmp_path / folder.rstrip("/") / "a_seg.nii.gz"
    assert written.is_file() and result.stdout.strip() == str(written)
    assert np.array_equal(np.asanyarray(nib.load(str(written)).dataobj), (cube_image() > 0).astype(np.uint8))


def test_o_folder_and_output_dir_together_is_a_usage_error(tmp_path, tiny3d):
    spec, _ = tiny3d
    src = save_nifti(tmp_path / "a.nii.gz", cube_image())
    result = invoke(app_with(spec), ["run", "tiny", str(src), "-o", str(tmp_path / "x") + "/", "--output-dir",
                                     str(tmp_path / "y"), "-q"])
    assert result.exit_code == 2
    assert "a folder; give it or --output-dir, not both" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_probabilities_are_written_on_request(tmp_path, tiny3d):
    spec, _ = tiny3d
    src = save_nifti(tmp_path / "p.nii.gz", cube_image())
    result = invoke(app_with(spec), ["run", "tiny", str(src), "--prob", "-q", "--json"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)
    probs = nib.load(line["probabilities"])
    assert probs.shape == (12, 10, 6, 2)
    assert np.allclose(np.asarray(probs.dataobj).sum(-1), 1.0, atol=1e-4)


def test_many_inputs_stdin_json_skip_existing_and_failures(tmp_path, tiny3d):
    spec, _ = tiny3d
    good = [save_nifti(tmp_path / f"c{i}.nii.gz", cube_image()) for i in range(3)]
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image")
    stdin = "\n".join(str(p) for p in [good[1], tmp_path / "broken.nii.gz", good[2]]) + "\n"
    app = app_with(spec)
    first = invoke(app, ["run", "tiny", str(good[0]), "-", "--json", "-q"], input=stdin)
    assert first.exit_code == 1
    rows = [json.loads(line) for line in first.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["done", "done", "failed", "done"]
    assert rows[2]["input"].endswith("broken.nii.gz") and "broken.nii.gz" in rows[2]["error"]
    assert not (tmp_path / "broken_seg.nii.gz").exists()
    assert set(rows[0]) >= {"input", "output", "task", "model", "seconds", "status", "error"}
    second = invoke(app, ["run", "tiny", *map(str, good), "--skip-existing", "--json", "-q"])
    assert second.exit_code == 0
    assert [json.loads(line)["status"] for line in second.stdout.splitlines()] == ["skipped"] * 3
    third = invoke(app, ["run", "tiny", str(good[0]), "-q"])
    assert third.exit_code == 2  # an existing output refuses the run before any work
    assert "--overwrite" in third.stderr


def test_shard_selects_every_nth_case(tmp_path, tiny3d):
    spec, _ = tiny3d
    paths = [str(save_nifti(tmp_path / f"s{i}.nii.gz", cube_image())) for i in range(5)]
    result = invoke(app_with(spec), ["run", "tiny", *paths, "--shard", "1/2", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / "s1_seg.nii.gz"), str(tmp_path / "s3_seg.nii.gz")]
    bad = invoke(app_with(spec), ["run", "tiny", *paths, "--shard", "2/2"])
    assert bad.exit_code == 2 and "shard" in bad.stderr


def test_never_overwrites_an_input(tmp_path, tiny3d):
    spec, _ = tiny3d
    src = save_nifti(tmp_path / "keep.nii.gz", cube_image())
    before = src.read_bytes()
    result = invoke(app_with(spec), ["run", "tiny", str(src), "-o", str(src), "--overwrite", "-q"])
    assert result.exit_code == 2  # refused before any work
    assert src.read_bytes() == before


def test_multichannel_task_groups_files_per_case(tmp_path, duo):
    spec = duo
    a = save_nifti(tmp_path / "flair.nii.gz", cube_image())
    b = save_nifti(tmp_path / "t1c.nii.gz", cube_image())
    result = invoke(app_with(spec), ["run", "duo", str(a), str(b), "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'flair_seg.nii.gz'}\n"
    odd = invoke(app_with(spec), ["run", "duo", str(a), "-q"])
    assert odd.exit_code == 2 and "2 files per case" in odd.stderr


def test_task_without_weights_exits_3_and_writes_nothing(tmp_path):
    src = save_nifti(tmp_path / "x.nii.gz", cube_image())
    result = invoke(app_with(make_spec("untrained")), ["run", "untrained", str(src), "-q"])
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "untrained" in lines[0] and "weights" in lines[0]
    assert not (tmp_path / "x_seg.nii.gz").exists()


def test_tampered_bundled_weights_exit_3_and_write_nothing(tmp_path, tiny3d):
    spec, package_dir = tiny3d
    weights = package_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    src = save_nifti(tmp_path / "t.nii.gz", cube_image())
    result = invoke(app_with(spec), ["run", "tiny", str(src), "-q"])
    assert result.exit_code == 3
    assert len(result.stderr.strip().splitlines()) == 1
    assert "sha256" in result.stderr and "model.safetensors" in result.stderr
    assert not (tmp_path / "t_seg.nii.gz").exists()


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[Path], str]]:
    cases = {}
    cases["missing"] = ([tmp / "nope.nii.gz"], "nope.nii.gz")
    (tmp / "text.nii.gz").write_text("hello")
    cases["not an image"] = ([tmp / "text.nii.gz"], "text.nii.gz")
    full = save_nifti(tmp / "full.nii.gz", np.random.default_rng(0).random((40, 40, 20)).astype(np.float32))
    raw = full.read_bytes()
    (tmp / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    cases["truncated"] = ([tmp / "cut.nii.gz"], "cut.nii.gz")
    cases["4D"] = ([save_nifti(tmp / "four.nii.gz", np.zeros((4, 4, 4, 3), np.float32))], "four.nii.gz")
    nan = cube_image()
    nan[0, 0, 0] = np.nan
    cases["NaN"] = ([save_nifti(tmp / "nan.nii.gz", nan)], "nan.nii.gz")
    inf = cube_image()
    inf[1, 1, 1] = np.inf
    cases["inf"] = ([save_nifti(tmp / "inf.nii.gz", inf)], "inf.nii.gz")
    cases["empty"] = ([save_nifti(tmp / "empty.nii.gz", np.zeros((0, 4, 4), np.float32))], "empty.nii.gz")
    return cases


@pytest.mark.parametrize("problem", ["missing", "not an image", "truncated", "4D", "NaN", "inf", "empty"])
def test_bad_input_gives_one_line_error_and_no_output(tmp_path, tiny3d, problem):
    spec, _ = tiny3d
    paths, name = _bad_inputs(tmp_path)[problem]
    before = set(tmp_path.rglob("*"))
    result = invoke(app_with(spec), ["run", "tiny", *map(str, paths), "-q"])
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and name in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert set(tmp_path.rglob("*")) == before


def test_channels_on_different_grids_and_wrong_channel_count(tmp_path, duo):
    spec = duo
    a = save_nifti(tmp_path / "a.nii.gz", cube_image())
    b = save_nifti(tmp_path / "b.nii.gz", cube_image((12, 10, 7)))
    result = invoke(app_with(spec), ["run", "duo", str(a), str(b), "-q"])
    assert result.exit_code == 1
    assert "b.nii.gz" in result.stderr and "grid" in result.stderr
    assert not (tmp_path / "a_seg.nii.gz").exists()


def test_qc_report_gets_a_row_and_pictures_per_case(tmp_path, tiny3d):
    spec, _ = tiny3d
    paths = [str(save_nifti(tmp_path / f"q{i}.nii.gz", cube_image())) for i in range(2)]
    qc_dir = tmp_path / "qc"
    result = invoke(app_with(spec), ["run", "tiny", *paths, "--qc", str(qc_dir), "-q"])
    assert result.exit_code == 0, result.output
    html = (qc_dir / "index.html").read_text(encoding="utf-8")
    for path in paths:
        assert Path(path).name in html
    pngs = list(qc_dir.rglob("*.png"))
    assert len(pngs) == 2 * 3  # axial, sagittal, coronal per case


def test_next_input_is_read_while_the_current_one_is_segmented(tmp_path, tiny3d, monkeypatch):
    import threading

    import segtool.runner as runner

    spec, _ = tiny3d
    paths = [str(save_nifti(tmp_path / f"r{i}.nii.gz", cube_image())) for i in range(3)]
    events, second_read_started = [], threading.Event()
    real_read = runner.read_case

    def recording_read(case, task_spec, *args, **kwargs):
        events.append(f"read {Path(case.name).name}")
        if case.name.endswith("r1.nii.gz"):
            second_read_started.set()
        return real_read(case, task_spec, *args, **kwargs)

    from segtool.segmenter import Segmenter

    real_predict = Segmenter.predict

    def recording_predict(self, volume, **kwargs):
        name = Path(volume.path).name
        if name == "r0.nii.gz":  # the read of r1 must start while r0 is being segmented
            assert second_read_started.wait(timeout=10)
        events.append(f"predict {name}")
        return real_predict(self, volume, **kwargs)

    monkeypatch.setattr(runner, "read_case", recording_read)
    monkeypatch.setattr(Segmenter, "predict", recording_predict)
    result = invoke(app_with(spec), ["run", "tiny", *paths, "-q"])
    assert result.exit_code == 0, result.output
    assert events.index("read r1.nii.gz") < events.index("predict r0.nii.gz")
    assert events.count("predict r0.nii.gz") == 1 and len([e for e in events if e.startswith("read")]) == 3


def _run_probabilities(spec, src: Path, out: Path, *options: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and class probabilities (last axis) of one `segtool run --prob`."""
    result = invoke(app_with(spec), ["run", spec.name, str(src), "-o", str(out), "--prob", "-q", "--json", *options])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    return np.asarray(nib.load(row["output"]).dataobj), np.asarray(nib.load(row["probabilities"]).dataobj)


@pytest.fixture
def ahead(tmp_path, monkeypatch):
    """A bundled model that looks one voxel ahead along x (asymmetric: flips change it), its folder and an image."""
    package = f"tiny_ahead_{next(_counter)}"
    ref = make_bundled_package(tmp_path / "site", package, make_spec("ahead", model_kwargs={"kernel": 3}))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = make_spec("ahead", model_kwargs={"kernel": 3}, models={"default": ref})
    return spec, tmp_path / "site" / package, save_nifti(tmp_path / "f.nii.gz", cube_image())


def test_tta_changes_the_probabilities_of_an_asymmetric_model(tmp_path, ahead):
    spec, _, src = ahead
    labels, probs = _run_probabilities(spec, src, tmp_path / "plain.nii.gz")
    tta_labels, tta_probs = _run_probabilities(spec, src, tmp_path / "tta.nii.gz", "--tta")
    # the model looks one voxel ahead along x; with its flips, TTA also looks one voxel behind
    assert np.abs(tta_probs - probs).max() > 0.2
    assert not np.array_equal(tta_labels, labels)
    bright = cube_image() > 0
    assert tta_labels[bright].all() and not labels[bright].all()


def test_a_model_folder_can_ask_for_tta_and_no_tta_turns_it_off(tmp_path, ahead):
    import shutil

    spec, bundled, src = ahead
    _, plain = _run_probabilities(spec, src, tmp_path / "plain.nii.gz")
    _, flipped = _run_probabilities(spec, src, tmp_path / "flipped.nii.gz", "--tta")
    folder = tmp_path / "asks-for-tta"
    shutil.copytree(bundled, folder)
    config = json.loads((folder / "config.json").read_text())
    config["tta"] = True
    (folder / "config.json").write_text(json.dumps(config))
    _, default = _run_probabilities(spec, src, tmp_path / "default.nii.gz", "--model-dir", str(folder))
    _, off = _run_probabilities(spec, src, tmp_path / "off.nii.gz", "--model-dir", str(folder), "--no-tta")
    assert np.abs(flipped - plain).max() > 0.2
    np.testing.assert_allclose(default, flipped, atol=1e-6)
    np.testing.assert_allclose(off, plain, atol=1e-6)
    said = invoke(app_with(spec), ["run", spec.name, str(src), "-o", str(tmp_path / "said.nii.gz"), "--model-dir", str(folder)])
    assert said.exit_code == 0 and "(test-time flips)" in said.output
    silent = invoke(app_with(spec), ["run", spec.name, str(src), "-o", str(tmp_path / "s2.nii.gz"), "--model-dir", str(folder),
                                     "--no-tta"])
    assert silent.exit_code == 0 and "test-time flips" not in silent.output
    config["tta"] = "yes"
    (folder / "config.json").write_text(json.dumps(config))
    bad = invoke(app_with(spec), ["run", spec.name, str(src), "-o", str(tmp_path / "bad.nii.gz"), "--model-dir", str(folder)])
    assert bad.exit_code == 3 and "tta" in bad.output and not (tmp_path / "bad.nii.gz").exists()


def test_threshold_decides_the_binary_mask(tmp_path, tiny3d):
    spec, _ = tiny3d
    src = save_nifti(tmp_path / "f.nii.gz", cube_image())
    labels, probs = _run_probabilities(spec, src, tmp_path / "argmax.nii.gz")
    assert np.array_equal(labels, (cube_image() > 0).astype(np.uint8))
    background = probs[..., 1][cube_image() == 0]
    threshold = float(background.min()) / 2  # below every background probability: all foreground
    assert 0 < threshold < 0.5
    thresholded, _ = _run_probabilities(spec, src, tmp_path / "low.nii.gz", "--threshold", str(threshold))
    assert np.array_equal(thresholded, (probs[..., 1] >= threshold).astype(np.uint8))
    assert thresholded.all() and not labels.all()
    bad = invoke(app_with(spec), ["run", "tiny", str(src), "--threshold", "1.5"])
    assert bad.exit_code == 2


def test_an_unexpected_error_in_one_case_fails_only_that_case(tmp_path, tiny3d, monkeypatch):
    from segtool.segmenter import Segmenter

    spec, _ = tiny3d
    paths = [str(save_nifti(tmp_path / f"u{i}.nii.gz", cube_image())) for i in range(2)]
    real_predict = Segmenter.predict

    def flaky(self, volume, **kwargs):
        if Path(volume.path).name == "u0.nii.gz":
            raise RuntimeError("simulated library failure\nwith a second line")
        return real_predict(self, volume, **kwargs)

    monkeypatch.setattr(Segmenter, "predict", flaky)
    result = invoke(app_with(spec), ["run", "tiny", *paths, "-q", "--json"])
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["failed", "done"]
    assert "u0.nii.gz: unexpected RuntimeError: simulated library failure (set SEGTOOL_DEBUG=1" in rows[0]["error"]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("error, code, message", [
    (KeyboardInterrupt(), 130, "segtool: interrupted"),
    (ValueError("bug here"), 1, "segtool: error: unexpected ValueError: bug here (set SEGTOOL_DEBUG=1"),
])
def test_interrupts_and_unexpected_errors_give_one_line(tmp_path, tiny3d, monkeypatch, error, code, message):
    import segtool.commands.run as run_command

    spec, _ = tiny3d
    src = save_nifti(tmp_path / "k.nii.gz", cube_image())

    def boom(*args, **kwargs):
        raise error

    monkeypatch.setattr(run_command, "_run_with_progress", boom)
    monkeypatch.delenv("SEGTOOL_DEBUG", raising=False)
    result = invoke(app_with(spec), ["run", "tiny", str(src), "-q"])
    assert result.exit_code == code
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1
    monkeypatch.setenv("SEGTOOL_DEBUG", "1")
    if not isinstance(error, KeyboardInterrupt):
        debug = invoke(app_with(spec), ["run", "tiny", str(src), "-q"])
        assert isinstance(debug.exception, type(error))

"""`segtool run` on malformed, odd and malicious inputs: one line, the right exit code, nothing written."""

from __future__ import annotations

import gzip
import os
import warnings

import nibabel as nib
import numpy as np
import pytest

from hostile.helpers import app_with, error_lines, invoke, make_task, refused, snapshot

RAS2 = np.diag([1.0, 1.0, 2.0, 1.0])


def cube(shape=(12, 10, 6), dtype=np.float32):
    data = np.zeros(shape, dtype=dtype)
    data[3:8, 2:7, 1:4] = 100
    return data


def save(path, data, affine=RAS2, qform_code=1, sform_code=1):
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=qform_code)
    img.set_sform(affine, code=sform_code)
    nib.save(img, path)
    return path


# --------------------------------------------------------------------------- unreadable or unusable inputs (exit 1)


def _fifo(d):
    os.mkfifo(d / "pipe.nii.gz")
    return [d / "pipe.nii.gz"]


def _dev_zero(d):
    return ["/dev/zero"]


def _link_to_dev_zero(d):
    os.symlink("/dev/zero", d / "zero.nii")
    return [d / "zero.nii"]


def _analyze_with_fifo_image(d):
    nib.save(nib.AnalyzeImage(cube(), RAS2), d / "scan.hdr")
    (d / "scan.img").unlink()
    os.mkfifo(d / "scan.img")
    return [d / "scan.hdr"]


def _mhd_pointing_at_dev_zero(d):
    (d / "scan.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 100000\nElementType = MET_FLOAT\n"
        "ElementDataFile = /dev/zero\n"
    )
    return [d / "scan.mhd"]


def _complex(d):
    data = cube().astype(np.complex64) + 1j * cube()
    return [save(d / "complex.nii.gz", data)]


def _zero_sform_and_qform(d):
    from hostile.helpers import save_nifti_with_zero_affine

    return [save_nifti_with_zero_affine(d / "flat.nii.gz", cube())]


def _nan_voxels(d):
    data = cube()
    data[0, 0, 0] = np.nan
    return [save(d / "nan.nii.gz", data)]


def _empty_file(d):
    (d / "empty.nii.gz").write_bytes(b"")
    return [d / "empty.nii.gz"]


def _truncated_gzip(d):
    raw = gzip.compress(nib.Nifti1Image(cube(), RAS2).to_bytes())
    (d / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    return [d / "cut.nii.gz"]


def _random_bytes(d):
    (d / "noise.nii").write_bytes(np.random.default_rng(0).bytes(2000))
    return [d / "noise.nii"]


def _text_as_image(d):
    (d / "notes.txt").write_text("not an image")
    return [d / "notes.txt"]


def _missing(d):
    return [d / "nothere.nii.gz"]


def _dangling_link(d):
    os.symlink(d / "gone.nii.gz", d / "link.nii.gz")
    return [d / "link.nii.gz"]


def _empty_directory(d):
    (d / "series").mkdir()
    return [d / "series"]


def _four_d(d):
    return [save(d / "fmri.nii.gz", np.zeros((12, 10, 6, 3), dtype=np.float32))]


def _two_d_for_a_3d_task(d):
    return [save(d / "flat2d.nii.gz", np.zeros((12, 10), dtype=np.float32))]


def _photo_for_a_3d_task(d):
    from PIL import Image

    Image.fromarray(np.zeros((12, 10), dtype=np.uint8)).save(d / "photo.png")
    return [d / "photo.png"]


#: Known from the file system alone: the whole run is refused before the model loads (exit 2).
REFUSED_BEFORE_WORK = {
    "FIFO": (_fifo, "named pipe"),
    "/dev/zero": (_dev_zero, "character device"),
    "link to /dev/zero": (_link_to_dev_zero, "character device"),
    "Analyze pair whose .img is a FIFO": (_analyze_with_fifo_image, "named pipe"),
    "empty file": (_empty_file, "empty.nii.gz: empty file"),
    "missing file": (_missing, "no such file"),
    "dangling link": (_dangling_link, "a link to a missing file"),
    "photo for a 3D task": (_photo_for_a_3d_task, "segments 3D volumes"),
}

#: Known only by reading the image: its case fails (exit 1), the others go on.
BAD_INPUTS = {
    "MetaImage whose data file is /dev/zero": (_mhd_pointing_at_dev_zero, "character device"),
    "complex NIfTI": (_complex, "complex-valued"),
    "zero sform and qform": (_zero_sform_and_qform, "degenerate"),
    "NaN voxels": (_nan_voxels, "NaN"),
    "truncated gzip": (_truncated_gzip, "corrupt or truncated"),
    "random bytes named .nii": (_random_bytes, "noise.nii"),
    "text file": (_text_as_image, "not a recognised image"),
    "empty directory": (_empty_directory, "no DICOM series"),
    "4D volume": (_four_d, "4D volume for a 3D task"),
    "2D image for a 3D task": (_two_d_for_a_3d_task, "2D"),
}


@pytest.mark.parametrize("case", list(REFUSED_BEFORE_WORK))
def test_input_known_bad_from_the_file_system_refuses_the_run_before_the_model_loads(tmp_path, app3d, monkeypatch,
                                                                                     case):
    from segtool.segmenter import Segmenter

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was refused")

    monkeypatch.setattr(Segmenter, "from_task", no_model)
    make, expected = REFUSED_BEFORE_WORK[case]
    inputs = make(tmp_path)
    before = snapshot(tmp_path)
    result = invoke(app3d(), ["run", "tiny", *inputs, "-q", "--output-dir", tmp_path / "out"])
    refused(result, 2, before, tmp_path, expected)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_its_case_in_one_line(tmp_path, app3d, case):
    make, expected = BAD_INPUTS[case]
    inputs = make(tmp_path)
    before = snapshot(tmp_path)
    result = invoke(app3d(), ["run", "tiny", *inputs, "-q", "--output-dir", tmp_path / "out"])
    refused(result, 1, before, tmp_path, expected)


def test_complex_nifti_was_silently_cast_before():
    """Why the complex case matters: nibabel drops the imaginary part with only a warning."""
    img = nib.Nifti1Image(cube().astype(np.complex64) * 1j, RAS2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not np.asarray(img.get_fdata(dtype=np.float32)).any()  # all the signal was imaginary


def test_a_bad_case_does_not_stop_the_good_ones(tmp_path, app3d):
    good = save(tmp_path / "good.nii.gz", cube())
    bad = _complex(tmp_path)[0]
    result = invoke(app3d(), ["run", "tiny", bad, good, "-q"])
    assert result.exit_code == 1
    assert (tmp_path / "good_seg.nii.gz").exists() and not (tmp_path / "complex_seg.nii.gz").exists()
    assert len(error_lines(result)) == 1 and "complex-valued" in error_lines(result)[0]


# --------------------------------------------------------------------------- outputs: usage errors first (exit 2)


def _same_stem(d):
    return [save(d / "a.nii", cube()), save(d / "a.nii.gz", cube() * 0)], ["--overwrite"]


def _same_name_two_folders(d):
    (d / "x").mkdir()
    (d / "y").mkdir()
    return [save(d / "x" / "s.nii.gz", cube()), save(d / "y" / "s.nii.gz", cube())], ["--output-dir", d / "out"]


def _output_is_next_input(d):
    return [save(d / "a.nii.gz", cube()), save(d / "a_seg.nii.gz", cube())], ["--overwrite"]


def _output_is_next_input_without_overwrite(d):
    return [save(d / "a.nii.gz", cube()), save(d / "a_seg.nii.gz", cube())], []


def _o_onto_input(d):
    src = save(d / "a.nii.gz", cube())
    return [src], ["-o", src, "--overwrite"]


def _o_onto_input_through_link(d):
    src = save(d / "a.nii.gz", cube())
    os.symlink(src, d / "alias.nii.gz")
    return [src], ["-o", d / "alias.nii.gz", "--overwrite"]


def _o_onto_other_channel_of_analyze_pair(d):
    nib.save(nib.AnalyzeImage(cube(), RAS2), d / "scan.hdr")
    return [d / "scan.hdr"], ["-o", d / "scan.img", "--overwrite"]


def _jpeg_output(d):
    return [save(d / "a.nii.gz", cube())], ["-o", d / "mask.jpg"]


def _no_suffix_output(d):
    return [save(d / "a.nii.gz", cube())], ["-o", d / "mask"]


def _png_for_3d(d):
    return [save(d / "a.nii.gz", cube())], ["-o", d / "mask.png"]


def _o_with_two_cases(d):
    return [save(d / "a.nii.gz", cube()), save(d / "b.nii.gz", cube())], ["-o", d / "m.nii.gz"]


def _bad_shard(d):
    return [save(d / "a.nii.gz", cube())], ["--shard", "3/2"]


def _weights_and_model_dir(d):
    return [save(d / "a.nii.gz", cube())], ["--weights", d / "w.safetensors", "--model-dir", d]


def _zero_batch(d):
    return [save(d / "a.nii.gz", cube())], ["--batch-size", "0"]


def _overlap_too_big(d):
    return [save(d / "a.nii.gz", cube())], ["--overlap", "2"]


def _unknown_option(d):
    return [save(d / "a.nii.gz", cube())], ["--bogus"]


def _threshold_nan(d):
    return [save(d / "a.nii.gz", cube())], ["--threshold", "nan"]


USAGE = {
    "two inputs with one stem": (_same_stem, "both"),
    "same name in two folders, one --output-dir": (_same_name_two_folders, "both"),
    "output of one case is the next input (--overwrite)": (_output_is_next_input, "overwrite an input"),
    "output of one case is the next input": (_output_is_next_input_without_overwrite, "overwrite an input"),
    "-o onto the input": (_o_onto_input, "overwrite an input"),
    "-o onto the input through a link": (_o_onto_input_through_link, "overwrite an input"),
    "-o onto the other half of an Analyze pair": (_o_onto_other_channel_of_analyze_pair, "overwrite an input"),
    "-o JPEG mask": (_jpeg_output, "lossless"),
    "-o without a suffix": (_no_suffix_output, "no suffix"),
    "-o PNG for a 3D mask": (_png_for_3d, "3D mask"),
    "-o with two cases": (_o_with_two_cases, "one case"),
    "--shard out of range": (_bad_shard, "--shard"),
    "--weights with --model-dir": (_weights_and_model_dir, "not both"),
    "--batch-size 0": (_zero_batch, "--batch-size"),
    "--overlap 2": (_overlap_too_big, "--overlap"),
    "unknown option": (_unknown_option, "--bogus"),
    "--threshold nan": (_threshold_nan, "--threshold"),
}


@pytest.mark.parametrize("case", list(USAGE))
def test_output_and_option_errors_exit_2_before_any_work(tmp_path, app3d, monkeypatch, case):
    import segtool.weights

    def no_model(*args, **kwargs):  # usage errors must come before the model is even looked up
        raise AssertionError("the model was loaded before a usage error was reported")

    monkeypatch.setattr(segtool.weights, "resolve_model", no_model)
    make, expected = USAGE[case]
    inputs, options = make(tmp_path)
    before = snapshot(tmp_path)
    result = invoke(app3d(), ["run", "tiny", *inputs, *options, "-q"])
    refused(result, 2, before, tmp_path, expected)


def test_unknown_task(tmp_path, app3d):
    src = save(tmp_path / "a.nii.gz", cube())
    before = snapshot(tmp_path)
    refused(invoke(app3d(), ["run", "tinny", src]), 2, before, tmp_path, "tinny")


def test_task_without_weights_names_the_whole_train_command(tmp_path, site):
    untrained = make_task(site, "untrained", with_weights=False)
    src = save(tmp_path / "a.nii.gz", cube())
    before = snapshot(tmp_path)
    result = invoke(app_with(untrained), ["run", "untrained", src])
    refused(result, 3, before, tmp_path, "segtool train untrained DATA_DIR -o MODEL_DIR", "--model-dir")


def test_same_stem_used_to_keep_only_the_last_result(tmp_path, app3d):
    """Before issue 17 both cases ran and the second silently replaced the first's mask."""
    first, second = save(tmp_path / "a.nii", cube()), save(tmp_path / "a.nii.gz", cube() * 0)
    result = invoke(app3d(), ["run", "tiny", first, second, "--overwrite", "-q"])
    assert result.exit_code == 2
    assert not (tmp_path / "a_seg.nii.gz").exists()

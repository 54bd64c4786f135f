"""`segtool run --statistics` / `--stats FILE`: per label voxel count, volume and mean input intensity."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from output_tasks import (
    block_photo, bright_cube, run_cli, save_nifti, skin_photo_folder, tiny_folder, two_label_folder,
    two_label_images,
)
from segtool.statistics import label_statistics, statistics_paths


def test_label_statistics_by_hand():
    labels = np.array([[0, 1, 1], [2, 2, 0]])
    image = np.array([[[1.0, 2.0, 4.0], [10.0, 20.0, 7.0]], [[0.0, 1.0, 1.0], [3.0, 5.0, 9.0]]])
    stats = label_statistics(labels, image, {1: "a", 2: "b", 3: "c"}, ["x", "y"], 0.5, "mm3")
    assert [(s.name, s.value, s.voxels, s.volume, s.intensity) for s in stats] == [
        ("a", 1, 2, 1.0, {"x": 3.0, "y": 1.0}),
        ("b", 2, 2, 1.0, {"x": 15.0, "y": 4.0}),
        ("c", 3, 0, 0.0, {"x": None, "y": None}),  # an empty label: no mean
    ]


def test_statistics_file_names():
    from pathlib import Path

    assert statistics_paths(Path("/o/case_seg.nii.gz")) == (Path("/o/case_statistics.json"),
                                                              Path("/o/case_statistics.csv"))
    assert statistics_paths(Path("d/sub-01_desc-tiny_dseg.nii.gz"))[0] == Path("d/sub-01_desc-tiny_statistics.json")
    assert statistics_paths(Path("p_seg.png"))[1] == Path("p_statistics.csv")


def test_3d_task_statistics_json_and_csv_beside_the_mask(tmp_path):
    spec = tiny_folder(tmp_path / "model")
    src = save_nifti(tmp_path / "case.nii.gz", bright_cube())
    result = run_cli(spec, [src, "--model-dir", tmp_path / "model", "--statistics", "-q"])
    assert result.exit_code == 0, result.output
    mask = np.asarray(nib.load(tmp_path / "case_seg.nii.gz").dataobj)
    assert int(mask.sum()) == 75  # the cube
    # 75 voxels of 1 x 1 x 2 mm; mean of 45 x 100 and 30 x 300
    expected = {"bright": {"volume": 150.0, "intensity": 180.0, "voxels": 75, "unit": "mm3", "label": 1}}
    assert json.loads((tmp_path / "case_statistics.json").read_text()) == expected
    assert (tmp_path / "case_statistics.csv").read_text() == (
        "case,label,value,voxels,volume,unit,intensity\n"
        f"{src},bright,1,75,150.0,mm3,180.0\n"
    )


def test_statistics_are_of_the_written_mask(tmp_path):
    """A mask kept by --skip-existing is measured as it is on disk, not as the model would make it."""
    spec = tiny_folder(tmp_path / "model")
    src = save_nifti(tmp_path / "case.nii.gz", bright_cube())
    edited = np.zeros((12, 10, 6), np.uint8)
    edited[6:8, 2:7, 1:4] = 1  # only the 30 voxels of 300
    nib.save(nib.Nifti1Image(edited, nib.load(src).affine), tmp_path / "case_seg.nii.gz")
    result = run_cli(spec, [src, "--model-dir", tmp_path / "model", "--skip-existing", "--statistics", "-q"])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "case_statistics.json").read_text())
    assert stats["bright"] == {"volume": 60.0, "intensity": 300.0, "voxels": 30, "unit": "mm3", "label": 1}


def test_multi_label_multi_channel_statistics_and_one_cohort_csv(tmp_path):
    spec = two_label_folder(tmp_path / "model")
    a = two_label_images(tmp_path, "a")
    b = two_label_images(tmp_path, "b")
    table = tmp_path / "cohort.csv"
    result = run_cli(spec, [*a, *b, "--model-dir", tmp_path / "model", "--stats", table, "-q",
                            "--output-dir", tmp_path / "out"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "out" / "a_flair_statistics.json").exists()  # --stats alone: only the one file
    rows = list(csv.DictReader(table.open()))
    assert [(r["case"], r["label"]) for r in rows] == [(str(a[0]), "oedema"), (str(a[0]), "core"),
                                                      (str(b[0]), "oedema"), (str(b[0]), "core")]
    oedema, core = rows[0], rows[1]
    assert (oedema["voxels"], oedema["volume"], oedema["unit"]) == ("24", "48.0", "mm3")
    assert (oedema["intensity_flair"], oedema["intensity_t1c"]) == ("50.0", "5.0")
    assert (core["voxels"], core["intensity_flair"], core["intensity_t1c"]) == ("24", "0.0", "80.0")


def test_multi_label_statistics_json_per_channel(tmp_path):
    spec = two_label_folder(tmp_path / "model")
    images = two_label_images(tmp_path, "a")
    result = run_cli(spec, [*images, "--model-dir", tmp_path / "model", "--statistics", "--stats",
                            tmp_path / "all.json", "-q"])
    assert result.exit_code == 0, result.output
    per_case = json.loads((tmp_path / "a_flair_statistics.json").read_text())
    assert per_case == {
        "oedema": {"volume": 48.0, "intensity": {"flair": 50.0, "t1c": 5.0}, "voxels": 24, "unit": "mm3",
                   "label": 1},
        "core": {"volume": 48.0, "intensity": {"flair": 0.0, "t1c": 80.0}, "voxels": 24, "unit": "mm3",
                 "label": 2},
    }
    assert json.loads((tmp_path / "all.json").read_text()) == {str(images[0]): per_case}


def test_photo_task_statistics_in_pixels_per_colour_channel(tmp_path):
    spec = skin_photo_folder(tmp_path / "model")
    photo = block_photo(tmp_path / "p.png", 32, 24, 5, 4, 10)
    result = run_cli(spec, [photo, "--model-dir", tmp_path / "model", "--precision", "fp32", "--statistics", "-q"])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "p_statistics.json").read_text())
    assert list(stats) == list(spec.labels.values())
    assert stats["skin"] == {"volume": 100.0, "intensity": {"red": 240.0, "green": 200.0, "blue": 160.0},
                             "voxels": 100, "unit": "px", "label": 2}
    assert stats["hair"] == {"volume": 0.0, "intensity": {"red": None, "green": None, "blue": None}, "voxels": 0,
                             "unit": "px", "label": 1}
    rows = list(csv.DictReader((tmp_path / "p_statistics.csv").open()))
    skin = next(r for r in rows if r["label"] == "skin")
    assert (skin["volume"], skin["unit"], skin["intensity_red"], skin["intensity_blue"]) == ("100.0", "px", "240.0",
                                                                                            "160.0")
    hair = next(r for r in rows if r["label"] == "hair")
    assert (hair["voxels"], hair["intensity_red"]) == ("0", "")


@pytest.mark.parametrize("args, message", [
    (["--stats", "{tmp}/s.txt"], "--stats {tmp}/s.txt: name a .json or .csv file"),
    (["--stats", "{tmp}/exists.csv"], "--stats {tmp}/exists.csv: file exists (use --overwrite)"),
    (["--stats", "{tmp}/nowhere/s.csv"], "--stats {tmp}/nowhere/s.csv: folder {tmp}/nowhere does not exist"),
    (["--statistics", "--format", "dicom-seg"], "--statistics/--stats read the written masks back"),
])
def test_bad_statistics_options_are_one_line_usage_errors_before_any_work(tmp_path, args, message):
    spec = tiny_folder(tmp_path / "model")
    src = save_nifti(tmp_path / "case.nii.gz", bright_cube())
    (tmp_path / "exists.csv").write_text("keep\n")
    args = [a.format(tmp=tmp_path) for a in args]
    result = run_cli(spec, [src, "--model-dir", tmp_path / "model", "-q", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message.format(tmp=tmp_path) in lines[0], result.stderr
    assert not (tmp_path / "case_seg.nii.gz").exists()
    assert (tmp_path / "exists.csv").read_text() == "keep\n"


def test_stacked_2d_slices_get_statistics_per_slice(tmp_path):
    from PIL import Image

    from tiny_task import make_spec, write_model_folder

    spec = make_spec("tiny2d", ndim=2)
    write_model_folder(tmp_path / "model", spec)
    patient = tmp_path / "patient"
    patient.mkdir()
    for i, size in enumerate((4, 6), start=1):
        pixels = np.zeros((20, 16), np.uint8)
        pixels[2 : 2 + size, 3 : 3 + size] = 200
        Image.fromarray(pixels).save(patient / f"slice_{i}.png")
    table = tmp_path / "stack.csv"
    result = run_cli(spec, [patient, "--stack", "--model-dir", tmp_path / "model", "--stats", table, "-q"])
    assert result.exit_code == 0, result.output
    assert table.read_text() == (
        "case,label,value,voxels,volume,unit,intensity\n"
        f"{patient / 'slice_1.png'},bright,1,16,16.0,px,200.0\n"
        f"{patient / 'slice_2.png'},bright,1,36,36.0,px,200.0\n"
    )

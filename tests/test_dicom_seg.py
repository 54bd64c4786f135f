"""DICOM SEG output: `segtool run TASK series_dir/ -o mask.dcm` (or `--format dicom-seg`)."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from hostile.dicom import SERIES_UID, write_slice
from segtool.cli import cli
from tiny_task import app_with, make_bundled_package, make_spec

pytest.importorskip("highdicom")

_counter = itertools.count()
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # rows run posterior, columns inferior (LPS)
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """The one-conv test task, on the input's own spacing (no resampling: crisp masks)."""
    package = f"tiny_seg_{next(_counter)}"
    ref = make_bundled_package(tmp_path / "site", package, make_spec("tiny", target_spacing=None))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return make_spec("tiny", target_spacing=None, models={"default": ref})


def sagittal_series(directory: Path, positions=(0.0, 1.0, 2.0, 3.0, 4.0, 5.0), shape=(10, 12)) -> Path:
    """Sagittal slices (the normal points to the patient's right) with a bright square in the middle ones."""
    directory.mkdir(parents=True)
    for k, x in enumerate(positions):
        pixels = np.zeros(shape, dtype=np.int16)
        if 1 <= k < len(positions) - 1:
            pixels[2 + k % 2 : 7, 3:9] = 100 + k
        write_slice(directory / f"IM{k:04d}.dcm", pixels, (-x, -20.0, 30.0), orientation=SAGITTAL, number=k + 1)
    return directory


def invoke(spec, args):
    return CliRunner().invoke(cli, args, obj=app_with(spec))


def source_headers(series: Path) -> list:
    import pydicom

    return [pydicom.dcmread(str(p), stop_before_pixels=True) for p in sorted(series.iterdir())]


def sources_in_mask_order(affine: np.ndarray, sources: list) -> list:
    """The source image of each mask slice k, matched by position (RAS affine -> LPS)."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    out = []
    for k in range(len(sources)):
        where = lps[:3, 2] * k + lps[:3, 3]
        matches = [ds for ds in sources if np.allclose([float(v) for v in ds.ImagePositionPatient], where, atol=1e-3)]
        assert len(matches) == 1, f"mask slice {k} at {where} has no single source image"
        out.append(matches[0])
    return out


def test_dicom_seg_references_the_series_and_matches_the_nifti_mask(tmp_path, tiny):
    import highdicom as hd
    import pydicom

    series = sagittal_series(tmp_path / "series")
    seg_path = tmp_path / "out" / "mask.dcm"
    result = invoke(tiny, ["run", "tiny", str(series), "-q", "-o", str(seg_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(seg_path)
    result = invoke(tiny, ["run", "tiny", str(series), "-q", "--output-dir", str(tmp_path / "nii")])
    assert result.exit_code == 0, result.output
    nifti = nib.load(tmp_path / "nii" / "series_seg.nii.gz")
    mask = np.asarray(nifti.dataobj)
    assert mask.shape == (12, 10, 6) and 0 < mask.sum() < mask.size

    sources = source_headers(series)
    ds = pydicom.dcmread(str(seg_path))
    assert ds.SOPClassUID == SEG_STORAGE and ds.Modality == "SEG"
    assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert ds.StudyInstanceUID == sources[0].StudyInstanceUID
    assert ds.SeriesInstanceUID != SERIES_UID
    referenced = ds.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == SERIES_UID
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == {
        s.SOPInstanceUID for s in sources
    }
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["bright"]
    non_empty = int((mask.reshape(-1, mask.shape[2]).sum(axis=0) > 0).sum())
    assert int(ds.NumberOfFrames) == non_empty  # empty frames are left out
    by_uid = {s.SOPInstanceUID: s for s in sources}
    for frame in ds.PerFrameFunctionalGroupsSequence:  # each frame sits on its source image
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, [float(v) for v in by_uid[uid].ImagePositionPatient])
    orientation = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    assert np.allclose([float(v) for v in orientation], SAGITTAL)

    ordered = sources_in_mask_order(nifti.affine, sources)
    seg = hd.seg.segread(str(seg_path))
    decoded = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[s.SOPInstanceUID for s in ordered],
        combine_segments=True,
        skip_overlap_checks=True,
    )
    assert np.array_equal(decoded, np.transpose(mask, (2, 1, 0)))


def test_writer_names_one_segment_per_label(tmp_path):
    import highdicom as hd

    from segtool.io import read_volume, write_labels

    series = sagittal_series(tmp_path / "series")
    volume = read_volume(series)
    labels = np.zeros(volume.spatial_shape, dtype=np.uint8)
    labels[1:4, 2:5, 1] = 1
    labels[5:9, 2:5, 3] = 2
    labels[2:6, 6:9, 4] = 3
    names = {1: "L5-S1", 2: "L4-L5", 3: "L3-L4", 4: "L2-L3", 5: "L1-L2"}
    out = write_labels(labels, volume, tmp_path / "discs.dcm", label_names=names, algorithm="segtool disc")
    seg = hd.seg.segread(str(out))
    assert [seg.get_segment_description(n).SegmentLabel for n in seg.get_segment_numbers()] == list(names.values())
    assert int(seg.NumberOfFrames) == 3  # one non-empty (slice, segment) pair per label
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "segtool disc"
    ordered = sources_in_mask_order(volume.affine, source_headers(series))
    decoded = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[s.SOPInstanceUID for s in ordered], combine_segments=True
    )
    assert np.array_equal(decoded, np.transpose(labels, (2, 1, 0)))


def test_format_dicom_seg_names_outputs_dcm(tmp_path, tiny):
    import pydicom

    series = sagittal_series(tmp_path / "series")
    result = invoke(tiny, ["run", "tiny", str(series), "-q", "--format", "dicom-seg", "--output-dir", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "o" / "series_seg.dcm"
    assert result.stdout.strip() == str(out)
    assert pydicom.dcmread(str(out)).Modality == "SEG"


def nifti_input(tmp_path: Path) -> Path:
    data = np.zeros((12, 10, 6), dtype=np.float32)
    data[3:8, 2:7, 1:4] = 100.0
    path = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["-o", "{tmp}/mask.dcm"], "needs a DICOM series directory"),
        (["--format", "dicom-seg", "--output-dir", "{tmp}/o"], "needs a DICOM series directory"),
        (["--format", "dicom-seg", "-o", "{tmp}/mask.nii.gz"], "does not match"),
    ],
)
def test_dicom_seg_needs_a_dicom_series_and_says_so_before_any_work(tmp_path, tiny, args, message):
    src = nifti_input(tmp_path)
    result = invoke(tiny, ["run", "tiny", str(src), "-q"] + [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segtool: error:") and message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.nii.gz", "site"]


def test_missing_highdicom_is_a_one_line_usage_error(tmp_path, tiny, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "highdicom" else real(name, *a))
    series = sagittal_series(tmp_path / "series")
    result = invoke(tiny, ["run", "tiny", str(series), "-q", "-o", str(tmp_path / "mask.dcm")])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == "segtool: error: DICOM SEG output needs highdicom: pip install segtool[dicom-seg]"
    assert not (tmp_path / "mask.dcm").exists()


def test_a_resampled_series_is_not_written_as_dicom_seg(tmp_path, tiny):
    series = sagittal_series(tmp_path / "series", positions=(0.0, 1.0, 2.0, 4.0, 5.0, 6.0))  # a missing slice
    out = tmp_path / "mask.dcm"
    result = invoke(tiny, ["run", "tiny", str(series), "-q", "--allow-uneven", "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "--allow-uneven" in result.stderr and "write .nii.gz instead" in result.stderr
    assert not out.exists()

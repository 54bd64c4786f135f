"""DICOM series that ITK would stack as an even volume although they are not: each is refused.

On the code before issue 17 every case below was read as an evenly spaced stack
(exit 0, a mask on the wrong grid); now each gets one line naming the series and
the problem, exit 1, and nothing is written.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from hostile.dicom import AXIAL, slice_pixels, write_series, write_slice
from hostile.helpers import error_lines, invoke, refused, snapshot

OBLIQUE = (1.0, 0.0, 0.0, 0.0, 0.8, 0.6)


def _gap(d):
    write_series(d, [0, 2, 4, 8, 10])


def _uneven(d):
    write_series(d, [0, 2, 4.5, 6, 8])


def _duplicate(d):
    write_series(d, [0, 2, 2, 4, 6])


def _mixed_orientation(d):
    write_series(d, [0, 2, 4, 6], orientations=[AXIAL, AXIAL, OBLIQUE, AXIAL])


def _mixed_series(d):
    write_series(d, [0, 2, 4, 6], series_uids=["1.2.3.1", "1.2.3.1", "1.2.3.2", "1.2.3.2"])


def _unreadable(d):
    write_series(d, [0, 2, 4, 6])
    (d / "IM0002.dcm").write_bytes(b"\x13\x37" * 150)


def _truncated(d):
    write_series(d, [0, 2, 4, 6])
    f = d / "IM0002.dcm"
    f.write_bytes(f.read_bytes()[:-50])


def _cut_in_header(d):
    write_series(d, [0, 2, 4, 6])
    f = d / "IM0002.dcm"
    f.write_bytes(f.read_bytes()[:400])


def _short_pixel_data(d):
    write_series(d, [0, 2, 4, 6])
    write_slice(d / "IM0002.dcm", slice_pixels(2), (0, 0, 4), number=3, pixel_bytes=b"\0" * 40)


def _no_position(d):
    write_series(d, [0, 2, 4, 6])
    write_slice(d / "IM0002.dcm", slice_pixels(2), (0, 0, 4), number=3, with_position=False)


def _different_sizes(d):
    write_series(d, [0, 2, 4, 6])
    write_slice(d / "IM0002.dcm", slice_pixels(2, (8, 12)), (0, 0, 4), number=3)


def _empty_file(d):
    write_series(d, [0, 2, 4, 6])
    (d / "IM0002.dcm").write_bytes(b"")


def _fifo_inside(d):
    write_series(d, [0, 2, 4, 6])
    os.mkfifo(d / "IM0009.dcm")


def _link_to_dev_zero(d):
    write_series(d, [0, 2, 4, 6])
    os.symlink("/dev/zero", d / "IM0009.dcm")


CASES = {
    "missing slice": (_gap, "1 missing slice between positions 4 and 8 mm"),
    "uneven spacing": (_uneven, "uneven slice spacing"),
    "two slices at one position": (_duplicate, "two slices at position 2 mm"),
    "mixed orientation": (_mixed_orientation, "mixed orientation"),
    "mixed series UIDs": (_mixed_series, "2 DICOM series"),
    "one unreadable file": (_unreadable, "IM0002.dcm is not a DICOM file"),
    "one truncated file": (_truncated, "IM0002.dcm: PixelData holds"),
    "one file cut in its header": (_cut_in_header, "IM0002.dcm"),
    "PixelData shorter than rows x columns": (_short_pixel_data, "PixelData holds 40 bytes"),
    "slice without a position": (_no_position, "no valid ImagePositionPatient"),
    "slices of different sizes": (_different_sizes, "different sizes"),
    "one empty file": (_empty_file, "IM0002.dcm"),
    "a FIFO among the slices": (_fifo_inside, "named pipe"),
    "a link to /dev/zero among the slices": (_link_to_dev_zero, "character device"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_series_is_refused(tmp_path, app3d, case):
    make, expected = CASES[case]
    series = tmp_path / "series"
    series.mkdir()
    make(series)
    before = snapshot(tmp_path)
    result = invoke(app3d(), ["run", "tiny", series, "-q"])
    refused(result, 1, before, tmp_path, str(series), expected)


def test_a_good_series_runs(tmp_path, app3d):
    """Positive control: the same writer's even series segments; notes and DICOMDIR are ignored."""
    series = write_series(tmp_path / "series", [0, 2, 4, 6])
    (series / "README.txt").write_text("scanner notes")
    result = invoke(app3d(), ["run", "tiny", series, "-q"])
    assert result.exit_code == 0, result.output
    seg = nib.load(tmp_path / "series_seg.nii.gz")
    assert seg.shape == (12, 10, 4)
    assert np.allclose(seg.header.get_zooms(), (1.0, 1.0, 2.0))


def test_allow_uneven_resamples_onto_an_even_grid_with_a_warning(tmp_path, app3d):
    series = write_series(tmp_path / "series", [0, 2, 4, 8, 10])
    result = invoke(app3d(), ["run", "tiny", series, "--allow-uneven"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in error_lines(result) if "warning" in line]
    assert len(warnings) == 1 and "1 missing slice" in warnings[0] and "6 slices" in warnings[0], warnings
    seg = nib.load(tmp_path / "series_seg.nii.gz")
    assert seg.shape == (12, 10, 6)  # 0..10 mm every 2 mm
    assert np.allclose(seg.header.get_zooms(), (1.0, 1.0, 2.0))


def test_allow_uneven_still_refuses_duplicates(tmp_path, app3d):
    series = tmp_path / "series"
    _duplicate(series)
    before = snapshot(tmp_path)
    result = invoke(app3d(), ["run", "tiny", series, "--allow-uneven", "-q"])
    refused(result, 1, before, tmp_path, "two slices at position")


def test_single_file_with_short_pixel_data_is_refused(tmp_path, app3d):
    (tmp_path / "one").mkdir()
    path = write_slice(tmp_path / "one" / "slice.dcm", slice_pixels(0), (0, 0, 0), pixel_bytes=b"\0" * 40)
    before = snapshot(tmp_path)
    result = invoke(app3d(), ["run", "tiny", path, "-q"])
    refused(result, 1, before, tmp_path, "PixelData holds 40 bytes")

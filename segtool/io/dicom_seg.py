"""DICOM SEG output (highdicom): a label map written as a Segmentation that references its series.

``segtool run TASK series_dir/ -o mask.dcm`` (or ``--format dicom-seg``) writes one DICOM
Segmentation object (BINARY, one segment per task label, named by the task's label names)
whose frames lie on the source slices: same Frame of Reference, per-frame positions and
pixel measures copied from the series, and every source SOPInstanceUID referenced, so a
viewer (OHIF, 3D Slicer, Weasis) lays it over the images. Empty frames are left out.

Only a DICOM series read from a directory can be referenced; highdicom is an optional
extra (``pip install segtool[dicom-seg]``), imported only when such an output is asked for.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Mapping

import numpy as np

from segtool.errors import GeometryError, UsageError
from segtool.io.volume import Volume

FORMAT = "dicom-seg"
INSTALL_HINT = "pip install segtool[dicom-seg]"
#: Largest distance (mm) between a mask slice and its source image's ImagePositionPatient.
POSITION_ATOL_MM = 1e-2
_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Patient and study attributes (type 2) that highdicom copies from the source images.
_TYPE2_COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "AccessionNumber", "StudyID",
)


def require_highdicom() -> None:
    """Refuse (exit 2) before any work when highdicom is not installed."""
    if importlib.util.find_spec("highdicom") is None:
        raise UsageError(f"DICOM SEG output needs highdicom: {INSTALL_HINT}")


def check_source(input_path: Path, output: Path) -> None:
    """A DICOM SEG output needs a DICOM series directory as input (exit 2 otherwise)."""
    if not Path(input_path).is_dir():
        raise UsageError(
            f"{output}: DICOM SEG output needs a DICOM series directory as input, got {input_path}; "
            "write .nii.gz instead"
        )


def write_dicom_seg(
    labels: np.ndarray,
    reference: Volume,
    path: Path,
    label_names: Mapping[int, str] | None = None,
    algorithm: str = "segtool",
    shown_as: Path | None = None,
) -> None:
    """Write ``labels`` (the reference's spatial shape, x/y/z) as a DICOM SEG at ``path``.

    ``reference`` must be a DICOM series read from a directory (``meta['files']`` in slice
    order) whose grid is still the series' own: every mask slice must lie at its source
    image's position (a series resampled by ``--allow-uneven`` is refused). Segments are
    1..N of ``label_names`` (default: the values present, named ``label K``). Messages
    name ``shown_as`` (the final output when ``path`` is a temporary file).
    """
    shown = Path(shown_as or path)
    files = reference.meta.get("files") if reference.kind == "dicom" else None
    if not files:
        raise UsageError(f"{shown}: DICOM SEG output needs a DICOM series directory as input, got {reference.path}")
    try:
        import highdicom as hd
        import pydicom
        from pydicom.sr.codedict import codes
    except ImportError:
        raise UsageError(f"DICOM SEG output needs highdicom: {INSTALL_HINT}") from None
    from segtool.version import __version__

    sources = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in files]
    _check_geometry(labels, reference, sources, shown)
    for ds in sources:  # type 2 patient/study attributes the SEG copies: empty when a source lacks them
        for keyword in _TYPE2_COPIED:
            if keyword not in ds:
                setattr(ds, keyword, None)
    names = _segment_names(labels, label_names)
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm[:64], family=codes.cid7162.ArtificialIntelligence, version=str(__version__)
    )
    segments = [_segment_description(hd, codes, number, name, algorithm_id) for number, name in sorted(names.items())]
    frames = np.ascontiguousarray(np.transpose(labels, (2, 1, 0)).astype(np.uint16))  # slices, rows, columns
    first = sources[0]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=hd.UID(),
        series_number=int(first.get("SeriesNumber", 0) or 0) % 100000 + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="segtool",
        manufacturer_model_name=algorithm[:64],
        software_versions=str(__version__),
        device_serial_number="0",
        content_description=f"{algorithm} segmentation"[:64],
        content_label="SEGTOOL",
    )
    seg.SeriesDescription = f"{algorithm} segmentation"[:64]
    seg.save_as(str(path))


def _segment_names(labels: np.ndarray, label_names: Mapping[int, str] | None) -> dict[int, str]:
    """Segment number -> name: 1..N, covering every label value present (default: those values, ``label K``)."""
    if label_names is None:
        label_names = {int(v): f"label {int(v)}" for v in np.unique(labels) if v != 0}
    names = {int(k): str(v) for k, v in label_names.items()}
    if sorted(names) != list(range(1, len(names) + 1)):
        raise ValueError(f"DICOM SEG segments must be numbered 1..N, got {sorted(names)}")
    present = {int(v) for v in np.unique(labels)} - {0}
    if not present <= set(names):
        raise ValueError(f"label values {sorted(present - set(names))} have no segment name")
    return names


def _segment_description(hd, codes, number: int, name: str, algorithm_id):
    """One automatic segment of an anatomical structure, named ``name``."""
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name[:64],
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.AnatomicalStructure,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm_id,
    )


def _check_geometry(labels: np.ndarray, reference: Volume, sources: list, path: Path) -> None:
    """Every mask slice must be its source image: rows, columns and position."""
    shape = np.asarray(labels).shape
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    if len(shape) != 3 or shape != (cols, rows, len(sources)):
        raise GeometryError(
            f"{path}: mask of shape {shape} does not lie on the DICOM series ({len(sources)} slices of "
            f"{rows}x{cols}; resampled with --allow-uneven?); write .nii.gz instead"
        )
    lps = _LPS_RAS @ np.asarray(reference.affine, dtype=float)
    for k, ds in enumerate(sources):
        expected = lps[:3, 2] * k + lps[:3, 3]
        position = np.asarray([float(v) for v in ds.ImagePositionPatient])
        if np.abs(position - expected).max() > POSITION_ATOL_MM:
            raise GeometryError(
                f"{path}: mask slice {k} does not lie on its DICOM image ({Path(str(ds.filename)).name}); "
                "was the series resampled (--allow-uneven)? write .nii.gz instead"
            )

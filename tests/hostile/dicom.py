"""Small DICOM series written with pydicom, one file per slice, for the hostile-input corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

SERIES_UID = "1.2.826.0.1.3680043.8.498.1"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def write_slice(
    path: Path,
    pixels: np.ndarray,
    position: Sequence[float],
    orientation: Sequence[float] = AXIAL,
    series_uid: str = SERIES_UID,
    number: int = 1,
    pixel_bytes: bytes | None = None,
    with_position: bool = True,
) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.PatientName = "Hostile^Test"
    ds.PatientID = "0"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.3"
    ds.InstanceNumber = number
    if with_position:
        ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 2.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = pixel_bytes if pixel_bytes is not None else pixels.astype("<i2").tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def slice_pixels(k: int, shape=(10, 12)) -> np.ndarray:
    """A bright square in every slice, so the tiny model finds something."""
    pixels = np.zeros(shape, dtype=np.int16)
    pixels[2:7, 3:9] = 100 + k
    return pixels


def write_series(
    directory: Path, z_positions: Sequence[float], shape=(10, 12), orientations=None, series_uids=None
) -> Path:
    """One slice per position (along z, axial unless ``orientations`` says otherwise)."""
    directory.mkdir(parents=True, exist_ok=True)
    for k, z in enumerate(z_positions):
        write_slice(
            directory / f"IM{k:04d}.dcm",
            slice_pixels(k, shape),
            (0.0, 0.0, float(z)),
            orientation=orientations[k] if orientations else AXIAL,
            series_uid=series_uids[k] if series_uids else SERIES_UID,
            number=k + 1,
        )
    return directory

"""Reading and writing images as Volumes (array + affine + header).

CONTRACT (the rest of segtool relies on it):
- ``Volume.array`` is channels-first: ``(C, *spatial)``; spatial is (x, y, z) for 3D
  images in voxel order, (rows, cols) for 2D photos.
- ``Volume.affine`` is the 4x4 voxel-to-RAS+ (mm) matrix; photos get the identity.
- ``Volume.header`` keeps what the writer needs to reproduce the input's header
  (nibabel header for NIfTI/Analyze; None otherwise).

Formats
-------
Read: NIfTI (``.nii``, ``.nii.gz``), Analyze / NIfTI pairs (``.hdr``/``.img``),
DICOM (a series directory or a single file), MetaImage and NRRD (``.mha``, ``.mhd``,
``.nrrd``, ``.nhdr``) and 2D photos (``.png``, ``.jpg``, ``.jpeg``, ``.tif``,
``.tiff``).  A file with another suffix is identified by content (DICOM, NIfTI
magic, anything Pillow recognises).

Written: label maps and probability maps (see :func:`write_labels` and
:func:`write_probabilities`).  Every write is atomic: into a hidden temporary
directory beside the output, then moved into place (see :mod:`segtool.io.atomic`).

Heavy libraries (nibabel, SimpleITK, pydicom, Pillow) are imported lazily inside
the functions that need them, so ``import segtool.io`` stays cheap.

Layout
------
- :mod:`~segtool.io.volume`: the :class:`Volume` dataclass.
- :mod:`~segtool.io.formats`: suffix tables, format and stem of a path, default output names.
- :mod:`~segtool.io.messages`: one-line error texts.
- :mod:`~segtool.io.readers`: ``read_volume``/``read_labels``, dispatch, sniffing, array checks.
- :mod:`~segtool.io.nifti`, :mod:`~segtool.io.itk`, :mod:`~segtool.io.photos`: one
  module per library (nibabel, SimpleITK, Pillow), reading and writing its formats.
- :mod:`~segtool.io.channels`: ``read_channels`` (dimensionality, count and grid checks),
  ``channel_count`` (a file's channels from its header).
- :mod:`~segtool.io.dtypes`: smallest integer storage type for label maps.
- :mod:`~segtool.io.atomic`: atomic writes and refusals to overwrite.
- :mod:`~segtool.io.writers`: ``write_labels`` and ``write_probabilities``.
"""

from segtool.io.channels import GRID_ATOL, channel_count, read_channels
from segtool.io.formats import (
    ANALYZE_SUFFIXES,
    DICOM_SUFFIXES,
    NIFTI_SUFFIXES,
    PHOTO_OUT_SUFFIXES,
    PHOTO_SUFFIXES,
    SITK_SUFFIXES,
    default_output_path,
)
from segtool.io.itk import ras_affine_to_sitk, sitk_to_ras_affine
from segtool.io.readers import read_labels, read_volume
from segtool.io.volume import Volume
from segtool.io.writers import write_labels, write_probabilities

__all__ = [
    "ANALYZE_SUFFIXES",
    "DICOM_SUFFIXES",
    "GRID_ATOL",
    "NIFTI_SUFFIXES",
    "PHOTO_OUT_SUFFIXES",
    "PHOTO_SUFFIXES",
    "SITK_SUFFIXES",
    "Volume",
    "channel_count",
    "default_output_path",
    "ras_affine_to_sitk",
    "read_channels",
    "read_labels",
    "read_volume",
    "sitk_to_ras_affine",
    "write_labels",
    "write_probabilities",
]

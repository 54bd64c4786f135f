"""What the image libraries say, in segtool's words.

nibabel, numpy, pydicom, Pillow and the C libraries under SimpleITK (GDCM,
libjpeg, openjpeg) talk while segtool reads and writes: Python warnings, log
records, raw lines on file descriptor 2.  `segtool.console.library_output`
collects them; here each is given its meaning for the result, when it has one
(``meaning``), and the ones that mean nothing to a user (they are followed by
segtool's own error, or change nothing) are only logged.
"""

from __future__ import annotations

import logging
import re

#: Every library message is recorded on this logger (DEBUG); `segtool --log FILE` writes it to FILE.
LOGGER_NAME = "segtool.library"

#: (pattern, what it means for the result). The first match wins; the library's words follow in brackets.
MEANINGS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"pixdim\[1,2,3\] should be positive"),
     "a NIfTI header has negative voxel sizes (pixdim): the spacing is taken as their absolute values"),
    (re.compile(r"Corrupt JPEG data"),
     "corrupt JPEG data in a compressed image: it was decoded, but parts of it may be damaged (check the QC)"),
    (re.compile(r"Stream too short|Premature end of JPEG|premature end", re.IGNORECASE),
     "compressed pixel data ends early (a truncated file?): the image may be incomplete (check the QC)"),
    (re.compile(r"\bPN component|PersonName|VR PN\b"),
     "a person name in the input is not valid DICOM: it was copied into the output unchanged"),
)


def meaning(text: str) -> str | None:
    """The segtool warning for a library message, or None when it needs none."""
    for pattern, what in MEANINGS:
        if pattern.search(text):
            return what
    return None


def record(text: str) -> None:
    """Log one library message (DEBUG on ``LOGGER_NAME``)."""
    logging.getLogger(LOGGER_NAME).debug(" ".join(text.split()))


def warning_line(text: str) -> str:
    """The one segtool line for a library message with a meaning: the meaning, then the library's words."""
    words = " ".join(text.split())
    if len(words) > 80:
        words = words[:77] + "..."
    return f"{meaning(text)} [{words}]"

"""segtool: a plugin-based command-line toolkit for image segmentation.

Python API: ``from segtool import Segmenter`` (loaded on first use, so ``import segtool``
and ``segtool --help`` stay free of torch); see README.md, "Python API".
"""

from segtool.version import __version__

__all__ = ["Segmenter", "__version__"]


def __getattr__(name: str):
    if name == "Segmenter":
        from segtool.segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'segtool' has no attribute {name!r}")

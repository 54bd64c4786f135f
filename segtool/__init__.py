"""segtool: a plugin-based command-line toolkit for image segmentation."""

__version__ = "0.1.0"

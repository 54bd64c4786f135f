"""Model factories that plugins name in their specs. Torch is imported only when called."""

from __future__ import annotations

from typing import Any


def unet(**kwargs: Any):
    """A 2D or 3D U-Net (segtool.nets.UNet): spatial_dims, in_channels, out_channels, features, strides."""
    from segtool.nets import UNet

    return UNet(**kwargs)

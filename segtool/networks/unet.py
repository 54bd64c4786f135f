"""The plain U-Net family (nnU-Net style, 2D or 3D): conv-norm-LeakyReLU blocks, strided downsampling, transposed-conv upsampling.

Sources: Ronneberger et al., "U-Net", MICCAI 2015; nnU-Net's plain U-Net (Isensee et
al., Nature Methods 2021). Knobs: ``features`` (channels per level) and ``strides``
(the downsampling of each level after the first, per axis).

The encoder/decoder skeleton, padding to `UNet.divisor` and the forward pass are
`segtool.networks.unet_base.UNetBase`'s; this family brings its stage, `ConvBlock`
(which `attention_unet` stacks too).
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from segtool.networks.unet_base import Stride, UNetBase, layer_types, make_dropout, make_norm


class ConvBlock(nn.Sequential):
    """Two (conv, norm, leaky ReLU) layers, then optional dropout; the first conv may stride."""

    def __init__(
        self,
        spatial_dims: int,
        in_ch: int,
        out_ch: int,
        stride: Stride = 1,
        norm: str = "instance",
        dropout: float = 0.0,
    ):
        conv = layer_types(spatial_dims).conv
        layers = [
            conv(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
            make_norm(norm, spatial_dims, out_ch),
            nn.LeakyReLU(0.01, inplace=True),
            conv(out_ch, out_ch, 3, padding=1, bias=False),
            make_norm(norm, spatial_dims, out_ch),
            nn.LeakyReLU(0.01, inplace=True),
        ]
        if dropout > 0:  # appended last so the state-dict keys never depend on it
            layers.append(make_dropout(spatial_dims, dropout))
        super().__init__(*layers)


class UNet(UNetBase):
    """An nnU-Net-style plain U-Net for 2D or 3D.

    ``features`` gives the channels per level; ``strides`` the downsampling
    factor of each level after the first (per axis, so anisotropic data can keep
    its thin axis, e.g. ``(2, 2, 1)``).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[Stride] | None = None,
    ):
        def block(i: int, o: int, stride: Stride) -> ConvBlock:
            return ConvBlock(spatial_dims, i, o, stride)

        super().__init__(spatial_dims, in_channels, out_channels, features, strides, block)

"""Network architectures (imports torch; reach them through segtool.architectures)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _layers(spatial_dims: int):
    if spatial_dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.InstanceNorm3d, nn.Dropout3d
    if spatial_dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.InstanceNorm2d, nn.Dropout2d
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


class ConvBlock(nn.Sequential):
    """Two (conv, instance norm, leaky ReLU) layers; the first may stride."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, stride: Sequence[int] | int = 1):
        conv, _, norm, _ = _layers(spatial_dims)
        super().__init__(
            conv(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
            norm(out_ch, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
            conv(out_ch, out_ch, 3, padding=1, bias=False),
            norm(out_ch, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


class UNet(nn.Module):
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
        strides: Sequence[Sequence[int] | int] | None = None,
    ):
        super().__init__()
        _, up_conv, _, _ = _layers(spatial_dims)
        conv = _layers(spatial_dims)[0]
        features = list(features)
        if strides is None:
            strides = [2] * (len(features) - 1)
        strides = [tuple([s] * spatial_dims) if isinstance(s, int) else tuple(s) for s in strides]
        if len(strides) != len(features) - 1:
            raise ValueError("strides needs one entry per level after the first")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.strides = strides
        self.encoders = nn.ModuleList([ConvBlock(spatial_dims, in_channels, features[0])])
        for i, stride in enumerate(strides):
            self.encoders.append(ConvBlock(spatial_dims, features[i], features[i + 1], stride))
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(len(strides))):
            self.upsamplers.append(up_conv(features[i + 1], features[i], strides[i], stride=strides[i], bias=False))
            self.decoders.append(ConvBlock(spatial_dims, 2 * features[i], features[i]))
        self.head = conv(features[0], out_channels, 1)

    @property
    def divisor(self) -> tuple[int, ...]:
        """Each input size must be a multiple of this (per axis)."""
        total = [1] * self.spatial_dims
        for stride in self.strides:
            total = [t * s for t, s in zip(total, stride)]
        return tuple(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        skips.pop()
        for upsample, decoder in zip(self.upsamplers, self.decoders):
            x = upsample(x)
            x = decoder(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)

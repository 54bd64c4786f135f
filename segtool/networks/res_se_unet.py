"""The residual squeeze-and-excitation U-Net family (2D or 3D).

Sources: residual blocks from He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016; squeeze-and-excitation from Hu et al., "Squeeze-and-Excitation
Networks", CVPR 2018. Every encoder and decoder stage is one residual block: two 3x3
(conv, norm) layers with a leaky ReLU between them, a squeeze-and-excitation gate
rescaling the channels of the second (global average pool, bottleneck of ``channels //
se_reduction``, sigmoid), plus a shortcut (identity, or a strided 1x1 conv and norm
when the shape changes), then a leaky ReLU and optional channel dropout. The gate pools
the second conv's output before its norm: the spatial mean of an instance-normed map is
just the norm's bias, the same for every image. Upsampling is a transposed convolution,
as in the plain `unet` family.

Knobs: ``features`` (channels per level), ``strides`` (the downsampling of each level
after the first, per axis, e.g. ``(2, 2, 1)`` keeps a thin axis), ``se_reduction``
(8: smaller than the paper's 16 because our widths are small; the bottleneck keeps at
least 4 units), ``dropout`` and ``norm``
(``"instance"`` or ``"batch"``). The skeleton, padding to `ResSEUNet.divisor` and the
forward pass are `segtool.networks.unet_base.UNetBase`'s.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from segtool.networks.unet_base import Stride, UNetBase, layer_types, make_dropout, make_norm


class SqueezeExcitation(nn.Module):
    """Channel weights ``sigmoid(W2 relu(W1 mean(x)))``, shaped to broadcast over ``x``."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        if reduction < 1:
            raise ValueError(f"se_reduction must be a positive integer, got {reduction}")
        hidden = min(channels, max(4, channels // reduction))  # at least 4 units, so narrow levels keep a live gate
        self.squeeze = nn.Linear(channels, hidden)
        self.excite = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=tuple(range(2, x.ndim)))
        scale = torch.sigmoid(self.excite(torch.relu(self.squeeze(pooled))))
        return scale.reshape(*scale.shape, *([1] * (x.ndim - 2)))


class ResSEBlock(nn.Module):
    """A residual block with squeeze-and-excitation; the first conv (and the shortcut) may stride."""

    def __init__(
        self,
        spatial_dims: int,
        in_ch: int,
        out_ch: int,
        stride: Stride = 1,
        se_reduction: int = 8,
        dropout: float = 0.0,
        norm: str = "instance",
    ):
        super().__init__()
        conv = layer_types(spatial_dims).conv
        self.conv1 = conv(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, spatial_dims, out_ch)
        self.conv2 = conv(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, spatial_dims, out_ch)
        self.se = SqueezeExcitation(out_ch, se_reduction)
        strided = any(s != 1 for s in ([stride] if isinstance(stride, int) else stride))
        if strided or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                conv(in_ch, out_ch, 1, stride=stride, bias=False), make_norm(norm, spatial_dims, out_ch)
            )
        else:
            self.shortcut = nn.Identity()
        self.act = nn.LeakyReLU(0.01)
        self.drop = make_dropout(spatial_dims, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.conv2(self.act(self.norm1(self.conv1(x))))
        # Squeeze before norm2: an instance-normed map's spatial mean is just the norm's
        # bias, the same for every image, which would leave the gate blind to the input.
        residual = self.norm2(hidden) * self.se(hidden)
        return self.drop(self.act(residual + self.shortcut(x)))


class ResSEUNet(UNetBase):
    """A U-Net for 2D or 3D built from residual squeeze-and-excitation blocks."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[Stride] | None = None,
        se_reduction: int = 8,
        dropout: float = 0.0,
        norm: str = "instance",
    ):
        def block(i: int, o: int, stride: Stride) -> ResSEBlock:
            return ResSEBlock(spatial_dims, i, o, stride, se_reduction=se_reduction, dropout=dropout, norm=norm)

        super().__init__(spatial_dims, in_channels, out_channels, features, strides, block)

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
(``"instance"`` or ``"batch"``). Any input size works: it is zero-padded up to a
multiple of `ResSEUNet.divisor` and the logits are cropped back.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from segtool.networks.unet import _layers, crop_to, make_dropout, make_norm, pad_to_multiple, per_axis_strides, total_stride


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
        stride: Sequence[int] | int = 1,
        se_reduction: int = 8,
        dropout: float = 0.0,
        norm: str = "instance",
    ):
        super().__init__()
        conv = _layers(spatial_dims)[0]
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


class ResSEUNet(nn.Module):
    """A U-Net for 2D or 3D built from residual squeeze-and-excitation blocks."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[Sequence[int] | int] | None = None,
        se_reduction: int = 8,
        dropout: float = 0.0,
        norm: str = "instance",
    ):
        super().__init__()
        conv, up_conv, _, _ = _layers(spatial_dims)
        features = list(features)
        strides = per_axis_strides(strides, len(features), spatial_dims)
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        self.strides = strides

        def block(i: int, o: int, stride: Sequence[int] | int = 1) -> ResSEBlock:
            return ResSEBlock(spatial_dims, i, o, stride, se_reduction=se_reduction, dropout=dropout, norm=norm)

        self.encoders = nn.ModuleList([block(in_channels, features[0])])
        for i, stride in enumerate(strides):
            self.encoders.append(block(features[i], features[i + 1], stride))
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(len(strides))):
            self.upsamplers.append(up_conv(features[i + 1], features[i], strides[i], stride=strides[i], bias=False))
            self.decoders.append(block(2 * features[i], features[i]))
        self.head = conv(features[0], out_channels, 1)

    @property
    def divisor(self) -> tuple[int, ...]:
        """Input sizes that are multiples of this (per axis) need no internal padding."""
        return total_stride(self.strides, self.spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = pad_to_multiple(x, self.divisor)
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        skips.pop()
        for upsample, decoder in zip(self.upsamplers, self.decoders):
            x = decoder(torch.cat([upsample(x), skips.pop()], dim=1))
        return crop_to(self.head(x), size)

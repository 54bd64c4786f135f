"""The Attention U-Net family (2D or 3D): a U-Net whose skip connections pass through additive attention gates.

Source: Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas",
MIDL 2018. Each skip feature ``x`` is weighted, voxel by voxel, by a coefficient
``alpha = sigmoid(psi(relu(W_x x + W_g g)))`` computed with the gating signal ``g``, the
coarser decoder feature one level down. As in the paper, ``W_x`` is a strided
convolution that brings ``x`` onto ``g``'s grid, ``W_g`` and ``psi`` are 1x1
convolutions, the gate's inner width is half the skip's channels and ``alpha`` is
resampled (bi/trilinearly) back onto ``x``'s grid. The paper's deep supervision is left
out: the network returns one set of logits.

Knobs: ``features`` (channels per level), ``strides`` (the downsampling of each level
after the first, per axis, e.g. ``(2, 2, 1)`` keeps a thin axis), ``dropout``
(channel dropout at the end of every conv block) and ``norm`` (``"instance"`` or
``"batch"``). Any input size works: it is zero-padded up to a multiple of
`AttentionUNet.divisor` and the logits are cropped back.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segtool.networks.unet import ConvBlock, _layers, crop_to, pad_to_multiple, per_axis_strides, total_stride


class AttentionGate(nn.Module):
    """Additive attention gate: the skip ``x`` times ``alpha(x, g)`` in [0, 1]."""

    def __init__(self, spatial_dims: int, skip_channels: int, gate_channels: int, stride: Sequence[int]):
        super().__init__()
        conv = _layers(spatial_dims)[0]
        inner = max(1, skip_channels // 2)
        self.theta_x = conv(skip_channels, inner, tuple(stride), stride=tuple(stride), bias=False)
        self.phi_g = conv(gate_channels, inner, 1)
        self.psi = conv(inner, 1, 1)
        self.mode = "trilinear" if spatial_dims == 3 else "bilinear"

    def attention(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The coefficients ``alpha`` (B, 1, *x's spatial size)."""
        alpha = torch.sigmoid(self.psi(F.relu(self.theta_x(x) + self.phi_g(g))))
        return F.interpolate(alpha, size=x.shape[2:], mode=self.mode, align_corners=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x, g)


class AttentionUNet(nn.Module):
    """A U-Net for 2D or 3D with an attention gate on every skip connection."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[Sequence[int] | int] | None = None,
        dropout: float = 0.0,
        norm: str = "instance",
    ):
        super().__init__()
        conv, up_conv, _, _ = _layers(spatial_dims)
        features = list(features)
        strides = per_axis_strides(strides, len(features), spatial_dims)
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        self.strides = strides

        def block(i: int, o: int, stride: Sequence[int] | int = 1) -> ConvBlock:
            return ConvBlock(spatial_dims, i, o, stride, norm=norm, dropout=dropout)

        self.encoders = nn.ModuleList([block(in_channels, features[0])])
        for i, stride in enumerate(strides):
            self.encoders.append(block(features[i], features[i + 1], stride))
        self.gates = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(len(strides))):
            self.gates.append(AttentionGate(spatial_dims, features[i], features[i + 1], strides[i]))
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
        for gate, upsample, decoder in zip(self.gates, self.upsamplers, self.decoders):
            skip = gate(skips.pop(), x)  # x, one level coarser, is the gating signal
            x = decoder(torch.cat([upsample(x), skip], dim=1))
        return crop_to(self.head(x), size)

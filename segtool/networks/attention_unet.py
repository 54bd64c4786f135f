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
``"batch"``). The skeleton, padding to `AttentionUNet.divisor` and the forward pass
are `segtool.networks.unet_base.UNetBase`'s, with an `AttentionGate` as its skip gate.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segtool.networks.unet import ConvBlock
from segtool.networks.unet_base import Stride, UNetBase, layer_types


class AttentionGate(nn.Module):
    """Additive attention gate: the skip ``x`` times ``alpha(x, g)`` in [0, 1]."""

    def __init__(self, spatial_dims: int, skip_channels: int, gate_channels: int, stride: Sequence[int]):
        super().__init__()
        conv = layer_types(spatial_dims).conv
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


class AttentionUNet(UNetBase):
    """A U-Net for 2D or 3D with an attention gate on every skip connection."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[Stride] | None = None,
        dropout: float = 0.0,
        norm: str = "instance",
    ):
        def block(i: int, o: int, stride: Stride) -> ConvBlock:
            return ConvBlock(spatial_dims, i, o, stride, norm=norm, dropout=dropout)

        def gate(skip_channels: int, coarse_channels: int, stride: Sequence[int]) -> AttentionGate:
            return AttentionGate(spatial_dims, skip_channels, coarse_channels, stride)

        super().__init__(spatial_dims, in_channels, out_channels, features, strides, block, gate)

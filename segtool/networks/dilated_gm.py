"""The deep dilated convolution network of Perone, Calabrese and Cohen-Adad (Sci Rep 2018).

Spinal cord gray matter segmentation on axial slices (neuropoly/gmseg, SCT's
``sct_deepseg_gm``): no downsampling at all. Two 3x3 convolutions, two 3x3
convolutions dilated by 2, then an atrous spatial pyramid: a 3x3+1x1 branch, four
branches of two 3x3 convolutions dilated by 6, 12, 18 and 24, and a global-context
branch (global average pooling of the first block, broadcast back, no weights). The six
branches are concatenated, squeezed by a 1x1 "amortisation" convolution and
classified per pixel. Every convolution is followed by ReLU, batch norm and dropout
(in that order, as in the Keras original).

Module names follow the published Keras layers (``conv1``, ``conv2``, ``rate2_1``,
``rate2_2``, ``branch1x1_1``..., ``amort``, ``predictions``) so that the published
HDF5 weights map one to one (see `segtool.networks.keras_h5`).

Knobs: ``filters`` (32 in the published ``challenge`` model, 64 in ``large``),
``amort_filters`` (64), ``rates`` (the four pyramid dilations), ``dropout`` (0.4 in
the paper) and ``bn_eps`` (Keras' 1e-3 by default, so converted weights match).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ConvReluBN(nn.Sequential):
    """conv -> ReLU -> batch norm -> dropout: one Keras ``Conv2D(activation='relu')`` + BN + Dropout."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, dilation: int, dropout: float, bn_eps: float):
        super().__init__()
        padding = dilation * (kernel - 1) // 2
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=padding, dilation=dilation)
        self.relu = nn.ReLU(inplace=True)
        self.bn = nn.BatchNorm2d(out_ch, eps=bn_eps)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()


class DilatedGM(nn.Module):
    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        filters: int = 32,
        amort_filters: int = 64,
        rates: Sequence[int] = (6, 12, 18, 24),
        dropout: float = 0.4,
        bn_eps: float = 1e-3,
    ):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError("dilated_gm is a 2D network")
        rates = tuple(int(r) for r in rates)
        if len(rates) != 4 or min(rates) < 1:
            raise ValueError(f"dilated_gm needs four positive pyramid rates, got {rates}")
        f = int(filters)

        def block(i: int, o: int, kernel: int = 3, dilation: int = 1) -> ConvReluBN:
            return ConvReluBN(i, o, kernel, dilation, dropout, bn_eps)

        self.spatial_dims = 2
        self.in_channels, self.out_channels, self.rates = in_channels, out_channels, rates
        self.conv1 = block(in_channels, f)
        self.conv2 = block(f, f)
        self.rate2_1 = block(f, f, dilation=2)
        self.rate2_2 = block(f, f, dilation=2)
        self.branch1x1_1 = block(f, f)
        self.branch1x1_2 = block(f, f, kernel=1)
        self.pyramid = nn.ModuleList(
            nn.Sequential(block(f, f, dilation=r), block(f, f, dilation=r)) for r in rates
        )
        self.concat_bn = nn.BatchNorm2d(6 * f, eps=bn_eps)
        self.concat_drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.amort = block(6 * f, amort_filters, kernel=1)
        self.predictions = nn.Conv2d(amort_filters, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.conv2(self.conv1(x))
        trunk = self.rate2_2(self.rate2_1(first))
        branch1 = self.branch1x1_2(self.branch1x1_1(trunk))
        pyramid = [branch(trunk) for branch in self.pyramid]
        pooled = first.mean(dim=(2, 3))
        context = pooled[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        # The Keras original concatenates [1x1, rate 6, rate 12, rate 18, global, rate 24].
        merged = torch.cat([branch1, pyramid[0], pyramid[1], pyramid[2], context, pyramid[3]], dim=1)
        merged = self.concat_drop(self.concat_bn(merged))
        return self.predictions(self.amort(merged))

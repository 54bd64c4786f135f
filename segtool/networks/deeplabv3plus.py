"""The DeepLabV3+ family (2D only): residual encoder, atrous spatial pyramid pooling, light decoder.

Source: Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic
Image Segmentation" (DeepLabV3+), ECCV 2018; the encoder is a narrow ResNet (He et al.,
CVPR 2016) trained from scratch (no pretrained weights). The network is the paper's three
parts, each its own module so a task could swap one:

- `ResidualEncoder`: a stem of two 3x3 convolutions (the first strides by 2), then four
  stages of residual basic blocks. Stages 1 and 2 stride by 2; stage 3 strides by 2 at
  output stride 16 or dilates by 2 at output stride 8; stage 4 dilates (by 2 or 4)
  instead of striding. Stage 1's output (stride 4) is the decoder's low-level feature.
- `ASPP`: a 1x1 branch, one atrous depthwise-separable 3x3 branch per rate and an
  image-pooling branch (global average, 1x1 conv, ReLU; no norm, so it trains with a
  batch of one), concatenated, projected by a 1x1 conv and dropped out.
- `Decoder`: the low-level feature squeezed by a 1x1 conv to a quarter of the ASPP
  width, the ASPP output bilinearly upsampled onto it, two separable 3x3 convolutions.

A 1x1 classifier follows and the logits are bilinearly upsampled to the input size, so
any input size works. Input sizes that are multiples of `DeepLabV3Plus.divisor` (the
output stride) keep every feature map aligned with the input grid.

Knobs: ``features`` (the four stage widths; the stem uses the first), ``blocks``
(residual blocks per stage, ResNet-18's layout by default), ``output_stride`` (8 or
16), ``rates`` (the ASPP dilations; by default (6, 12, 18) at output stride 16 and
twice that at 8, as in the paper), ``aspp_channels``, ``dropout`` (after the ASPP
projection) and ``norm`` (``"batch"``, the paper's, or ``"instance"``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segtool.networks.unet_base import make_dropout, make_norm


def _norm(norm: str, channels: int) -> nn.Module:
    return make_norm(norm, 2, channels)


class BasicBlock(nn.Module):
    """A ResNet basic block: two 3x3 (conv, norm) with a ReLU between, plus a shortcut, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dilation: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.norm1 = _norm(norm, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=dilation, dilation=dilation, bias=False)
        self.norm2 = _norm(norm, out_ch)
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), _norm(norm, out_ch))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))
        return F.relu(residual + self.shortcut(x))


class ResidualEncoder(nn.Module):
    """A narrow ResNet returning (low-level feature at stride 4, high-level feature at ``output_stride``)."""

    def __init__(self, in_channels: int, features: Sequence[int], blocks: Sequence[int], output_stride: int, norm: str):
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        if len(features) != 4 or len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"need four stage widths and four positive block counts, got {features} and {blocks}")
        stem = features[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, stride=2, padding=1, bias=False), _norm(norm, stem), nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem, 3, padding=1, bias=False), _norm(norm, stem), nn.ReLU(inplace=True),
        )
        # (stride, dilation) of each stage: strides until output_stride is reached, then dilation.
        layout = [(2, 1), (2, 1), (2, 1), (1, 2)] if output_stride == 16 else [(2, 1), (2, 1), (1, 2), (1, 4)]
        self.stages = nn.ModuleList()
        width = stem
        for out_ch, count, (stride, dilation) in zip(features, blocks, layout):
            stage = [BasicBlock(width, out_ch, stride, dilation, norm)]
            stage += [BasicBlock(out_ch, out_ch, 1, dilation, norm) for _ in range(count - 1)]
            self.stages.append(nn.Sequential(*stage))
            width = out_ch

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        low_level = x = self.stages[0](x)
        for stage in self.stages[1:]:
            x = stage(x)
        return low_level, x


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 (atrous) conv, pointwise 1x1 conv, norm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int, norm: str):
        super().__init__(
            nn.Conv2d(in_ch, in_ch, 3, padding=dilation, dilation=dilation, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            _norm(norm, out_ch),
            nn.ReLU(inplace=True),
        )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, one separable branch per rate, image pooling; projected by 1x1."""

    def __init__(self, in_ch: int, out_ch: int, rates: Sequence[int], dropout: float, norm: str):
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), _norm(norm, out_ch), nn.ReLU(inplace=True))]
            + [SeparableConv(in_ch, out_ch, rate, norm) for rate in rates]
        )
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_ch, out_ch, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(
            nn.Conv2d(out_ch * (len(rates) + 2), out_ch, 1, bias=False), _norm(norm, out_ch), nn.ReLU(inplace=True),
            make_dropout(2, dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[2:])
        return self.project(torch.cat([branch(x) for branch in self.branches] + [pooled], dim=1))


class Decoder(nn.Module):
    """Fuses the upsampled ASPP output with the projected low-level feature."""

    def __init__(self, low_level_ch: int, aspp_ch: int, norm: str):
        super().__init__()
        reduced = max(1, aspp_ch // 4)
        self.low_level = nn.Sequential(nn.Conv2d(low_level_ch, reduced, 1, bias=False), _norm(norm, reduced), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(SeparableConv(aspp_ch + reduced, aspp_ch, 1, norm), SeparableConv(aspp_ch, aspp_ch, 1, norm))

    def forward(self, low_level: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        context = F.interpolate(context, size=low_level.shape[2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([context, self.low_level(low_level)], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ for 2D images of any size."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (16, 32, 64, 128),
        blocks: Sequence[int] = (2, 2, 2, 2),
        output_stride: int = 16,
        rates: Sequence[int] | None = None,
        aspp_channels: int = 64,
        dropout: float = 0.1,
        norm: str = "batch",
    ):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError("deeplabv3plus is a 2D network")
        if rates is None:
            rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        rates = tuple(int(r) for r in rates)
        if not rates or min(rates) < 1:
            raise ValueError(f"deeplabv3plus needs positive ASPP rates, got {rates}")
        features, blocks = [int(f) for f in features], [int(b) for b in blocks]
        self.spatial_dims, self.in_channels, self.out_channels = 2, in_channels, out_channels
        self.output_stride, self.rates = output_stride, rates
        self.encoder = ResidualEncoder(in_channels, features, blocks, output_stride, norm)
        self.aspp = ASPP(features[-1], aspp_channels, rates, dropout, norm)
        self.decoder = Decoder(features[0], aspp_channels, norm)
        self.head = nn.Conv2d(aspp_channels, out_channels, 1)

    @property
    def divisor(self) -> tuple[int, int]:
        """Input sizes that are multiples of this keep every feature map aligned (any size works)."""
        return (self.output_stride, self.output_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low_level, high_level = self.encoder(x)
        logits = self.head(self.decoder(low_level, self.aspp(high_level)))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)

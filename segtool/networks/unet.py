"""The plain U-Net family (nnU-Net style, 2D or 3D): conv-norm-LeakyReLU blocks, strided downsampling, transposed-conv upsampling.

Sources: Ronneberger et al., "U-Net", MICCAI 2015; nnU-Net's plain U-Net (Isensee et
al., Nature Methods 2021). Knobs: ``features`` (channels per level) and ``strides``
(the downsampling of each level after the first, per axis).

Any input size works: the input is zero-padded at the end of each axis up to a
multiple of `UNet.divisor` and the logits are cropped back. The helpers below (layer
types, normalisation choice, per-axis strides, pad and crop) are shared by the other
U-Net families (`attention_unet`, `res_se_unet`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: The normalisations a family's ``norm`` knob may name.
NORMS = ("instance", "batch")


def _layers(spatial_dims: int):
    """(conv, transposed conv, instance norm, dropout) classes for 2D or 3D."""
    if spatial_dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.InstanceNorm3d, nn.Dropout3d
    if spatial_dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.InstanceNorm2d, nn.Dropout2d
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def make_norm(norm: str, spatial_dims: int, channels: int) -> nn.Module:
    """An affine instance norm (nnU-Net's default) or a batch norm over ``channels``."""
    if norm == "instance":
        return _layers(spatial_dims)[2](channels, affine=True)
    if norm == "batch":
        return (nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d)(channels)
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def make_dropout(spatial_dims: int, dropout: float) -> nn.Module:
    """Channel dropout, or an identity when ``dropout`` is 0."""
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return _layers(spatial_dims)[3](dropout) if dropout > 0 else nn.Identity()


def per_axis_strides(strides, levels: int, spatial_dims: int) -> list[tuple[int, ...]]:
    """``strides`` (None: 2 everywhere) as one per-axis tuple for each level after the first."""
    if strides is None:
        strides = [2] * (levels - 1)
    strides = [tuple([s] * spatial_dims) if isinstance(s, int) else tuple(s) for s in strides]
    if len(strides) != levels - 1:
        raise ValueError("strides needs one entry per level after the first")
    if any(len(s) != spatial_dims or min(s) < 1 for s in strides):
        raise ValueError(f"each stride needs {spatial_dims} positive entries, got {strides}")
    return strides


def total_stride(strides: Sequence[Sequence[int]], spatial_dims: int) -> tuple[int, ...]:
    """The product of the per-level strides, per axis."""
    total = [1] * spatial_dims
    for stride in strides:
        total = [t * s for t, s in zip(total, stride)]
    return tuple(total)


def pad_to_multiple(x: torch.Tensor, divisor: Sequence[int]) -> torch.Tensor:
    """``x`` zero-padded at the end of each spatial axis up to a multiple of ``divisor``."""
    extra = [-size % d for size, d in zip(x.shape[2:], divisor)]
    if not any(extra):
        return x
    pad: list[int] = []
    for e in reversed(extra):  # F.pad lists the last axis first
        pad += [0, e]
    return F.pad(x, pad)


def crop_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The first ``size`` voxels of each spatial axis of ``x``."""
    return x[(..., *(slice(0, s) for s in size))]


class ConvBlock(nn.Sequential):
    """Two (conv, norm, leaky ReLU) layers, then optional dropout; the first conv may stride."""

    def __init__(
        self,
        spatial_dims: int,
        in_ch: int,
        out_ch: int,
        stride: Sequence[int] | int = 1,
        norm: str = "instance",
        dropout: float = 0.0,
    ):
        conv = _layers(spatial_dims)[0]
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
        conv, up_conv, _, _ = _layers(spatial_dims)
        features = list(features)
        strides = per_axis_strides(strides, len(features), spatial_dims)
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
            x = upsample(x)
            x = decoder(torch.cat([x, skips.pop()], dim=1))
        return crop_to(self.head(x), size)

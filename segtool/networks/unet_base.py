"""The skeleton the U-Net families share (`unet`, `attention_unet`, `res_se_unet`), 2D or 3D.

An encoder of one block per level (the first keeps the input's grid, each later one
strides by its level's ``strides`` entry), a decoder that walks the levels back up (a
transposed convolution upsamples, the skip of that level is concatenated, one block
merges them) and a 1x1 convolution head. A family supplies only what differs: the
block it stacks and, optionally, a gate applied to each skip connection (`UNetBase`).

Any input size works: the input is zero-padded at the end of each axis up to a multiple
of `UNetBase.divisor` and the logits are cropped back.

The submodules are built in a fixed order (encoder blocks from the top; then, level by
level from the bottom, gate, upsampler, decoder block; then the head) and registered as
``encoders``, ``gates`` (gated families only), ``upsamplers``, ``decoders``, ``head``: a
seeded build draws the same initial weights, and trained checkpoints keep their keys.
The layer helpers (`layer_types`, `make_norm`, `make_dropout`, strides, pad and crop)
are public so each family's blocks use them too.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: The normalisations a family's ``norm`` knob may name.
NORMS = ("instance", "batch")

#: A stride as a family's knob takes it: one int for every axis, or one entry per axis.
Stride = Sequence[int] | int


class LayerTypes(NamedTuple):
    """The layer classes of one dimensionality."""

    conv: type[nn.Module]
    up_conv: type[nn.Module]
    instance_norm: type[nn.Module]
    dropout: type[nn.Module]


def layer_types(spatial_dims: int) -> LayerTypes:
    """The conv, transposed conv, instance norm and channel dropout classes for 2D or 3D."""
    if spatial_dims == 3:
        return LayerTypes(nn.Conv3d, nn.ConvTranspose3d, nn.InstanceNorm3d, nn.Dropout3d)
    if spatial_dims == 2:
        return LayerTypes(nn.Conv2d, nn.ConvTranspose2d, nn.InstanceNorm2d, nn.Dropout2d)
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def make_norm(norm: str, spatial_dims: int, channels: int) -> nn.Module:
    """An affine instance norm (nnU-Net's default) or a batch norm over ``channels``."""
    if norm == "instance":
        return layer_types(spatial_dims).instance_norm(channels, affine=True)
    if norm == "batch":
        return (nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d)(channels)
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


def make_dropout(spatial_dims: int, dropout: float) -> nn.Module:
    """Channel dropout, or an identity when ``dropout`` is 0."""
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return layer_types(spatial_dims).dropout(dropout) if dropout > 0 else nn.Identity()


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


#: ``block(in_channels, out_channels, stride)``: one encoder or decoder stage of a family.
BlockFactory = Callable[[int, int, Stride], nn.Module]
#: ``gate(skip_channels, coarse_channels, stride)``: a module called as ``gate(skip, coarse)``.
GateFactory = Callable[[int, int, Sequence[int]], nn.Module]


class UNetBase(nn.Module):
    """A U-Net for 2D or 3D whose stages are ``block``'s and whose skips pass through ``gate``'s (if given).

    ``features`` gives the channels per level; ``strides`` the downsampling factor
    of each level after the first (per axis, so anisotropic data can keep its thin
    axis, e.g. ``(2, 2, 1)``; None: 2 on every axis). A gate gets the skip feature
    and the coarser decoder feature one level down and returns the skip to concatenate.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int],
        strides: Sequence[Stride] | None,
        block: BlockFactory,
        gate: GateFactory | None = None,
    ):
        super().__init__()
        layers = layer_types(spatial_dims)
        features = list(features)
        strides = per_axis_strides(strides, len(features), spatial_dims)
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        self.strides = strides
        self.encoders = nn.ModuleList([block(in_channels, features[0], 1)])
        for i, stride in enumerate(strides):
            self.encoders.append(block(features[i], features[i + 1], stride))
        self.gates = nn.ModuleList() if gate is not None else None
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(len(strides))):
            if gate is not None:
                self.gates.append(gate(features[i], features[i + 1], strides[i]))
            self.upsamplers.append(
                layers.up_conv(features[i + 1], features[i], strides[i], stride=strides[i], bias=False)
            )
            self.decoders.append(block(2 * features[i], features[i], 1))
        self.head = layers.conv(features[0], out_channels, 1)

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
        for level, (upsample, decoder) in enumerate(zip(self.upsamplers, self.decoders)):
            skip = skips.pop()
            if self.gates is not None:
                skip = self.gates[level](skip, x)  # x, one level coarser, is the gating signal
            x = decoder(torch.cat([upsample(x), skip], dim=1))
        return crop_to(self.head(x), size)

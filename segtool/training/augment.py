"""On-the-fly augmentation of a batch of patches, in torch, from one seeded generator.

Spatial (applied to image and label alike): small rotations and scaling through
`affine_grid`/`grid_sample` (linear for images, nearest for labels), optional
elastic deformation (a smooth random displacement added to the same grid) and
axis flips. Intensity (image only): brightness, contrast, Gaussian noise and
Gaussian blur. Probabilities and ranges follow nnU-Net's defaults, scaled down to
"small". Outside the volume both are padded with 0, as inference pads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSettings:
    flip_axes: tuple[int, ...]  # spatial axes (0-based) flipped with probability 1/2 each
    p_rotate: float = 0.2
    max_rotation_deg: float = 15.0
    p_scale: float = 0.2
    scale_range: tuple[float, float] = (0.85, 1.15)
    p_elastic: float = 0.0
    elastic_magnitude: float = 0.04  # displacement, as a fraction of the patch
    p_brightness: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    p_noise: float = 0.1
    max_noise_std: float = 0.3
    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)



def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _chance(gen: torch.Generator, p: float) -> bool:
    return p > 0 and float(torch.rand((), generator=gen)) < p


def _rotation(ndim: int, gen: torch.Generator, max_deg: float) -> torch.Tensor:
    angles = [math.radians(_uniform(gen, -max_deg, max_deg)) for _ in range(1 if ndim == 2 else 3)]
    if ndim == 2:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        return torch.tensor([[c, -s], [s, c]])
    out = torch.eye(3)
    for axis, a in enumerate(angles):
        c, s = math.cos(a), math.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = torch.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


def _spatial_matrix(shape: tuple[int, ...], settings: AugmentSettings, gen: torch.Generator) -> torch.Tensor | None:
    """An affine_grid theta (ndim, ndim+1) for one sample, or None when it is left alone."""
    ndim = len(shape)
    m = torch.eye(ndim)
    changed = False
    if _chance(gen, settings.p_rotate):
        m = _rotation(ndim, gen, settings.max_rotation_deg) @ m
        changed = True
    if _chance(gen, settings.p_scale):
        m = m / _uniform(gen, *settings.scale_range)  # sampling a smaller region zooms in
        changed = True
    if not changed:
        return None
    # Rotate in voxel space: normalised coords are scaled per axis, so conjugate by the half-sizes.
    size = torch.tensor([float(n) for n in shape])
    m = torch.diag(1.0 / size) @ m @ torch.diag(size)
    m = m.flip(0).flip(1)  # affine_grid orders coordinates (x, y, z) = last axis first
    return torch.cat([m, torch.zeros(ndim, 1)], dim=1)


def _elastic_offsets(shape: tuple[int, ...], magnitude: float, gen: torch.Generator) -> torch.Tensor:
    """A smooth random displacement (*shape, ndim) in normalised coordinates."""
    ndim = len(shape)
    coarse = torch.randn((1, ndim) + (4,) * ndim, generator=gen) * magnitude * 2.0
    mode = "bilinear" if ndim == 2 else "trilinear"
    field = F.interpolate(coarse, size=shape, mode=mode, align_corners=True)[0]
    return field.movedim(0, -1)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur (C, *spatial) channel by channel with a separable Gaussian of ``sigma`` voxels."""
    ndim = x.dim() - 1
    radius = max(1, int(math.ceil(2 * sigma)))
    coords = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (coords / sigma) ** 2)
    kernel = kernel / kernel.sum()
    conv = {2: F.conv2d, 3: F.conv3d}[ndim]
    out = x[:, None]  # (C, 1, *spatial): channels as batch
    for axis in range(ndim):
        shape = [1, 1] + [1] * ndim
        shape[2 + axis] = len(kernel)
        pad = [0] * (2 * ndim)
        pad[2 * (ndim - 1 - axis)] = pad[2 * (ndim - 1 - axis) + 1] = radius
        out = conv(F.pad(out, pad, mode="replicate"), kernel.reshape(shape))
    return out[:, 0]


def _intensity(x: torch.Tensor, settings: AugmentSettings, gen: torch.Generator) -> torch.Tensor:
    if _chance(gen, settings.p_brightness):
        x = x * _uniform(gen, *settings.brightness_range)
    if _chance(gen, settings.p_contrast):
        dims = tuple(range(1, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        x = ((x - mean) * _uniform(gen, *settings.contrast_range) + mean).clamp(lo, hi)
    if _chance(gen, settings.p_noise):
        std = _uniform(gen, 0.0, settings.max_noise_std)
        x = x + torch.randn(x.shape, generator=gen) * std
    if _chance(gen, settings.p_blur):
        x = _gaussian_blur(x, _uniform(gen, *settings.blur_sigma))
    return x


def augment_batch(
    images: torch.Tensor, labels: torch.Tensor, settings: AugmentSettings, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment (B, C, *spatial) float images and (B, *spatial) integer labels (on the CPU)."""
    images, labels = images.clone(), labels.clone()
    shape = tuple(images.shape[2:])
    ndim = len(shape)
    for b in range(images.shape[0]):
        theta = _spatial_matrix(shape, settings, gen)
        elastic = _chance(gen, settings.p_elastic)
        if theta is not None or elastic:
            if theta is None:
                theta = torch.cat([torch.eye(ndim), torch.zeros(ndim, 1)], dim=1)
            grid = F.affine_grid(theta[None], [1, 1, *shape], align_corners=False)
            if elastic:
                grid = grid + _elastic_offsets(shape, settings.elastic_magnitude, gen)[None]
            images[b] = F.grid_sample(images[b : b + 1], grid, mode="bilinear", align_corners=False)[0]
            lab = labels[b : b + 1, None].float()
            labels[b] = F.grid_sample(lab, grid, mode="nearest", align_corners=False)[0, 0].to(labels.dtype)
        flips = [axis + 1 for axis in settings.flip_axes if _chance(gen, 0.5)]
        if flips:
            images[b] = images[b].flip(flips)
            labels[b] = labels[b].flip([a - 1 for a in flips])
        images[b] = _intensity(images[b], settings, gen)
    return images, labels

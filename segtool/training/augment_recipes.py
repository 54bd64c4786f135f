"""Augmentation recipes a task names in its spec (``TaskSpec.augmentation``), built with TorchIO.

Few-subject medical models live or die by augmentation, so the MRI recipes use
TorchIO's well-tested transforms rather than hand-written ones:

- ``mri-strong``: random affine (in-plane rotation ±20°, scaling 0.8-1.25), elastic
  deformation, simulated low resolution (`RandomAnisotropy`, 1.5-4x), intensity
  non-uniformity (`RandomBiasField`), gamma (contrast), Gaussian noise and blur,
  and left-right flips. For scanners, sites and contrasts the training set lacks.
- ``mri-contrast``: ``mri-strong`` plus, half of the time, a random monotone remap of the
  intensities (`random_intensity_remap`), for contrasts the training set lacks.
- ``default``: a milder version (affine, bias field, gamma, noise, blur, flips on
  every axis), the recipe for tasks that declare nothing.
- ``photo`` and ``none`` are not TorchIO recipes: photos keep the torch
  augmentation of `segtool.training.augment` (flips, rotation, scaling,
  brightness/contrast); ``none`` trains on the raw patches.

Every transform is applied to image and label alike where it is spatial (labels
by nearest neighbour), to the image only where it is about intensity. 2D patches
are given to TorchIO as one-slice volumes. Randomness comes from the seeded torch
generator of the step, so a batch stays a pure function of its seed.
"""

from __future__ import annotations

import torch

TORCHIO_RECIPES = ("mri-strong", "mri-contrast", "default")


def random_intensity_remap(x: torch.Tensor) -> torch.Tensor:
    """A random monotone piecewise-linear remap of the image's intensity range (MONAI's RandHistogramShift).

    4-10 control points spread evenly over [min, max]; the inner ones move, each drawn
    uniformly between its left neighbour's new place and its right neighbour's old one,
    so the curve keeps the order of intensities and the range but changes the contrast
    between tissues, which a new scanner or sequence does too. Randomness from torch's
    global generator (seeded per step by `apply_recipe`).
    """
    import numpy as np

    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return x
    count = int(torch.randint(4, 11, ()))
    reference = np.linspace(0.0, 1.0, count)
    moved = reference.copy()
    for i in range(1, count - 1):
        moved[i] = moved[i - 1] + float(torch.rand(())) * (reference[i + 1] - moved[i - 1])
    unit = ((x - lo) / (hi - lo)).numpy()
    return torch.from_numpy(np.interp(unit, reference, moved).astype(np.float32) * (hi - lo) + lo)


def build_recipe(name: str, spatial_dims: int, flip_axes: tuple[int, ...]):
    """The TorchIO Compose of a recipe for patches with ``spatial_dims`` dimensions."""
    import torchio as tio

    in_plane = spatial_dims == 2
    if name in ("mri-strong", "mri-contrast"):
        degrees = (0, 0, 0, 0, -20, 20) if in_plane else 15
        scales = (0.8, 1.25, 0.8, 1.25, 1, 1) if in_plane else (0.8, 1.25)
        displacement = (6, 6, 0) if in_plane else 6
        transforms = [
            tio.RandomAffine(scales=scales, degrees=degrees, isotropic=not in_plane, p=0.7),
            tio.RandomElasticDeformation(num_control_points=7, max_displacement=displacement, p=0.3),
            tio.RandomAnisotropy(axes=(0, 1) if in_plane else (0, 1, 2), downsampling=(1.5, 4.0), p=0.35),
            tio.RandomBiasField(coefficients=0.5, p=0.4),
            tio.RandomGamma(log_gamma=(-0.5, 0.5), p=0.5),
            tio.RandomNoise(std=(0.0, 0.15), p=0.3),
            tio.RandomBlur(std=(0.0, 1.0), p=0.2),
        ]
        if name == "mri-contrast":
            transforms.append(tio.Lambda(random_intensity_remap, types_to_apply=[tio.INTENSITY], p=0.5))
    elif name == "default":
        degrees = (0, 0, 0, 0, -15, 15) if in_plane else 10
        scales = (0.85, 1.15, 0.85, 1.15, 1, 1) if in_plane else (0.85, 1.15)
        transforms = [
            tio.RandomAffine(scales=scales, degrees=degrees, isotropic=not in_plane, p=0.3),
            tio.RandomBiasField(coefficients=0.3, p=0.2),
            tio.RandomGamma(log_gamma=(-0.3, 0.3), p=0.3),
            tio.RandomNoise(std=(0.0, 0.1), p=0.15),
            tio.RandomBlur(std=(0.0, 1.0), p=0.15),
        ]
    else:
        raise ValueError(f"{name!r} is not a TorchIO recipe (known: {', '.join(TORCHIO_RECIPES)})")
    if flip_axes:
        transforms.append(tio.RandomFlip(axes=tuple(flip_axes), flip_probability=0.5))
    return tio.Compose(transforms)


def describe_recipe(name: str, flip_axes: tuple[int, ...]) -> str:
    """One line for the model card."""
    strong = ("TorchIO: affine (rotation ±20° in-plane, scale 0.8-1.25), elastic, simulated low resolution "
              "1.5-4x, bias field, gamma, noise, blur")
    text = {
        "mri-strong": strong,
        "mri-contrast": strong + ", random monotone intensity remap",
        "default": "TorchIO: affine (rotation ±15°, scale 0.85-1.15), bias field, gamma, noise, blur",
    }[name]
    return text + (f", flips on axes {list(flip_axes)}" if flip_axes else "")


def apply_recipe(compose, images: torch.Tensor, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment (B, C, *spatial) images and (B, *spatial) labels, each sample on its own, from ``seed``."""
    import torchio as tio

    flat = images.dim() == 4  # 2D patches: TorchIO sees one-slice volumes
    out_images, out_labels = images.clone(), labels.clone()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for b in range(images.shape[0]):
            image = images[b].float()
            label = labels[b][None].to(torch.int16)
            if flat:
                image, label = image[..., None], label[..., None]
            subject = tio.Subject(image=tio.ScalarImage(tensor=image), label=tio.LabelMap(tensor=label))
            result = compose(subject)
            new_image, new_label = result["image"].data, result["label"].data
            if flat:
                new_image, new_label = new_image[..., 0], new_label[..., 0]
            out_images[b] = new_image.to(images.dtype)
            out_labels[b] = new_label[0].to(labels.dtype)
    return out_images, out_labels

"""The batches of a training run: batch ``s`` is a pure function of (seed, rank, s), and the augmentation.

`StepBatches` draws each optimiser step's patches with its own numpy generator and
augments them with its own torch generator, so whichever DataLoader worker makes a
batch, and whether a run was resumed or not, the batches are the same.
"""

from __future__ import annotations

import numpy as np
import torch

from segtool.spec import TaskSpec
from segtool.training.augment import AugmentSettings, augment_batch
from segtool.training.augment_recipes import TORCHIO_RECIPES, apply_recipe, build_recipe, describe_recipe
from segtool.training.channel_stand_ins import ChannelStandIns
from segtool.training.field_of_view import FieldOfViewCut, cut_field_of_view
from segtool.training.sampling import PatchSampler


class StepBatches(torch.utils.data.Dataset):
    """Item ``s`` is the (augmented) batch of optimiser step ``s``: seeded by (seed, rank, s).

    ``augment`` is either `AugmentSettings` (the torch augmentation of photos) or a
    TorchIO Compose (`augment_recipes`). With ``slice_axis`` the sampler cuts
    slabs of ``2 * slice_context + 1`` slices from the volumes and they leave here as
    2D patches, the slab's slices as channels (`slab_to_channels`). With
    ``field_of_view`` some patches are then cut to a band along the task's column. With
    ``stand_ins`` some channels are first replaced by the ones that stand in for them.
    """

    def __init__(self, sampler: PatchSampler, augment, seed: int, rank: int, slice_axis: int | None = None,
                 field_of_view: FieldOfViewCut | None = None, slice_context: int = 0,
                 stand_ins: ChannelStandIns | None = None):
        self.sampler = sampler
        self.stand_ins = stand_ins
        self.augment = augment
        self.field_of_view = field_of_view
        self.seed = seed
        self.rank = rank
        self.slice_axis = slice_axis
        self.slice_context = slice_context

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        seq = np.random.SeedSequence([self.seed, self.rank, int(step)])
        rng = np.random.default_rng(seq)
        images, labels = self.sampler.sample(rng)
        if self.stand_ins is not None:
            images = self.stand_ins.apply(images, rng)
        x, y = torch.from_numpy(images), torch.from_numpy(labels)
        if self.slice_axis is not None:
            x, y = slab_to_channels(x, y, self.slice_axis, self.slice_context)
        seed = int(seq.generate_state(1, np.uint64)[0] >> 1)
        if isinstance(self.augment, AugmentSettings):
            x, y = augment_batch(x, y, self.augment, torch.Generator().manual_seed(seed))
        elif self.augment is not None:
            x, y = apply_recipe(self.augment, x, y, seed)
        if self.field_of_view is not None:
            x, y = cut_field_of_view(x, y, self.field_of_view, torch.Generator().manual_seed(seed + 1))
        return x, y


def slab_to_channels(images: torch.Tensor, labels: torch.Tensor, slice_axis: int,
                     context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slabs (B, C, *3D) of ``2 * context + 1`` slices along ``slice_axis`` as 2D patches.

    Images become (B, C * (2k + 1), *2D): each channel's slices in order, as
    `segtool.windows.window_input` stacks a slice's neighbours; labels (B, *2D) are the centre slice's.
    """
    slab = images.movedim(slice_axis + 2, 2)  # (B, C, 2k+1, *2D)
    return slab.reshape(slab.shape[0], -1, *slab.shape[3:]), labels.select(slice_axis + 1, context)


def iterate_batches(dataset: StepBatches, steps: range, num_workers: int, pin: bool):
    if num_workers <= 0:
        return (dataset[s] for s in steps)
    return iter(
        torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=list(steps), num_workers=num_workers, pin_memory=pin
        )
    )


def choose_augmentation(spec: TaskSpec, augment: bool, elastic: bool):
    """The TorchIO recipe, the photo settings, or None; and its description for the model card."""
    recipe = spec.augmentation
    if not augment or recipe == "none":
        return None, "none"
    photo = spec.is_photo
    if photo or recipe == "photo" or recipe not in TORCHIO_RECIPES:
        settings = AugmentSettings(flip_axes=spec.flip_axes, p_elastic=0.2 if elastic else 0.0)
        description = (
            f"flips on axes {list(settings.flip_axes)}, rotation ±{settings.max_rotation_deg:g}°, scaling "
            f"{settings.scale_range[0]:g}-{settings.scale_range[1]:g}, brightness, contrast, noise, blur"
            + (", elastic" if settings.p_elastic else "")
        )
        return settings, description
    flips = spec.flip_axes
    description = describe_recipe(recipe, flips)
    return build_recipe(recipe, spec.network_dims, flips), description


def choose_field_of_view(spec: TaskSpec, augment: bool) -> FieldOfViewCut | None:
    """Partial fields of view along the column of tasks that name levels by position (discs), else None."""
    axis = spec.column_axis
    if not augment or spec.augmentation == "none" or axis is None:
        return None
    return FieldOfViewCut(axis=axis, restandardise=spec.normalization == "zscore")

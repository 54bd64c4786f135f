"""Dice + cross-entropy, the nnU-Net loss, on logits (B, K, *spatial) and labels (B, *spatial).

With ``regions`` (a task's named unions of labels, e.g. BraTS's whole tumour {1,2,3,4},
core {1,3,4} and enhancing tumour {4}) the Dice term is taken over those regions instead
of over each label: a region's probability is the sum of its labels' softmax
probabilities, so the network still predicts the labels, but is scored as the regions'
metrics score it (nnU-Net trains BraTS on regions too, with sigmoid outputs). Labels that
are hard to tell apart and count together (necrosis and non-enhancing tumour, both core)
then no longer pull against each other in the Dice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _batch_dice(probs: torch.Tensor, onehot: torch.Tensor, smooth: float) -> torch.Tensor:
    """Soft Dice per channel, pooled over the batch and space ("batch Dice"); absent from both: 1."""
    dims = (0,) + tuple(range(2, probs.dim()))
    intersection = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    return (2.0 * intersection + smooth) / (total + smooth)


def _softmax_and_onehot(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (float32) and the target as one-hot channels of the same shape."""
    probs = torch.softmax(logits.float(), dim=1)
    return probs, F.one_hot(target.long(), logits.shape[1]).movedim(-1, 1).to(probs.dtype)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes, pooled over the batch ("batch Dice").

    Classes absent from both the target and the prediction count as Dice 1.
    """
    num_classes = logits.shape[1]
    dice = _batch_dice(*_softmax_and_onehot(logits, target), smooth)
    return 1.0 - dice[1:].mean() if num_classes > 1 else 1.0 - dice.mean()


def region_matrix(regions: Sequence[Sequence[int]], num_classes: int) -> torch.Tensor:
    """(R, K) 0/1 matrix: row r marks the labels of region r. ValueError for a label out of range or an empty region."""
    matrix = torch.zeros(len(regions), num_classes)
    for r, members in enumerate(regions):
        if not members:
            raise ValueError(f"region {r} has no labels")
        for label in members:
            if not 0 < int(label) < num_classes:
                raise ValueError(f"region label {label} is not a foreground class of {num_classes}")
            matrix[r, int(label)] = 1.0
    return matrix


def soft_region_dice_loss(logits: torch.Tensor, target: torch.Tensor, matrix: torch.Tensor,
                          smooth: float = 1e-5) -> torch.Tensor:
    """1 - mean soft Dice over the regions of ``matrix`` (see `region_matrix`), each region's probability
    the sum of its labels' softmax probabilities; batch Dice, a region absent from both counts as 1."""
    probs, onehot = _softmax_and_onehot(logits, target)
    matrix = matrix.to(probs.device, probs.dtype)
    region_probs = torch.einsum("bk...,rk->br...", probs, matrix)
    region_target = torch.einsum("bk...,rk->br...", onehot, matrix)
    return 1.0 - _batch_dice(region_probs, region_target, smooth).mean()


class DiceCELoss(nn.Module):
    """``dice_weight * soft Dice loss + ce_weight * cross-entropy``; the Dice over ``regions`` if given."""

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0, smooth: float = 1e-5,
                 regions: Sequence[Sequence[int]] | None = None, num_classes: int | None = None):
        super().__init__()
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.smooth = smooth
        if regions and num_classes is None:
            raise ValueError("regions need num_classes")
        self.register_buffer("regions", region_matrix(regions, num_classes) if regions else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), target.long())
        if self.regions is not None:
            dice = soft_region_dice_loss(logits, target, self.regions, self.smooth)
        else:
            dice = soft_dice_loss(logits, target, self.smooth)
        return self.dice_weight * dice + self.ce_weight * ce

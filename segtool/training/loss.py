"""Dice + cross-entropy, the nnU-Net loss, on logits (B, K, *spatial) and labels (B, *spatial)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes, pooled over the batch ("batch Dice").

    Classes absent from both the target and the prediction count as Dice 1.
    """
    num_classes = logits.shape[1]
    probs = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(target.long(), num_classes).movedim(-1, 1).to(probs.dtype)
    dims = (0,) + tuple(range(2, logits.dim()))
    intersection = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * intersection + smooth) / (total + smooth)
    return 1.0 - dice[1:].mean() if num_classes > 1 else 1.0 - dice.mean()


class DiceCELoss(nn.Module):
    """``dice_weight * soft Dice loss + ce_weight * cross-entropy``."""

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0, smooth: float = 1e-5):
        super().__init__()
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), target.long())
        return self.dice_weight * soft_dice_loss(logits, target, self.smooth) + self.ce_weight * ce

"""Fixed per-class offsets added to a trained network's logits (logit adjustment).

Menon et al., "Long-tail learning via logit adjustment", ICLR 2021: a network trained
on imbalanced classes favours the frequent ones; adding ``-tau * log(prior_k)`` to the
logit of class ``k`` moves each decision toward the rare classes. A model folder
records the offsets in its config.json (``logit_offsets``, one per class, background
first) and the core wraps the loaded network in :class:`LogitOffsets`, so the sliding
window, test-time flips, precision and post-processing all see the adjusted logits,
and ``--prob`` writes the adjusted probabilities.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn


class LogitOffsets(nn.Module):
    """``network(x) + offsets`` along the class axis; the offsets are not trained and not stored as weights."""

    def __init__(self, network: nn.Module, offsets: Sequence[float]):
        super().__init__()
        self.network = network
        self.register_buffer("offsets", torch.tensor([float(v) for v in offsets], dtype=torch.float32),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)
        shape = (1, -1) + (1,) * (logits.dim() - 2)
        return logits.float() + self.offsets.view(shape)


def prior_offsets(class_fractions: Sequence[float], tau: float, floor: float = 1e-6) -> list[float]:
    """``-tau * log(prior)`` per class, centred on the background's (offset 0 for class 0).

    ``class_fractions``: each class's share of the training pixels/voxels (any positive
    scale); a class never seen counts as ``floor``. Only differences between offsets
    change a decision, so the background's is set to 0.
    """
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be a finite number >= 0, got {tau}")
    fractions = np.asarray(class_fractions, dtype=np.float64)
    if fractions.ndim != 1 or fractions.size < 2 or not np.all(np.isfinite(fractions)) or np.any(fractions < 0):
        raise ValueError("class fractions must be two or more finite numbers >= 0")
    if fractions.sum() <= 0:
        raise ValueError("class fractions must not all be zero")
    prior = np.maximum(fractions / fractions.sum(), floor)
    offsets = -tau * np.log(prior)
    return [round(float(v - offsets[0]), 6) for v in offsets]

"""Several trained networks as one: the mean of their class probabilities.

nnU-Net's ensembles (Isensee et al. 2021) average the softmax of several models; here
the members are whole networks of any family, held in one module so that one model
folder (one ``model.safetensors``, keys ``members.0.…``, ``members.1.…``, one
``config.json``) carries them, and the core's sliding window, precision and
post-processing see one network. ``segtool models ensemble`` writes such a folder
from trained model folders of the same task and preprocessing.

The forward pass returns the logarithm of the mean probability: the core's softmax of
it gives back exactly that mean (softmax(log p) = p when p sums to one), and argmax
picks the class the averaged members favour.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

#: The smallest probability kept before the logarithm (a class no member believes in).
_FLOOR = 1e-8


class Ensemble(nn.Module):
    """Mean class probability of ``members``: each a mapping with ``network`` (a family) and its own arguments."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 members: Sequence[Mapping[str, Any]] = ()):
        super().__init__()
        from segtool.networks import build_network

        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        built = []
        for i, member in enumerate(members):
            arguments = dict(member)
            family = arguments.pop("network", None)
            if not isinstance(family, str) or family == "ensemble":
                raise ValueError(f"ensemble member {i} needs 'network': a family other than 'ensemble'")
            built.append(build_network(family, spatial_dims, in_channels, out_channels, **arguments))
        self.members = nn.ModuleList(built)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for member in self.members:
            probabilities = torch.softmax(member(x).float(), dim=1)
            total = probabilities if total is None else total + probabilities
        return torch.log((total / len(self.members)).clamp_min(_FLOOR))

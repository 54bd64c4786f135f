"""Missing sequences, as the task's data fill them: a channel replaced by the one that stands in for it.

Some collections fill a missing sequence with another one: the LGG slices repeat FLAIR where the
pre- or post-contrast T1 was not acquired (3 of the 45 patients in ../shared; one of them is FLAIR
three times). A network that never saw such an input can miss the whole tumour there. A task
declares the habit (``TaskSpec.channel_stand_ins``: channel -> the channel that stands in for
it), and training shows it: each declared channel of each sample is, with probability
`STAND_IN_PROBABILITY`, replaced by an exact copy of its stand-in, before the augmentation (so
that both then go through the same spatial transform).

Draws come from the step's own numpy generator, so a batch stays a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

#: The chance that one declared channel of one training sample is replaced by its stand-in.
STAND_IN_PROBABILITY = 0.15


@dataclass(frozen=True)
class ChannelStandIns:
    """``pairs``: (replaced channel index, stand-in channel index) in the network's input order."""

    pairs: tuple[tuple[int, int], ...]
    names: tuple[tuple[str, str], ...]
    probability: float = STAND_IN_PROBABILITY

    @classmethod
    def from_declaration(cls, stand_ins: Mapping[str, str], channels: Sequence[str],
                         probability: float = STAND_IN_PROBABILITY) -> "ChannelStandIns | None":
        """The stand-ins of a task's ``channel_stand_ins`` over its ``channels``; None when it declares none."""
        if not stand_ins:
            return None
        order = list(channels)
        names = tuple((replaced, stand_in) for replaced, stand_in in stand_ins.items())
        pairs = tuple((order.index(replaced), order.index(stand_in)) for replaced, stand_in in names)
        return cls(pairs=pairs, names=names, probability=probability)

    def apply(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B, C, *spatial) images with some channels replaced by their stand-ins (a copy when any is)."""
        draws = rng.random((images.shape[0], len(self.pairs))) < self.probability
        if not draws.any():
            return images
        out = images.copy()
        for sample, which in zip(*np.nonzero(draws)):
            replaced, stand_in = self.pairs[which]
            out[sample, replaced] = images[sample, stand_in]
        return out

    def describe(self) -> str:
        """One line for the model card."""
        swaps = ", ".join(f"{replaced} as a copy of {stand_in}" for replaced, stand_in in self.names)
        return f"missing sequences as the data fill them ({swaps}; {self.probability:.0%} of samples each)"

"""Partial fields of view in training, for tasks whose labels are levels along a column.

A spine model trained on whole columns learns where each disc sits in the image,
not what it looks like: shown a scan that stops above L3, it names the discs it sees
by where L4-S1 usually are. Here some training patches are cut to a band along the
column axis, the way a shorter acquisition is, and placed as inference places a
smaller image (centred, the rest 0, as `segtool.windows` pads); the labels outside
the band become background, those inside keep their level. The band is then
standardised again when the task's normalisation is a z-score, since `segtool run`
standardises the partial image it is given on its own statistics. Each channel is
standardised on its own, and so is each slice of a 2.5D slab (``slice_context``): a
band's slices stand in for a partial scan's volume statistics, one slice at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from segtool.normalize import normalize


@dataclass(frozen=True)
class FieldOfViewCut:
    axis: int  # spatial axis of the (2D or 3D) patch along the column
    probability: float = 0.4  # share of patches cut
    keep: tuple[float, float] = (0.3, 0.8)  # band length, as a share of the patch along ``axis``
    restandardise: bool = True  # z-score the band again (the task's normalisation is a z-score)

    def describe(self) -> str:
        return (
            f"field-of-view cut along axis {self.axis} (p {self.probability:g}, band "
            f"{self.keep[0]:.0%}-{self.keep[1]:.0%} of the patch, centred)"
        )


def cut_field_of_view(
    images: torch.Tensor, labels: torch.Tensor, cut: FieldOfViewCut, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut some of the (B, C, *spatial) images and (B, *spatial) labels to a centred band; new tensors."""
    images, labels = images.clone(), labels.clone()
    length = images.shape[2 + cut.axis]
    for b in range(images.shape[0]):
        if torch.rand((), generator=gen).item() >= cut.probability:
            continue
        share = cut.keep[0] + (cut.keep[1] - cut.keep[0]) * torch.rand((), generator=gen).item()
        band = max(1, min(length, round(share * length)))
        start = int(torch.randint(0, length - band + 1, (), generator=gen))
        target = (length - band) // 2  # where inference would put an image of `band` rows
        image = images[b].narrow(cut.axis + 1, start, band).clone()
        label = labels[b].narrow(cut.axis, start, band).clone()
        if cut.restandardise:  # exactly as `segtool run` standardises a shorter scan
            image = torch.from_numpy(normalize(image.float().numpy(), "zscore")).to(images.dtype)
        images[b].zero_()
        labels[b].zero_()
        images[b].narrow(cut.axis + 1, target, band).copy_(image)
        labels[b].narrow(cut.axis, target, band).copy_(label)
    return images, labels

"""Network families a task can name: ``TaskSpec(network="dilated_gm", model_kwargs={...})``.

Each family lives in its own module (imported only when a network is built, so
naming a family never imports torch). A task names only what is its own (family,
widths, depth, dilation rates, dropout, normalisation); the core supplies
``spatial_dims`` (2 for photos and slice-wise tasks, else 3), ``in_channels``
(the task's channels) and ``out_channels`` (background plus its labels).

| family | module | dims | source |
|---|---|---|---|
| ``unet`` | `unet` | 2D/3D | Ronneberger et al. 2015; nnU-Net's plain U-Net (Isensee et al. 2021) |
| ``attention_unet`` | `attention_unet` | 2D/3D | Oktay et al., "Attention U-Net", MIDL 2018 |
| ``res_se_unet`` | `res_se_unet` | 2D/3D | residual U-Net (He et al. 2016) with squeeze-and-excitation (Hu et al. 2018) |
| ``deeplabv3plus`` | `deeplabv3plus` | 2D | Chen et al., "Encoder-Decoder with Atrous Separable Convolution", ECCV 2018 |
| ``dilated_gm`` | `dilated_gm` | 2D | Perone et al., Sci Rep 2018 (neuropoly/gmseg) |
| ``ensemble`` | `ensemble` | 2D/3D | mean probability of trained networks (``members``), as nnU-Net ensembles |

The three U-Net families share one skeleton, `unet_base.UNetBase` (encoder, decoder,
padding to ``divisor``, forward); each brings only its block and, for
``attention_unet``, its skip gate.
"""

from __future__ import annotations

import importlib
from typing import Any

#: family -> (module, class, spatial dims it supports)
FAMILIES: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "unet": ("segtool.networks.unet", "UNet", (2, 3)),
    "attention_unet": ("segtool.networks.attention_unet", "AttentionUNet", (2, 3)),
    "res_se_unet": ("segtool.networks.res_se_unet", "ResSEUNet", (2, 3)),
    "deeplabv3plus": ("segtool.networks.deeplabv3plus", "DeepLabV3Plus", (2,)),
    "dilated_gm": ("segtool.networks.dilated_gm", "DilatedGM", (2,)),
    "ensemble": ("segtool.networks.ensemble", "Ensemble", (2, 3)),
}

#: What the core supplies to every family; a spec or config that sets them is refused.
CORE_ARGUMENTS = ("spatial_dims", "in_channels", "out_channels")


def family_class(family: str):
    """The network class of ``family`` (imports torch)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown network family {family!r} (known: {', '.join(FAMILIES)})")
    module, name, _ = FAMILIES[family]
    return getattr(importlib.import_module(module), name)


def build_network(family: str, spatial_dims: int, in_channels: int, out_channels: int, /, **kwargs: Any):
    """A fresh ``family`` network; ``kwargs`` are the family's own knobs."""
    if family not in FAMILIES:
        raise ValueError(f"unknown network family {family!r} (known: {', '.join(FAMILIES)})")
    if spatial_dims not in FAMILIES[family][2]:
        raise ValueError(f"network family {family!r} is {'/'.join(map(str, FAMILIES[family][2]))}D only, not {spatial_dims}D")
    bad = sorted(set(kwargs) & set(CORE_ARGUMENTS))
    if bad:
        raise ValueError(f"{', '.join(bad)} come from the task, not from the network arguments")
    cls = family_class(family)
    return cls(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs)


def parameter_count(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))

"""A task's nested regions (BraTS: whole tumour ⊃ tumour core ⊃ enhancing tumour) as one label map.

`segtool run --regions` writes this map instead of the task's labels: value k is the k-th
region from the outside in, and a voxel takes the innermost region holding its label, so
``map >= k`` is exactly region k. Only nested regions fit in one map; others are refused.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def nested_regions(regions: Mapping[str, tuple[int, ...]]) -> list[tuple[str, tuple[int, ...]]]:
    """The regions from the largest to the smallest; ValueError unless each holds the next."""
    if not regions:
        raise ValueError("the task declares no regions")
    ordered = sorted(regions.items(), key=lambda item: -len(set(item[1])))
    for (outer, outer_labels), (inner, inner_labels) in zip(ordered, ordered[1:]):
        if not set(inner_labels) < set(outer_labels):
            raise ValueError(f"regions {outer!r} and {inner!r} are not nested, so they cannot share one label map")
    return [(name, tuple(labels)) for name, labels in ordered]


def region_label_map(labels: np.ndarray, regions: Mapping[str, tuple[int, ...]]) -> tuple[np.ndarray, dict[int, str]]:
    """(uint8 map, {value: region name}): value k (1-based, outside in) where the innermost region holding
    the voxel's label is the k-th."""
    ordered = nested_regions(regions)
    lookup = np.zeros(max(int(labels.max(initial=0)), max(max(m) for _, m in ordered)) + 1, dtype=np.uint8)
    for value, (_, members) in enumerate(ordered, start=1):
        lookup[list(members)] = value  # inner regions come later and overwrite their outer region's value
    return lookup[labels], {value: name for value, (name, _) in enumerate(ordered, start=1)}


def region_volumes(label_volumes_mm3: Mapping[int, float], regions: Mapping[str, tuple[int, ...]]) -> dict[str, float]:
    """Each region's volume (mm³): the sum of its labels' volumes."""
    return {name: float(sum(label_volumes_mm3.get(v, 0.0) for v in members))
            for name, members in nested_regions(regions)}

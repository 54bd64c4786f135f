"""Named postprocessing steps on label maps (numpy/scipy)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from segtool.spec import Postprocess


def _ndimage():
    """scipy.ndimage, imported on first use: 0.2 s that a run needing none of its steps (photos) does not pay."""
    from scipy import ndimage

    return ndimage


def labels_from_probabilities(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Argmax over classes; for binary tasks with a threshold, foreground where p(1) >= threshold."""
    if threshold is not None and probs.shape[0] == 2:
        return (probs[1] >= threshold).astype(np.uint8)
    dtype = np.uint8 if probs.shape[0] <= 256 else np.uint16
    return np.argmax(probs, axis=0).astype(dtype)


#: Component maps are counted and looked up this many voxels at a time: numpy's bincount and fancy
#: indexing would otherwise make an int64 copy of the whole (int32) map, twice the input's float32 bytes.
CHUNK_VOXELS = 1 << 22


def label_counts(components: np.ndarray, minlength: int = 0) -> np.ndarray:
    """``np.bincount(components.ravel(), minlength=minlength)``, counted a chunk at a time (voxels per value)."""
    flat = components.reshape(-1)
    counts = np.zeros(minlength, dtype=np.int64)
    for start in range(0, flat.size, CHUNK_VOXELS):
        part = np.bincount(flat[start : start + CHUNK_VOXELS], minlength=minlength)
        if part.size > counts.size:
            counts = np.concatenate([counts, np.zeros(part.size - counts.size, dtype=np.int64)])
        counts[: part.size] += part
    return counts


def _lookup(table: np.ndarray, components: np.ndarray) -> np.ndarray:
    """``table[components]`` (same shape as ``components``), looked up a chunk at a time."""
    out = np.empty(components.shape, dtype=table.dtype)
    flat_out, flat = out.reshape(-1), np.ascontiguousarray(components).reshape(-1)
    for start in range(0, flat.size, CHUNK_VOXELS):
        flat_out[start : start + CHUNK_VOXELS] = table[flat[start : start + CHUNK_VOXELS]]
    return out


def label_components(mask: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndimage.label(mask, structure)``: the same numbering, as uint16 when it fits (half int32's memory)."""
    components = np.empty(mask.shape, dtype=np.uint16)
    try:
        count = _ndimage().label(mask, structure, output=components)
    except RuntimeError:  # more than 65,535 components: scipy refuses the narrow type
        del components
        return _ndimage().label(mask, structure, output=np.int32)
    return components, int(count)


def _components(labels: np.ndarray):
    """For each non-zero label: (value, component map, component sizes with background 0).

    Callers drop their reference to a map before asking for the next (one map alive at a time).
    """
    structure = _ndimage().generate_binary_structure(labels.ndim, labels.ndim)
    for value in np.unique(labels):
        if value == 0:
            continue
        components, _ = label_components(labels == value, structure)
        sizes = label_counts(components)
        sizes[0] = 0
        yield value, components, sizes
        del components


def _clear_all_but_largest(out: np.ndarray, mask: np.ndarray) -> None:
    """Set ``out`` to 0 where ``mask`` lies outside its largest connected component (full connectivity)."""
    components, _ = label_components(mask, _ndimage().generate_binary_structure(mask.ndim, mask.ndim))
    sizes = label_counts(components)
    sizes[0] = 0
    remove = np.ones(sizes.size, dtype=bool)  # every component but the largest; not the background
    remove[0] = remove[sizes.argmax()] = False
    _clear_components(out, remove, components)


def _clear_components(out: np.ndarray, remove: np.ndarray, components: np.ndarray) -> None:
    """``out[remove[components]] = 0``, a chunk at a time (no whole-volume mask) when both arrays are contiguous."""
    if not out.flags.c_contiguous or not components.flags.c_contiguous:
        out[_lookup(remove, components)] = 0
        return
    flat_out, flat = out.reshape(-1), components.reshape(-1)  # views
    for start in range(0, flat.size, CHUNK_VOXELS):
        part = flat_out[start : start + CHUNK_VOXELS]
        part[remove[flat[start : start + CHUNK_VOXELS]]] = 0


def keep_largest_component(labels: np.ndarray) -> np.ndarray:
    """For each label, keep only its largest connected component (full connectivity)."""
    out = labels.copy()
    for value in np.unique(labels):
        if value != 0:
            _clear_all_but_largest(out, labels == value)
    return out


def keep_largest_union(labels: np.ndarray, members: tuple[int, ...]) -> np.ndarray:
    """Keep the largest connected component (full connectivity) of the voxels holding any of ``members``,
    with their own labels; the members' voxels outside it become background, other labels stay."""
    out = labels.copy()
    _clear_all_but_largest(out, np.isin(labels, members))
    return out


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Fill background holes enclosed by a single label."""
    out = labels.copy()
    for value in np.unique(labels):
        if value == 0:
            continue
        filled = _ndimage().binary_fill_holes(labels == value)
        out[filled & (out == 0)] = value
    return out


def remove_small_objects(labels: np.ndarray, min_voxels: int) -> np.ndarray:
    """Remove connected components (per label) smaller than ``min_voxels``."""
    if min_voxels <= 1:
        return labels
    out = labels.copy()
    for _, components, sizes in _components(labels):
        small = sizes < min_voxels
        small[0] = False
        _clear_components(out, small, components)
        del components
    return out


def apply_postprocess(
    labels: np.ndarray,
    steps: Postprocess,
    voxel_volume_mm3: float,
    affine: np.ndarray | None = None,
    num_labels: int | None = None,
) -> np.ndarray:
    """Run the enabled steps in a fixed order: small objects, relabel by position, largest
    component of the union, largest component of each label, holes.

    ``affine`` (voxel to RAS, mm) and ``num_labels`` (the task's N) are needed by
    ``relabel_by_position`` only.
    """
    if steps.min_size_mm3 > 0:
        labels = remove_small_objects(labels, int(np.ceil(steps.min_size_mm3 / voxel_volume_mm3)))
    if steps.relabel_by_position is not None:
        if affine is None or num_labels is None:
            raise ValueError("relabel_by_position needs the image's affine and the number of labels")
        labels = relabel_by_position(labels, affine, steps.relabel_by_position, num_labels)
    if steps.keep_largest_union:
        labels = keep_largest_union(labels, steps.keep_largest_union)
    if steps.keep_largest:
        labels = keep_largest_component(labels)
    if steps.fill_holes:
        labels = fill_holes(labels)
    return labels


#: A group's network vote counts as confident when this share of its voxels agrees.
CONFIDENT_SHARE = 0.75
#: Components smaller than this share of the largest are fragments: they never take a position of their own.
FRAGMENT_SHARE = 0.1

_DIRECTIONS = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


def relabel_by_position(labels: np.ndarray, affine: np.ndarray, toward: str, num_labels: int) -> np.ndarray:
    """Name structures by their position in a column, whatever the field of view holds.

    For labels that are levels (discs, vertebrae: 1 = L5-S1 ... 5 = L1-L2, numbers
    increasing toward ``toward``, an RAS direction code), a network's per-voxel names
    can be shifted by a partial field of view, or mixed inside one structure. Here:

    1. The connected components (face connectivity) of the foreground (any label) are
       found. Components smaller than ``FRAGMENT_SHARE`` of the largest are fragments.
    2. The others are ordered by their centroid's world position (mm) along ``toward``;
       a component whose centroid lies within the extent of the previous group along
       that direction joins it (one structure in several pieces side by side).
    3. Each group's vote is the network's majority label among its voxels. The anchor is
       the lowest group (first along ``toward``) whose majority holds at least
       ``CONFIDENT_SHARE`` of its voxels (else the group with the largest share).
    4. Groups are numbered consecutively from the anchor's vote: the group ``k``
       positions above the anchor gets ``vote + k``. Numbers outside 1..``num_labels``
       are removed (background), as are fragments outside every group's extent;
       a fragment within a group's extent takes that group's label.

    ``affine`` is the image's voxel-to-RAS matrix; the result has ``labels``' shape and
    dtype. A map without foreground is returned unchanged.
    """
    if toward not in _DIRECTIONS:
        raise ValueError(f"toward must be one of {', '.join(_DIRECTIONS)}, got {toward!r}")
    labels = np.asarray(labels)
    structure = _ndimage().generate_binary_structure(labels.ndim, 1)
    components, count = label_components(labels > 0, structure)
    if count == 0:
        return labels.copy()
    sizes = label_counts(components, count + 1)[1:]
    # position (mm) of every voxel centre along the direction: linear in the voxel index
    axis = np.zeros(3)
    axis[:] = _DIRECTIONS[toward]
    matrix = np.asarray(affine, dtype=float)
    per_axis = (matrix[:3, : labels.ndim].T @ axis)  # mm per voxel step along each array axis
    offset = float(matrix[:3, 3] @ axis)
    centroid, low, high = _component_positions(components, labels, count, sizes, per_axis, offset)
    major = [i for i in range(count) if sizes[i] >= FRAGMENT_SHARE * sizes.max()]
    groups, extents = _group_side_by_side(major, centroid, low, high)
    group_of = np.full(count, -1)
    for g, members in enumerate(groups):
        group_of[members] = g
    level = _group_levels(components, labels, per_axis, offset, group_of, len(groups), num_labels)

    new_of_component = np.zeros(count + 1, dtype=np.int64)  # index 0: background
    for i in range(count):
        g = group_of[i]
        if g < 0:  # a fragment: the level of the group whose extent holds it, else removed
            g = next((k for k, (lo, hi) in enumerate(extents) if lo <= centroid[i] <= hi), -1)
        new_of_component[i + 1] = level[g] if g >= 0 else 0
    return _lookup(new_of_component.astype(labels.dtype), components)


def _component_positions(components: np.ndarray, labels: np.ndarray, count: int, sizes: np.ndarray,
                         per_axis: np.ndarray, offset: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centroid, lowest, highest) position in mm of every component along the direction."""
    # per-component sums in voxel order, a slab at a time (np.add.at adds in order, as bincount does)
    position_sum = np.zeros(count)
    low = np.full(count, np.inf)
    high = np.full(count, -np.inf)
    for ids, position, _ in _foreground(components, labels, per_axis, offset):
        np.add.at(position_sum, ids, position)
        np.minimum.at(low, ids, position)
        np.maximum.at(high, ids, position)
    return position_sum / sizes, low, high


def _group_side_by_side(major: list[int], centroid: np.ndarray, low: np.ndarray, high: np.ndarray):
    """(groups of component indices, their [low, high] extents), in order along the direction.

    A component whose centroid lies within the previous group's extent joins that group.
    """
    major = sorted(major, key=lambda i: centroid[i])
    groups: list[list[int]] = []
    extents: list[list[float]] = []
    for i in major:
        if groups and extents[-1][0] <= centroid[i] <= extents[-1][1]:
            groups[-1].append(i)
            extents[-1] = [min(extents[-1][0], low[i]), max(extents[-1][1], high[i])]
        else:
            groups.append([i])
            extents.append([low[i], high[i]])
    return groups, extents


def _group_levels(components: np.ndarray, labels: np.ndarray, per_axis: np.ndarray, offset: float,
                  group_of: np.ndarray, n_groups: int, num_labels: int) -> np.ndarray:
    """Every group's label: numbered on from the anchor's majority vote, 0 outside 1..``num_labels``."""
    votes = np.zeros((n_groups, num_labels + 1))
    for ids, _, values in _foreground(components, labels, per_axis, offset):
        in_group = group_of[ids] >= 0
        in_range = (values >= 1) & (values <= num_labels)
        np.add.at(votes, (group_of[ids][in_group & in_range], values[in_group & in_range]), 1)
    majority = votes.argmax(axis=1)
    share = votes.max(axis=1) / np.maximum(votes.sum(axis=1), 1)
    confident = np.nonzero(share >= CONFIDENT_SHARE)[0]
    anchor = int(confident[0]) if confident.size else int(np.argmax(share))
    level = majority[anchor] + np.arange(n_groups) - anchor
    level[(level < 1) | (level > num_labels)] = 0
    return level


def _foreground(components: np.ndarray, labels: np.ndarray, per_axis: np.ndarray, offset: float):
    """(component index - 1, position in mm, label as int64) of the foreground voxels, in voxel (C) order,
    a slab of about CHUNK_VOXELS along the first axis at a time (no whole-volume index arrays)."""
    plane = int(np.prod(components.shape[1:], dtype=np.int64))
    step = max(1, CHUNK_VOXELS // max(1, plane))
    for first in range(0, components.shape[0], step):
        slab = components[first : first + step]
        where = np.nonzero(slab)
        ids = slab[where] - 1
        values = labels[first : first + step][where].astype(np.int64)
        where = (where[0] + first, *where[1:])
        yield ids, offset + sum(c * w for c, w in zip(where, per_axis)), values


def override(defaults: Postprocess, **changes) -> Postprocess:
    """Task defaults with the user's overrides (None means keep the default)."""
    return replace(defaults, **{k: v for k, v in changes.items() if v is not None})

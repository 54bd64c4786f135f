"""Exact nearest-neighbour distances between two surfaces on one voxel grid.

Near points are found by trying integer grid offsets around each point in order of
increasing length (~400 of them; the first hit is the nearest, since every shorter
offset was tried before); the few points left go to a k-d tree. Every distance is
computed from an integer index offset as sqrt(sum((di * spacing_i)^2)), the
arithmetic of scipy's distance_transform_edt(sampling=spacing), so the values are
those of a distance transform of the grid, whichever path found them.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

#: at most about this many grid offsets are tried around each point before the k-d tree
_RING_SIZE = 400
#: cost of one k-d tree query in probes of the ring (tuned on the benchmark cases)
_KD_COST = 400


def _points(flat_index: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(np.unravel_index(flat_index, shape), axis=1)


def _kd_nearest(query: np.ndarray, target: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance (mm) from each query index to the nearest target index."""
    from scipy.spatial import cKDTree

    if query.shape[0] == 0:
        return np.zeros(0)
    tree = cKDTree(target * spacing, leafsize=16, compact_nodes=False, balanced_tree=False)
    _, nearest = tree.query(query * spacing, k=1, workers=-1)
    # recompute from integer offsets: the same arithmetic as scipy's distance transform
    delta = (query - target[nearest]).astype(np.float64) * spacing
    return np.sqrt(np.add.reduce(delta * delta, axis=1))


@lru_cache(maxsize=32)
def _ring(spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero integer offsets within a ball of ~_RING_SIZE voxels, nearest first.

    Returns (offsets (k, nd), their lengths in mm (sorted, ties in a fixed order),
    the half widths of the box holding them). Lengths use the distance arithmetic.
    """
    nd = len(spacing)
    sp = np.asarray(spacing, dtype=np.float64)
    unit_ball = math.pi ** (nd / 2) / math.gamma(nd / 2 + 1)
    radius = (_RING_SIZE * float(np.prod(sp)) / unit_ball) ** (1.0 / nd)
    half = np.floor(radius / sp).astype(np.int64)
    grids = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    offsets = np.stack([g.ravel() for g in grids], axis=1)
    delta = offsets.astype(np.float64) * sp
    length = np.sqrt(np.add.reduce(delta * delta, axis=1))
    keep = (length > 0) & (length <= radius)
    order = np.argsort(length[keep], kind="stable")
    return offsets[keep][order], length[keep][order], half


def _flat_index(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Flat (C-order) index of each row of integer `points` in an array of `shape`."""
    out = np.zeros(points.shape[0], dtype=np.int64)
    for axis in range(len(shape)):
        out *= shape[axis]
        out += points[:, axis]
    return out


def nearest(
    query_flat: np.ndarray, target_grid: np.ndarray, target_flat: np.ndarray, spacing: np.ndarray
) -> np.ndarray:
    """Exact distance (mm) from each query grid point to the nearest True of `target_grid`.

    ``query_flat`` and ``target_flat`` are flat indices into ``target_grid``'s shape
    (``target_flat`` lists every True of it). Near points are found on the ring of
    offsets, the rest by a k-d tree of the target points; both give the distance of
    the integer offset, so the value does not depend on the path.
    """
    n = query_flat.size
    dist = np.empty(n)
    pending = np.arange(n)
    offsets, lengths, half = _ring(tuple(float(s) for s in spacing))
    if n and offsets.size:
        padded = np.pad(target_grid, [(int(h), int(h)) for h in half])
        flat = padded.ravel()
        where = _flat_index(_points(query_flat, target_grid.shape) + half, padded.shape)
        steps = _flat_index(offsets, padded.shape)  # the flat step of each offset (may be negative)
        index, hit = np.empty(n, dtype=np.int64), np.empty(n, dtype=bool)  # reused: no allocation per offset
        checkpoint, before = 16, n
        for k in range(len(steps)):
            m = where.size
            np.add(where, steps[k], out=index[:m])
            np.take(flat, index[:m], out=hit[:m])
            if hit[:m].any():
                found = hit[:m]
                dist[pending[found]] = lengths[k]
                miss = ~found
                pending, where = pending[miss], where[miss]
                if pending.size == 0:
                    break
            if k + 1 == checkpoint:
                # the next `checkpoint` offsets cost about checkpoint / _KD_COST of a
                # k-d tree query per point: go on only if enough points resolve
                resolved = 1.0 - pending.size / before
                if resolved * _KD_COST < checkpoint:
                    break
                checkpoint, before = 2 * checkpoint, pending.size
    if pending.size:
        shape = target_grid.shape
        dist[pending] = _kd_nearest(_points(query_flat[pending], shape), _points(target_flat, shape), spacing)
    return dist


def directed(
    surface_a: np.ndarray, surface_b: np.ndarray, spacing: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distances a->b and b->a for two boolean surface grids of one shape.

    Returns (d_ab, d_ba, flat indices of a, flat indices of b). Elements on both
    surfaces are at distance 0 and are not searched.
    """
    flat_a = np.flatnonzero(surface_a)
    flat_b = np.flatnonzero(surface_b)
    if flat_a.size == 0 or flat_b.size == 0:
        inf_a = np.full(flat_a.size, np.inf)
        inf_b = np.full(flat_b.size, np.inf)
        return inf_a, inf_b, flat_a, flat_b
    off_b = ~surface_b.ravel()[flat_a]
    off_a = ~surface_a.ravel()[flat_b]
    d_ab = np.zeros(flat_a.size)
    d_ba = np.zeros(flat_b.size)
    d_ab[off_b] = nearest(flat_a[off_b], surface_b, flat_b, spacing)
    d_ba[off_a] = nearest(flat_b[off_a], surface_a, flat_a, spacing)
    return d_ab, d_ba, flat_a, flat_b

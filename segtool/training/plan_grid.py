"""The grid a planned network sees: from a fingerprint to the grid options the planner measures.

- Photos keep their pixels and are resized to a fixed input.
- Volumes: the median spacing (nnU-Net). Spacing anisotropy of 3 or more: slice-wise 2D along the
  coarse axis. A foreground thinner than 4 voxels at that spacing gets a finer in-plane grid
  aiming at 6 (at most 2x the median), since a 3-voxel-thick gray matter cannot be outlined.
  A slice's patch covers the context (1.5x the labelled extent, as in 3D) where that fits inside
  the slice both ways, else the slice.
- Isotropic volumes: 3D options whose patch covers the context (1.5x the labelled extent; a cube of
  the same volume where the labelled object is compact, under 2x longer one way than another) at no
  more than 2x the median spacing while the whole foreground keeps 4 voxels across and the thinnest
  solid label 3 (where that needs a finer grid, the patch covers less context, never less than the
  labelled extent); then 2D slices along the thinnest axis of the field of view, which hold the
  most context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: 3D patch sizes tried (voxels), largest first.
PATCH_VOXELS_3D = (112 ** 3, 96 ** 3, 80 ** 3, 64 ** 3, 48 ** 3)
#: 2D input scales tried (of the median image or slice), finest first; and the largest 2D side planned.
SCALES_2D = (1.0, 0.75, 0.5)
MAX_SIDE_2D = 512
PHOTO_SIDES = (512, 384, 320, 256, 192, 128)
ANISOTROPY_SLICES = 3.0
#: A 3D grid may be at most this much coarser than the median spacing (to let a patch hold the context).
MAX_COARSENING_3D = 2.0
#: Structures thinner than THIN_BELOW voxels get a finer in-plane grid, aiming at THIN_VOXELS.
THIN_BELOW = 4
THIN_VOXELS = 6
#: A 3D grid keeps at least this many voxels across the thinnest solid label (one whose largest
#: piece holds at least SOLID_SHARE of it in most cases: an enhancing rim, not scattered fragments).
SOLID_LABEL_VOXELS = 3
SOLID_SHARE = 0.5
#: A labelled object whose median extent is less than this much longer one way than another is compact:
#: its 3D context is a cube (its per-axis medians come from different cases; it grows any way).
COMPACT_ASPECT = 2.0
#: The context a patch should hold: this many times the median labelled extent.
CONTEXT_FACTOR = 1.5


@dataclass(frozen=True)
class TaskFacts:
    """What a new plugin declares: all the planner may take from a task."""

    name: str
    ndim: int
    channels: tuple[str, ...]
    labels: dict[int, str]
    regions: dict[str, tuple[int, ...]]
    photo: bool
    relabel_by_position: str | None = None

    @classmethod
    def of(cls, spec) -> "TaskFacts":
        return cls(spec.name, spec.ndim, tuple(spec.channels), dict(spec.labels),
                   {k: tuple(v) for k, v in spec.regions.items()}, spec.is_photo,
                   spec.postprocess.relabel_by_position)


def _thinnest(fp: dict) -> float | None:
    """The thickness (mm) of the labelled foreground (all labels together; 10th percentile over cases), or None.

    Together, not per label: a label that comes in fragments (a tumour's sub-regions) is not a thin
    structure, while separate thin objects (discs, gray matter) are thin as a union too.
    """
    return fp.get("foreground_thickness_mm")


def _thinnest_solid_label(fp: dict) -> tuple[str, float] | None:
    """(name, median thickness in mm) of the thinnest label that comes as one solid piece, or None.

    Solid: in most cases its largest component holds at least half of its voxels. Per label, unlike
    `_thinnest`: a tumour's enhancing rim is thin inside a thick tumour, and the grid must resolve it.
    """
    found = []
    for value, label in fp.get("labels", {}).items():
        if (label.get("median_largest_share") or 0.0) >= SOLID_SHARE and label.get("median_thickness_mm"):
            found.append((label.get("name", value), float(label["median_thickness_mm"])))
    return min(found, key=lambda item: item[1]) if found else None


def _context_mm(fp: dict) -> list[float]:
    """The field a patch should cover per axis: 1.5x the median labelled extent, at most the image's."""
    extent = fp.get("median_foreground_extent_mm") or fp["median_extent_mm"]
    return [min(image, CONTEXT_FACTOR * fg) if fg > 0 else image for image, fg in zip(fp["median_extent_mm"], extent)]


def _field_3d(fp: dict) -> tuple[list[float], str]:
    """The 3D context and what it is, "{factor}" standing for how much of the labelled extent it holds:
    a compact object's context is a cube of the same volume (at most the image each way); an elongated
    one's follows its shape."""
    context = _context_mm(fp)
    labelled = fp.get("median_foreground_extent_mm") or context
    if min(labelled) <= 0 or max(labelled) >= COMPACT_ASPECT * min(labelled):
        return context, "{factor}x the labelled extent"
    side = math.prod(context) ** (1 / 3)
    return [min(side, image) for image in fp["median_extent_mm"]], "a cube of {factor}x the labelled extent's volume"


def plan_grid(fp: dict, facts: TaskFacts) -> dict:
    """The grid options to try: list of (label, dims, slice_axis, spacing, input_size, patch sizes in voxels)."""
    spacing = fp["median_spacing"]
    thin = _thinnest(fp)
    options = []
    if facts.ndim == 2:
        shape = fp["median_shape"]
        if facts.photo:
            long_side = max(shape)
            for side in PHOTO_SIDES:
                if side > long_side:
                    continue
                size = [max(32, round(s * side / long_side / 32) * 32) for s in shape]
                options.append(dict(label=f"{size[0]}x{size[1]}", dims=2, slice_axis=None, spacing=None,
                                    input_size=size, patch=size, why="photos resized to a fixed input"))
            return {"options": options or [dict(label="native", dims=2, slice_axis=None, spacing=None,
                                                input_size=None, patch=list(shape), why="small photos")]}
        for scale in SCALES_2D:
            size = [int(round(s * scale / 16) * 16) for s in shape]
            if max(size) > MAX_SIDE_2D or (thin and thin / spacing[0] * scale < 4 and scale < 1.0):
                continue
            options.append(dict(label=f"{size[0]}x{size[1]}", dims=2, slice_axis=None, spacing=None,
                                input_size=None if scale == 1.0 else size, patch=size,
                                why=f"whole images ({fp['empty_case_share']:.0%} hold no label: the whole image tells "
                                    f"whether there is one) at {scale:g}x"))
        return {"options": options}
    # 3D
    anisotropy = fp["anisotropy"]
    reasons = {}
    if anisotropy >= ANISOTROPY_SLICES:
        axis = int(max(range(3), key=lambda a: spacing[a]))
        reasons["network_dims"] = (f"spacing {'x'.join(f'{s:.2g}' for s in spacing)} mm is {anisotropy:.1f}x "
                                   f"anisotropic: 2D slices along axis {axis}")
        return {"options": _slice_options(fp, axis, thin), "reasons": reasons}
    options = _volume_options(fp, thin)
    extent = fp["median_extent_mm"]
    axis = int(min(range(3), key=lambda a: extent[a]))
    slices = _slice_options(fp, axis, thin)
    if options:
        reasons["network_dims"] = "isotropic, and a 3D patch covers the labelled structure's context: 3D"
        return {"options": options + slices, "reasons": reasons}
    thinnest = "no labelled foreground" if thin is None else f"{thin:.1f} mm"
    reasons["network_dims"] = (f"isotropic, but no affordable 3D patch covers the context at 2x the spacing while "
                               f"the thinnest structure ({thinnest}) keeps 4 voxels (and the thinnest solid label 3): "
                               f"2D slices along axis {axis}, the thinnest side of the field of view ({extent[axis]:.0f} mm)")
    return {"options": slices, "reasons": reasons}


def _volume_options(fp: dict, thin: float | None) -> list[dict]:
    """3D grid options, largest patch first: each covers the context at the coarsest spacing its voxels need."""
    spacing = fp["median_spacing"]
    options = []
    context, context_why = _field_3d(fp)
    labelled = fp.get("median_foreground_extent_mm") or context
    solid = _thinnest_solid_label(fp)
    finest_needed = solid[1] / SOLID_LABEL_VOXELS if solid else None
    seen = set()
    for voxels in PATCH_VOXELS_3D:
        size = max(max(spacing), (math.prod(context) / voxels) ** (1 / 3))
        covers, why = context, context_why.format(factor=f"{CONTEXT_FACTOR:g}")
        if finest_needed is not None and max(spacing) <= finest_needed < size:
            # the thinnest solid label needs a finer grid: the patch holds less context, at least the labelled extent
            size = finest_needed
            scale = min(1.0, (voxels / math.prod(c / size for c in context)) ** (1 / 3))
            covers = [c * scale for c in context]
            why = f"{context_why.format(factor=f'{scale * CONTEXT_FACTOR:.2g}')}, at {SOLID_LABEL_VOXELS} voxels across the {solid[0]} " \
                  f"({solid[1]:.1f} mm thick)"
            if any(c < fg for c, fg in zip(covers, labelled)):
                continue
        if size > MAX_COARSENING_3D * max(spacing) or (thin is not None and thin / size < 4):
            continue
        key = (round(size, 3), tuple(round(c) for c in covers))
        if key in seen:
            continue
        seen.add(key)
        patch = [c / size for c in covers]
        field = "x".join(f"{c:.0f}" for c in covers)
        options.append(dict(label=f"3D {size:.2f} mm, {field} mm", dims=3, slice_axis=None,
                            spacing=[round(size, 3)] * 3, input_size=None, patch=patch,
                            why=f"the patch covers {field} mm ({why}) at {size:.2f} mm"))
    return options


def _slice_options(fp: dict, axis: int, thin: float | None) -> list[dict]:
    """Slices along ``axis``: the patch covers the context (1.5x the labelled extent, as in 3D) where that
    fits inside the slice both ways (a small structure in a larger field: more steps, structures at varied
    positions), else the slice; at 100, 75 and 50 % (the context: never under the labelled extent)."""
    spacing = [s for a, s in enumerate(fp["median_spacing"]) if a != axis]
    extent = [e for a, e in enumerate(fp["median_extent_mm"]) if a != axis]
    context = [c for a, c in enumerate(_context_mm(fp)) if a != axis]
    covers, scales = "of the slice", SCALES_2D
    if all(c < e for c, e in zip(context, extent)):
        extent, covers = context, f"of the context ({CONTEXT_FACTOR:g}x the labelled extent; the slice is larger)"
        scales = tuple(s for s in SCALES_2D if CONTEXT_FACTOR * s >= 1.0)  # never under the extent
    in_plane = min(spacing)
    why_grid = f"in-plane {in_plane:.3g} mm, the median"
    if thin is not None and thin / in_plane < THIN_BELOW:
        in_plane = max(thin / THIN_VOXELS, in_plane / 2)
        why_grid = (f"in-plane {in_plane:.3g} mm: the thinnest structure ({thin:.2f} mm) gets "
                    f"{thin / in_plane:.1f} voxels (at most 2x finer than the median)")
    target = [in_plane] * 3
    target[axis] = None
    options = []
    for scale in scales:
        size = [e / in_plane * scale for e in extent]
        if max(size) > MAX_SIDE_2D:
            size = [s * MAX_SIDE_2D / max(size) for s in size]
        options.append(dict(label=f"slices {'x'.join(str(int(s)) for s in size)}", dims=2, slice_axis=axis,
                            spacing=[None if t is None else round(t, 4) for t in target], input_size=None,
                            patch=size, why=f"{why_grid}; the patch covers {scale:.0%} {covers}"))
    return options

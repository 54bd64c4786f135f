"""The rules a TaskSpec is checked against when it is built, one function per group of fields.

`segtool.spec.TaskSpec.__post_init__` calls them in order; each raises InvalidSpecError
(one line: the task and the problem) or returns the field values normalised (tuples, ints,
read-only mappings) for the frozen spec to store. The constants are re-exported by
`segtool.spec`. Nothing here imports torch.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any, Mapping

from segtool.spec_weights import WeightsRef, raise_spec_error

TASK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
ORIENTATION = re.compile(r"^[LR][AP][SI]$|^[LR][SI][AP]$|^[AP][LR][SI]$|^[AP][SI][LR]$|^[SI][LR][AP]$|^[SI][AP][LR]$")

#: Normalisations the core knows (see segtool.normalize).
NORMALIZATIONS = ("zscore", "zscore-nonzero", "zscore-foreground", "percentile", "none", "rgb")

#: Augmentation recipes the trainer knows (see segtool.training.augment_recipes).
AUGMENTATIONS = ("default", "mri-strong", "mri-contrast", "photo", "none")

#: Where a task's training recipe comes from: declared by hand in the spec, or planned by `segtool train` from the
#: data and a budget (segtool.training.planner). A "planned" task's patch, spacing, network knobs and
#: normalisation are only defaults for `segtool run` without a model folder.
RECIPES = ("declared", "planned")

#: What the core supplies to every network (from channels and labels); a spec never sets them.
CORE_NETWORK_ARGUMENTS = ("spatial_dims", "in_channels", "out_channels")

#: The most neighbouring slices a side a 2.5D network may take (``slice_context``).
MAX_SLICE_CONTEXT = 16


def frozen_mapping(m: Mapping) -> Mapping:
    """A read-only copy of ``m``."""
    return MappingProxyType(dict(m))


def slice_context_problem(context: Any, slice_axis: int | None) -> str | None:
    """What is wrong with a ``slice_context`` (task spec or model config), or None when it is valid."""
    if isinstance(context, bool) or not isinstance(context, int) or not 0 <= context <= MAX_SLICE_CONTEXT:
        return f"must be a whole number from 0 to {MAX_SLICE_CONTEXT}, got {context!r}"
    if context and slice_axis is None:
        return "needs slice_axis (neighbouring slices of a slice-wise task)"
    return None


def check_identity(spec, what: str) -> dict[str, Any]:
    """Name, description, ndim and channels; returns ``channels`` as a tuple."""
    if not isinstance(spec.name, str) or not TASK_NAME.match(spec.name):
        raise_spec_error(what, "name must be lowercase letters, digits and dashes")
    if not spec.description:
        raise_spec_error(what, "description is required")
    if spec.ndim not in (2, 3):
        raise_spec_error(what, f"ndim must be 2 or 3, got {spec.ndim}")
    channels = tuple(spec.channels)
    if not channels or len(set(channels)) != len(channels) or not all(isinstance(c, str) and c for c in channels):
        raise_spec_error(what, "channels must be distinct non-empty names")
    return {"channels": channels}


def check_labels(spec, what: str) -> dict[str, Any]:
    """Labels 1..N, regions of known labels, colours and the default labels map."""
    labels = {int(k): str(v) for k, v in dict(spec.labels).items()}
    if not labels or 0 in labels:
        raise_spec_error(what, "labels map values >= 1 to names (0 is background)")
    if sorted(labels) != list(range(1, len(labels) + 1)):
        raise_spec_error(what, f"labels must be 1..N without gaps, got {sorted(labels)}")
    regions = {str(k): tuple(int(x) for x in v) for k, v in dict(spec.regions).items()}
    for region, members in regions.items():
        if not members or not set(members) <= set(labels):
            raise_spec_error(what, f"region {region!r} must list known labels, got {members}")
    return {"labels": frozen_mapping(labels), "regions": frozen_mapping(regions),
            "colours": frozen_mapping(_colours(spec.colours, labels, what)),
            "labels_map": frozen_mapping(_labels_map(spec.labels_map, labels, what))}


def _colours(given: Mapping, labels: Mapping[int, str], what: str) -> dict[int, tuple]:
    colours = {}
    for value, rgb in dict(given).items():
        rgb = tuple(rgb)
        if int(value) not in labels and int(value) != 0:
            raise_spec_error(what, f"colours: {value} is not a label value")
        if len(rgb) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in rgb):
            raise_spec_error(what, f"colours: {value} must be an (r, g, b) of 0..255, got {rgb!r}")
        colours[int(value)] = rgb
    return colours


def _labels_map(given: Mapping, labels: Mapping[int, str], what: str) -> dict[int, int]:
    mapping = {}
    for source, target in dict(given).items():
        if int(source) < 0 or not 0 <= int(target) <= len(labels):
            raise_spec_error(what, f"labels_map: {source} -> {target} must map a value >= 0 to 0..{len(labels)}")
        mapping[int(source)] = int(target)
    return mapping


def check_network(spec, what: str) -> dict[str, Any]:
    """A known family with a form of the task's dimensions, or a callable factory; returns ``model_kwargs``."""
    from segtool.networks import FAMILIES

    if (spec.network is None) == (spec.model_factory is None):
        raise_spec_error(what, "give network= (a family of segtool.networks) or model_factory=, exactly one")
    if spec.network is not None:
        if spec.network not in FAMILIES:
            raise_spec_error(what, f"unknown network family {spec.network!r} (known: {', '.join(FAMILIES)})")
        if spec.network_dims not in FAMILIES[spec.network][2]:
            raise_spec_error(what, f"network {spec.network!r} has no {spec.network_dims}D form")
    elif not callable(spec.model_factory):
        raise_spec_error(what, "model_factory must be callable")
    kwargs = dict(spec.model_kwargs)
    repeated = [k for k in CORE_NETWORK_ARGUMENTS if k in kwargs]
    if repeated:
        raise_spec_error(what, f"model_kwargs must not set {', '.join(repeated)}: the core supplies them from "
                    "the task's channels, labels and dimensions")
    return {"model_kwargs": frozen_mapping(kwargs)}


def check_slices_and_patch(spec, what: str) -> dict[str, Any]:
    """Slice axis, slice context and the patch size; returns ``patch_size`` as ints."""
    if spec.slice_axis is not None:
        if spec.ndim != 3 or spec.slice_axis not in (0, 1, 2):
            raise_spec_error(what, f"slice_axis must be 0, 1 or 2 of a 3D task, got {spec.slice_axis!r}")
    problem = slice_context_problem(spec.slice_context, spec.slice_axis)
    if problem:
        raise_spec_error(what, f"slice_context {problem}")
    patch = tuple(int(p) for p in spec.patch_size)
    if len(patch) != spec.network_dims or min(patch) < 1:
        raise_spec_error(what, f"patch_size must have {spec.network_dims} positive sizes, got {spec.patch_size}")
    return {"patch_size": patch}


def check_grid(spec, what: str) -> dict[str, Any]:
    """Orientation, target spacing and input size; returns those given, normalised."""
    out: dict[str, Any] = {}
    if spec.orientation is not None:
        if spec.ndim == 2 or not ORIENTATION.match(spec.orientation):
            raise_spec_error(what, f"orientation must be three axis codes such as 'RAS' (3D only), got {spec.orientation!r}")
    if spec.target_spacing is not None:
        spacing = tuple(None if s is None else float(s) for s in spec.target_spacing)
        if len(spacing) != spec.ndim or any(s is not None and not s > 0 for s in spacing):
            raise_spec_error(what, f"target_spacing must have {spec.ndim} positive values (None keeps an axis)")
        out["target_spacing"] = spacing
    if spec.input_size is not None:
        size = tuple(int(v) for v in spec.input_size)
        if spec.network_dims != 2 or spec.ndim != 2 or len(size) != 2 or min(size) < 1:
            raise_spec_error(what, f"input_size must be two positive sizes (rows, cols) of a 2D task, got {spec.input_size!r}")
        out["input_size"] = size
    return out


def check_training(spec, what: str) -> dict[str, Any]:
    """Recipe, augmentation and trained flips; returns ``trained_flips`` as ints when given."""
    if spec.recipe not in RECIPES:
        raise_spec_error(what, f"recipe must be one of {', '.join(RECIPES)}, got {spec.recipe!r}")
    if spec.augmentation not in AUGMENTATIONS:
        raise_spec_error(what, f"augmentation must be one of {', '.join(AUGMENTATIONS)}, got {spec.augmentation!r}")
    out: dict[str, Any] = {"channel_stand_ins": _stand_ins(spec.channel_stand_ins, spec.channels, what)}
    if spec.trained_flips is None:
        return out
    flips = tuple(int(a) for a in spec.trained_flips)
    if len(set(flips)) != len(flips) or any(not 0 <= a < spec.network_dims for a in flips):
        raise_spec_error(what, f"trained_flips must be distinct network axes in 0..{spec.network_dims - 1}, "
                    f"got {spec.trained_flips!r}")
    return out | {"trained_flips": flips}


def _stand_ins(given: Mapping, channels: tuple[str, ...], what: str) -> Mapping[str, str]:
    """``channel_stand_ins``: channel names of the task, none its own stand-in, no stand-in itself replaced."""
    stand_ins = {str(k): str(v) for k, v in dict(given).items()}
    for replaced, stand_in in stand_ins.items():
        unknown = [n for n in (replaced, stand_in) if n not in channels]
        if unknown:
            raise_spec_error(what, f"channel_stand_ins names {unknown[0]!r}, not one of its channels "
                                   f"({', '.join(channels)})")
        if replaced == stand_in or stand_in in stand_ins:
            raise_spec_error(what, f"channel_stand_ins: {replaced!r} -> {stand_in!r} must take the place of "
                                   "another channel with one that is never replaced itself")
    return frozen_mapping(stand_ins)


def check_running(spec, what: str, locate_type: type) -> None:
    """Locate (an instance of ``locate_type`` on a 3D task), output suffix, overlap, batch sizes, normalisation."""
    if spec.locate is not None and not isinstance(spec.locate, locate_type):
        raise_spec_error(what, "locate must be a Locate")
    if spec.locate is not None and (spec.ndim != 3 or len(spec.locate.margin_mm) != 3):
        raise_spec_error(what, "locate needs a 3D task and three margins")
    if not re.match(r"^[A-Za-z0-9_.-]+$", spec.output_suffix or ""):
        raise_spec_error(what, f"output_suffix must be letters, digits, '_', '-' or '.', got {spec.output_suffix!r}")
    if not 0.0 <= spec.overlap < 1.0:
        raise_spec_error(what, "overlap must lie in [0, 1)")
    if spec.batch_size < 1:
        raise_spec_error(what, "batch_size must be >= 1")
    if spec.inference_batch_size is not None and spec.inference_batch_size < 1:
        raise_spec_error(what, "inference_batch_size must be >= 1 or None")
    if spec.normalization not in NORMALIZATIONS:
        raise_spec_error(what, f"normalization must be one of {', '.join(NORMALIZATIONS)}")


def check_models(spec, what: str) -> dict[str, Any]:
    """Every model a WeightsRef and the default among them; returns ``models`` (and ``default_model``)."""
    models = dict(spec.models)
    for variant, ref in models.items():
        if not isinstance(ref, WeightsRef):
            raise_spec_error(what, f"model {variant!r} must be a WeightsRef")
    out: dict[str, Any] = {"models": frozen_mapping(models)}
    if models:
        default = spec.default_model or next(iter(models))
        if default not in models:
            raise_spec_error(what, f"default_model {default!r} is not among {sorted(models)}")
        out["default_model"] = default
    elif spec.default_model is not None:
        raise_spec_error(what, "default_model given but no models declared")
    return out

"""Frozen, validated declarations of what a task is: TaskSpec, WeightsRef, Postprocess.

Nothing here imports torch: specs are built when plugins load, which happens for
`segtool --help`-adjacent commands such as `segtool tasks` and shell completion.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from segtool import spec_checks
from segtool.spec_checks import (  # noqa: F401  (re-exported)
    AUGMENTATIONS,
    CORE_NETWORK_ARGUMENTS,
    MAX_SLICE_CONTEXT,
    NORMALIZATIONS,
    ORIENTATION,
    RECIPES,
    TASK_NAME,
    slice_context_problem,
)
from segtool.spec_weights import HEX40, HEX64, WeightsFile, WeightsRef, raise_spec_error  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Postprocess:
    """Postprocessing defaults; the user may override each from the command line."""

    threshold: float | None = None  # binary tasks: foreground probability cut-off
    keep_largest: bool = False  # keep the largest connected component of each label
    fill_holes: bool = False
    min_size_mm3: float = 0.0  # remove connected components smaller than this
    # Labels that name positions in a column (vertebral levels, discs): relabel the
    # connected components of the foreground by their order along this anatomical
    # direction (R, L, A, P, S or I), label numbers increasing toward it, anchored on
    # the network's vote (segtool.postprocess.relabel_by_position). None: off.
    relabel_by_position: str | None = None
    # Labels that together form one object (a tumour's sub-regions): keep the largest connected
    # component of their union, every label inside it as predicted; labels outside it become
    # background (segtool.postprocess.keep_largest_union). Empty: off.
    keep_largest_union: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_largest_union", tuple(int(v) for v in self.keep_largest_union))
        if any(v <= 0 for v in self.keep_largest_union):
            raise_spec_error("postprocess", "keep_largest_union takes label values > 0")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise_spec_error("postprocess", f"threshold must lie in (0, 1), got {self.threshold}")
        if self.min_size_mm3 < 0:
            raise_spec_error("postprocess", "min_size_mm3 must be >= 0")
        if self.relabel_by_position is not None and self.relabel_by_position not in tuple("RLAPSI"):
            raise_spec_error("postprocess", f"relabel_by_position must be one of R, L, A, P, S, I, got {self.relabel_by_position!r}")


@dataclass(frozen=True)
class Locate:
    """Find the structure first with another task's model, then segment a crop around it.

    The core runs ``task`` on the input, keeps the largest component of its labels,
    crops the input to their bounding box plus ``margin_mm`` per axis (input space, RAS
    order of the task's orientation) and runs this task's model on the crop; the
    result is pasted back onto the whole input grid. Inputs whose field of view is
    already smaller than ``min_extent_mm`` (in-plane) are segmented whole.
    """

    task: str
    margin_mm: tuple[float, ...] = (10.0, 10.0, 0.0)
    min_extent_mm: float = 60.0
    within_mm: float | None = None  # keep labels only within the located structure grown by this much

    def _check_within(self) -> None:
        if self.within_mm is not None and not self.within_mm >= 0:
            raise_spec_error("locate", "within_mm must be >= 0 (or None)")

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or not TASK_NAME.match(self.task):
            raise_spec_error("locate", f"task must be a task name, got {self.task!r}")
        margin = tuple(float(m) for m in self.margin_mm)
        if min(margin) < 0:
            raise_spec_error("locate", "margin_mm must be >= 0")
        object.__setattr__(self, "margin_mm", margin)
        self._check_within()


def describe_spacing(spacing) -> str:
    """A target spacing for people: '0.25x0.25xnative mm', or 'as stored' when there is none."""
    if not spacing:
        return "as stored"
    return "x".join("native" if s is None else f"{s:g}" for s in spacing) + " mm"


@dataclass(frozen=True)
class TaskSpec:
    """Everything the core needs to run (and train) one task."""

    name: str
    description: str
    channels: tuple[str, ...]
    ndim: int
    labels: Mapping[int, str]
    patch_size: tuple[int, ...]
    network: str | None = None  # a family of segtool.networks
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)  # the family's own knobs
    model_factory: Callable[..., Any] | None = None  # a custom network instead of a family
    slice_axis: int | None = None  # 3D input, 2D network on slices along this axis (after reorientation)
    # 2.5D: a slice-wise network also sees this many neighbouring slices on each side, as extra
    # input channels (each channel's 2k+1 slices in order; zero beyond the volume). 0: the slice alone.
    slice_context: int = 0
    orientation: str | None = "RAS"
    target_spacing: tuple[float | None, ...] | None = None  # None on an axis keeps the input's spacing
    # 2D tasks: every image is resized to this (rows, cols) for the network and the
    # probabilities are resized back to the image's own size (photos of any size). None: native size.
    input_size: tuple[int, ...] | None = None
    overlap: float = 0.5
    batch_size: int = 2
    # Windows per forward pass in `segtool run` when it differs from training's batch_size
    # (a network whose activations cost far more memory than the input). None: batch_size.
    inference_batch_size: int | None = None
    normalization: str = "zscore"
    regions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    # The task's own class colours (value -> RGB; 0 may be given for background): mask
    # palettes, overlays and QC. Values not listed get segtool.qc.colours.label_colour.
    colours: Mapping[int, tuple[int, int, int]] = field(default_factory=dict)
    # The default `segtool train --labels-map` (source value -> task value; unlisted sources
    # become background), for the task's usual training data. Empty: none.
    labels_map: Mapping[int, int] = field(default_factory=dict)
    models: Mapping[str, WeightsRef] = field(default_factory=dict)
    default_model: str | None = None
    postprocess: Postprocess = field(default_factory=Postprocess)
    augmentation: str = "default"
    # Network axes training flips (and --tta flips), where the recipe's rule is not right: e.g. a
    # task whose own sampler (``segtool_training_sampler``) makes and flips its training images.
    # None: as the augmentation recipe flips (see ``flip_axes``).
    trained_flips: tuple[int, ...] | None = None
    # Where the task's data fill a missing sequence with another channel (channel -> the channel
    # standing in for it, e.g. LGG's {"pre_contrast": "flair"}): training shows such inputs
    # (segtool.training.channel_stand_ins). Empty: every channel is always its own sequence.
    channel_stand_ins: Mapping[str, str] = field(default_factory=dict)
    locate: Locate | None = None
    output_suffix: str = "_seg"
    citation: str = ""
    licence: str = ""
    modality: str = ""
    version: str = "0"
    recipe: str = "declared"  # RECIPES: "planned" makes `segtool train` plan by default

    @property
    def run_batch_size(self) -> int:
        """Windows per forward pass in `segtool run` (``inference_batch_size``, else ``batch_size``)."""
        return self.inference_batch_size or self.batch_size

    def __post_init__(self) -> None:
        """Check every field (segtool.spec_checks, in this order) and store the normalised values."""
        what = f"task {self.name!r}"
        checks = (spec_checks.check_identity, spec_checks.check_labels, spec_checks.check_network,
                  spec_checks.check_slices_and_patch, spec_checks.check_grid, spec_checks.check_training)
        for check in checks:
            for name, value in check(self, what).items():
                object.__setattr__(self, name, value)
        spec_checks.check_running(self, what, Locate)
        for name, value in spec_checks.check_models(self, what).items():
            object.__setattr__(self, name, value)

    def label_colours(self) -> dict[int, tuple[int, int, int]]:
        """RGB of background (0, black unless the task gives it) and of every label value."""
        from segtool.qc.colours import label_colour

        out = {0: tuple(self.colours.get(0, (0, 0, 0)))}
        for value in self.labels:
            out[value] = tuple(self.colours[value]) if value in self.colours else label_colour(value)
        return out

    @property
    def is_photo(self) -> bool:
        """True for a task on photos (RGB normalisation, or a photo modality)."""
        return self.normalization == "rgb" or "photo" in self.modality.lower()

    @property
    def network_dims(self) -> int:
        """Spatial dimensions of the network: 2 for 2D tasks and slice-wise 3D tasks, else 3."""
        return 2 if self.ndim == 2 or self.slice_axis is not None else 3

    @property
    def flip_axes(self) -> tuple[int, ...]:
        """Network axes (0-based, in-plane for slice tasks) that training flips and ``--tta`` may flip.

        Photos flip left-right only (people are not upside down); ``mri-strong`` flips its
        left-right axis only: a volume's first axis (left-right of axial slices in RAS,
        anterior-posterior of sagittal ones: never superior-inferior, which would swap the levels
        of a spine), a 2D image's columns (an axial slice as displayed: its rows run from front
        to back, which no head mirrors); ``none`` flips
        nothing; every other recipe flips every axis. A task whose own sampler makes its
        training images declares ``trained_flips`` instead. Predictions averaged over flips
        the network never saw in training are worse, so --tta flips these axes only.
        """
        if self.trained_flips is not None:
            return self.trained_flips
        if self.augmentation == "none":
            return ()
        if self.is_photo:
            return (self.network_dims - 1,)
        if self.augmentation in ("mri-strong", "mri-contrast"):
            return (0,) if self.ndim == 3 else (1,)
        return tuple(range(self.network_dims))

    @property
    def column_axis(self) -> int | None:
        """Network axis along which ``postprocess.relabel_by_position`` numbers levels, else None.

        The axis of the task's orientation that holds the direction (S or its opposite I,
        ...), counted without the slice axis for slice-wise tasks: training cuts partial
        fields of view along it (`segtool.training.field_of_view`).
        """
        toward = self.postprocess.relabel_by_position
        if toward is None or self.orientation is None:
            return None
        pairs = {"R": "RL", "L": "RL", "A": "AP", "P": "AP", "S": "SI", "I": "SI"}
        axis = next(i for i, code in enumerate(self.orientation) if code in pairs[toward])
        if self.slice_axis is not None:
            if axis == self.slice_axis:
                return None
            axis -= axis > self.slice_axis
        return axis

    def build_network(self, network: str | None = None, model_kwargs: Mapping[str, Any] | None = None,
                      in_channels: int | None = None, out_channels: int | None = None):
        """A fresh network (imports torch): the family (or factory) with the core's arguments."""
        kwargs = dict(self.model_kwargs if model_kwargs is None else model_kwargs)
        core = dict(spatial_dims=self.network_dims, in_channels=in_channels or self.network_in_channels,
                    out_channels=out_channels or self.num_classes)
        family = network or self.network
        if family is not None and (network is not None or self.model_factory is None):
            from segtool.networks import build_network

            return build_network(family, core["spatial_dims"], core["in_channels"], core["out_channels"], **kwargs)
        return self.model_factory(**core, **kwargs)

    @property
    def spacing_text(self) -> str:
        """'0.25x0.25xas stored' style: the target spacing, 'native' where an axis is kept."""
        return describe_spacing(self.target_spacing)

    @property
    def num_classes(self) -> int:
        """Output channels of the network: background plus each label."""
        return len(self.labels) + 1

    @property
    def in_channels(self) -> int:
        return len(self.channels)

    @property
    def network_in_channels(self) -> int:
        """Channels the network takes: each input channel's slice and its ``slice_context`` neighbours."""
        return self.in_channels * (2 * self.slice_context + 1)

    @property
    def files_per_case(self) -> int:
        """Input files that make one case: one colour photo, else one file per channel."""
        return 1 if self.normalization == "rgb" else self.in_channels

    @property
    def has_weights(self) -> bool:
        return bool(self.models)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (used by `segtool tasks --json`)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "model_factory":
                value = None if value is None else f"{value.__module__}.{value.__qualname__}"
            elif f.name == "locate":
                value = None if value is None else {"task": value.task, "margin_mm": list(value.margin_mm),
                                                    "min_extent_mm": value.min_extent_mm, "within_mm": value.within_mm}
            elif f.name == "labels":
                value = {str(k): v for k, v in value.items()}
            elif f.name in ("colours", "labels_map"):
                value = {str(k): list(v) if isinstance(v, tuple) else v for k, v in value.items()}
            elif f.name == "channel_stand_ins":
                value = dict(value)
            elif f.name in ("model_kwargs", "regions"):
                value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
            elif f.name == "models":
                value = {
                    k: {
                        "source": r.source,
                        "repo_id": r.repo_id,
                        "revision": r.revision,
                        "package": r.package,
                        "filename": r.weights.filename,
                        "sha256": r.weights.sha256,
                        "config": r.config.filename,
                        "config_sha256": r.config.sha256,
                        "member": r.member,
                        "description": r.description,
                    }
                    for k, r in value.items()
                }
            elif f.name == "postprocess":
                value = {pf.name: getattr(value, pf.name) for pf in fields(value)}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["num_classes"] = self.num_classes
        out["has_weights"] = self.has_weights
        return out

"""Frozen, validated declarations of what a task is: TaskSpec, WeightsRef, Postprocess.

Nothing here imports torch: specs are built when plugins load, which happens for
`segtool --help`-adjacent commands such as `segtool tasks` and shell completion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Callable, Mapping

from segtool.errors import InvalidSpecError

TASK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
ORIENTATION = re.compile(r"^[LR][AP][SI]$|^[LR][SI][AP]$|^[AP][LR][SI]$|^[AP][SI][LR]$|^[SI][LR][AP]$|^[SI][AP][LR]$")

#: Normalisations the core knows (see segtool.normalize).
NORMALIZATIONS = ("zscore", "zscore-nonzero", "percentile", "none", "rgb")


def _fail(what: str, problem: str) -> None:
    raise InvalidSpecError(f"{what}: {problem}")


@dataclass(frozen=True)
class WeightsFile:
    """One file of a model and the sha256 it must hash to."""

    filename: str
    sha256: str

    def __post_init__(self) -> None:
        if not self.filename or self.filename.startswith("/") or ".." in self.filename.split("/"):
            _fail("weights file", f"bad filename {self.filename!r}")
        if not HEX64.match(self.sha256 or ""):
            _fail("weights file", f"{self.filename}: sha256 must be 64 lowercase hex digits")


@dataclass(frozen=True)
class WeightsRef:
    """Where one model variant's files live.

    Either bundled (``package`` names an importable package whose data files are
    ``weights.filename`` and ``config.filename``) or on the Hugging Face Hub
    (``repo_id`` at ``revision``, a full 40-hex commit, never a branch).
    """

    weights: WeightsFile
    config: WeightsFile
    repo_id: str | None = None
    revision: str | None = None
    package: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        hub = self.repo_id is not None or self.revision is not None
        if hub == (self.package is not None):
            _fail("weights", "give either package= (bundled) or repo_id= and revision= (Hub), not both")
        if hub:
            if not self.repo_id or self.repo_id.count("/") != 1:
                _fail("weights", f"repo_id must be 'owner/name', got {self.repo_id!r}")
            if not HEX40.match(self.revision or ""):
                _fail("weights", f"{self.repo_id}: revision must be a full 40-hex commit, got {self.revision!r}")

    @property
    def source(self) -> str:
        return "bundled" if self.package else "hub"


@dataclass(frozen=True)
class Postprocess:
    """Postprocessing defaults; the user may override each from the command line."""

    threshold: float | None = None  # binary tasks: foreground probability cut-off
    keep_largest: bool = False  # keep the largest connected component of each label
    fill_holes: bool = False
    min_size_mm3: float = 0.0  # remove connected components smaller than this

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            _fail("postprocess", f"threshold must lie in (0, 1), got {self.threshold}")
        if self.min_size_mm3 < 0:
            _fail("postprocess", "min_size_mm3 must be >= 0")


def _frozen_mapping(m: Mapping) -> Mapping:
    return MappingProxyType(dict(m))


@dataclass(frozen=True)
class TaskSpec:
    """Everything the core needs to run (and train) one task."""

    name: str
    description: str
    channels: tuple[str, ...]
    ndim: int
    labels: Mapping[int, str]
    model_factory: Callable[..., Any]
    model_kwargs: Mapping[str, Any]
    patch_size: tuple[int, ...]
    orientation: str | None = "RAS"
    target_spacing: tuple[float, ...] | None = None
    overlap: float = 0.5
    batch_size: int = 2
    normalization: str = "zscore"
    regions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    models: Mapping[str, WeightsRef] = field(default_factory=dict)
    default_model: str | None = None
    postprocess: Postprocess = field(default_factory=Postprocess)
    citation: str = ""
    licence: str = ""
    modality: str = ""
    version: str = "0"

    def __post_init__(self) -> None:
        what = f"task {self.name!r}"
        if not isinstance(self.name, str) or not TASK_NAME.match(self.name):
            _fail(what, "name must be lowercase letters, digits and dashes")
        if not self.description:
            _fail(what, "description is required")
        if self.ndim not in (2, 3):
            _fail(what, f"ndim must be 2 or 3, got {self.ndim}")
        channels = tuple(self.channels)
        if not channels or len(set(channels)) != len(channels) or not all(isinstance(c, str) and c for c in channels):
            _fail(what, "channels must be distinct non-empty names")
        object.__setattr__(self, "channels", channels)
        labels = {int(k): str(v) for k, v in dict(self.labels).items()}
        if not labels or 0 in labels:
            _fail(what, "labels map values >= 1 to names (0 is background)")
        if sorted(labels) != list(range(1, len(labels) + 1)):
            _fail(what, f"labels must be 1..N without gaps, got {sorted(labels)}")
        object.__setattr__(self, "labels", _frozen_mapping(labels))
        regions = {str(k): tuple(int(x) for x in v) for k, v in dict(self.regions).items()}
        for region, members in regions.items():
            if not members or not set(members) <= set(labels):
                _fail(what, f"region {region!r} must list known labels, got {members}")
        object.__setattr__(self, "regions", _frozen_mapping(regions))
        if not callable(self.model_factory):
            _fail(what, "model_factory must be callable")
        object.__setattr__(self, "model_kwargs", _frozen_mapping(self.model_kwargs))
        patch = tuple(int(p) for p in self.patch_size)
        if len(patch) != self.ndim or min(patch) < 1:
            _fail(what, f"patch_size must have {self.ndim} positive sizes, got {self.patch_size}")
        object.__setattr__(self, "patch_size", patch)
        if self.orientation is not None:
            if self.ndim == 2 or not ORIENTATION.match(self.orientation):
                _fail(what, f"orientation must be three axis codes such as 'RAS' (3D only), got {self.orientation!r}")
        if self.target_spacing is not None:
            spacing = tuple(float(s) for s in self.target_spacing)
            if len(spacing) != self.ndim or min(spacing) <= 0:
                _fail(what, f"target_spacing must have {self.ndim} positive values")
            object.__setattr__(self, "target_spacing", spacing)
        if not 0.0 <= self.overlap < 1.0:
            _fail(what, "overlap must lie in [0, 1)")
        if self.batch_size < 1:
            _fail(what, "batch_size must be >= 1")
        if self.normalization not in NORMALIZATIONS:
            _fail(what, f"normalization must be one of {', '.join(NORMALIZATIONS)}")
        models = dict(self.models)
        for variant, ref in models.items():
            if not isinstance(ref, WeightsRef):
                _fail(what, f"model {variant!r} must be a WeightsRef")
        object.__setattr__(self, "models", _frozen_mapping(models))
        if models:
            default = self.default_model or next(iter(models))
            if default not in models:
                _fail(what, f"default_model {default!r} is not among {sorted(models)}")
            object.__setattr__(self, "default_model", default)
        elif self.default_model is not None:
            _fail(what, "default_model given but no models declared")

    @property
    def num_classes(self) -> int:
        """Output channels of the network: background plus each label."""
        return len(self.labels) + 1

    @property
    def in_channels(self) -> int:
        return len(self.channels)

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
                value = f"{value.__module__}.{value.__qualname__}"
            elif f.name == "labels":
                value = {str(k): v for k, v in value.items()}
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

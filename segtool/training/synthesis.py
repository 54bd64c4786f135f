"""Training images synthesised from label maps (SynthSeg: Billot et al., Medical Image Analysis 86, 2023).

A network trained only on images drawn at random from label maps segments real
scans of any contrast and resolution. For each sample `LabelSynthesizer`:

1. deforms the label map: random rotation, scaling and left-right flip around a
   random point of the labelled anatomy, plus a smooth elastic displacement (a
   coarse random field upsampled), resampled by nearest neighbour onto the patch;
2. optionally strips the head (``p_strip``): the ``strip_labels`` (skull, scalp,
   eyes, ...) and the background become 0 in labels and image, and the
   ``rim_labels`` (e.g. extra-cerebral CSF) survive only within a random 1-3 voxel
   rim of the remaining tissue, as a brain mask leaves them;
3. draws each label's intensity from its own Gaussian (mean and standard deviation
   drawn per label per sample, so every label gets a new contrast each time);
4. blurs (Gaussian) and, with ``p_low_resolution``, simulates a thick-slice or
   low-resolution acquisition along one random axis (blur, downsample, upsample);
5. multiplies by a smooth bias field (exp of an upsampled coarse Gaussian field),
   rescales to [0, 1], applies a random gamma and adds Gaussian noise;
6. re-zeroes the stripped region and normalises the patch like the task's images
   (`segtool.normalize`).

Labels are merged into the task's classes only for the target (``target_of``), so
every source structure keeps its own random intensity, as in SynthSeg.

All randomness comes from the `numpy.random.Generator` passed in; the torch and
scipy operations used are deterministic on the CPU, so a sample is a pure function
of the generator's seed. Any task can use it: `SynthesisSampler` is what a
plugin's ``segtool_training_sampler`` hook returns, and `label_maps_on_grid` reads
the training cases' label maps onto the model grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from segtool.errors import UsageError

#: Positions of the labelled anatomy kept per map to centre patches on.
MAX_CENTRES = 20_000


@dataclass(frozen=True)
class SynthesisSettings:
    """The random ranges of the generator; voxel units are voxels of the model grid."""

    rotation_deg: float = 15.0  # per axis, uniform in [-r, r]
    scaling: tuple[float, float] = (0.85, 1.15)  # per axis
    flip_axes: tuple[int, ...] = (0,)  # each flipped with p = 0.5 (after RAS reorientation 0 is left-right)
    centre_jitter: float = 8.0  # voxels, uniform, around a random labelled voxel
    elastic_points: int = 5  # control points per axis of the coarse displacement field
    elastic_std: float = 2.0  # voxels: the field's standard deviation is uniform in [0, elastic_std]
    mean_range: tuple[float, float] = (0.0, 1.0)  # per-label Gaussian mean
    std_range: tuple[float, float] = (0.0, 0.08)  # per-label Gaussian standard deviation
    blur_sigma: tuple[float, float] = (0.0, 0.8)  # voxels, per axis
    p_low_resolution: float = 0.5
    resolution_factor: tuple[float, float] = (1.5, 4.0)  # slice thickness / voxel size on the chosen axis
    bias_points: int = 4
    bias_std: float = 0.4  # log-field standard deviation is uniform in [0, bias_std]
    gamma_std: float = 0.4  # log gamma ~ N(0, gamma_std)
    noise_std: tuple[float, float] = (0.0, 0.04)  # after rescaling to [0, 1]
    p_strip: float = 0.5
    strip_labels: frozenset[int] = field(default_factory=frozenset)
    rim_labels: frozenset[int] = field(default_factory=frozenset)
    rim_voxels: tuple[int, int] = (1, 3)  # inclusive range of the rim width kept around the tissue
    normalization: str = "percentile"  # segtool.normalize method applied to each finished patch


def _label_index(maps: Sequence[np.ndarray]) -> np.ndarray:
    """The sorted label values of all maps, 0 first (it pads outside the maps)."""
    values = set()
    for m in maps:
        values.update(int(v) for v in np.unique(m))
    values.add(0)
    return np.array(sorted(values), dtype=np.int64)


class LabelSynthesizer:
    """Random images (and merged targets) from integer label maps on the model grid."""

    def __init__(
        self,
        maps: Sequence[np.ndarray],
        target_of: Mapping[int, int],
        settings: SynthesisSettings = SynthesisSettings(),
    ):
        if not maps:
            raise ValueError("no label maps")
        ndims = {m.ndim for m in maps}
        if ndims != {3}:
            raise ValueError(f"label maps must be 3D, got {sorted(ndims)} dimensions")
        self.settings = settings
        self.values = _label_index(maps)
        if self.values.min() < 0:
            raise ValueError("label values must be >= 0")
        dtype = np.uint8 if len(self.values) <= 256 else np.int16
        self.maps = [np.searchsorted(self.values, np.asarray(m)).astype(dtype) for m in maps]
        self.target_lut = np.array([int(target_of.get(int(v), 0)) for v in self.values], dtype=np.int64)
        self.strip_idx = np.array([i for i, v in enumerate(self.values) if int(v) in settings.strip_labels],
                                  dtype=np.int64)
        self.rim_idx = np.array([i for i, v in enumerate(self.values) if int(v) in settings.rim_labels],
                                dtype=np.int64)
        self.centres = []
        rng = np.random.default_rng(0)
        for m in self.maps:
            positions = np.argwhere(self.target_lut[m] > 0)
            if len(positions) == 0:
                positions = np.argwhere(m > 0)
            if len(positions) == 0:
                positions = np.array([[s // 2 for s in m.shape]])
            if len(positions) > MAX_CENTRES:
                positions = positions[rng.choice(len(positions), MAX_CENTRES, replace=False)]
            self.centres.append(positions.astype(np.float32))
        self._tensors = None  # the maps as float tensors, made on first use (also in DataLoader workers)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_tensors"] = None
        return state

    @property
    def num_labels(self) -> int:
        return len(self.values)

    def _map_tensor(self, i: int):
        import torch

        if self._tensors is None:
            self._tensors = [None] * len(self.maps)
        if self._tensors[i] is None:
            self._tensors[i] = torch.from_numpy(self.maps[i].astype(np.float32))[None, None]
        return self._tensors[i]

    # ------------------------------------------------------------------ geometry

    def _coordinates(self, i: int, patch: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """(3, *patch) voxel coordinates in map ``i`` of every patch voxel."""
        s = self.settings
        centres = self.centres[i]
        centre = centres[int(rng.integers(len(centres)))] + rng.uniform(-s.centre_jitter, s.centre_jitter, 3)
        angles = np.deg2rad(rng.uniform(-s.rotation_deg, s.rotation_deg, 3))
        matrix = _rotation(angles) @ np.diag(rng.uniform(s.scaling[0], s.scaling[1], 3))
        flips = np.ones(3)
        for axis in s.flip_axes:
            if rng.random() < 0.5:
                flips[axis] = -1.0
        matrix = matrix @ np.diag(flips)
        offsets = np.stack(
            np.meshgrid(*[np.arange(n, dtype=np.float32) - (n - 1) / 2.0 for n in patch], indexing="ij")
        )
        coords = np.einsum("ij,j...->i...", matrix.astype(np.float32), offsets) + centre.reshape(3, 1, 1, 1)
        std = rng.uniform(0.0, s.elastic_std)
        if std > 0 and s.elastic_points > 1:
            coarse = rng.normal(0.0, std, (3,) + (s.elastic_points,) * 3).astype(np.float32)
            coords = coords + _upsample(coarse, patch)
        return coords.astype(np.float32)

    def _deformed_labels(self, i: int, patch: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        coords = self._coordinates(i, patch, rng)
        shape = self.maps[i].shape
        grid = np.stack([2.0 * coords[a] / max(shape[a] - 1, 1) - 1.0 for a in (2, 1, 0)], axis=-1)
        sampled = F.grid_sample(
            self._map_tensor(i), torch.from_numpy(grid)[None], mode="nearest", padding_mode="zeros", align_corners=True
        )
        return sampled[0, 0].numpy().astype(np.int64)

    # ------------------------------------------------------------------ stripping

    def _strip(self, lab: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The mask of voxels a brain extraction removes (labels 0 afterwards)."""
        from scipy.ndimage import maximum_filter

        removed = (lab == 0) | np.isin(lab, self.strip_idx)
        if len(self.rim_idx):
            rim = np.isin(lab, self.rim_idx)
            tissue = ~removed & ~rim
            width = int(rng.integers(self.settings.rim_voxels[0], self.settings.rim_voxels[1] + 1))
            near = maximum_filter(tissue, size=2 * width + 1) if width > 0 else tissue
            removed |= rim & ~near
        return removed

    # ------------------------------------------------------------------ intensities

    def sample(self, rng: np.random.Generator, patch_size: Sequence[int],
               case: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One synthetic image (1, *patch) float32 and its target (*patch) int64 (``case``: which map; None: random)."""
        import torch
        import torch.nn.functional as F
        from scipy.ndimage import gaussian_filter

        from segtool.normalize import normalize

        s = self.settings
        patch = tuple(int(p) for p in patch_size)
        i = int(rng.integers(len(self.maps))) if case is None else int(case)
        lab = self._deformed_labels(i, patch, rng)
        stripped = rng.random() < s.p_strip
        removed = self._strip(lab, rng) if stripped else None
        if removed is not None:
            lab[removed] = 0
        k = self.num_labels
        means = rng.uniform(s.mean_range[0], s.mean_range[1], k).astype(np.float32)
        stds = rng.uniform(s.std_range[0], s.std_range[1], k).astype(np.float32)
        if stripped:
            means[0], stds[0] = 0.0, 0.0
        image = means[lab] + stds[lab] * rng.standard_normal(patch, dtype=np.float32)

        sigma = rng.uniform(s.blur_sigma[0], s.blur_sigma[1], 3)
        thick_axis, factor = None, 1.0
        if rng.random() < s.p_low_resolution:
            thick_axis = int(rng.integers(3))
            factor = float(rng.uniform(*s.resolution_factor))
            # SynthSeg's blurring_sigma_for_downsampling: sigma = 0.75 * (new resolution / current resolution)
            sigma[thick_axis] = max(sigma[thick_axis], 0.75 * factor)
        sigma = np.where(np.array(patch) > 1, sigma, 0.0)
        if sigma.max() > 0.05:
            image = gaussian_filter(image, sigma, truncate=2.5, mode="nearest")
        if thick_axis is not None and patch[thick_axis] > 1:
            low = list(patch)
            low[thick_axis] = max(1, int(round(patch[thick_axis] / factor)))
            t = torch.from_numpy(np.ascontiguousarray(image))[None, None]
            t = F.interpolate(F.interpolate(t, size=tuple(low), mode="trilinear", align_corners=True),
                              size=patch, mode="trilinear", align_corners=True)
            image = t[0, 0].numpy()

        std = rng.uniform(0.0, s.bias_std)
        if std > 0 and s.bias_points > 1:
            coarse = rng.normal(0.0, std, (1,) + (s.bias_points,) * 3).astype(np.float32)
            image = image * np.exp(_upsample(coarse, patch)[0])
        lo, hi = float(image.min()), float(image.max())
        image = (image - lo) / max(hi - lo, 1e-6)
        image = np.clip(image, 0.0, 1.0) ** float(np.exp(rng.normal(0.0, s.gamma_std)))
        noise = rng.uniform(*s.noise_std)
        if noise > 0:
            image = image + noise * rng.standard_normal(patch, dtype=np.float32)
        if removed is not None:
            image[removed] = 0.0
        image = normalize(image[None].astype(np.float32), s.normalization)
        return image, self.target_lut[lab]


def _rotation(angles: np.ndarray) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _upsample(coarse: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    """(C, n, n, n) -> (C, *patch), trilinear (a smooth field)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(coarse))[None]
    return F.interpolate(t, size=patch, mode="trilinear", align_corners=True)[0].numpy()


class SynthesisSampler:
    """The object a ``segtool_training_sampler`` hook returns: batches of synthetic patches."""

    def __init__(self, synthesizer: LabelSynthesizer, patch_size: Sequence[int], batch_size: int):
        if len(patch_size) != 3:
            raise ValueError(f"patch_size must be 3D (a one-slice patch for slice tasks), got {tuple(patch_size)}")
        self.synthesizer = synthesizer
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = int(batch_size)

    @property
    def description(self) -> str:
        """One line for the model card (the trainer records it as the augmentation)."""
        s, n = self.synthesizer.settings, len(self.synthesizer.maps)
        return (
            f"images synthesised from {n} label map(s) at every step (SynthSeg): a Gaussian intensity per label "
            f"(mean {s.mean_range[0]:g}-{s.mean_range[1]:g}, std 0-{s.std_range[1]:g}), "
            f"rotation ±{s.rotation_deg:g}°, "
            f"scaling {s.scaling[0]:g}-{s.scaling[1]:g}, elastic, blur, low resolution on one axis "
            f"(p {s.p_low_resolution:g}, {s.resolution_factor[0]:g}-{s.resolution_factor[1]:g}x), bias field, gamma, "
            f"noise, skull stripped with p {s.p_strip:g}"
        )

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """images float32 (B, 1, *patch), labels int64 (B, *patch)."""
        pairs = [self.synthesizer.sample(rng, self.patch_size) for _ in range(self.batch_size)]
        images = np.stack([p[0] for p in pairs]).astype(np.float32, copy=False)
        labels = np.stack([p[1] for p in pairs]).astype(np.int64, copy=False)
        return images, labels


def label_maps_on_grid(spec, cases: Sequence, source: str = "image", target_of: Mapping[int, int] | None = None,
                       min_classes: int = 2) -> list[np.ndarray]:
    """The generation label map of each prepared case, read from its source file onto the model grid.

    ``source`` names the file holding the full label map: ``"image"`` (the case's
    first image file: a training folder whose "images" are label maps, because the
    sampler replaces them) or ``"label"`` (its label file). The map is reoriented and
    resampled by nearest neighbour exactly as the case's labels were
    (`segtool.preprocess.preprocess_labels`). With ``target_of``, a map whose merged
    values hold fewer than ``min_classes`` task classes is refused: it is probably a
    real image that belongs in validation (``--val-cases``), not a label map.
    """
    from segtool.io import read_labels
    from segtool.preprocess import preprocess_labels
    from segtool.training.prepare import remap_labels

    maps = []
    for case in cases:
        files = getattr(case, "image_files", ()) if source == "image" else (getattr(case, "label_file", None),)
        path = files[0] if files else None
        if path is None:
            raise UsageError(
                f"case {case.name!r}: its source files are not known (a data cache from an older segtool); "
                "delete the model folder's .train/cache and train again"
            )
        try:
            volume = read_labels(path)
            volume = replace(volume, array=remap_labels(np.asarray(volume.array), None))
        except Exception as exc:  # a non-integer image: not a label map
            raise UsageError(f"case {case.name!r}: {path} is not a label map ({str(exc).splitlines()[0]})") from None
        array = preprocess_labels(spec, volume)
        if target_of is not None:
            classes = {int(target_of.get(int(v), 0)) for v in np.unique(array)} - {0}
            if len(classes) < min_classes:
                raise UsageError(
                    f"case {case.name!r}: {path.name} holds none or few of the task's source labels; "
                    "is it a real scan? Real scans are for validation only (--val-cases)"
                )
        maps.append(array.astype(np.int32))
    return maps

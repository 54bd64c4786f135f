"""From a Volume to a segmentation on the input's own grid, no file I/O.

The same `preprocess` serves `segtool run` and `segtool train`, so training and
inference cannot drift apart:

    reorient to spec.orientation -> resample to spec.target_spacing (or spec.input_size) -> normalise

`Segmenter` is built once (model on its device) and predicts many volumes:

    preprocess -> sliding-window inference -> resample probabilities back
    -> undo reorientation -> labels (argmax or threshold) -> postprocess
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from segtool.geometry import Reorientation, reorient, resample, resampled_shape, spacing_of
from segtool.normalize import normalize
from segtool.postprocess import apply_postprocess, labels_from_probabilities
from segtool.spec import Postprocess, TaskSpec

if TYPE_CHECKING:
    import os

    import torch

    from segtool.io import Volume
    from segtool.weights import ResolvedModel


@dataclass(frozen=True)
class Prepared:
    """An image in the model's space, and how to map results back."""

    array: np.ndarray  # (C, *spatial) float32, reoriented, resampled, normalised
    reorientation: Reorientation | None
    oriented_shape: tuple[int, ...]  # spatial shape after reorientation, before resampling
    spacing: tuple[float, ...]  # model-space spacing


#: The most voxels the model grid may have (per channel): 1 G float32 voxels is 4 GiB already.
MAX_MODEL_VOXELS = 1_000_000_000


def _to_model_grid(spec: TaskSpec, array: np.ndarray, affine: np.ndarray, mode: str):
    reorientation = None
    if spec.orientation is not None:
        array, affine, reorientation = reorient(array, affine, spec.orientation)
    oriented_shape = tuple(array.shape[1:])
    spacing = spacing_of(affine, spec.ndim)
    if spec.target_spacing is not None:
        target = tuple(s if t is None else t for s, t in zip(spacing, spec.target_spacing))
        target_shape = resampled_shape(oriented_shape, spacing, target)
        if float(np.prod(target_shape, dtype=np.float64)) > MAX_MODEL_VOXELS:
            from segtool.errors import GeometryError

            raise GeometryError(
                f"resampling {'x'.join(map(str, oriented_shape))} voxels of {'x'.join(f'{s:g}' for s in spacing)} mm "
                f"to {'x'.join(f'{t:g}' for t in target)} mm would need {'x'.join(map(str, target_shape))} voxels, "
                f"more than segtool handles ({MAX_MODEL_VOXELS:,}); is the voxel size in the header right?"
            )
        if target_shape != oriented_shape:
            array = resample(array, target_shape, mode=mode)
        spacing = target
    if getattr(spec, "input_size", None) is not None and tuple(array.shape[1:]) != tuple(spec.input_size):
        # a fixed network input (photos of any size): resized here, probabilities resized back
        spacing = tuple(s * n / m for s, n, m in zip(spacing, array.shape[1:], spec.input_size))
        array = resample(array, tuple(spec.input_size), mode=mode)
    return array, reorientation, oriented_shape, spacing


#: Normalisations applied on the input's own grid, before resampling. The masked z-scores must come first:
#: resampling blends the zero background into the edge of the head, and those blended voxels would
#: count as inside it (a raw-scaled and a z-scored copy of one image would then differ); linear
#: resampling commutes with the gain and offset every other method removes.
NORMALISE_FIRST = ("zscore-nonzero", "zscore-foreground")


def preprocess(spec: TaskSpec, volume: "Volume", consume_input: bool = False) -> Prepared:
    """Reorient, resample (linear) and normalise an image for ``spec`` (normalise first: NORMALISE_FIRST).

    A resampled array is preprocess's own and is normalised in place. With
    ``consume_input`` (the caller needs the input's values no more: `segtool run` without
    overlays or QC) the input's own float32 array may be normalised in place too, so the
    input and its normalised copy are never held together; its shape, affine and header
    stay valid, its values do not.
    """
    array = np.asarray(volume.array, dtype=np.float32)
    first = spec.normalization in NORMALISE_FIRST
    if first:
        array = normalize(array, spec.normalization, in_place=consume_input)
    source = array
    array, reorientation, oriented_shape, spacing = _to_model_grid(spec, array, volume.affine, "linear")
    if not first:
        own = consume_input or not np.may_share_memory(array, source)
        array = normalize(array, spec.normalization, in_place=own)
    return Prepared(array, reorientation, oriented_shape, tuple(spacing))


def preprocess_labels(spec: TaskSpec, labels: "Volume") -> np.ndarray:
    """A label map on the same model grid as `preprocess` gives its image (nearest neighbour)."""
    array = np.asarray(labels.array).astype(np.int64)
    array, _, _, _ = _to_model_grid(spec, array, labels.affine, "nearest")
    return array[0]


def probabilities_to_input_grid(spec: TaskSpec, probs: "torch.Tensor", prepared: Prepared) -> np.ndarray:
    """Resample model-space probabilities back and undo the reorientation: (K, *input spatial)."""
    if tuple(probs.shape[1:]) != tuple(prepared.oriented_shape):
        probs = resample(probs, prepared.oriented_shape, mode="linear")
    array = probs.float().cpu().numpy()
    if prepared.reorientation is not None:
        array = prepared.reorientation.undo(array)
    return array


@dataclass
class InferenceOptions:
    device: str = "auto"
    batch_size: int | None = None  # None: the task's default
    overlap: float | None = None
    precision: str = "auto"  # segtool.precision: auto | fp32 | bf16 | fp16
    tta: bool = False
    postprocess: Postprocess | None = None  # None: the task's defaults


@dataclass
class Prediction:
    labels: np.ndarray  # spatial, on the input grid
    probabilities: np.ndarray | None = None  # (K, *spatial) when asked for
    volumes_mm3: dict[int, float] = field(default_factory=dict)


class Segmenter:
    """A task's model, built and put on its device once, predicting many volumes."""

    #: The weights' files, hashes and source (`from_task` sets it; None for a model given directly).
    resolved: "ResolvedModel | None" = None

    @classmethod
    def from_task(cls, name: str, model_dir: "str | os.PathLike | None" = None, **options) -> "Segmenter":
        """The ready Segmenter of task ``name``: the one way in for `segtool run`, benchmarks and Python users.

        Resolves the task's pinned model (bundled, Hub cache or download) or the folder written by
        `segtool train` (``model_dir``), verifies its sha256, builds the network, loads the weights,
        picks the device and precision, and does the same for the task's localiser (spinal-gm's
        `locate`). Keyword options, all optional: ``variant``, ``weights_path``, ``locator_model_dir``,
        ``offline``, ``cache_dir``, ``device`` ("auto", "cpu", "cuda:N", "mps"), ``precision``
        ("auto", "fp32", "bf16", "fp16"), ``batch_size``, ``overlap``, ``tta`` (None: as the
        model's config.json says), ``threshold``,
        ``keep_largest``, ``fill_holes``, ``min_size_mm3``, ``warn`` (a callable taking one message;
        default: Python warnings) and ``app`` (the plugins and tasks; default: the installed ones).
        Raises WeightsUnavailableError when the task has no usable model, UsageError for unknown names.
        """
        from segtool.segmenter_factory import load_segmenter

        return load_segmenter(cls, name, model_dir, **options)

    def __init__(
        self,
        spec: TaskSpec,
        model: "torch.nn.Module",
        options: InferenceOptions | None = None,
        warn: Callable[[str], None] | None = None,
        locator: "Segmenter | None" = None,
    ):
        from segtool.inference import pick_device
        from segtool.precision import memory_format, resolve_precision

        self.spec = spec
        self.options = options or InferenceOptions()
        self.device = pick_device(self.options.device)
        self.precision = resolve_precision(self.options.precision, self.device)
        layout = memory_format(self.device, self.precision, spec.network_dims)
        self.model = model.to(self.device).to(memory_format=layout).eval()
        self.warn = warn
        self.locator = locator  # segments spec.locate.task first; None segments the whole input

    def _empty(self, volume: "Volume", keep_probabilities: bool) -> "Prediction":
        """A constant image holds nothing to segment: an empty mask, and a warning (never a random mask)."""
        if self.warn is not None:
            self.warn(f"{volume.path or 'input'}: the image is constant (every voxel the same value); "
                      "writing an empty mask")
        labels = np.zeros(volume.spatial_shape, dtype=np.uint8)
        probs = None
        if keep_probabilities:
            probs = np.zeros((self.spec.num_classes, *volume.spatial_shape), dtype=np.float32)
            probs[0] = 1.0
        return Prediction(labels, probs, {int(k): 0.0 for k in self.spec.labels})

    def probabilities(self, volume: "Volume", on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Class probabilities (K, *input spatial) on the input grid."""
        import torch

        prepared = preprocess(self.spec, volume)
        probs = self.model_probabilities(torch.from_numpy(prepared.array), self.spec.slice_axis, on_batch)
        return probabilities_to_input_grid(self.spec, probs, prepared)

    def labels(self, volume: "Volume", on_batch: Callable[[int, int], None] | None = None,
               consume_input: bool = False) -> np.ndarray:
        """uint8 labels (argmax or threshold) on the input grid, as from `probabilities`, a few planes at a time.

        The class probabilities of the whole input are never held at once
        (`segtool.label_assembly`): peak memory stays a small multiple of the input's.
        """
        import torch

        from segtool.inference import sliding_window_inference
        from segtool.label_assembly import LabelAssembler

        spec, opts = self.spec, self.options
        prepared = preprocess(spec, volume, consume_input)
        if consume_input:  # the caller gave the values up: hold none of them once the model grid has its own
            volume.array = np.broadcast_to(np.zeros((), dtype=np.float32), volume.array.shape)
        image = torch.from_numpy(prepared.array)
        steps = opts.postprocess or spec.postprocess
        axis = spec.slice_axis if spec.slice_axis is not None else 0
        assembler: list[LabelAssembler] = []

        def make_sink():
            assembler[:] = [LabelAssembler(tuple(image.shape[1:]), prepared.oriented_shape, axis, steps.threshold)]
            return assembler[0].add

        sliding_window_inference(self.model, image, spec.patch_size, num_classes=spec.num_classes, on_batch=on_batch,
                                 slice_axis=spec.slice_axis, make_sink=make_sink, **self._window_options())
        labels = assembler[0].finish()
        if prepared.reorientation is not None:
            labels = prepared.reorientation.undo(labels[None])[0]
        return labels

    def _window_options(self) -> dict:
        opts = self.options
        return dict(overlap=self.spec.overlap if opts.overlap is None else opts.overlap,
                    batch_size=opts.batch_size or self.spec.run_batch_size, device=self.device,
                    precision=self.precision, warn=self.warn, slice_context=self.spec.slice_context)

    def model_probabilities(self, image: "torch.Tensor", slice_axis: int | None,
                            on_batch: Callable[[int, int], None] | None = None) -> "torch.Tensor":
        """Sliding-window probabilities (K, *spatial) of a preprocessed (C, *spatial) image, with this run's options."""
        from segtool.inference import sliding_window_inference

        spec = self.spec
        return sliding_window_inference(self.model, image, spec.patch_size, num_classes=spec.num_classes,
                                        tta=self.options.tta, tta_axes=spec.flip_axes, on_batch=on_batch,
                                        slice_axis=slice_axis, **self._window_options())

    def predict(
        self,
        volume: "Volume",
        keep_probabilities: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
        consume_input: bool = False,
    ) -> Prediction:
        """Labels (postprocessed), optionally probabilities, and label volumes of one image.

        With ``consume_input`` the caller needs ``volume``'s values no more (its grid, affine
        and header yes): the image may be normalised in place instead of beside a copy
        (`preprocess`), and ``volume.array`` becomes a read-only zero placeholder of its shape,
        so the input's memory is free for postprocessing. A localised task (spinal-gm) keeps
        the input for its crop.
        """
        from segtool.locate import crop_volume

        spec, opts = self.spec, self.options
        if _is_constant(volume.array):
            return self._empty(volume, keep_probabilities)
        located = self._locate(volume)
        steps = opts.postprocess or spec.postprocess
        on_input = None
        if keep_probabilities or opts.tta:  # every class probability on the input grid, held at once
            on_input = self._input_probabilities(volume, located, on_batch)
            labels = labels_from_probabilities(on_input, steps.threshold)
        elif located is None:
            labels = self.labels(volume, on_batch, consume_input=consume_input)
        else:  # the same labels as pasted probabilities give: background outside the box and beyond within_mm
            box = located.box.slices
            labels = np.zeros(volume.spatial_shape, dtype=np.uint8)
            labels[box] = self.labels(crop_volume(volume, located.box), on_batch, consume_input=True)  # its own copy
            if spec.locate.within_mm is not None:
                labels[box][~_near(located.mask[box], volume.spacing, spec.locate.within_mm)] = 0
        return self._finish(volume, labels, on_input if keep_probabilities else None)

    def predict_combined(
        self,
        volumes: "Sequence[Volume]",
        keep_probabilities: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> Prediction:
        """One prediction from several images of one subject on one grid (contrasts such as T1 and T2).

        Each image is segmented on its own (a contrast-agnostic model takes any of them)
        and their class probabilities on the input grid are averaged; labels and
        postprocessing follow from the mean, on the first image's grid. Images that are
        not on the first one's grid are refused (GeometryError: register them first); a
        constant image is left out with a warning.
        """
        from segtool.io.channels import check_same_grid

        if not volumes:
            raise ValueError("no volumes to combine")
        first = volumes[0]
        for other in volumes[1:]:
            check_same_grid(first, other)
        usable = []
        for volume in volumes:
            if _is_constant(volume.array):
                if self.warn is not None:
                    self.warn(f"{volume.path or 'input'}: the image is constant; left out of the combination")
            else:
                usable.append(volume)
        if not usable:
            return self._empty(first, keep_probabilities)
        total = None
        for volume in usable:
            probs = self._input_probabilities(volume, self._locate(volume), on_batch)
            if total is None:
                total = probs.astype(np.float32, copy=False)
            else:
                total += probs
            del probs
        total /= float(len(usable))
        steps = self.options.postprocess or self.spec.postprocess
        labels = labels_from_probabilities(total, steps.threshold)
        return self._finish(first, labels, total if keep_probabilities else None)

    def _locate(self, volume: "Volume"):
        """The located structure (spinal-gm's cord) of a task that localises first, else None."""
        from segtool.locate import locate_structure

        if self.locator is None or self.spec.locate is None:
            return None
        return locate_structure(self.locator, volume, self.spec.locate, self.warn)

    def _input_probabilities(self, volume: "Volume", located, on_batch) -> np.ndarray:
        """Class probabilities (K, *spatial) on the input grid: of the whole image, or of the located box pasted back."""
        from segtool.locate import crop_volume, keep_within, paste_probabilities

        if located is None:
            return self.probabilities(volume, on_batch)
        on_input = paste_probabilities(self.probabilities(crop_volume(volume, located.box), on_batch),
                                       located.box, volume)
        if self.spec.locate.within_mm is not None:
            on_input = keep_within(on_input, located.mask, volume.spacing, self.spec.locate.within_mm)
        return on_input

    def _finish(self, volume: "Volume", labels: np.ndarray, probabilities: np.ndarray | None) -> Prediction:
        """Postprocess the labels on the input grid and measure each label's volume."""
        steps = self.options.postprocess or self.spec.postprocess
        voxel_mm3 = float(np.prod(volume.spacing))
        labels = apply_postprocess(labels, steps, voxel_mm3, affine=volume.affine, num_labels=len(self.spec.labels))
        counts = label_counts(labels, self.spec.num_classes)
        volumes = {int(k): float(counts[k] * voxel_mm3) for k in self.spec.labels}
        return Prediction(labels, probabilities, volumes)


def label_counts(labels: np.ndarray, minlength: int) -> np.ndarray:
    """Voxels per label value, counted a few million at a time (bincount makes an int64 copy of what it counts)."""
    flat = labels.reshape(-1)
    counts = np.zeros(minlength, dtype=np.int64)
    for start in range(0, flat.size, 1 << 22):
        part = np.bincount(flat[start : start + (1 << 22)], minlength=minlength)
        if part.size > counts.size:
            counts = np.concatenate([counts, np.zeros(part.size - counts.size, dtype=np.int64)])
        counts[: part.size] += part
    return counts


def _near(mask: np.ndarray, spacing: tuple[float, ...], grow_mm: float) -> np.ndarray:
    """Voxels within ``grow_mm`` of ``mask`` (`segtool.locate.keep_within`'s rule, on a box holding the mask)."""
    from scipy import ndimage

    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= grow_mm


def _is_constant(array: np.ndarray) -> bool:
    """Every channel holds one value everywhere (an all-zero or blank image)."""
    flat = np.asarray(array).reshape(array.shape[0], -1)
    return bool(flat.size) and bool((flat.min(axis=1) == flat.max(axis=1)).all())

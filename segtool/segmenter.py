"""A task's model, built once and put on its device, predicting many volumes; no file I/O.

`Segmenter.from_task` is the one way from a task name to a ready segmenter, shared by
`segtool run`, the benchmarks, the tests and Python users (as nnU-Net's predictor is
built once from its trained-model folder and predicts many times):

    task spec -> resolve and verify the weights (sha256) -> build the network, load the
    weights -> device and precision -> the task's localiser first (spinal-gm's `locate`)

`predict` then runs, per volume (`segtool.preprocess`, `segtool.sliding_window`, `segtool.locate`):

    [locate: crop to the localiser's box] -> preprocess -> sliding-window inference
    -> resample probabilities back -> undo reorientation -> labels (argmax or threshold)
    -> [paste back into the input] -> postprocess -> label volumes
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from segtool.errors import UsageError
from segtool.postprocess import labels_from_probabilities, override
from segtool.preprocess import is_constant, preprocess, probabilities_to_input_grid
from segtool.spec import Postprocess, TaskSpec

if TYPE_CHECKING:
    import os

    import torch

    from segtool.app import App
    from segtool.io import Volume
    from segtool.locate import Located
    from segtool.model_config import ModelConfig
    from segtool.sliding_window import WindowSettings
    from segtool.weights import ResolvedModel


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
    """What `Segmenter.predict` returns: labels on the input grid, and each label's volume.

    ``volumes_mm3`` is keyed by label name, as `segtool run --json` writes it
    (``{"gray_matter": 1040.6}``; mm³, or px for photos); ``volumes_by_value`` has the same
    figures keyed by label value (``{1: 1040.6}``).
    """

    labels: np.ndarray  # spatial, on the input grid
    probabilities: np.ndarray | None = None  # (K, *spatial) when asked for
    volumes_by_value: dict[int, float] = field(default_factory=dict)
    label_names: Mapping[int, str] = field(default_factory=dict)  # the task's; a value without a name keeps its number

    @property
    def volumes_mm3(self) -> dict[str, float]:
        return {str(self.label_names.get(k, k)): v for k, v in self.volumes_by_value.items()}


def _warn_python(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def _postprocess_steps(base: Postprocess, threshold: float | None = None, keep_largest: bool | None = None,
                       fill_holes: bool | None = None, min_size_mm3: float | None = None) -> Postprocess:
    """The task's postprocessing with the run's overrides (None: as the task says)."""
    steps = override(base, threshold=threshold, keep_largest=keep_largest, fill_holes=fill_holes,
                     min_size_mm3=min_size_mm3)
    if keep_largest is False and steps.keep_largest_union:  # --no-keep-largest: every component, of the union too
        steps = replace(steps, keep_largest_union=())
    return steps


def _run_options(spec: TaskSpec, config: "ModelConfig", device: str = "auto", precision: str = "auto",
                 batch_size: int | None = None, overlap: float | None = None, tta: bool | None = None,
                 **postprocess) -> InferenceOptions:
    """`InferenceOptions` from `Segmenter.from_task`'s run options; ``tta`` None: as the model's config.json says."""
    steps = _postprocess_steps(spec.postprocess, **postprocess)
    return InferenceOptions(device=device, batch_size=batch_size, overlap=overlap, precision=precision,
                            tta=config.tta if tta is None else tta, postprocess=steps)


class Segmenter:
    """A task's model, built and put on its device once, predicting many volumes."""

    #: The weights' files, hashes and source (`from_task` sets it; None for a model given directly).
    resolved: "ResolvedModel | None" = None

    @classmethod
    def from_task(
        cls,
        name: str,
        model_dir: "str | os.PathLike | None" = None,
        *,
        variant: str | None = None,
        weights_path: "str | os.PathLike | None" = None,
        locator_model_dir: "str | os.PathLike | None" = None,
        offline: bool = False,
        cache_dir: "str | os.PathLike | None" = None,
        warn: Callable[[str], None] | None = None,
        app: "App | None" = None,
        **run_options,
    ) -> "Segmenter":
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
        from segtool.app import App
        from segtool.weights import HubSettings, build_model, resolve_model

        app = app if app is not None else App()
        warn = warn if warn is not None else _warn_python
        spec = app.registry.get(name)
        if locator_model_dir is not None and spec.locate is None:
            raise UsageError(f"--locator-model-dir: task {spec.name!r} does not localise first")
        hub = HubSettings.from_env(offline_flag=offline, cache_dir=cache_dir)
        resolved = resolve_model(spec, variant, hub, app.plugin_manager, weights_path=weights_path, model_dir=model_dir)
        model = build_model(spec, resolved)
        spec = resolved.config.apply_to(spec)  # the model folder's settings win over the task's defaults
        options = _run_options(spec, resolved.config, **run_options)
        locator = None
        if spec.locate is not None:
            locate_spec = app.registry.get(spec.locate.task)
            located = resolve_model(locate_spec, None, hub, app.plugin_manager, model_dir=locator_model_dir)
            locator = cls(
                located.config.apply_to(locate_spec), build_model(locate_spec, located),
                InferenceOptions(device=options.device, precision=options.precision), warn=warn,
            )
            locator.resolved = located
        segmenter = cls(spec, model, options, warn=warn, locator=locator)
        segmenter.resolved = resolved
        return segmenter

    def __init__(
        self,
        spec: TaskSpec,
        model: "torch.nn.Module",
        options: InferenceOptions | None = None,
        warn: Callable[[str], None] | None = None,
        locator: "Segmenter | None" = None,
    ):
        from segtool.precision import memory_format, resolve_precision
        from segtool.sliding_window import pick_device

        self.spec = spec
        self.options = options or InferenceOptions()
        self.device = pick_device(self.options.device)
        self.precision = resolve_precision(self.options.precision, self.device)
        layout = memory_format(self.device, self.precision, spec.network_dims)
        self.model = model.to(self.device).to(memory_format=layout).eval()
        self.warn = warn
        self.locator = locator  # segments spec.locate.task first; None segments the whole input

    @property
    def postprocess_steps(self) -> Postprocess:
        """This run's postprocessing: the options' when given, else the task's."""
        return self.options.postprocess or self.spec.postprocess

    def window_settings(self, slice_axis: int | None, tta: bool = False) -> "WindowSettings":
        """The sliding window's settings for this task and run (slices along ``slice_axis`` when not None)."""
        from segtool.sliding_window import WindowSettings

        spec, opts = self.spec, self.options
        return WindowSettings(
            spec.patch_size, spec.num_classes, overlap=spec.overlap if opts.overlap is None else opts.overlap,
            batch_size=opts.batch_size or spec.run_batch_size, device=self.device, precision=self.precision,
            slice_axis=slice_axis, slice_context=spec.slice_context, tta=tta, tta_axes=spec.flip_axes,
        )

    def empty_prediction(self, volume: "Volume", keep_probabilities: bool) -> "Prediction":
        """A constant image holds nothing to segment: an empty mask, and a warning (never a random mask)."""
        if self.warn is not None:
            self.warn(f"{volume.path or 'input'}: the image is constant (every voxel the same value); "
                      "writing an empty mask")
        labels = np.zeros(volume.spatial_shape, dtype=np.uint8)
        probs = None
        if keep_probabilities:
            probs = np.zeros((self.spec.num_classes, *volume.spatial_shape), dtype=np.float32)
            probs[0] = 1.0
        return Prediction(labels, probs, {int(k): 0.0 for k in self.spec.labels}, dict(self.spec.labels))

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

        from segtool.label_assembly import LabelAssembler
        from segtool.sliding_window import stream_probabilities

        spec = self.spec
        prepared = preprocess(spec, volume, consume_input)
        if consume_input:  # the caller gave the values up: hold none of them once the model grid has its own
            volume.array = np.broadcast_to(np.zeros((), dtype=np.float32), volume.array.shape)
        image = torch.from_numpy(prepared.array)
        threshold = self.postprocess_steps.threshold
        axis = spec.slice_axis if spec.slice_axis is not None else 0
        assembler: list[LabelAssembler] = []

        def make_sink():
            assembler[:] = [LabelAssembler(tuple(image.shape[1:]), prepared.oriented_shape, axis, threshold)]
            return assembler[0].add

        stream_probabilities(self.model, image, self.window_settings(spec.slice_axis), make_sink,
                             on_batch=on_batch, warn=self.warn)
        labels = assembler[0].finish()
        if prepared.reorientation is not None:
            labels = prepared.reorientation.undo(labels[None])[0]
        return labels

    def model_probabilities(self, image: "torch.Tensor", slice_axis: int | None,
                            on_batch: Callable[[int, int], None] | None = None) -> "torch.Tensor":
        """Sliding-window probabilities (K, *spatial) of a preprocessed (C, *spatial) image, with this run's options."""
        from segtool.sliding_window import sliding_window_inference

        settings = self.window_settings(slice_axis, tta=self.options.tta)
        return sliding_window_inference(self.model, image, settings, on_batch=on_batch, warn=self.warn)

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
        if is_constant(volume.array):
            return self.empty_prediction(volume, keep_probabilities)
        located = self._locate(volume)
        on_input = None
        if keep_probabilities or self.options.tta:  # every class probability on the input grid, held at once
            on_input = self._input_probabilities(volume, located, on_batch)
            labels = labels_from_probabilities(on_input, self.postprocess_steps.threshold)
        elif located is None:
            labels = self.labels(volume, on_batch, consume_input=consume_input)
        else:
            labels = self._located_labels(volume, located, on_batch)
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
            if is_constant(volume.array):
                if self.warn is not None:
                    self.warn(f"{volume.path or 'input'}: the image is constant; left out of the combination")
            else:
                usable.append(volume)
        if not usable:
            return self.empty_prediction(first, keep_probabilities)
        total = None
        for volume in usable:
            probs = self._input_probabilities(volume, self._locate(volume), on_batch)
            if total is None:
                total = probs.astype(np.float32, copy=False)
            else:
                total += probs
            del probs
        total /= float(len(usable))
        labels = labels_from_probabilities(total, self.postprocess_steps.threshold)
        return self._finish(first, labels, total if keep_probabilities else None)

    def _locate(self, volume: "Volume") -> "Located | None":
        """The located structure (spinal-gm's cord) of a task that localises first, else None."""
        from segtool.locate import locate_structure

        if self.locator is None or self.spec.locate is None:
            return None
        locator = self.locator
        return locate_structure(lambda image: locator.predict(image).labels, volume, self.spec.locate, self.warn)

    def _located_labels(self, volume: "Volume", located: "Located", on_batch) -> np.ndarray:
        """Labels of the located box, pasted back: the labels the pasted probabilities would give."""
        labels = self.labels(located.crop(volume), on_batch, consume_input=True)  # the crop is its own copy
        return located.paste_labels(labels, volume, self.spec.locate.within_mm)

    def _input_probabilities(self, volume: "Volume", located: "Located | None", on_batch) -> np.ndarray:
        """Class probabilities (K, *spatial) on the input grid: of the whole image, or of the located box pasted back."""
        if located is None:
            return self.probabilities(volume, on_batch)
        probs = self.probabilities(located.crop(volume), on_batch)
        return located.paste_probabilities(probs, volume, self.spec.locate.within_mm)

    def _finish(self, volume: "Volume", labels: np.ndarray, probabilities: np.ndarray | None) -> Prediction:
        """Postprocess the labels on the input grid and measure each label's volume (as every run path does)."""
        from segtool.cases import postprocess_labels

        labels, volumes = postprocess_labels(self.spec, self.postprocess_steps, volume, labels)
        return Prediction(labels, probabilities, volumes, dict(self.spec.labels))

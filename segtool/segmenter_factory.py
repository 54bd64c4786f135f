"""`Segmenter.from_task`'s work: a task's verified model, built, loaded and on its device.

One path from a task name to a ready `Segmenter`, shared by `segtool run`, the
benchmarks, the tests and Python users (as nnU-Net's predictor is built once and
predicts many times):

    task spec -> resolve and verify the weights (sha256) -> build the network, load the
    weights -> device and precision -> the task's localiser first (spinal-gm's `locate`)

Nothing here reads images; torch is imported only when a model is built.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Callable

from segtool.errors import UsageError

if TYPE_CHECKING:
    from segtool.app import App
    from segtool.pipeline import Segmenter


def _warn_python(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def load_segmenter(
    cls: "type[Segmenter]",
    name: str,
    model_dir: str | os.PathLike | None = None,
    *,
    variant: str | None = None,
    weights_path: str | os.PathLike | None = None,
    locator_model_dir: str | os.PathLike | None = None,
    offline: bool = False,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int | None = None,
    overlap: float | None = None,
    tta: bool | None = None,
    threshold: float | None = None,
    keep_largest: bool | None = None,
    fill_holes: bool | None = None,
    min_size_mm3: float | None = None,
    warn: Callable[[str], None] | None = None,
    app: "App | None" = None,
) -> "Segmenter":
    """The `Segmenter` of task ``name``; see `Segmenter.from_task` for the options."""
    from segtool.app import App
    from segtool.pipeline import InferenceOptions
    from segtool.postprocess import override
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
    steps = override(
        spec.postprocess, threshold=threshold, keep_largest=keep_largest, fill_holes=fill_holes,
        min_size_mm3=min_size_mm3,
    )
    if keep_largest is False and steps.keep_largest_union:  # --no-keep-largest: every component, of the union too
        from dataclasses import replace

        steps = replace(steps, keep_largest_union=())
    if tta is None:  # the model folder's default (config.json "tta"), off unless it says so
        tta = resolved.config.tta
    options = InferenceOptions(
        device=device, batch_size=batch_size, overlap=overlap, precision=precision, tta=tta, postprocess=steps,
    )
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

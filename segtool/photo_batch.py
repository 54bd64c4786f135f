"""Several photos in one forward pass: tasks with a fixed input size resize every photo to it.

A task with ``input_size`` (clothing: 320 x 208) resizes each photo to that size,
whatever its own (`segtool.pipeline.preprocess`), and its patch is that size: one
window per photo. So `segtool run` on many photos reads them ahead, stacks up to the
batch size of them and sends them through the network together; each photo's
labels are made on its own size a few rows at a time (`segtool.label_assembly`, as
`Segmenter.predict` does for one photo) and postprocessed on their own. A photo that
cannot be read fails alone.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator

import numpy as np


def batchable(spec, segmenter) -> bool:
    """Whether every image of the task becomes one window of the same size (photos resized to input_size)."""
    size = getattr(spec, "input_size", None)
    return (spec.ndim == 2 and size is not None and tuple(spec.patch_size) == tuple(size)
            and spec.locate is None and not segmenter.options.tta)


def predict_photos(segmenter, volumes: list, keep_probabilities: bool = False,
                   on_batch: Callable[[int, int], None] | None = None) -> list:
    """One `segtool.pipeline.Prediction` per photo, the photos' windows batched through the network."""
    import torch

    from segtool.pipeline import Prediction, _is_constant, label_counts, preprocess, probabilities_to_input_grid
    from segtool.postprocess import apply_postprocess, labels_from_probabilities

    spec = segmenter.spec
    steps = segmenter.options.postprocess or spec.postprocess
    live = [i for i, v in enumerate(volumes) if not _is_constant(v.array)]
    out = {i: segmenter._empty(volumes[i], keep_probabilities) for i in range(len(volumes)) if i not in live}
    if live:
        prepared = [preprocess(spec, volumes[i]) for i in live]
        # (C, rows, cols, photos) as a view of photo-major memory: each window is one contiguous photo
        image = torch.from_numpy(np.stack([p.array for p in prepared])).permute(1, 2, 3, 0)
        probs = segmenter.model_probabilities(image, slice_axis=2, on_batch=on_batch)
        for j, i in enumerate(live):
            volume = volumes[i]
            on_input = None
            if keep_probabilities:
                on_input = probabilities_to_input_grid(spec, probs[..., j], prepared[j])
                labels = labels_from_probabilities(on_input, steps.threshold)
            else:
                labels = assembled_labels(probs[..., j], prepared[j], steps.threshold)
            area = float(np.prod(volume.spacing))
            labels = apply_postprocess(labels, steps, area, affine=volume.affine, num_labels=len(spec.labels))
            counts = label_counts(labels, spec.num_classes)
            out[i] = Prediction(labels, on_input, {int(k): float(counts[k] * area) for k in spec.labels})
    return [out[i] for i in range(len(volumes))]


def assembled_labels(probs, prepared, threshold: float | None) -> np.ndarray:
    """uint8 labels on the photo's own grid from its model-grid probabilities (K, rows, cols).

    The labels `Segmenter.labels` makes (`segtool.label_assembly.image_labels`): only
    pixels on label boundaries get their class probabilities interpolated, a few rows at
    a time, so a 3000 x 4000 photo's class probabilities (14 classes: 670 MB) are never held.
    """
    from segtool.label_assembly import image_labels

    labels = image_labels(probs, tuple(prepared.oriented_shape), threshold)
    if prepared.reorientation is not None:
        labels = prepared.reorientation.undo(labels[None])[0]
    return labels


def batched_predictions(items: Iterable, segmenter, size: int, keep_probabilities: bool = False,
                        on_batch: Callable[[int, int], None] | None = None) -> Iterator[tuple]:
    """(case, future volume) pairs in, (case, future, prediction or None, seconds) out, ``size`` photos at a time.

    ``seconds`` is the case's share of its group's forward pass. A case whose photo
    cannot be read gets None (its future raises for the caller); if the group's
    prediction itself fails, every case gets None and is predicted on its own.
    """
    group: list = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield from _predict_group(group, segmenter, keep_probabilities, on_batch)
            group = []
    if group:
        yield from _predict_group(group, segmenter, keep_probabilities, on_batch)


def _predict_group(group: list, segmenter, keep_probabilities: bool, on_batch) -> Iterator[tuple]:
    start = time.perf_counter()
    readable = {}
    for i, (_, future) in enumerate(group):
        try:
            readable[i] = future.result()
        except Exception:  # noqa: BLE001 - the runner reports it when it asks the future
            continue
    predictions: dict[int, object] = {}
    try:
        made = predict_photos(segmenter, list(readable.values()), keep_probabilities, on_batch)
        predictions = dict(zip(readable, made))
    except Exception:  # noqa: BLE001 - each photo then runs (and fails, if it must) on its own
        predictions = {}
    share = (time.perf_counter() - start) / len(group)
    for i, (case, future) in enumerate(group):
        yield case, future, predictions.get(i), share

"""Several photos in one forward pass: tasks with a fixed input size resize every photo to it.

A task with ``input_size`` (clothing: 320 x 208) resizes each photo to that size,
whatever its own (`segtool.preprocess.preprocess`), and its patch is that size: one
window per photo. So `segtool run` on many photos works as a three-stage pipeline
(`run_photo_cases`):

- a reader thread reads and preprocesses up to a batch of photos ahead; when nothing
  reads a photo's values afterwards (no overlay, no QC) only its model-size copy is
  kept, so a folder of 12-megapixel photos never holds a batch of them at full size;
- the calling thread stacks up to the batch size of them (on an accelerator; one at a
  time on a CPU, `forward_step`) and sends them through the network together;
- a writer thread makes each photo's labels on its own size a few rows at a time
  (`segtool.label_assembly`, as `Segmenter.predict` does for one photo), postprocesses
  them (`segtool.cases.postprocess_labels`) and writes every output of each
  (`segtool.cases.write_case_outputs`) while the next batch goes through the network.

Results come back in input order. A photo that cannot be read fails alone; if a
batch's forward pass fails, its photos go through one at a time and fail alone.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    from segtool.cases import RunRequest


def batchable(segmenter) -> bool:
    """Whether every image becomes one window of the same size (photos resized to input_size), as the model
    the segmenter runs says (its folder's settings, not the task's declared defaults)."""
    spec = segmenter.spec
    size = getattr(spec, "input_size", None)
    return (spec.ndim == 2 and size is not None and tuple(spec.patch_size) == tuple(size)
            and spec.locate is None)


@dataclass
class PhotoInput:
    """A photo as read, and its model-space copy (None for a constant photo: nothing to segment)."""

    volume: object  # segtool.io.volume.Volume
    prepared: object | None  # segtool.preprocess.Prepared


def prepare_photo(spec, volume, consume_input: bool = False) -> PhotoInput:
    """Preprocess one photo; with ``consume_input`` its own values are given up (a zero placeholder of its shape)."""
    from segtool.preprocess import is_constant, preprocess

    if is_constant(volume.array):
        return PhotoInput(volume, None)
    prepared = preprocess(spec, volume, consume_input)
    if consume_input:
        volume.array = np.broadcast_to(np.zeros((), dtype=np.float32), volume.array.shape)
    return PhotoInput(volume, prepared)


def forward_photos(segmenter, prepared: Sequence, on_batch: Callable[[int, int], None] | None = None):
    """Model-space probabilities (K, rows, cols, photos) of preprocessed photos, batched through the network."""
    import torch

    # (C, rows, cols, photos) as a view of photo-major memory: each window is one contiguous photo
    image = torch.from_numpy(np.stack([p.array for p in prepared])).permute(1, 2, 3, 0)
    return segmenter.model_probabilities(image, slice_axis=2, on_batch=on_batch)


def photo_prediction(segmenter, photo: PhotoInput, probs, keep_probabilities: bool = False):
    """The `segtool.segmenter.Prediction` of one photo from its model-space probabilities (K, rows, cols)."""
    from segtool.cases import postprocess_labels
    from segtool.postprocess import labels_from_probabilities
    from segtool.preprocess import probabilities_to_input_grid
    from segtool.segmenter import Prediction

    spec, volume = segmenter.spec, photo.volume
    if photo.prepared is None:
        return segmenter.empty_prediction(volume, keep_probabilities)
    steps = segmenter.options.postprocess or spec.postprocess
    on_input = None
    if keep_probabilities:
        on_input = probabilities_to_input_grid(spec, probs, photo.prepared)
        labels = labels_from_probabilities(on_input, steps.threshold)
    else:
        labels = assembled_labels(probs, photo.prepared, steps.threshold)
    labels, volumes = postprocess_labels(spec, steps, volume, labels)
    return Prediction(labels, on_input, volumes, dict(spec.labels))


def predict_photos(segmenter, volumes: list, keep_probabilities: bool = False,
                   on_batch: Callable[[int, int], None] | None = None) -> list:
    """One `segtool.segmenter.Prediction` per photo, the photos' windows batched through the network."""
    photos = [prepare_photo(segmenter.spec, v) for v in volumes]
    live = [p for p in photos if p.prepared is not None]
    probs = forward_photos(segmenter, [p.prepared for p in live], on_batch) if live else None
    column = {id(p): j for j, p in enumerate(live)}
    return [photo_prediction(segmenter, p, None if p.prepared is None else probs[..., column[id(p)]],
                             keep_probabilities) for p in photos]


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


def _group_probabilities(segmenter, photos: dict, on_batch) -> dict:
    """{index: probabilities (K, rows, cols) or the exception} for the group's readable, non-constant photos."""
    live = [i for i, p in photos.items() if p.prepared is not None]
    if not live:
        return {}
    try:
        probs = forward_photos(segmenter, [photos[i].prepared for i in live], on_batch)
        return {i: probs[..., j] for j, i in enumerate(live)}
    except Exception:  # noqa: BLE001 - each photo then goes through on its own, and fails alone if it must
        out = {}
        for i in live:
            try:
                out[i] = forward_photos(segmenter, [photos[i].prepared], on_batch)[..., 0]
            except Exception as exc:  # noqa: BLE001
                out[i] = exc
        return out


def forward_step(segmenter, size: int) -> int:
    """Photos per forward pass in `run_photo_cases`: the batch size on an accelerator, one on a CPU.

    A CPU's cost is per pixel, so a batch of photos saves it nothing, while a batch holds
    back every photo's result (and the progress count, "cases 0/6" until all six are
    through) until the last one is; one at a time, each photo is written (and counted)
    while the next goes through the network.
    """
    device = getattr(segmenter, "device", None)
    return 1 if getattr(device, "type", "cpu") == "cpu" else size


def _finish_photo(request: "RunRequest", case, future: Future, probs, start: float, protected):
    """One photo's result: its labels from its probabilities (or the error of its read or forward pass),
    every output written (`segtool.cases.write_case_outputs`), or failed alone."""
    from segtool.cases import failed_case, failure_message, write_case_outputs

    plan = request.plan
    try:
        photo = future.result()
        request.pass_on_warnings([photo.volume])
        if isinstance(probs, Exception):
            raise probs
        plan.refuse_existing(plan.labels_path(case, photo.volume.kind))
        prediction = photo_prediction(request.segmenter, photo, probs, plan.probabilities)
        return write_case_outputs(request, case, photo.volume, prediction, start, protected)
    except Exception as exc:  # noqa: BLE001 - one failing photo must not stop the others
        return failed_case(request.spec, request.model_name, case.name, time.perf_counter() - start,
                           failure_message(exc, case.name), request.qc)


def run_photo_cases(request: "RunRequest", cases: Sequence, protected=()) -> list:
    """`segtool.runner.run_cases` for a batchable task: read ahead, batched forward passes, writing behind.

    ``request.on_result`` is called in the calling thread, in input order. At most two batches'
    photos wait to be written, so a slow disk holds back the network, not memory.
    """
    from segtool.cases import read_ahead, read_case

    spec, segmenter, plan = request.spec, request.segmenter, request.plan
    on_result, on_batch, on_case_start = request.on_result, request.on_batch, request.on_case_start
    size = max(1, segmenter.options.batch_size or spec.run_batch_size)
    consume = not plan.overlay and request.qc is None  # nothing reads a photo's values after its forward pass

    def read(case):  # read as the task reads its inputs; prepared as the model was trained (segmenter.spec)
        return prepare_photo(segmenter.spec, read_case(case, spec, request.allow_uneven), consume)

    def finish(case, future: Future, probs, share: float):
        return _finish_photo(request, case, future, probs, time.perf_counter() - share, protected)

    results: list = []
    written: deque[Future] = deque()

    def report(future: Future) -> None:
        results.append(future.result())
        on_result(results[-1])

    def report_written() -> None:
        while written and (written[0].done() or len(written) > 2 * size):
            report(written.popleft())

    step = forward_step(segmenter, size)
    reads = read_ahead(cases, read, depth=size)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="segtool-write") as writer:
        while True:
            group = [item for _, item in zip(range(step), reads)]
            if not group:
                break
            start = time.perf_counter()
            if on_case_start is not None:
                on_case_start(group[0][0])
            photos = {}
            for i, (_, future) in enumerate(group):
                try:
                    photos[i] = future.result()
                except Exception:  # noqa: BLE001 - finish() reports it
                    continue
            report_written()  # photos written while this group was read: counted before its forward pass
            probs = _group_probabilities(segmenter, photos, on_batch)
            share = (time.perf_counter() - start) / len(group)
            for i, (case, future) in enumerate(group):
                written.append(writer.submit(finish, case, future, probs.get(i), share))
            report_written()
        while written:
            report(written.popleft())
    return results

"""The hooks a segtool plugin may implement. Markers and specs only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import click

    from segtool.spec import TaskSpec, WeightsRef
    from segtool.weights import HubSettings

PROJECT = "segtool"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def segtool_register_tasks(register: Callable[["TaskSpec"], None]) -> None:
    """Declare tasks: call ``register(TaskSpec(...))`` once per task.

    The core rejects duplicate names (naming both plugins) and invalid specs.
    """


@hookspec
def segtool_register_commands(cli: "click.Group") -> None:
    """Add click commands to the ``segtool`` group (optional)."""


@hookspec(firstresult=True)
def segtool_training_sampler(spec: "TaskSpec", cases: list, patch_size: tuple, batch_size: int,
                             labels_map: "dict[int, int] | None"):
    """Supply a task's own training batches (for example images synthesised from label maps), or None to pass.

    ``cases`` are the preprocessed training cases (each with ``name``, ``image``
    (C, *spatial), ``label`` (*spatial) on the model grid and ``foreground``);
    ``patch_size`` is what one sample must measure (a one-slice 3D patch for a
    slice-wise task). Return an object with ``sample(rng) -> (images, labels)``:
    ``images`` float32 (batch_size, C, *patch_size), ``labels`` int64
    (batch_size, *patch_size), drawn only from the ``numpy.random.Generator`` given
    (so a run stays reproducible and resumable). ``labels_map`` is the run's source ->
    task label map (``--labels-map`` or the task's own; None without one): a generator
    that synthesises from source labels merges them with it. An implementation may
    leave out the arguments it does not use. The task's augmentation recipe is
    still applied after it. The first non-None answer wins; the core's patch
    sampler (random crops with foreground oversampling) is the default.
    """


@hookspec(firstresult=True)
def segtool_resolve_weights(ref: "WeightsRef", filename: str, hub: "HubSettings") -> str | None:
    """Return a local path for one file (``filename``) of ``ref``, or None to pass.

    ``hub`` carries the cache directory, endpoint and offline flag in force.
    The first non-None answer wins. A site mirror or a shared drive can answer
    here; the Hugging Face Hub resolver is the built-in ``trylast`` implementation.
    Whatever path is returned is still checked against the pinned sha256.
    """

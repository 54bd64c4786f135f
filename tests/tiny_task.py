"""A test task with a one-convolution model and real, bundled safetensors weights.

The model is a 1x1 convolution whose weights make class 1 win where the
(z-scored) intensity is positive, so its output is predictable: bright voxels
become label 1.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

from segtool.hookspecs import hookimpl
from segtool.spec import Postprocess, TaskSpec, WeightsFile, WeightsRef


def one_conv(spatial_dims: int, in_channels: int, out_channels: int, kernel: int = 1):
    import torch

    conv_cls = torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d
    return conv_cls(in_channels, out_channels, kernel_size=kernel, padding=kernel // 2)


def one_conv_state(spatial_dims: int, in_channels: int, kernel: int = 1) -> dict:
    """Weights: logit(class 1) - logit(class 0) = 8 * mean(channels), of the voxel itself (``kernel`` 1)
    or, with ``kernel`` 3, of the next voxel along the first axis (not flip-symmetric, so TTA shows)."""
    import torch

    shape = (2, in_channels) + (kernel,) * spatial_dims
    weight = torch.zeros(shape)
    if kernel == 1:
        weight[1] = 8.0 / in_channels
    else:
        weight[(1, slice(None), kernel - 1) + (kernel // 2,) * (spatial_dims - 1)] = 8.0 / in_channels
    return {"weight": weight, "bias": torch.zeros(2)}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_model_folder(folder: Path, spec: TaskSpec) -> tuple[WeightsFile, WeightsFile]:
    """model.safetensors + config.json for ``spec``'s one-conv model."""
    from safetensors.torch import save_file

    from segtool.model_config import ModelConfig

    folder.mkdir(parents=True, exist_ok=True)
    state = one_conv_state(spec.network_dims, spec.network_in_channels, spec.model_kwargs.get("kernel", 1))
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(ModelConfig.for_spec(spec).to_json(), encoding="utf-8")
    return (
        WeightsFile("model.safetensors", sha256(folder / "model.safetensors")),
        WeightsFile("config.json", sha256(folder / "config.json")),
    )


def make_spec(name: str = "tiny", ndim: int = 3, channels=("t1",), models=None, **overrides) -> TaskSpec:
    values = dict(
        name=name,
        description=f"tiny {ndim}D test task",
        channels=tuple(channels),
        ndim=ndim,
        labels={1: "bright"},
        model_factory=one_conv,
        model_kwargs={},
        patch_size=(8, 8, 4) if ndim == 3 else (16, 16),
        orientation="RAS" if ndim == 3 else None,
        target_spacing=(1.0, 1.0, 2.0) if ndim == 3 else None,
        normalization="zscore",
        batch_size=3,
        models=models or {},
        postprocess=Postprocess(),
    )
    values.update(overrides)
    return TaskSpec(**values)


def make_bundled_package(root: Path, package: str, spec_without_models: TaskSpec) -> WeightsRef:
    """A package on disk holding the tiny model's files; returns its WeightsRef."""
    pkg = root / package
    weights, config = write_model_folder(pkg, spec_without_models)
    (pkg / "__init__.py").write_text("")
    return WeightsRef(weights=weights, config=config, package=package)


class TaskPlugin:
    """Registers the given specs."""

    def __init__(self, *specs: TaskSpec):
        self.specs = specs

    @hookimpl
    def segtool_register_tasks(self, register):
        for spec in self.specs:
            register(spec)


def app_with(*specs: TaskSpec, load_entrypoints: bool = False):
    from segtool.app import App
    from segtool.plugins import make_plugin_manager

    def factory():
        pm = make_plugin_manager(load_entrypoints=load_entrypoints)
        pm.register(TaskPlugin(*specs), name="tests.tiny")
        return pm

    return App(plugin_manager_factory=factory)

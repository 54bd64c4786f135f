"""Each built-in task's declared architecture accepts its declared patch and channels."""

import pytest
import torch

from segtool.app import App

BUILTIN = ["spinal-gm", "brain-tissue", "brain-tumour", "brain-tumour-2d", "disc", "clothing"]


@pytest.fixture(scope="module")
def registry():
    return App().registry


@pytest.mark.parametrize("name", BUILTIN)
def test_forward_pass_on_zeros_of_patch_size(registry, name):
    spec = registry.get(name)
    model = spec.model_factory(**spec.model_kwargs).eval()
    assert all(p % d == 0 for p, d in zip(spec.patch_size, model.divisor)), "patch not divisible by the net's strides"
    with torch.inference_mode():
        out = model(torch.zeros(1, spec.in_channels, *spec.patch_size))
    assert tuple(out.shape) == (1, spec.num_classes, *spec.patch_size)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_spec_is_complete(registry, name):
    spec = registry.get(name)
    assert spec.citation and spec.licence and spec.description
    assert spec.model_kwargs["in_channels"] == spec.in_channels
    assert spec.model_kwargs["out_channels"] == spec.num_classes
    assert (spec.target_spacing is None) == (spec.ndim == 2)

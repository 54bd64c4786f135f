"""Each built-in task's declared architecture accepts its declared patch and channels."""

import pytest
import torch

from segtool.app import App



def builtin_task_names() -> list[str]:
    """The tasks registered by segtool's own entry points (what is registered, never a hard-coded list,
    so a user's installed plugins neither break nor join these tests)."""
    from importlib.metadata import distribution

    plugins = {ep.name for ep in distribution("segtool").entry_points if ep.group == "segtool"}
    registry = App().registry
    return sorted(spec.name for spec in registry if registry.owners[spec.name] in plugins)


BUILTIN = builtin_task_names()


@pytest.fixture(scope="module")
def registry():
    return App().registry


@pytest.mark.parametrize("name", BUILTIN)
def test_forward_pass_on_zeros_of_patch_size(registry, name):
    spec = registry.get(name)
    model = spec.build_network().eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, spec.in_channels, *spec.patch_size))
    assert tuple(out.shape) == (1, spec.num_classes, *spec.patch_size)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_spec_is_complete(registry, name):
    spec = registry.get(name)
    assert spec.citation and spec.licence and spec.description
    assert spec.network is not None, "built-in tasks name a network family"
    assert not {"spatial_dims", "in_channels", "out_channels"} & set(spec.model_kwargs), "the core supplies these"
    assert (spec.target_spacing is None) == (spec.ndim == 2)

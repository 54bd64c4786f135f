"""Every registered network family: any input size, a real training step, safetensors round trip, registry rules."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from segtool.networks import CORE_ARGUMENTS, FAMILIES, build_network, family_class, parameter_count

#: Sizes no family's total stride divides.
ODD_SIZES = {2: (37, 50), 3: (19, 22, 9)}
IN_CHANNELS, OUT_CHANNELS = 2, 3

#: (family, spatial dims) for every dimension each registered family supports.
SUPPORTED = [(family, dims) for family, (_, _, supported) in FAMILIES.items() for dims in supported]
UNSUPPORTED = [(family, dims) for family, (_, _, supported) in FAMILIES.items() for dims in (2, 3) if dims not in supported]

#: A narrower setting of each family's width knob (every family must have one).
NARROWER = {
    "unet": {"features": (8, 16, 32, 64)},
    "attention_unet": {"features": (8, 16, 32, 64)},
    "res_se_unet": {"features": (8, 16, 32, 64)},
    "deeplabv3plus": {"features": (8, 16, 32, 64)},
    "dilated_gm": {"filters": 16},
    "ensemble": {"members": [{"network": "unet", "features": (8, 16, 32, 64)},
                             {"network": "res_se_unet", "features": (8, 16, 32, 64)}]},
}

#: Arguments a family cannot do without (an ensemble has no members of its own choosing).
REQUIRED = {
    "ensemble": {"members": [{"network": "unet"}, {"network": "res_se_unet"}]},
}


def ids(case):
    family, dims = case
    return f"{family}-{dims}d"


def make(family: str, dims: int, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(family, dims, IN_CHANNELS, OUT_CHANNELS, **{**REQUIRED.get(family, {}), **kwargs})


def odd_input(dims: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, IN_CHANNELS, *ODD_SIZES[dims], generator=generator)


def training_step(model: torch.nn.Module, x: torch.Tensor) -> None:
    """One SGD step of cross-entropy against fixed random labels."""
    model.train()
    labels = torch.randint(0, OUT_CHANNELS, (x.shape[0], *x.shape[2:]), generator=torch.Generator().manual_seed(2))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    optimiser.zero_grad()
    F.cross_entropy(model(x), labels).backward()
    optimiser.step()


@pytest.mark.parametrize("case", SUPPORTED, ids=ids)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_output_has_the_input_spatial_size_for_odd_sizes(case, train):
    family, dims = case
    model = make(family, dims).train(train)
    x = odd_input(dims)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, OUT_CHANNELS, *ODD_SIZES[dims])


@pytest.mark.parametrize("family", [f for f, (_, _, dims) in FAMILIES.items() if 3 in dims])
def test_anisotropic_strides_keep_a_thin_axis(family):
    if "strides" not in inspect.signature(family_class(family)).parameters:
        pytest.skip(f"{family} has no strides knob")
    model = make(family, 3, features=(8, 16, 32), strides=[(2, 2, 1), (2, 2, 1)]).eval()
    assert tuple(model.divisor) == (4, 4, 1)
    x = torch.randn(1, IN_CHANNELS, 19, 22, 3)
    with torch.no_grad():
        assert model(x).shape == (1, OUT_CHANNELS, 19, 22, 3)


@pytest.mark.parametrize("case", SUPPORTED, ids=ids)
def test_training_step_gives_finite_gradients_and_changes_the_weights(case):
    family, dims = case
    model = make(family, dims)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training_step(model, odd_input(dims))
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert [name for name, g in grads.items() if g is None] == [], "parameters outside the graph"
    assert all(torch.isfinite(g).all() for g in grads.values())
    after = model.state_dict()
    moved = [name for name, g in grads.items() if g.abs().sum() > 0]
    assert moved, "no gradient at all"
    assert [name for name in moved if torch.equal(before[name], after[name])] == []


@pytest.mark.parametrize("case", SUPPORTED, ids=ids)
def test_state_dict_round_trips_through_safetensors(case, tmp_path):
    family, dims = case
    model = make(family, dims, seed=0)
    x = odd_input(dims)
    training_step(model, x)  # also moves any batch-norm running statistics off their initial values
    path = tmp_path / "weights.safetensors"
    save_file(model.state_dict(), str(path))

    fresh = make(family, dims, seed=1).eval()
    model.eval()
    with torch.no_grad():
        expected = model(x)
        assert not torch.equal(fresh(x), expected), "a fresh network should start elsewhere"
        fresh.load_state_dict(load_file(str(path)))
        assert torch.equal(fresh(x), expected)


@pytest.mark.parametrize("case", UNSUPPORTED, ids=ids)
def test_build_network_refuses_an_unsupported_dimension(case):
    family, dims = case
    with pytest.raises(ValueError, match=f"not {dims}D"):
        build_network(family, dims, 1, 2)
    with pytest.raises(ValueError):  # the class itself refuses too, not only the registry
        family_class(family)(spatial_dims=dims, in_channels=1, out_channels=2)


def test_two_d_only_families_are_declared_so():
    assert {("deeplabv3plus", 3), ("dilated_gm", 3)} <= set(UNSUPPORTED)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("argument", CORE_ARGUMENTS)
def test_build_network_refuses_core_arguments_among_the_knobs(family, argument):
    # build_network's named parameters make Python raise TypeError before its own ValueError check.
    with pytest.raises((TypeError, ValueError), match=argument):
        build_network(family, FAMILIES[family][2][0], 1, 2, **{argument: 4})


def test_build_network_refuses_an_unknown_family():
    with pytest.raises(ValueError, match="unknown network family"):
        build_network("unett", 2, 1, 2)


def test_every_family_has_a_narrower_setting():
    assert set(NARROWER) == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_count_is_positive_and_follows_the_width(family):
    dims = FAMILIES[family][2][0]
    default, narrow = make(family, dims), make(family, dims, **NARROWER[family])
    assert parameter_count(default) == sum(p.numel() for p in default.parameters())
    assert parameter_count(default) > parameter_count(narrow) > 0


@pytest.mark.parametrize("case", SUPPORTED, ids=ids)
def test_bf16_autocast_forward_on_cpu_is_finite_and_close_to_fp32(case):
    family, dims = case
    model = make(family, dims).eval()
    x = odd_input(dims)
    with torch.no_grad():
        reference = model(x)
        if dims == 2:  # the layout segtool.precision uses for 2D at reduced precision
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.shape == reference.shape
    assert torch.isfinite(out).all()
    assert (out.float() - reference).abs().max() <= 0.08 * reference.abs().max() + 1e-3


def test_dilated_gm_matches_the_published_keras_parameter_count():
    model = build_network("dilated_gm", 2, 1, 1, filters=32)
    running = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    assert parameter_count(model) + running == 127_585


def test_unet_state_dict_keys_are_those_of_trained_checkpoints():
    model = build_network("unet", 3, 1, 2, strides=[(2, 2, 1), (2, 2, 2), (2, 2, 1)])
    convs_and_norms = [f"{i}.weight" for i in (0, 1, 3, 4)] + ["1.bias", "4.bias"]
    expected = {f"{part}.{i}.{key}" for part in ("encoders",) for i in range(4) for key in convs_and_norms}
    expected |= {f"decoders.{i}.{key}" for i in range(3) for key in convs_and_norms}
    expected |= {f"upsamplers.{i}.weight" for i in range(3)} | {"head.weight", "head.bias"}
    assert set(model.state_dict()) == expected
    assert model.divisor == (8, 8, 2)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_res_se_gate_depends_on_the_image(norm):
    from segtool.networks.res_se_unet import ResSEBlock

    torch.manual_seed(0)
    block = ResSEBlock(2, 4, 32, se_reduction=4, norm=norm).eval()
    weights = []
    block.se.register_forward_hook(lambda module, args, out: weights.append(out))
    with torch.no_grad():
        block(torch.randn(1, 4, 12, 12))
        block(3 * torch.randn(1, 4, 12, 12) + 1)
    assert weights[0].shape == (1, 32, 1, 1)
    assert (weights[0] - weights[1]).abs().max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
def test_a_normalisation_outside_instance_and_batch_is_refused(family):
    if "norm" not in inspect.signature(family_class(family)).parameters:
        pytest.skip(f"{family} has no norm knob")
    with pytest.raises(ValueError, match="norm must be one of"):
        build_network(family, FAMILIES[family][2][0], 1, 2, norm="group")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_each_normalisation_choice_builds_and_trains(family, norm):
    if "norm" not in inspect.signature(family_class(family)).parameters:
        pytest.skip(f"{family} has no norm knob")
    dims = FAMILIES[family][2][0]
    model = make(family, dims, norm=norm, dropout=0.2)
    norms = {type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__}
    assert norms == {f"{norm.capitalize()}Norm{dims}d"}
    training_step(model, odd_input(dims))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_ensemble_gives_the_mean_probability_of_its_members():
    members = [{"network": "unet", "features": (8, 16, 32)}, {"network": "res_se_unet", "features": (8, 16, 32)}]
    ensemble = make("ensemble", 2, members=members).eval()
    x = odd_input(2)
    with torch.no_grad():
        expected = sum(torch.softmax(m(x), dim=1) for m in ensemble.members) / 2
        got = torch.softmax(ensemble(x), dim=1)
        single = torch.softmax(ensemble.members[0](x), dim=1)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, single, atol=1e-3), "the second member must count"
    assert sorted({k.split(".")[1] for k in ensemble.state_dict()}) == ["0", "1"]


@pytest.mark.parametrize("members, message", [
    ([{"network": "unet"}], "at least two"),
    ([{"network": "unet"}, {"features": (8, 16)}], "member 1 needs 'network'"),
    ([{"network": "unet"}, {"network": "ensemble", "members": []}], "other than 'ensemble'"),
    ([{"network": "unet"}, {"network": "deeplabv3plus"}], "2D only, not 3D"),
])
def test_ensemble_refuses_what_cannot_be_one(members, message):
    with pytest.raises(ValueError, match=message):
        build_network("ensemble", 3, 1, 2, members=members)

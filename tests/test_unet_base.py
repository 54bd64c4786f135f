"""The U-Net skeleton shared by unet, attention_unet and res_se_unet: checkpoint keys, init order, gates, shapes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from segtool.networks import build_network
from segtool.networks.attention_unet import AttentionGate
from segtool.networks.res_se_unet import ResSEBlock
from segtool.networks.unet import ConvBlock
from segtool.networks.unet_base import UNetBase, layer_types

U_NETS = ("unet", "attention_unet", "res_se_unet")
FEATURES = (8, 12, 16)
STRIDES = {2: [(2, 2), (2, 1)], 3: [(2, 2, 1), (1, 2, 2)]}
IN, OUT = 2, 3


def conv_block_keys(norm: str = "instance") -> set[str]:
    keys = {"0.weight", "1.weight", "1.bias", "3.weight", "4.weight", "4.bias"}
    if norm == "batch":
        keys |= {f"{i}.{b}" for i in (1, 4) for b in ("running_mean", "running_var", "num_batches_tracked")}
    return keys


def res_se_block_keys(shortcut: bool) -> set[str]:
    keys = {"conv1.weight", "norm1.weight", "norm1.bias", "conv2.weight", "norm2.weight", "norm2.bias",
            "se.squeeze.weight", "se.squeeze.bias", "se.excite.weight", "se.excite.bias"}
    return keys | ({"shortcut.0.weight", "shortcut.1.weight", "shortcut.1.bias"} if shortcut else set())


def expected_keys(family: str, levels: int, first_has_shortcut: bool = True) -> set[str]:
    """The state-dict keys of trained checkpoints, written out from the layout (not read off a model)."""
    if family == "res_se_unet":
        encoder = [res_se_block_keys(first_has_shortcut)] + [res_se_block_keys(True)] * (levels - 1)
        decoder = [res_se_block_keys(True)] * (levels - 1)
    else:
        encoder, decoder = [conv_block_keys()] * levels, [conv_block_keys()] * (levels - 1)
    keys = {f"encoders.{i}.{k}" for i, block in enumerate(encoder) for k in block}
    keys |= {f"decoders.{i}.{k}" for i, block in enumerate(decoder) for k in block}
    keys |= {f"upsamplers.{i}.weight" for i in range(levels - 1)} | {"head.weight", "head.bias"}
    if family == "attention_unet":
        gate = ("theta_x.weight", "phi_g.weight", "phi_g.bias", "psi.weight", "psi.bias")
        keys |= {f"gates.{i}.{k}" for i in range(levels - 1) for k in gate}
    return keys


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("family", U_NETS)
def test_state_dict_keys_and_shapes_are_those_of_trained_checkpoints(family, dims):
    model = build_network(family, dims, IN, OUT, features=FEATURES, strides=STRIDES[dims])
    state = model.state_dict()
    assert set(state) == expected_keys(family, len(FEATURES))
    parts = list(dict.fromkeys(key.split(".")[0] for key in state))
    assert parts == ["encoders"] + (["gates"] if family == "attention_unet" else []) + ["upsamplers", "decoders", "head"]
    # decoders run bottom-up: upsampler 0 takes the deepest level back through its stride
    assert state["upsamplers.0.weight"].shape == (16, 12, *STRIDES[dims][1])
    assert state["upsamplers.1.weight"].shape == (12, 8, *STRIDES[dims][0])
    assert state["head.weight"].shape == (OUT, 8, *([1] * dims))
    if family == "attention_unet":
        assert state["gates.0.theta_x.weight"].shape == (6, 12, *STRIDES[dims][1])
        assert state["gates.0.phi_g.weight"].shape == (6, 16, *([1] * dims))


def test_res_se_first_block_keeps_an_identity_shortcut_when_the_channels_match():
    model = build_network("res_se_unet", 2, FEATURES[0], OUT, features=FEATURES)
    assert isinstance(model.encoders[0].shortcut, nn.Identity)
    assert set(model.state_dict()) == expected_keys("res_se_unet", len(FEATURES), first_has_shortcut=False)


def test_batch_norm_adds_only_its_running_statistics_to_the_keys():
    model = build_network("attention_unet", 2, IN, OUT, features=FEATURES, norm="batch", dropout=0.3)
    encoder_keys = {k[len("encoders.0."):] for k in model.state_dict() if k.startswith("encoders.0.")}
    assert encoder_keys == conv_block_keys("batch")


def reference_build(family: str, dims: int) -> dict[str, torch.Tensor]:
    """The family built by hand in the documented order: encoders top-down, then per level
    (bottom-up) gate, upsampler, decoder, then the head; keys grouped as the checkpoints have them."""
    strides = STRIDES[dims]

    def block(i: int, o: int, stride=1) -> nn.Module:
        if family == "res_se_unet":
            return ResSEBlock(dims, i, o, stride)
        return ConvBlock(dims, i, o, stride)

    parts: dict[str, list[nn.Module]] = {"encoders": [], "gates": [], "upsamplers": [], "decoders": []}
    parts["encoders"].append(block(IN, FEATURES[0]))
    for i, stride in enumerate(strides):
        parts["encoders"].append(block(FEATURES[i], FEATURES[i + 1], stride))
    for i in reversed(range(len(strides))):
        if family == "attention_unet":
            parts["gates"].append(AttentionGate(dims, FEATURES[i], FEATURES[i + 1], strides[i]))
        up = layer_types(dims).up_conv(FEATURES[i + 1], FEATURES[i], strides[i], stride=strides[i], bias=False)
        parts["upsamplers"].append(up)
        parts["decoders"].append(block(2 * FEATURES[i], FEATURES[i]))
    head = layer_types(dims).conv(FEATURES[0], OUT, 1)
    state = {}
    for part, modules in parts.items():
        for index, module in enumerate(modules):
            state.update({f"{part}.{index}.{k}": v for k, v in module.state_dict().items()})
    state.update({f"head.{k}": v for k, v in head.state_dict().items()})
    return state


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("family", U_NETS)
def test_a_seeded_build_draws_its_weights_in_the_documented_order(family, dims):
    torch.manual_seed(11)
    state = build_network(family, dims, IN, OUT, features=FEATURES, strides=STRIDES[dims]).state_dict()
    torch.manual_seed(11)
    reference = reference_build(family, dims)
    assert list(state) == list(reference)
    assert [k for k in state if not torch.equal(state[k], reference[k])] == []


@pytest.mark.parametrize("dims, size, divisor", [(2, (37, 50), (4, 2)), (3, (19, 22, 3), (2, 4, 2))])
@pytest.mark.parametrize("family", U_NETS)
def test_forward_keeps_the_input_size_through_padding_and_crop(family, dims, size, divisor):
    model = build_network(family, dims, IN, OUT, features=FEATURES, strides=STRIDES[dims]).eval()
    assert model.divisor == divisor
    x = torch.randn(2, IN, *size, generator=torch.Generator().manual_seed(3))
    end_padded = [0] * (2 * dims)
    for axis, (n, d) in enumerate(zip(size, divisor)):  # F.pad lists the last axis first
        end_padded[2 * (dims - 1 - axis) + 1] = -n % d
    with torch.no_grad():
        out = model(x)
        by_hand = model(torch.nn.functional.pad(x, end_padded))  # zeros at the end, a multiple of the divisor
    assert out.shape == (2, OUT, *size)
    assert torch.equal(out, by_hand[(..., *(slice(0, n) for n in size))])


class Recording(nn.Module):
    """A gate that records what it is given and scales the skip by ``factor``."""

    def __init__(self, skip_channels: int, coarse_channels: int, stride, factor: float, seen: list):
        super().__init__()
        self.channels, self.stride, self.factor, self.seen = (skip_channels, coarse_channels), tuple(stride), factor, seen

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.channels, self.stride, tuple(skip.shape), tuple(coarse.shape)))
        return skip * self.factor


def tiny(dims: int, gate=None) -> UNetBase:
    torch.manual_seed(0)
    return UNetBase(dims, IN, OUT, FEATURES, STRIDES[dims], lambda i, o, s: ConvBlock(dims, i, o, s), gate).eval()


@pytest.mark.parametrize("dims", [2, 3])
def test_a_gate_gets_each_skip_and_the_coarser_feature_bottom_up(dims):
    seen: list = []
    model = tiny(dims, lambda s, c, stride: Recording(s, c, stride, 1.0, seen))
    size = (16, 12, 8)[:dims]
    with torch.no_grad():
        gated = model(torch.randn(1, IN, *size, generator=torch.Generator().manual_seed(4)))
    first, second = STRIDES[dims]
    mid = tuple(n // s for n, s in zip(size, first))
    low = tuple(n // s for n, s in zip(mid, second))
    assert seen == [((12, 16), second, (1, 12, *mid), (1, 16, *low)),
                    ((8, 12), first, (1, 8, *size), (1, 12, *mid))]
    # an identity gate leaves the network the plain skeleton: same weights, same output
    with torch.no_grad():
        plain = tiny(dims)(torch.randn(1, IN, *size, generator=torch.Generator().manual_seed(4)))
    assert torch.equal(gated, plain)


def test_what_the_gate_returns_is_what_the_decoder_concatenates():
    seen: list = []
    x = torch.randn(1, IN, 16, 12, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        kept = tiny(2, lambda s, c, stride: Recording(s, c, stride, 1.0, seen))(x)
        dropped = tiny(2, lambda s, c, stride: Recording(s, c, stride, 0.0, seen))(x)
    assert not torch.allclose(kept, dropped, atol=1e-3)


def test_the_u_net_families_share_the_base_and_import_no_private_name():
    networks = Path(__file__).resolve().parents[1] / "segtool" / "networks"
    for family in U_NETS:
        assert isinstance(build_network(family, 2, 1, 2), UNetBase)
    private = []
    for path in networks.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("segtool"):
                private += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert private == []

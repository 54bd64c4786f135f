"""Read the published Keras gmseg weights (SCT ``sct_deepseg_gm``) into `DilatedGM`.

The ``challenge`` and ``large`` models of Perone et al. 2018 (spinalcordtoolbox/
deepseg_gm_models, neuropoly/gmseg) are Keras 2.0.6 weights-only HDF5 files: the root
attribute ``layer_names`` lists every layer in the order Keras saved them, and each
layer's group lists its arrays in its ``weight_names`` attribute (kernels are HWIO,
i.e. height, width, in, out). There is no architecture in the file; SCT rebuilds it in
``spinalcordtoolbox/deepseg_gm/model.py::create_model`` and `DilatedGM` mirrors it.

Mapping (Keras layer -> PyTorch module):

* ``conv2d_1``, ``conv2d_2`` -> ``conv1.conv``, ``conv2.conv``
* ``rate2_1``, ``rate2_2``, ``branch1x1_1``, ``branch1x1_2``, ``amort`` -> ``<name>.conv``
* ``rate{r}_{k}`` (r = the four pyramid rates, k = 1, 2) -> ``pyramid[i][k-1].conv``
* ``predictions`` -> ``predictions``
* ``batch_normalization_N``: Keras numbers them in creation order, which is not the
  order of the file. Each follows one convolution (or the concatenation), so they are
  paired first-in-first-out in file order: every BN takes the oldest convolution (or
  ``concatenate_*``) that has no BN yet. For the published files this gives
  conv2d_1..rate2_2 -> BN 1-4, branch1x1_1, rate6_1, ..., rate24_1 -> BN 5, 7, 9, 11,
  13, branch1x1_2, rate6_2, ..., rate24_2 -> BN 6, 8, 10, 12, 14, the concatenation ->
  BN 15, amort -> BN 16, which is also Keras' creation order.

Every array's shape is checked against its module; a missing, unexpected or misshaped
layer fails with one line naming it (`KerasWeightsError`).

Output: Keras ends in a one-channel sigmoid. By default the network returned has two
output channels, background logit 0 and gray-matter logit z, so that softmax over them
is exactly (1 - sigmoid(z), sigmoid(z)): the segtool core takes a softmax over the
task's classes. ``sigmoid=True`` returns the one-channel network instead (its output is
the Keras logit; apply ``torch.sigmoid`` for the Keras probability).

h5py is optional (``pip install segtool[keras]``) and imported only here.
"""

from __future__ import annotations

import os
import re
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from segtool.errors import SegtoolError, UsageError

if TYPE_CHECKING:
    from segtool.networks.dilated_gm import DilatedGM

__all__ = ["KerasWeightsError", "load_gmseg_keras", "read_keras_weights", "to_two_class"]

_CONV_KEYS = ("kernel", "bias")
_BN_KEYS = ("gamma", "beta", "moving_mean", "moving_variance")
_FIXED_CONVS = ("conv2d_1", "conv2d_2", "rate2_1", "rate2_2", "branch1x1_1", "branch1x1_2", "amort", "predictions")
_RATE = re.compile(r"^rate(\d+)_([12])$")
_BN = re.compile(r"^batch_normalization_\d+$")
_CONCAT = re.compile(r"^concatenate_\d+$")
# Layers that carry no weights in the published graph; anything else with weights is "extra".
_WEIGHTLESS = re.compile(r"^(input|dropout|global_average_pooling2d|repeat_vector|reshape|concatenate|activation)_\d+$")


class KerasWeightsError(SegtoolError):
    """The HDF5 file is not a gmseg weights file that fits `DilatedGM` (one line, names the layer)."""


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras_weights(path: str | os.PathLike) -> tuple[list[str], dict[str, dict[str, "object"]]]:
    """(layer names in file order, {layer: {"kernel"|"bias"|"gamma"|...: numpy array}}) of a Keras HDF5.

    Reads weights-only files (``layer_names`` at the root) and whole-model files
    (``layer_names`` under ``model_weights``).
    """
    try:
        import h5py
    except ImportError:
        raise UsageError("reading Keras HDF5 weights needs h5py: pip install segtool[keras]") from None
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise KerasWeightsError(f"Keras weights {path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise KerasWeightsError(f"Keras weights {path}: not an HDF5 file ({exc})") from None
    with f:
        root = f
        if "layer_names" not in root.attrs and "model_weights" in f:
            root = f["model_weights"]
        if "layer_names" not in root.attrs:
            raise KerasWeightsError(f"Keras weights {path}: no 'layer_names' attribute (not a Keras weights file)")
        names = [_text(n) for n in root.attrs["layer_names"]]
        arrays: dict[str, dict[str, object]] = {}
        for name in names:
            if name not in root:
                raise KerasWeightsError(f"Keras weights {path}: layer {name!r} is listed but has no group")
            group = root[name]
            entries = {}
            for wname in (_text(w) for w in group.attrs.get("weight_names", [])):
                if wname not in group:
                    raise KerasWeightsError(f"Keras weights {path}: layer {name!r} lists {wname!r} but has no such array")
                key = wname.rsplit("/", 1)[-1].split(":", 1)[0]
                if key in entries:
                    raise KerasWeightsError(f"Keras weights {path}: layer {name!r} has two {key!r} arrays")
                entries[key] = np.asarray(group[wname], dtype=np.float32)
            arrays[name] = entries
    return names, arrays


def _plan(names: list[str], arrays: dict[str, dict], source: str):
    """Check the layer set; return (pyramid rates, {conv: its BN layer name}, the concatenation's BN)."""
    rates: dict[int, set[int]] = {}
    for name in names:
        m = _RATE.match(name)
        if m and int(m.group(1)) != 2:
            rates.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    pyramid = tuple(sorted(rates))
    if len(pyramid) != 4:
        raise KerasWeightsError(
            f"{source}: expected four pyramid rates (rate6_*, rate12_*, ...), found {list(pyramid) or 'none'}"
        )
    convs = list(_FIXED_CONVS) + [f"rate{r}_{k}" for r in pyramid for k in (1, 2)]
    for name in convs:
        if name not in arrays:
            raise KerasWeightsError(f"{source}: missing layer {name!r}")
    known = set(convs)
    for name in names:
        if name in known or _BN.match(name):
            continue
        if arrays[name]:
            raise KerasWeightsError(f"{source}: unexpected layer {name!r} with weights ({', '.join(arrays[name])})")
        if not _WEIGHTLESS.match(name):
            raise KerasWeightsError(f"{source}: unexpected layer {name!r}")

    # Pair every BN with the oldest convolution/concatenation still waiting for one.
    waiting: deque[str] = deque()
    bn_of: dict[str, str] = {}
    for name in names:
        if (name in known and name != "predictions") or _CONCAT.match(name):
            waiting.append(name)
        elif _BN.match(name):
            if not waiting:
                raise KerasWeightsError(f"{source}: unexpected layer {name!r} (no convolution before it)")
            bn_of[waiting.popleft()] = name
    concat = [n for n in names if _CONCAT.match(n)]
    if len(concat) != 1:
        raise KerasWeightsError(f"{source}: expected one concatenate layer, found {len(concat)}")
    for name in [n for n in convs if n != "predictions"] + concat:
        if name not in bn_of:
            raise KerasWeightsError(f"{source}: missing batch_normalization layer after {name!r}")
    return pyramid, bn_of, bn_of[concat[0]]


def _target_modules(net: "DilatedGM", pyramid: tuple[int, ...]):
    """{Keras conv name: (its conv module, dotted name, its BN module or None)}."""
    blocks = {
        "conv2d_1": ("conv1", net.conv1),
        "conv2d_2": ("conv2", net.conv2),
        "rate2_1": ("rate2_1", net.rate2_1),
        "rate2_2": ("rate2_2", net.rate2_2),
        "branch1x1_1": ("branch1x1_1", net.branch1x1_1),
        "branch1x1_2": ("branch1x1_2", net.branch1x1_2),
        "amort": ("amort", net.amort),
    }
    for i, r in enumerate(pyramid):
        for k in (1, 2):
            blocks[f"rate{r}_{k}"] = (f"pyramid.{i}.{k - 1}", net.pyramid[i][k - 1])
    out = {name: (block.conv, f"{dotted}.conv", block.bn) for name, (dotted, block) in blocks.items()}
    out["predictions"] = (net.predictions, "predictions", None)
    return out


def _copy(param, array, keras: str, what: str, module: str, transform=None) -> None:
    import torch

    value = torch.from_numpy(transform(array) if transform is not None else array)
    expected = tuple(param.shape)
    if transform is not None:  # report the shape in Keras' own layout
        shown_expected = (expected[2], expected[3], expected[1], expected[0]) if len(expected) == 4 else expected
    else:
        shown_expected = expected
    if tuple(value.shape) != expected:
        raise KerasWeightsError(
            f"layer {keras!r} {what}: shape {tuple(array.shape)} in the file, "
            f"{shown_expected} expected by {module}"
        )
    with torch.no_grad():
        param.copy_(value)


def load_gmseg_keras(path: str | os.PathLike, filters: int | None = None, *, sigmoid: bool = False) -> "DilatedGM":
    """The published gmseg Keras model at ``path`` as a `DilatedGM` in eval mode.

    ``filters`` (32 for ``challenge``, 64 for ``large``) is read from the file when not
    given; when given it must match. By default the network has two output channels
    whose softmax equals the Keras sigmoid (background logit 0, GM logit = Keras
    logit); ``sigmoid=True`` gives the one-channel network whose output is the Keras
    logit itself.
    """
    import numpy as np

    from segtool.networks.dilated_gm import DilatedGM

    source = f"Keras weights {Path(path)}"
    names, arrays = read_keras_weights(path)
    pyramid, bn_of, concat_bn = _plan(names, arrays, source)
    for name, keys in [(n, _CONV_KEYS) for n in _FIXED_CONVS] + [(bn, _BN_KEYS) for bn in bn_of.values()]:
        missing = [k for k in keys if k not in arrays[name]]
        extra = sorted(set(arrays[name]) - set(keys))
        if missing or extra:
            problem = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(extra)}"
            raise KerasWeightsError(f"{source}: layer {name!r}: {problem}")
    for name in (f"rate{r}_{k}" for r in pyramid for k in (1, 2)):
        if sorted(arrays[name]) != sorted(_CONV_KEYS):
            raise KerasWeightsError(f"{source}: layer {name!r}: expected kernel and bias, found {', '.join(arrays[name])}")

    first = arrays["conv2d_1"]["kernel"]
    if first.ndim != 4:
        raise KerasWeightsError(f"{source}: layer 'conv2d_1' kernel: shape {first.shape}, expected a 4D HWIO kernel")
    in_channels, file_filters = int(first.shape[2]), int(first.shape[3])
    if filters is not None and int(filters) != file_filters:
        raise KerasWeightsError(
            f"{source}: layer 'conv2d_1' kernel: shape {first.shape} has {file_filters} filters, {filters} requested"
        )
    amort = arrays["amort"]["kernel"]
    if amort.ndim != 4:
        raise KerasWeightsError(f"{source}: layer 'amort' kernel: shape {amort.shape}, expected a 4D HWIO kernel")
    pred = arrays["predictions"]["kernel"]
    if pred.ndim != 4 or pred.shape[3] != 1:
        raise KerasWeightsError(f"{source}: layer 'predictions' kernel: shape {pred.shape}, expected (1, 1, {amort.shape[3]}, 1)")

    net = DilatedGM(
        spatial_dims=2, in_channels=in_channels, out_channels=1, filters=file_filters,
        amort_filters=int(amort.shape[3]), rates=pyramid,
    )
    hwio_to_oihw = lambda a: np.ascontiguousarray(a.transpose(3, 2, 0, 1))  # noqa: E731
    for keras, (conv, dotted, bn) in _target_modules(net, pyramid).items():
        _copy(conv.weight, arrays[keras]["kernel"], keras, "kernel", dotted + ".weight", hwio_to_oihw)
        _copy(conv.bias, arrays[keras]["bias"], keras, "bias", dotted + ".bias")
        if bn is not None:
            _load_bn(bn, arrays[bn_of[keras]], bn_of[keras], dotted.rsplit(".", 1)[0] + ".bn")
    _load_bn(net.concat_bn, arrays[concat_bn], concat_bn, "concat_bn")
    net.eval()
    return net if sigmoid else to_two_class(net)


def _load_bn(bn, arrays: dict, keras: str, dotted: str) -> None:
    for key, param in (("gamma", bn.weight), ("beta", bn.bias), ("moving_mean", bn.running_mean),
                       ("moving_variance", bn.running_var)):
        _copy(param, arrays[key], keras, key, f"{dotted}.{param_name(key)}")


def param_name(keras_key: str) -> str:
    return {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}[keras_key]


def to_two_class(net: "DilatedGM") -> "DilatedGM":
    """A copy of a one-channel (sigmoid) `DilatedGM` with two output channels: softmax of
    (0, z) is (1 - sigmoid(z), sigmoid(z)), so the two-class network gives the same
    probabilities under segtool's softmax."""
    import copy

    import torch
    from torch import nn

    if net.out_channels != 1:
        raise ValueError(f"to_two_class needs a one-channel network, got {net.out_channels} channels")
    two = copy.deepcopy(net)
    old = net.predictions
    new = nn.Conv2d(old.in_channels, 2, 1)
    with torch.no_grad():
        new.weight.zero_()
        new.bias.zero_()
        new.weight[1:].copy_(old.weight)
        new.bias[1:].copy_(old.bias)
    two.predictions = new
    two.out_channels = 2
    two.train(net.training)
    return two

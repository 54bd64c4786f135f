"""segtool.networks.keras_h5: the published Keras gmseg weights in `DilatedGM`.

The test writes its own tiny HDF5 file with the structure of the published Keras 2.0.6
weights-only files (root attribute ``layer_names`` in the published order, one group per
layer with a ``weight_names`` attribute, arrays at ``<layer>/<layer>/<key>:0``, kernels
HWIO) and random weights, then checks the PyTorch network against an independent numpy
forward pass of SCT's Keras graph (``deepseg_gm/model.py::create_model``).
"""

from __future__ import annotations

import builtins
import sys

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
torch = pytest.importorskip("torch")

from segtool.errors import SegtoolError, UsageError  # noqa: E402
from segtool.networks.keras_h5 import KerasWeightsError, load_gmseg_keras, to_two_class  # noqa: E402

EPS = 1e-3  # Keras BatchNormalization default
RATES = (6, 12, 18, 24)

# The published files' layer order (challenge_model.hdf5 and large_model.hdf5 agree).
LAYER_NAMES = [
    "input_1", "conv2d_1", "batch_normalization_1", "dropout_1", "conv2d_2", "batch_normalization_2",
    "dropout_2", "rate2_1", "batch_normalization_3", "dropout_3", "rate2_2", "batch_normalization_4",
    "dropout_4", "branch1x1_1", "rate6_1", "rate12_1", "rate18_1", "rate24_1", "batch_normalization_5",
    "batch_normalization_7", "batch_normalization_9", "batch_normalization_11", "batch_normalization_13",
    "dropout_5", "dropout_7", "dropout_9", "dropout_11", "dropout_13", "branch1x1_2", "rate6_2", "rate12_2",
    "rate18_2", "global_average_pooling2d_1", "rate24_2", "batch_normalization_6", "batch_normalization_8",
    "batch_normalization_10", "batch_normalization_12", "repeat_vector_1", "batch_normalization_14",
    "dropout_6", "dropout_8", "dropout_10", "dropout_12", "reshape_1", "dropout_14", "concatenate_1",
    "batch_normalization_15", "dropout_15", "amort", "batch_normalization_16", "dropout_16", "predictions",
]

# Keras creation order: which BN follows which layer (create_model numbers them 1..16 this way).
BN_AFTER = {
    "conv2d_1": 1, "conv2d_2": 2, "rate2_1": 3, "rate2_2": 4, "branch1x1_1": 5, "branch1x1_2": 6,
    "rate6_1": 7, "rate6_2": 8, "rate12_1": 9, "rate12_2": 10, "rate18_1": 11, "rate18_2": 12,
    "rate24_1": 13, "rate24_2": 14, "concatenate_1": 15, "amort": 16,
}


def conv_shapes(f: int, amort: int = 64) -> dict[str, tuple[int, int, int, int]]:
    shapes = {"conv2d_1": (3, 3, 1, f), "conv2d_2": (3, 3, f, f), "rate2_1": (3, 3, f, f), "rate2_2": (3, 3, f, f),
              "branch1x1_1": (3, 3, f, f), "branch1x1_2": (1, 1, f, f)}
    for r in RATES:
        shapes[f"rate{r}_1"] = shapes[f"rate{r}_2"] = (3, 3, f, f)
    shapes["amort"] = (1, 1, 6 * f, amort)
    shapes["predictions"] = (1, 1, amort, 1)
    return shapes


def random_weights(f: int, seed: int = 0, amort: int = 8) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {key: array}} for every weighted layer, Keras layouts, moderate scales."""
    rng = np.random.default_rng(seed)
    weights: dict[str, dict[str, np.ndarray]] = {}
    for name, shape in conv_shapes(f, amort).items():
        fan_in = shape[0] * shape[1] * shape[2]
        weights[name] = {
            "kernel": (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32),
            "bias": (rng.standard_normal(shape[3]) * 0.1).astype(np.float32),
        }
    for owner, n in BN_AFTER.items():
        ch = 6 * f if owner == "concatenate_1" else conv_shapes(f, amort)[owner][3]
        weights[f"batch_normalization_{n}"] = {
            "gamma": rng.uniform(0.5, 1.5, ch).astype(np.float32),
            "beta": (rng.standard_normal(ch) * 0.1).astype(np.float32),
            "moving_mean": (rng.standard_normal(ch) * 0.2).astype(np.float32),
            "moving_variance": rng.uniform(0.2, 2.0, ch).astype(np.float32),
        }
    return weights


KEY_ORDER = ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")


def write_keras_h5(path, weights, layer_names=LAYER_NAMES) -> None:
    """A weights-only file laid out as Keras 2.0.6 ``save_weights`` writes it."""
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.6"
        f.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
        for name in layer_names:
            g = f.create_group(name)
            arrays = weights.get(name, {})
            wnames = [f"{name}/{k}:0" for k in KEY_ORDER if k in arrays]
            g.attrs["weight_names"] = np.array([w.encode() for w in wnames]) if wnames else np.array([], dtype=np.float64)
            for key in KEY_ORDER:
                if key in arrays:
                    g.create_dataset(f"{name}/{key}:0", data=arrays[key])


# --------------------------------------------------------------------------- numpy reference


def np_conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, dilation: int = 1) -> np.ndarray:
    """Keras Conv2D(padding='same', dilation_rate=d): x is N,H,W,C, kernel HWIO; cross-correlation."""
    kh, kw = kernel.shape[:2]
    ph, pw = dilation * (kh - 1), dilation * (kw - 1)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    n, h, w, _ = x.shape
    out = np.zeros((n, h, w, kernel.shape[3]), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dilation:i * dilation + h, j * dilation:j * dilation + w, :]
            out += patch.astype(np.float64) @ kernel[i, j].astype(np.float64)
    return out + bias


def np_bn(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    return (x - p["moving_mean"]) / np.sqrt(p["moving_variance"] + EPS) * p["gamma"] + p["beta"]


def keras_reference(weights, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logit, sigmoid) of SCT's create_model graph at inference (dropout = identity), NHWC."""
    def block(name, inp, dilation=1):
        y = np.maximum(np_conv_same(inp, weights[name]["kernel"], weights[name]["bias"], dilation), 0.0)
        return np_bn(y, weights[f"batch_normalization_{BN_AFTER[name]}"])

    conv1 = block("conv2d_2", block("conv2d_1", x))
    conv3 = block("rate2_2", block("rate2_1", conv1, 2), 2)
    conv3a = block("branch1x1_2", block("branch1x1_1", conv3))
    rate = {r: block(f"rate{r}_2", block(f"rate{r}_1", conv3, r), r) for r in RATES}
    n, h, w, f = conv1.shape
    pooled = np.broadcast_to(conv1.mean(axis=(1, 2))[:, None, None, :], (n, h, w, f))
    concat = np.concatenate([conv3a, rate[6], rate[12], rate[18], pooled, rate[24]], axis=3)
    concat = np_bn(concat, weights[f"batch_normalization_{BN_AFTER['concatenate_1']}"])
    amort = block("amort", concat)
    logit = np_conv_same(amort, weights["predictions"]["kernel"], weights["predictions"]["bias"])[..., 0]
    return logit, 1.0 / (1.0 + np.exp(-logit))


# --------------------------------------------------------------------------- tests


@pytest.fixture
def tiny(tmp_path):
    weights = random_weights(4)
    path = tmp_path / "tiny_model.hdf5"
    write_keras_h5(path, weights)
    return path, weights


def test_matches_numpy_keras_reference(tiny):
    path, weights = tiny
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 30, 27, 1)).astype(np.float32)  # non-square, smaller than the largest dilation
    logit_ref, prob_ref = keras_reference(weights, x)
    assert 0.02 < prob_ref.mean() < 0.98 and prob_ref.std() > 0.01  # not saturated: the check means something

    raw = load_gmseg_keras(path, sigmoid=True)
    assert not raw.training and raw.out_channels == 1
    with torch.no_grad():
        logit = raw(torch.from_numpy(x).permute(0, 3, 1, 2))[:, 0].numpy()
    np.testing.assert_allclose(logit, logit_ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), prob_ref, atol=1e-4)

    two = load_gmseg_keras(path)
    assert two.out_channels == 2 and not two.training
    with torch.no_grad():
        soft = torch.softmax(two(torch.from_numpy(x).permute(0, 3, 1, 2)), dim=1).numpy()
    np.testing.assert_allclose(soft[:, 1], prob_ref, atol=1e-4)
    np.testing.assert_allclose(soft[:, 0], 1 - prob_ref, atol=1e-4)


def test_filters_inferred_and_checked(tiny):
    path, _ = tiny
    net = load_gmseg_keras(path, sigmoid=True)
    assert net.conv1.conv.out_channels == 4 and net.rates == RATES
    assert load_gmseg_keras(path, filters=4, sigmoid=True).conv1.conv.out_channels == 4
    with pytest.raises(KerasWeightsError, match="conv2d_1.*4 filters, 32 requested"):
        load_gmseg_keras(path, filters=32)


def test_published_sizes_have_published_parameter_counts(tmp_path):
    """32 filters -> 127,585 numbers (the challenge model), 64 -> 478,017 (large), BN stats included."""
    for f, expected in ((32, 127_585), (64, 478_017)):
        path = tmp_path / f"m{f}.hdf5"
        write_keras_h5(path, random_weights(f, amort=64))
        net = load_gmseg_keras(path, sigmoid=True)
        count = sum(t.numel() for t in net.state_dict().values() if t.is_floating_point())
        assert count == expected


def test_two_class_softmax_equals_sigmoid(tiny):
    path, _ = tiny
    raw = load_gmseg_keras(path, sigmoid=True)
    two = to_two_class(raw)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        np.testing.assert_allclose(
            torch.softmax(two(x), 1)[:, 1].numpy(), torch.sigmoid(raw(x))[:, 0].numpy(), atol=1e-6
        )
    with pytest.raises(ValueError):
        to_two_class(two)


def test_wrong_shape_names_the_layer(tmp_path):
    weights = random_weights(4)
    weights["rate12_2"]["kernel"] = weights["rate12_2"]["kernel"][:, :, :, :3]
    path = tmp_path / "bad.hdf5"
    write_keras_h5(path, weights)
    with pytest.raises(KerasWeightsError) as info:
        load_gmseg_keras(path)
    message = info.value.one_line()
    assert "'rate12_2'" in message and "(3, 3, 4, 3)" in message and "\n" not in str(info.value)


def test_wrong_bn_shape_names_the_layer(tmp_path):
    weights = random_weights(4)
    weights["batch_normalization_15"]["moving_variance"] = np.ones(23, np.float32)
    path = tmp_path / "bad.hdf5"
    write_keras_h5(path, weights)
    with pytest.raises(KerasWeightsError, match="batch_normalization_15.*moving_variance.*concat_bn"):
        load_gmseg_keras(path)


def test_missing_layer(tmp_path):
    path = tmp_path / "missing.hdf5"
    write_keras_h5(path, random_weights(4), [n for n in LAYER_NAMES if n != "amort"])
    with pytest.raises(KerasWeightsError, match="missing layer 'amort'"):
        load_gmseg_keras(path)


def test_missing_batch_norm(tmp_path):
    path = tmp_path / "missing_bn.hdf5"
    write_keras_h5(path, random_weights(4), [n for n in LAYER_NAMES if n != "batch_normalization_16"])
    with pytest.raises(KerasWeightsError, match="batch_normalization.*'amort'"):
        load_gmseg_keras(path)


def test_extra_layer_with_weights(tmp_path):
    weights = random_weights(4)
    weights["conv2d_3"] = {"kernel": np.zeros((1, 1, 4, 4), np.float32), "bias": np.zeros(4, np.float32)}
    path = tmp_path / "extra.hdf5"
    write_keras_h5(path, weights, LAYER_NAMES + ["conv2d_3"])
    with pytest.raises(KerasWeightsError, match="unexpected layer 'conv2d_3'"):
        load_gmseg_keras(path)


def test_missing_array_in_layer(tmp_path):
    weights = random_weights(4)
    del weights["conv2d_2"]["bias"]
    path = tmp_path / "nobias.hdf5"
    write_keras_h5(path, weights)
    with pytest.raises(KerasWeightsError, match="'conv2d_2': missing bias"):
        load_gmseg_keras(path)


def test_not_a_keras_file(tmp_path):
    path = tmp_path / "plain.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(KerasWeightsError, match="layer_names"):
        load_gmseg_keras(path)
    with pytest.raises(KerasWeightsError, match="no such file"):
        load_gmseg_keras(tmp_path / "absent.hdf5")
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(KerasWeightsError, match="not an HDF5 file"):
        load_gmseg_keras(tmp_path / "text.hdf5")


def test_error_is_a_segtool_error(tmp_path):
    assert issubclass(KerasWeightsError, SegtoolError)


def test_without_h5py_says_how_to_install(tiny, monkeypatch):
    path, _ = tiny
    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py" or name.startswith("h5py."):
            raise ImportError("No module named 'h5py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "h5py", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(UsageError, match=r"pip install segtool\[keras\]"):
        load_gmseg_keras(path)

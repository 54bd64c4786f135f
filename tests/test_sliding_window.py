import numpy as np
import pytest
import torch

from segtool.errors import UsageError
from segtool.sliding_window import WindowSettings, pick_device, sliding_window_inference, stream_probabilities
from segtool.windows import gaussian_importance, plan_windows, window_starts


def test_window_starts_cover_the_axis_with_overlap():
    assert window_starts(10, 10, 0.5) == [0]
    assert window_starts(5, 10, 0.5) == [0]
    assert window_starts(20, 10, 0.5) == [0, 5, 10]
    starts = window_starts(23, 8, 0.5)
    assert starts[0] == 0 and starts[-1] == 15
    assert all(b - a <= 4 for a, b in zip(starts, starts[1:]))


def test_plan_pads_small_images_to_the_patch():
    plan = plan_windows((5, 20), (8, 10), 0.5)
    assert plan.padded_shape == (8, 20)
    assert plan.pads == ((1, 2), (0, 0))
    assert plan.starts == ((0, 0), (0, 5), (0, 10))


def test_gaussian_importance_peaks_at_the_centre():
    g = gaussian_importance((9, 9))
    assert g.shape == (9, 9)
    assert g[4, 4] == pytest.approx(1.0)
    assert g.min() > 0
    assert torch.equal(g, g.flip(0)) and torch.equal(g, g.flip(1))


class Threshold(torch.nn.Module):
    """Two classes: logit difference = 10 * x, so p(1) = sigmoid(10 x) exactly per voxel."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x[:, :1]), 10 * x[:, :1]], dim=1)


@pytest.mark.parametrize("shape, patch", [((13, 17, 9), (8, 8, 4)), ((5, 6, 3), (8, 8, 4)), ((30, 31), (16, 16))])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_voxelwise_model_gives_exact_probabilities(shape, patch, batch_size):
    rng = np.random.default_rng(1)
    image = torch.from_numpy(rng.normal(size=(1, *shape)).astype(np.float32))
    probs = sliding_window_inference(Threshold(), image, WindowSettings(patch, 2, batch_size=batch_size))
    assert tuple(probs.shape) == (2, *shape)
    expected = torch.sigmoid(10 * image[0])
    assert torch.allclose(probs[1], expected, atol=1e-5)
    assert torch.allclose(probs.sum(0), torch.ones(shape), atol=1e-5)


class LooksAhead(torch.nn.Module):
    """Not flip-symmetric: p(1) at voxel i along the first spatial axis is sigmoid(10 x[i + 1]) (0 past the end)."""

    def forward(self, x):
        ahead = torch.zeros_like(x[:, :1])
        ahead[:, :, :-1] = x[:, :1, 1:]
        return torch.cat([torch.zeros_like(ahead), 10 * ahead], dim=1)


def test_tta_averages_flips_and_reports_progress():
    image = torch.randn(1, 12, 12, 6)
    plain_calls, tta_calls = [], []
    plain = sliding_window_inference(
        LooksAhead(), image, WindowSettings((12, 12, 6), 2), on_batch=lambda d, t: plain_calls.append((d, t))
    )
    probs = sliding_window_inference(
        LooksAhead(), image, WindowSettings((12, 12, 6), 2, tta=True), on_batch=lambda d, t: tta_calls.append((d, t))
    )
    ahead, behind = torch.zeros_like(image[0]), torch.zeros_like(image[0])
    ahead[:-1], behind[1:] = image[0, 1:], image[0, :-1]
    assert torch.allclose(plain[1], torch.sigmoid(10 * ahead), atol=1e-5)
    # flipping the first axis turns "ahead" into "behind"; the other flips change nothing: the mean of both
    assert torch.allclose(probs[1], (torch.sigmoid(10 * ahead) + torch.sigmoid(10 * behind)) / 2, atol=1e-5)
    assert (probs[1] - plain[1]).abs().max() > 0.2
    assert len(tta_calls) == 8 * len(plain_calls) and tta_calls[-1][0] == tta_calls[-1][1]


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(UsageError):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA"):
            pick_device("cuda:0")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    image = torch.randn(1, 20, 20, 10)
    cpu = sliding_window_inference(Threshold(), image, WindowSettings((8, 8, 4), 2))
    gpu = sliding_window_inference(Threshold(), image, WindowSettings((8, 8, 4), 2, device="cuda", precision="fp16"))
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-2)


class AlwaysForeground(torch.nn.Module):
    """Class 1 everywhere, whatever the input; counts the windows it is shown."""

    def __init__(self):
        super().__init__()
        self.windows = 0

    def forward(self, x):
        self.windows += x.shape[0]
        logits = torch.zeros((x.shape[0], 2, *x.shape[2:]))
        logits[:, 1] = 5.0
        return logits


@pytest.mark.parametrize("slice_axis", [None, 2])
def test_windows_of_only_the_lowest_value_are_background_without_the_network(slice_axis):
    image = torch.zeros((1, 24, 24, 6))
    image[0, 12:, :, :3] = torch.linspace(1.0, 2.0, 12 * 24 * 3).reshape(12, 24, 3)
    patch = (8, 8, 6) if slice_axis is None else (8, 8)
    model = AlwaysForeground()
    probs = sliding_window_inference(model, image, WindowSettings(patch, 2, overlap=0.0, batch_size=4,
                                                                  slice_axis=slice_axis))
    labels = probs.argmax(0)
    # rows 0-7 hold no window with content (windows are 8 rows, no overlap): background
    assert (labels[:8] == 0).all() and torch.allclose(probs[0, :8], torch.ones(1))
    # windows that touch the content keep the network's answer everywhere in them
    if slice_axis is None:
        assert (labels[16:] == 1).all() and model.windows == 3 * 3 - 3  # 3 x 3 x 1 windows, 3 without content
    else:
        assert (labels[16:, :, :3] == 1).all() and (labels[:, :, 3:] == 0).all()  # slices 3-5 are empty
        assert model.windows == 3 * 3 * 3 - 3 * 3  # 3 content slices x 9 windows, minus their 3 empty rows


def test_a_window_with_content_in_any_channel_goes_through_the_network():
    image = torch.zeros((2, 16, 16))
    image[0, :8, 8:] = torch.linspace(1.0, 2.0, 64).reshape(8, 8)  # content in channel 0 only
    image[1, 8:, 8:] = torch.linspace(1.0, 2.0, 64).reshape(8, 8)  # content in channel 1 only
    model = AlwaysForeground()
    probs = sliding_window_inference(model, image, WindowSettings((8, 8), 2, overlap=0.0, batch_size=4))
    labels = probs.argmax(0)
    assert model.windows == 2
    assert (labels[:, 8:] == 1).all() and (labels[:, :8] == 0).all()


def test_padding_around_a_small_image_does_not_make_an_empty_slice_look_full():
    # a zscored image is negative where it is empty; the 0.0 padding to the patch size is not content
    image = torch.full((1, 6, 5, 3), -0.5)
    image[0, :, :, 0] = torch.linspace(-0.5, 1.0, 30).reshape(6, 5)
    model = AlwaysForeground()
    probs = sliding_window_inference(model, image, WindowSettings((8, 8), 2, overlap=0.5, batch_size=4, slice_axis=2))
    labels = probs.argmax(0)
    assert model.windows == 1  # slice 0 only: slices 1 and 2 hold only the lowest value
    assert (labels[:, :, 0] == 1).all() and (labels[:, :, 1:] == 0).all()


def test_window_settings_are_frozen_normalised_and_checked():
    import dataclasses

    settings = WindowSettings([8, 8], 2, device="cpu", tta_axes=[0])
    assert settings.patch_size == (8, 8) and settings.tta_axes == (0,)
    assert settings.device == torch.device("cpu") and settings.stitch == torch.device("cpu")
    assert WindowSettings((8, 8), 2, stitch_device="cpu").stitch_device == torch.device("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 4
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\), got 1.0"):
        WindowSettings((8, 8), 2, overlap=1.0)
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        WindowSettings((8, 8), 2, batch_size=0)


def _conv(dims: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return (torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d)(1, 3, 3, padding=1).eval()


@pytest.mark.parametrize("slice_axis, patch", [(None, (8, 8, 4)), (2, (8, 8)), (0, (8, 4))])
def test_streamed_planes_are_exactly_the_whole_image_probabilities(slice_axis, patch):
    image = torch.from_numpy(np.random.default_rng(2).normal(size=(1, 13, 11, 6)).astype(np.float32))
    model = _conv(len(patch))
    settings = WindowSettings(patch, 3, overlap=0.5, batch_size=3, slice_axis=slice_axis)
    whole = sliding_window_inference(model, image, settings)
    planes, sinks = {}, []

    def make_sink():
        sinks.append(1)
        return lambda first, part: planes.update({first + i: p for i, p in enumerate(part)})

    stream_probabilities(model, image, settings, make_sink)
    axis = 0 if slice_axis is None else slice_axis
    streamed = torch.stack([planes[i] for i in range(image.shape[axis + 1])], dim=axis + 1)
    assert len(sinks) == 1 and tuple(whole.shape) == (3, 13, 11, 6)
    assert torch.equal(streamed, whole)


def test_streaming_refuses_test_time_flips():
    with pytest.raises(ValueError, match="tta needs every probability at once"):
        stream_probabilities(Threshold(), torch.zeros((1, 8, 8)), WindowSettings((8, 8), 2, tta=True), list)


def test_out_of_memory_off_cuda_is_raised_not_retried():
    class OutOfMemory(torch.nn.Module):
        calls = 0

        def forward(self, x):
            OutOfMemory.calls += 1
            raise torch.cuda.OutOfMemoryError("no memory")

    image = torch.randn(1, 8, 8)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        sliding_window_inference(OutOfMemory(), image, WindowSettings((8, 8), 2))
    assert OutOfMemory.calls == 1

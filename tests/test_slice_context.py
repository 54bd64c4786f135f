"""2.5D slice-wise networks (``slice_context``): neighbouring slices as input channels.

Training cuts slabs of 2k+1 slices and hands the network the centre slice's labels;
`segtool run` stacks the same neighbours per window. Both layouts must agree, the
edges must be zero beyond the volume on both sides, and the model folder must carry
the setting so `run --model-dir` builds the right network.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segtool.errors import InvalidSpecError, WeightsUnavailableError
from segtool.model_config import ModelConfig
from segtool.sliding_window import WindowSettings, sliding_window_inference, stream_probabilities
from segtool.training.batches import slab_to_channels
from segtool.training.sampling import PatchSampler, crop, crop_start_range
from segtool.windows import window_input
from test_model_folder_runs import invoke, slice_spec, train_folder, write_cases


def test_training_slabs_and_inference_windows_stack_neighbours_the_same_way():
    rng = np.random.default_rng(3)
    volume = rng.normal(size=(2, 9, 7, 6)).astype(np.float32)  # (C, *spatial), slices along axis 1
    labels = rng.integers(0, 3, size=(9, 7, 6))
    stack = torch.from_numpy(volume).movedim(2, 0)  # (slices, C, 9, 6), as inference holds a slice-wise image
    window = (slice(1, 6), slice(0, 4))
    for centre in (0, 1, 3, 6):  # 0 and 6: the slab reaches past the first and the last slice
        start = (1, centre - 2, 0)
        slab = crop(volume, start, (5, 5, 4), 1)[None]  # zero beyond the volume, as the sampler crops
        label = crop(labels, start, (5, 5, 4), 0)[None]
        x, y = slab_to_channels(torch.from_numpy(slab), torch.from_numpy(label), slice_axis=1, context=2)
        assert x.shape == (1, 10, 5, 4) and y.shape == (1, 5, 4)
        assert torch.equal(x[0], window_input(stack, centre, window, 2))
        assert torch.equal(y[0], torch.from_numpy(labels[1:6, centre, 0:4]))
        # channel c's slices come in order: c * 5 + 2 is the centre slice itself
        assert torch.equal(x[0, 2], torch.from_numpy(volume[0, 1:6, centre, 0:4]))
        assert torch.equal(x[0, 7], torch.from_numpy(volume[1, 1:6, centre, 0:4]))
    assert torch.count_nonzero(window_input(stack, 0, window, 2)[:2]) == 0  # slices -2 and -1: zeros
    assert torch.equal(window_input(stack, 4, window, 0), stack[4][:, 1:6, 0:4])


def test_the_sampler_reaches_the_context_beyond_the_first_and_last_slice():
    assert crop_start_range(10, 5, overhang=2) == (-2, 7)
    assert crop_start_range(10, 5) == (0, 5)
    assert crop_start_range(3, 8) == (-5, 0)  # a small volume anywhere inside the patch, as before

    class Case:
        name = "c"
        image = np.ones((1, 4, 6, 6), dtype=np.float32)
        label = np.ones((4, 6, 6), dtype=np.int64)
        foreground = {1: np.argwhere(label == 1)}

    sampler = PatchSampler([Case()], (5, 6, 6), batch_size=1, foreground_fraction=0.0, overhang=(2, 0, 0))
    starts = {sampler.start_for(Case(), np.random.default_rng(s), False)[0] for s in range(200)}
    assert starts == {-2, -1, 0, 1}  # a 4-slice volume in 5-slice slabs: every centre slice 0..3 is reachable
    forced = PatchSampler([Case()], (5, 6, 6), batch_size=1, foreground_fraction=1.0, overhang=(2, 0, 0))
    centres = {forced.start_for(Case(), np.random.default_rng(s), True)[0] + 2 for s in range(200)}
    assert centres == {0, 1, 2, 3}  # centred on the foreground slice, whichever it is


class FirstNeighbour(torch.nn.Module):
    """Class 1 where the first channel (slice n - k with context) is bright: shows which slice was used."""

    def forward(self, x):
        first = x[:, :1]
        return torch.cat([torch.zeros_like(first), 8.0 * first], dim=1)


@pytest.mark.parametrize("stream", [False, True])
def test_inference_gives_each_slice_its_neighbours(stream):
    image = torch.zeros((1, 10, 12, 5))
    image[0, 2:6, 3:9, 1] = 1.0  # bright in slice 1 only (slice axis 2)
    image[0, 0, 0, :] = -1.0  # no slice holds only the lowest value, so every window goes through the model
    settings = WindowSettings((8, 8), 2, overlap=0.5, batch_size=3, slice_axis=2, slice_context=2)
    if stream:
        rows = {}

        def make_sink():
            rows.clear()
            return lambda first, part: rows.update({first + i: p for i, p in enumerate(part)})

        stream_probabilities(FirstNeighbour(), image, settings, make_sink)
        probs = torch.stack([rows[i] for i in range(5)], dim=-1)
    else:
        probs = sliding_window_inference(FirstNeighbour(), image, settings)
    labels = probs.argmax(0)
    # slice 3's first neighbour is slice 1: it sees the bright square; slice 1 itself sees slice -1 (zeros)
    assert torch.equal(labels[..., 3], (image[0, ..., 1] > 0).long())
    for other in (0, 1, 2, 4):
        assert int(labels[..., other].sum()) == 0
    plain = sliding_window_inference(FirstNeighbour(), image, WindowSettings((8, 8), 2, overlap=0.5, batch_size=3,
                                                                             slice_axis=2))
    assert torch.equal(plain.argmax(0)[..., 1], (image[0, ..., 1] > 0).long())  # without context: the slice itself


def test_spec_and_model_config_check_slice_context():
    assert slice_spec(slice_context=2).network_in_channels == 5
    assert slice_spec(channels=("a", "b"), slice_context=1).network_in_channels == 6
    with pytest.raises(InvalidSpecError, match="slice_context needs slice_axis"):
        slice_spec(slice_axis=None, patch_size=(16, 16, 4), slice_context=1)
    with pytest.raises(InvalidSpecError, match="slice_context must be"):
        slice_spec(slice_context=-1)
    config = ModelConfig.for_spec(slice_spec(slice_context=3))
    assert json.loads(config.to_json())["slice_context"] == 3
    assert config.apply_to(slice_spec()).slice_context == 3
    data = json.loads(config.to_json())
    del data["slice_context"]  # folders written before 2.5D: one slice
    assert ModelConfig.from_dict(data).slice_context == 0
    for bad in (True, 1.5, 17, "2"):
        data["slice_context"] = bad
        with pytest.raises(WeightsUnavailableError, match="slice_context"):
            ModelConfig.from_dict(data)


def test_train_with_slice_context_then_run_the_model_folder(tmp_path):
    spec = slice_spec()
    model_dir = train_folder(spec, tmp_path, "--slice-context", "2")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    assert config["slice_context"] == 2
    assert "--slice-context 2" in config["training"]["command"]
    from safetensors.torch import load_file

    state = load_file(str(model_dir / "model.safetensors"))
    slice_spec(slice_context=2).build_network().load_state_dict(state)  # the slice and 2 neighbours each side
    with pytest.raises(RuntimeError, match="size mismatch"):
        slice_spec().build_network().load_state_dict(state)
    image = tmp_path / "data" / "sub-0_ses-0.nii.gz"
    out = tmp_path / "out" / "seg.nii.gz"
    invoke(spec, "run", spec.name, "--model-dir", model_dir, image, "-o", out)
    assert out.exists()
    # the registered task says one slice; the folder's setting wins on the --tta path (probabilities held) too
    result = invoke(spec, "run", spec.name, "--model-dir", model_dir, image, "-o", tmp_path / "again.nii.gz",
                    "--tta")
    assert (tmp_path / "again.nii.gz").exists(), result.output


def test_slice_context_is_refused_for_tasks_that_do_not_run_slice_by_slice(tmp_path):
    from test_model_folder_runs import volume_3d_spec

    spec = volume_3d_spec()
    data = write_cases(tmp_path / "data")
    result = invoke(spec, "train", spec.name, data, "-o", tmp_path / "m", "--slice-context", "1", ok=False)
    assert result.exit_code != 0
    assert "--slice-context" in result.output and "slice by slice" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m").exists()

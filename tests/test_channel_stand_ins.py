"""Missing sequences as a task's data fill them (TaskSpec.channel_stand_ins): the spec's checks,
the replacement itself, its place in the step batches and in the model folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segtool.errors import InvalidSpecError
from segtool.spec import TaskSpec
from segtool.training.batches import StepBatches
from segtool.training.channel_stand_ins import ChannelStandIns
from test_train import FEATURES, train


def three_channel_spec(**kw) -> TaskSpec:
    base = dict(
        name="tiny-stand-ins", description="tiny 2D three-sequence task", channels=("pre", "flair", "post"),
        ndim=2, labels={1: "lesion"}, network="unet", model_kwargs=FEATURES, patch_size=(16, 16),
        orientation=None, target_spacing=None, normalization="zscore-nonzero", batch_size=2, augmentation="none",
    )
    return TaskSpec(**(base | kw))


def test_the_spec_keeps_the_declaration_and_refuses_names_it_has_not():
    spec = three_channel_spec(channel_stand_ins={"pre": "flair", "post": "flair"})
    assert dict(spec.channel_stand_ins) == {"pre": "flair", "post": "flair"}
    assert dict(three_channel_spec().channel_stand_ins) == {}
    with pytest.raises(InvalidSpecError, match="'t2', not one of its channels"):
        three_channel_spec(channel_stand_ins={"t2": "flair"})
    with pytest.raises(InvalidSpecError, match="another channel"):
        three_channel_spec(channel_stand_ins={"flair": "flair"})
    with pytest.raises(InvalidSpecError, match="never replaced itself"):  # a chain: which copy would it be?
        three_channel_spec(channel_stand_ins={"pre": "flair", "flair": "post"})


def test_a_replaced_channel_is_an_exact_copy_of_its_stand_in_and_the_rest_is_untouched():
    stand_ins = ChannelStandIns.from_declaration({"post": "flair"}, ("pre", "flair", "post"), probability=0.5)
    assert stand_ins.pairs == ((2, 1),)
    images = np.random.default_rng(0).normal(size=(400, 3, 4, 4)).astype(np.float32)
    out = stand_ins.apply(images, np.random.default_rng(1))
    replaced = np.array([np.array_equal(out[b, 2], images[b, 1]) for b in range(400)])
    assert 150 < replaced.sum() < 250  # about half of the samples at probability 0.5
    assert np.array_equal(out[~replaced], images[~replaced])
    assert np.array_equal(out[:, :2], images[:, :2])  # the stand-in and the other channel never change
    assert not np.array_equal(out, images) and images is not out


def test_probability_zero_and_one():
    channels = ("pre", "flair", "post")
    images = np.random.default_rng(0).normal(size=(6, 3, 4, 4)).astype(np.float32)
    never = ChannelStandIns.from_declaration({"pre": "flair"}, channels, probability=0.0)
    assert never.apply(images, np.random.default_rng(2)) is images
    always = ChannelStandIns.from_declaration({"pre": "flair", "post": "flair"}, channels, probability=1.0)
    out = always.apply(images, np.random.default_rng(2))
    assert all(np.array_equal(out[:, c], images[:, 1]) for c in range(3))  # FLAIR three times
    assert ChannelStandIns.from_declaration({}, channels) is None


class _Sampler:
    """Two samples of three distinct constant channels (1, 2, 3), one label map."""

    def sample(self, rng):
        images = np.stack([np.full((2, 8, 8), v, np.float32) for v in (1.0, 2.0, 3.0)], axis=1)
        return images, np.zeros((2, 8, 8), np.int64)


def test_step_batches_replace_before_augmenting_and_stay_a_function_of_the_step():
    stand_ins = ChannelStandIns.from_declaration({"pre": "flair"}, ("pre", "flair", "post"), probability=0.5)
    batches = StepBatches(_Sampler(), None, seed=3, rank=0, stand_ins=stand_ins)
    plain = StepBatches(_Sampler(), None, seed=3, rank=0)
    firsts = [float(batches[s][0][b, 0, 0, 0]) for s in range(20) for b in range(2)]
    assert set(firsts) == {1.0, 2.0}  # some samples show the pre-contrast channel as FLAIR, some as itself
    assert [float(batches[s][0][b, 0, 0, 0]) for s in range(20) for b in range(2)] == firsts
    assert {float(plain[s][0][b, 0, 0, 0]) for s in range(20) for b in range(2)} == {1.0}


def write_three_sequence_slices(folder: Path, n: int = 3) -> Path:
    """Three-channel TIFF slices (as the LGG collection's) with a square lesion bright in FLAIR."""
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(n):
        slices = rng.integers(40, 80, (24, 24, 3)).astype(np.uint8)
        mask = np.zeros((24, 24), np.uint8)
        r, c = rng.integers(3, 12, 2)
        mask[r : r + 8, c : c + 8] = 1
        slices[mask == 1, 1] = 200
        Image.fromarray(slices).save(folder / f"s{i}.tif")
        Image.fromarray(mask).save(folder / f"s{i}_seg.png")
    return folder


def test_training_says_so_in_the_model_folder_and_no_augment_turns_it_off(tmp_path):
    spec = three_channel_spec(channel_stand_ins={"pre": "flair", "post": "flair"})
    data = write_three_sequence_slices(tmp_path / "data")
    train(spec, data, tmp_path / "model", "--epochs", "1", "--steps-per-epoch", "2")
    said = json.loads((tmp_path / "model" / "config.json").read_text())["training"]["augmentation"]
    assert said == "missing sequences as the data fill them (pre as a copy of flair, post as a copy of flair; 15% of samples each)"
    assert "pre as a copy of flair" in (tmp_path / "model" / "README.md").read_text()
    train(spec, data, tmp_path / "plain", "--epochs", "1", "--steps-per-epoch", "2", "--no-augment")
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["training"]["augmentation"] == "none"

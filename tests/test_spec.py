import dataclasses

import pytest

from segtool.errors import InvalidSpecError
from segtool.spec import Postprocess, TaskSpec, WeightsFile, WeightsRef
from tiny_task import make_spec

SHA = "a" * 64
REV = "0123456789abcdef0123456789abcdef01234567"


def test_valid_spec_is_frozen_and_derives_counts():
    spec = make_spec(channels=("flair", "t1c"), labels={1: "a", 2: "b"})
    assert spec.num_classes == 3
    assert spec.in_channels == 2
    assert spec.files_per_case == 2
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'name'"):
        spec.name = "other"
    with pytest.raises(TypeError):
        spec.labels[3] = "c"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": "Bad Name"}, "name"),
        ({"ndim": 4}, "ndim"),
        ({"labels": {0: "bg"}}, "labels"),
        ({"labels": {1: "a", 3: "c"}}, "without gaps"),
        ({"channels": ()}, "channels"),
        ({"channels": ("t1", "t1")}, "channels"),
        ({"patch_size": (8, 8)}, "patch_size"),
        ({"orientation": "XYZ"}, "orientation"),
        ({"target_spacing": (1.0, 0.0, 1.0)}, "target_spacing"),
        ({"overlap": 1.0}, "overlap"),
        ({"normalization": "magic"}, "normalization"),
        ({"regions": {"r": (7,)}}, "region"),
        ({"model_factory": 3}, "callable"),
        ({"default_model": "x"}, "default_model"),
    ],
)
def test_invalid_specs_are_rejected_with_a_reason(change, message):
    with pytest.raises(InvalidSpecError, match=message):
        make_spec(**change)


def test_weights_ref_requires_pinned_revision_and_hashes():
    files = dict(weights=WeightsFile("model.safetensors", SHA), config=WeightsFile("config.json", SHA))
    assert WeightsRef(repo_id="org/model", revision=REV, **files).source == "hub"
    assert WeightsRef(package="pkg", **files).source == "bundled"
    with pytest.raises(InvalidSpecError, match="40-hex"):
        WeightsRef(repo_id="org/model", revision="main", **files)
    with pytest.raises(InvalidSpecError, match="either"):
        WeightsRef(repo_id="org/model", revision=REV, package="pkg", **files)
    with pytest.raises(InvalidSpecError, match="sha256"):
        WeightsFile("model.safetensors", "abc")
    with pytest.raises(InvalidSpecError, match="filename"):
        WeightsFile("../model.safetensors", SHA)


def test_default_model_is_the_first_variant():
    files = dict(weights=WeightsFile("model.safetensors", SHA), config=WeightsFile("config.json", SHA))
    models = {"fast": WeightsRef(package="p", **files), "accurate": WeightsRef(package="q", **files)}
    assert make_spec(models=models).default_model == "fast"
    assert make_spec(models=models, default_model="accurate").default_model == "accurate"


def test_postprocess_threshold_bounds():
    with pytest.raises(InvalidSpecError):
        Postprocess(threshold=1.5)


def test_to_dict_is_json_ready():
    import json

    spec = make_spec(regions={"all": (1,)})
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["labels"] == {"1": "bright"}
    assert data["regions"] == {"all": [1]}
    assert data["model_factory"] == "tiny_task.one_conv"
    assert data["has_weights"] is False


def test_flip_axes_are_the_flips_training_makes():
    """--tta averages over these flips only: a sagittal spine is never flipped head to foot."""
    assert make_spec(ndim=3).flip_axes == (0, 1, 2)
    assert make_spec(ndim=3, slice_axis=0, patch_size=(8, 8), augmentation="mri-strong").flip_axes == (0,)
    assert make_spec(ndim=3, slice_axis=2, patch_size=(8, 8)).flip_axes == (0, 1)
    assert make_spec(ndim=2, modality="photo (RGB)").flip_axes == (1,)
    assert make_spec(ndim=2, augmentation="photo").flip_axes == (0, 1)
    # a 2D image's left-right is its columns (an LGG slice's rows run front to back); a volume's, its first axis
    assert make_spec(ndim=2, augmentation="mri-strong").flip_axes == (1,)
    assert make_spec(ndim=2, augmentation="mri-contrast").flip_axes == (1,)
    # no augmentation, no flips seen in training: --tta has nothing to flip
    assert make_spec(ndim=3, slice_axis=2, patch_size=(8, 8), augmentation="none").flip_axes == ()
    # a task whose own sampler flips (brain-tissue's synthesis: left-right only) says so
    assert make_spec(ndim=3, slice_axis=2, patch_size=(8, 8), augmentation="none", trained_flips=[0]).flip_axes == (0,)


@pytest.mark.parametrize("flips", [(2,), (0, 0), (-1,)])
def test_trained_flips_must_be_distinct_network_axes(flips):
    with pytest.raises(InvalidSpecError, match="trained_flips must be distinct network axes in 0..1"):
        make_spec(ndim=3, slice_axis=2, patch_size=(8, 8), trained_flips=flips)


def test_brain_tissue_tta_flips_left_right_only_as_its_synthesis_does():
    """Anterior-posterior flips, never made in its training, cost CSF Dice on the vxm T1 (0.81 -> 0.73)."""
    from segtool_brain_tissue import synthesis_settings

    from segtool.app import App

    spec = App(warn=lambda message: None).registry.get("brain-tissue")

    assert spec.flip_axes == (0,) == synthesis_settings().flip_axes


def test_tta_flips_only_the_given_axes():
    from segtool.sliding_window import flip_sets

    assert flip_sets(2) == [(), (1,), (2,), (1, 2)]
    assert flip_sets(2, (0,)) == [(), (1,)]
    assert flip_sets(3, (1, 2)) == [(), (2,), (3,), (2, 3)]

"""The bundled spinal-gm model (and its spinal-cord localiser) load, verify and run, offline.

No real data here (../shared may be absent): a synthetic axial "neck" in a large field
of view and a small crop. What this checks is the shipped product: the pinned files
hash right, the networks build from their config.json, `segtool run spinal-gm` works
offline through the localise-then-segment path and writes `<stem>_gmseg.nii.gz` on the
input grid. Accuracy on real images is benchmarks/accuracy.py's job.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from segtool.app import App
from segtool.cli import cli
from segtool.weights import HubSettings, build_model, resolve_model

LAS = np.array([[-0.5, 0, 0, 40.0], [0, 0.5, 0, -60.0], [0, 0, 3.0, -20.0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def app():
    return App()


@pytest.mark.parametrize("task", ["spinal-gm", "spinal-cord"])
def test_bundled_model_verifies_and_builds_offline(app, task, tmp_path):
    spec = app.registry.get(task)
    assert spec.has_weights and spec.models[spec.default_model].source == "bundled"
    resolved = resolve_model(spec, None, HubSettings.from_env(offline_flag=True, cache_dir=tmp_path), app.plugin_manager)
    assert resolved.pinned and resolved.config.weights_sha256 == resolved.weights_sha256
    model = build_model(spec, resolved)
    effective = resolved.config.apply_to(spec)
    assert effective.slice_axis == 2 and effective.network_dims == 2
    import torch

    with torch.inference_mode():
        out = model(torch.zeros(2, 1, *effective.patch_size))
    assert tuple(out.shape) == (2, spec.num_classes, *effective.patch_size)


def test_spinal_gm_localises_with_the_spinal_cord_task(app):
    spec = app.registry.get("spinal-gm")
    assert spec.locate is not None and spec.locate.task in app.registry
    assert spec.output_suffix == "_gmseg"


def synthetic_neck(shape=(200, 180, 5)) -> np.ndarray:
    """Soft tissue, a bright CSF ring, a grey cord with a brighter butterfly inside, off centre."""
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    image = 300.0 + rng.normal(0, 15, shape[:2])
    cx, cy = 120, 70
    r = np.hypot((x - cx) / 1.3, y - cy)
    image[r < 14] = 900.0  # CSF
    image[r < 9] = 450.0  # cord
    butterfly = (np.abs(x - cx) < 6) & (np.abs(y - cy) < 2) | ((np.abs(np.abs(x - cx) - 4) < 2) & (np.abs(y - cy) < 5))
    image[butterfly & (r < 9)] = 620.0
    return np.repeat(image[..., None], shape[2], axis=2).astype(np.float32)


@pytest.mark.parametrize("crop", [False, True])
def test_run_writes_a_gm_mask_on_the_input_grid_offline(tmp_path, crop, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    image = synthetic_neck()
    affine = LAS.copy()
    if crop:  # an image that is already a crop around the cord (25 x 25 mm): no localisation
        image = image[95:145, 45:95]
        affine[:3, 3] = LAS[:3, :3] @ np.array([95, 45, 0]) + LAS[:3, 3]
    source = tmp_path / "t2s.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), source)
    result = CliRunner().invoke(cli, ["run", "spinal-gm", str(source), "--offline", "-q"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "t2s_gmseg.nii.gz"
    assert result.stdout.strip() == str(out)
    mask = nib.load(str(out))
    assert mask.shape == image.shape and np.allclose(mask.affine, affine)
    values = np.unique(np.asarray(mask.dataobj))
    assert set(values.tolist()) <= {0, 1}
    assert source.exists() and np.array_equal(np.asarray(nib.load(str(source)).dataobj), image)

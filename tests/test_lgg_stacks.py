"""brain-tumour-2d's stacked path on small tumours and tumour-free patients (issue 36).

The bundled network finds nothing in synthetic slices, so these use the task's real declarations
(resizing to its input size, `zscore-nonzero` per slice, the 3D largest-component step of
``--stack``) with a one-convolution network whose weights are set by hand: tumour where the
FLAIR channel is more than 6 standard deviations above the slice's brain. What is tested is
the pipeline around the network: a tumour of 2 x 36 pixels on two slices of eight survives the
resizing, the stacking and the postprocessing on exactly those slices, and a patient with no
tumour gets empty masks, not noise.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from tiny_task import app_with, one_conv

SLICES = 8


def flair_threshold_folder(folder, spec):
    """model.safetensors + config.json: logit(tumour) - logit(background) = 4 * (z(FLAIR) - 6)."""
    import torch
    from safetensors.torch import save_file

    from segtool.model_config import ModelConfig

    folder.mkdir(parents=True, exist_ok=True)
    weight, bias = torch.zeros((2, 3, 1, 1)), torch.zeros(2)
    weight[1, 1], bias[1] = 4.0, -24.0
    save_file({"weight": weight, "bias": bias}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(ModelConfig.for_spec(spec).to_json(), encoding="utf-8")


@pytest.fixture()
def lgg_like(tmp_path):
    from segtool.app import App

    real = App(warn=lambda message: None).registry.get("brain-tumour-2d")
    spec = replace(real, network=None, model_factory=one_conv, model_kwargs={}, models={}, default_model=None)
    flair_threshold_folder(tmp_path / "model", spec)
    return spec, tmp_path / "model"


def patient(folder, tumour_slices=(), side=6, seed=0):
    """Eight 256 x 256 3-channel slices: a noisy 'brain' ellipse of ~90 on black; on ``tumour_slices``
    a ``side`` x ``side`` FLAIR-bright square (200) at rows/cols 100+."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rows, cols = np.mgrid[:256, :256]
    brain = (rows - 128) ** 2 / 100**2 + (cols - 128) ** 2 / 80**2 < 1
    truth = np.zeros((SLICES, 256, 256), bool)
    for n in range(SLICES):
        pixels = np.zeros((256, 256, 3), np.float32)
        pixels[brain] = 90 + rng.normal(0, 8, (int(brain.sum()), 3))
        if n in tumour_slices:
            pixels[100 : 100 + side, 150 : 150 + side, 1] = 200
            truth[n, 100 : 100 + side, 150 : 150 + side] = True
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{folder.name}_{n + 1}.tif")
    return truth


def run_stack(spec, model, folder, out):
    from click.testing import CliRunner

    from segtool.cli import cli

    result = CliRunner().invoke(cli, ["run", spec.name, str(folder), "--stack", "--model-dir", str(model),
                                      "--output-dir", str(out), "-q"], obj=app_with(spec))
    assert result.exit_code == 0, result.output
    return np.stack([np.asarray(Image.open(out / f"{folder.name}_{n + 1}_seg.tif")) > 0 for n in range(SLICES)])


def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_a_small_tumour_on_two_slices_is_found_on_those_slices(lgg_like, tmp_path):
    spec, model = lgg_like
    assert spec.postprocess.keep_largest  # the task's own 3D step runs
    truth = patient(tmp_path / "TCGA_XX_0001_20000101", tumour_slices=(3, 4))
    found = run_stack(spec, model, tmp_path / "TCGA_XX_0001_20000101", tmp_path / "out")
    assert truth.sum() == 72
    assert [n for n in range(SLICES) if found[n].any()] == [3, 4]
    assert dice(found, truth) > 0.7  # a 6-pixel square through a 2x resize and back


def test_a_tumour_free_patient_gets_empty_masks(lgg_like, tmp_path):
    spec, model = lgg_like
    patient(tmp_path / "TCGA_XX_0002_20000101", seed=1)
    found = run_stack(spec, model, tmp_path / "TCGA_XX_0002_20000101", tmp_path / "out")
    assert not found.any()

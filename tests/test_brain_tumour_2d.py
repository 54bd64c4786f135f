"""The bundled brain-tumour-2d model (attention U-Net on LGG slices) loads, verifies and runs, offline.

No real data (../shared may be absent): synthetic 3-channel TIFF slices shaped like the
dataset's (256 x 256, pre-contrast, FLAIR, post-contrast). What this checks is the shipped
product: the pinned files hash right, the network its config.json names builds, one slice
gets a mask at its own size, and a patient folder goes through `--stack` as one volume.
Per-patient accuracy on real patients is benchmarks/accuracy.py's job.
"""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from PIL import Image

from segtool.app import App
from segtool.cli import cli
from segtool.weights import HubSettings, build_model, resolve_model


def head_slice(rng: np.random.Generator, lesion: bool) -> np.ndarray:
    """A bright disc of 'brain' on black, noise, and optionally a brighter FLAIR blob."""
    rows, cols = np.mgrid[:256, :256]
    brain = (rows - 128) ** 2 / 100**2 + (cols - 128) ** 2 / 80**2 < 1
    pixels = np.zeros((256, 256, 3), dtype=np.float32)
    pixels[brain] = 90 + rng.normal(0, 8, (int(brain.sum()), 3))
    if lesion:
        blob = (rows - 100) ** 2 + (cols - 150) ** 2 < 15**2
        pixels[blob, 1] = 200  # FLAIR hyperintensity
    return np.clip(pixels, 0, 255).astype(np.uint8)


def test_bundled_model_verifies_and_builds_offline(tmp_path):
    import torch

    app = App(warn=lambda message: None)
    spec = app.registry.get("brain-tumour-2d")
    assert spec.default_model == "attention_unet" and spec.models["attention_unet"].source == "bundled"
    resolved = resolve_model(spec, None, HubSettings.from_env(offline_flag=True, cache_dir=tmp_path),
                             app.plugin_manager)
    assert resolved.pinned and resolved.config.network == "attention_unet"
    assert resolved.config.channels == ["pre_contrast", "flair", "post_contrast"]
    effective = resolved.config.apply_to(spec)
    assert effective.postprocess.keep_largest  # the largest tumour component (in 3D with --stack)
    model = build_model(spec, resolved)
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, *effective.patch_size))
    assert tuple(out.shape) == (1, 2, *effective.patch_size)


def test_one_slice_and_a_stacked_patient_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(0)
    folder = tmp_path / "TCGA_XX_0001_20000101"
    folder.mkdir()
    for n in range(1, 5):
        Image.fromarray(head_slice(rng, lesion=n in (2, 3))).save(folder / f"TCGA_XX_0001_20000101_{n}.tif")
    one = folder / "TCGA_XX_0001_20000101_2.tif"
    result = CliRunner().invoke(cli, ["run", "brain-tumour-2d", str(one), "-o", str(tmp_path / "one.png"),
                                      "--offline", "-q"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "one.png") as mask:
        assert mask.size == (256, 256) and set(np.unique(np.asarray(mask))) <= {0, 1}
    result = CliRunner().invoke(cli, ["run", "brain-tumour-2d", str(folder), "--stack", "--output-dir",
                                      str(tmp_path / "out"), "--offline", "-q"])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"TCGA_XX_0001_20000101_{n}_seg.tif" for n in range(1, 5)]  # the input's format
    for name in written:
        with Image.open(tmp_path / "out" / name) as mask:
            assert mask.size == (256, 256) and set(np.unique(np.asarray(mask))) <= {0, 1}

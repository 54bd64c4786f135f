"""The bundled brain-tumour-2d model (attention U-Net on LGG slices) loads, verifies and runs, offline.

No real data (../shared may be absent): synthetic 3-channel TIFF slices shaped like the
dataset's (256 x 256, pre-contrast, FLAIR, post-contrast). What this checks is the shipped
product: the pinned files hash right, the network its config.json names builds, one slice
gets a mask at its own size that covers its lesion, and a patient folder goes through `--stack`
as one volume, the lesion found where it is and nothing on the lesion-free slices.
Per-patient accuracy on real patients is benchmarks/accuracy.py's job.
"""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage

from segtool.app import App
from segtool.cli import cli
from segtool.weights import HubSettings, build_model, resolve_model

LESION_CENTRE = (100, 150)  # (row, column) of the synthetic lesion


def head_slice(rng: np.random.Generator, lesion_radius: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """An axial slice drawn like the LGG TIFFs, and its lesion mask (empty for ``lesion_radius`` 0).

    Bright scalp, dark skull, textured brain with two dark ventricles; the lesion is bright on
    FLAIR and a little dark on both T1s. The values (pre-contrast, FLAIR, post-contrast) are of the
    order read off real kaggle_3m slices: brain ~70, lesion ~55 / ~115 / ~53. A lone bright
    FLAIR disc on a flat grey brain is not enough: the bundled model finds nothing in it.
    """
    rows, cols = np.mgrid[:256, :256]

    def ellipse(r0, c0, a, b):
        return (rows - r0) ** 2 / a**2 + (cols - c0) ** 2 / b**2 < 1

    head, inside_skull, brain = ellipse(128, 128, 108, 88), ellipse(128, 128, 100, 80), ellipse(128, 128, 95, 75)
    ventricles = ellipse(118, 116, 22, 5) | ellipse(118, 140, 22, 5)
    pixels = np.zeros((256, 256, 3), dtype=np.float32)
    for region, value in ((head, (190, 170, 110)), (inside_skull, (15, 15, 15)), (brain, (80, 78, 60)),
                          (ventricles, (30, 25, 25))):
        pixels[region] = value
    lesion = np.zeros((256, 256), dtype=bool)
    if lesion_radius:
        lesion = ellipse(*LESION_CENTRE, lesion_radius, 0.8 * lesion_radius) & brain
        pixels[lesion] = (55, 118, 53)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (256, 256, 3)), (2, 2, 0)) * 25
    pixels[head] += texture[head] + rng.normal(0, 4, (int(head.sum()), 3))
    pixels = ndimage.gaussian_filter(pixels, (1, 1, 0))
    return np.clip(pixels, 0, 255).astype(np.uint8), lesion


def dice(found: np.ndarray, truth: np.ndarray) -> float:
    return 2.0 * float((found & truth).sum()) / float(found.sum() + truth.sum())


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
    """The model finds the lesion on its own slice and in the stacked patient (Dice 0.92-0.95 measured
    over four noise seeds; 0.8 asked) and nothing on the lesion-free slices."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(0)
    folder = tmp_path / "TCGA_XX_0001_20000101"
    folder.mkdir()
    lesions = {}
    for n in range(1, 5):  # a lesion on slices 2 and 3, at the same place: one component in 3D
        pixels, lesions[n] = head_slice(rng, lesion_radius={2: 18, 3: 15}.get(n, 0.0))
        Image.fromarray(pixels).save(folder / f"TCGA_XX_0001_20000101_{n}.tif")
    one = folder / "TCGA_XX_0001_20000101_2.tif"
    result = CliRunner().invoke(cli, ["run", "brain-tumour-2d", str(one), "-o", str(tmp_path / "one.png"),
                                      "--offline", "-q"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "one.png") as mask:
        assert mask.size == (256, 256)
        labels = np.asarray(mask)
    assert set(np.unique(labels)) == {0, 1} and dice(labels == 1, lesions[2]) > 0.8
    result = CliRunner().invoke(cli, ["run", "brain-tumour-2d", str(folder), "--stack", "--output-dir",
                                      str(tmp_path / "out"), "--offline", "-q"])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"TCGA_XX_0001_20000101_{n}_seg.tif" for n in range(1, 5)]  # the input's format
    for n in range(1, 5):
        with Image.open(tmp_path / "out" / f"TCGA_XX_0001_20000101_{n}_seg.tif") as mask:
            assert mask.size == (256, 256)
            labels = np.asarray(mask)
        assert set(np.unique(labels)) <= {0, 1}
        if lesions[n].any():
            assert dice(labels == 1, lesions[n]) > 0.8, f"slice {n}"
        else:
            assert not labels.any(), f"slice {n} has no lesion"


def stacked_patient(folder, rng, radii: dict[int, float], slices: int = 5) -> dict[int, np.ndarray]:
    """A patient folder of ``slices`` synthetic slices, a lesion of the given radius on the slices named in
    ``radii`` (1-based); the lesion masks by slice."""
    folder.mkdir()
    lesions = {}
    for n in range(1, slices + 1):
        pixels, lesions[n] = head_slice(rng, lesion_radius=radii.get(n, 0.0))
        Image.fromarray(pixels).save(folder / f"{folder.name}_{n}.tif")
    return lesions


def stacked_masks(folder, out, slices: int = 5) -> dict[int, np.ndarray]:
    result = CliRunner().invoke(cli, ["run", "brain-tumour-2d", str(folder), "--stack", "--output-dir", str(out),
                                      "--offline", "-q"])
    assert result.exit_code == 0, result.output
    masks = {}
    for n in range(1, slices + 1):
        with Image.open(out / f"{folder.name}_{n}_seg.tif") as mask:
            masks[n] = np.asarray(mask) == 1
    return masks


def test_a_small_tumour_on_two_slices_of_a_stacked_patient_is_found(tmp_path, monkeypatch):
    """About 1,050 pixels of tumour in all (639 + 413), half the smallest patient's in ../shared (2,059 over
    3 slices); the 3D largest-component step must keep it. Measured over four noise seeds: Dice 0.90-0.95 a
    slice. (Below about 400 pixels a slice the bundled model finds nothing: 361 px gets 100 px at Dice 0.43,
    241 px none; the issue's notes.)"""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "TCGA_XX_0002_20000101"
    lesions = stacked_patient(folder, np.random.default_rng(1), {3: 16.0, 4: 12.8})
    assert 1000 < sum(int(m.sum()) for m in lesions.values()) < 1100
    masks = stacked_masks(folder, tmp_path / "out")
    for n in (3, 4):
        assert dice(masks[n], lesions[n]) > 0.8, f"slice {n}"
    for n in (1, 2, 5):
        assert not masks[n].any(), f"slice {n} has no lesion"


def test_a_tumour_free_patient_gets_empty_masks(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "TCGA_XX_0003_20000101"
    stacked_patient(folder, np.random.default_rng(2), {})
    masks = stacked_masks(folder, tmp_path / "out")
    assert len(masks) == 5 and not any(m.any() for m in masks.values())
    result = CliRunner().invoke(cli, ["run", "brain-tumour-2d", str(folder / f"{folder.name}_3.tif"), "-o",
                                      str(tmp_path / "one.png"), "--offline", "-q"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "one.png") as mask:
        assert not np.asarray(mask).any()  # one slice alone: empty as well

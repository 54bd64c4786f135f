"""The bundled disc models (three networks) load, verify and run offline, DICOM in and DICOM SEG out.

No real data (../shared may be absent): a small synthetic sagittal series. What this
checks is the shipped product: every bundled variant's pinned files hash right and
build the network its config.json names; `--model NAME` picks that variant; `segtool
run disc SERIES_DIR/` reads the series and writes the five-disc mask on the input grid,
and `--format dicom-seg` a DICOM SEG that references the input series. Accuracy on
real subjects is benchmarks/accuracy.py's job.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from segtool.app import App
from segtool.cli import cli
from segtool.weights import HubSettings, build_model, resolve_model

from hostile.dicom import write_slice

NETWORKS = ("unet", "res_se_unet", "deeplabv3plus")
#: DICOM (LPS) sagittal slices: rows run posterior (+y), columns inferior (-z); slices along x
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
SERIES_UID = "1.2.826.0.1.3680043.8.498.77"


@pytest.fixture(scope="module")
def app():
    return App(warn=lambda message: None)


@pytest.fixture
def series(tmp_path) -> Path:
    """Five sagittal slices, 40 x 48 pixels at 1 mm: a grey column with five bright bands."""
    directory = tmp_path / "series"
    directory.mkdir()
    for k in range(5):
        pixels = np.full((40, 48), 200, dtype=np.int16)
        pixels[:, 10:30] = 600
        for band in range(5):
            pixels[2 + 8 * band: 6 + 8 * band, 12:28] = 1200
        write_slice(directory / f"IM{k:04d}.dcm", pixels, (-2.0 + k, -20.0, 30.0), orientation=SAGITTAL,
                    series_uid=SERIES_UID, number=k + 1)
    return directory


def test_disc_bundles_the_three_seed_networks_and_picks_the_best_by_default(app):
    spec = app.registry.get("disc")
    assert set(spec.models) == set(NETWORKS)
    assert spec.default_model in NETWORKS
    assert all(spec.models[n].source == "bundled" for n in NETWORKS)


@pytest.mark.parametrize("network", NETWORKS)
def test_every_bundled_network_verifies_and_builds_offline(app, network, tmp_path):
    import torch

    spec = app.registry.get("disc")
    resolved = resolve_model(spec, network, HubSettings.from_env(offline_flag=True, cache_dir=tmp_path),
                             app.plugin_manager)
    assert resolved.pinned and resolved.config.weights_sha256 == resolved.weights_sha256
    assert resolved.config.network == network
    effective = resolved.config.apply_to(spec)
    assert effective.slice_axis == 0 and effective.network_dims == 2
    model = build_model(spec, resolved)
    with torch.inference_mode():
        out = model(torch.zeros(1, 1, *effective.patch_size))
    assert tuple(out.shape) == (1, 6, *effective.patch_size)


def test_run_on_a_dicom_series_writes_the_mask_on_its_grid(series, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "mask.nii.gz"
    result = CliRunner().invoke(cli, ["run", "disc", str(series), "-o", str(out), "--offline", "-q",
                                      "--model", "res_se_unet"])
    assert result.exit_code == 0, result.output
    mask = nib.load(out)
    assert mask.shape == (48, 40, 5)  # columns x rows x slices, as the series was read
    assert set(np.unique(np.asarray(mask.dataobj))) <= set(range(6))
    # the series' grid: slices stacked along the normal row x column = LPS (-1, 0, 0), so voxel
    # (0, 0, 0) is the first pixel of the slice at LPS x = +2, i.e. RAS (-2, 20, 30); 1 mm voxels
    from segtool.io import read_volume

    assert np.allclose(mask.affine, read_volume(series).affine)
    assert np.allclose(mask.affine[:3, 3], (-2.0, 20.0, 30.0))
    assert np.allclose(np.abs(mask.affine[:3, :3]).sum(axis=0), 1.0)  # 1 mm, axis-aligned


def test_dicom_seg_output_references_the_input_series(series, tmp_path, monkeypatch):
    pydicom = pytest.importorskip("pydicom")
    pytest.importorskip("highdicom")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(cli, ["run", "disc", str(series), "--output-dir", str(tmp_path / "out"),
                                      "--format", "dicom-seg", "--offline", "-q"])
    assert result.exit_code == 0, result.output
    written = Path(result.stdout.strip())
    assert written.suffix == ".dcm" and written.parent == tmp_path / "out"
    seg = pydicom.dcmread(written)
    assert seg.Modality == "SEG"
    referenced = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
    assert referenced == SERIES_UID
    names = {s.SegmentLabel for s in seg.SegmentSequence}
    assert names <= {"L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2"}

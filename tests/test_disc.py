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
from scipy import ndimage

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


#: (row, column, tilt in degrees) of the five discs on a sagittal slice, L5-S1 first: the layout of
#: a real subject's mid-sagittal slice (1 mm), the lumbar lordosis and the tilted sacrum included
DISCS = ((170, 80, -26), (136, 73, -6), (101, 77, 3), (69, 83, 5), (36, 88, 3))
SLICE_SHAPE = (221, 221)  # rows (running inferior) x columns (running posterior), as the data's slices


def _box(rows, cols, centre, tilt, half_width, half_height):
    """A rectangle turned by ``tilt``: ``half_width`` across the column (anterior-posterior), ``half_height`` along it;
    also each pixel's coordinates across and along."""
    a = np.radians(tilt)
    dr, dc = rows - centre[0], cols - centre[1]
    across, along = dr * np.sin(a) + dc * np.cos(a), dr * np.cos(a) - dc * np.sin(a)
    return (np.abs(across) < half_width) & (np.abs(along) < half_height), across, along


def sagittal_spine(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A T2 sagittal lumbar slice and its disc labels (1 = L5-S1 ... 5 = L1-L2), drawn with the real data's
    contrast: textured vertebral bodies (~175) in a dark cortical rim, each disc a dark annulus around a bright
    nucleus (~300), bright CSF behind the column (~560), soft tissue in front (~145) and behind (~110).
    Straight, level bands are not enough: the networks then miss discs or name them a level off."""
    rows, cols = np.mgrid[: SLICE_SHAPE[0], : SLICE_SHAPE[1]].astype(float)
    texture = ndimage.gaussian_filter(rng.normal(0, 1, SLICE_SHAPE), 1.5) * 3
    centres = sorted((r, c) for r, c, _ in DISCS)
    back = np.interp(rows[:, 0], [r for r, _ in centres], [c + 20 for _, c in centres])[:, None]
    image = np.where(cols > back, 110.0 + 60 * texture, 145.0 + 40 * texture)
    image[(cols > back + 4) & (cols < back + 16)] = 560.0  # CSF
    image[:, 185:192] = 300.0  # subcutaneous fat
    image[:, 192:] = 20.0  # air
    (r1, c1, t1), (r5, c5, t5) = DISCS[0], DISCS[-1]
    bodies = [((r1 + 40 * np.cos(np.radians(t1)), c1 - 40 * np.sin(np.radians(t1))), t1 - 8, 30.0)]  # S1, sacrum
    bodies += [(((ra + rb) / 2, (ca + cb) / 2), (ta + tb) / 2, (ra - rb) / 2 - 5)
               for (ra, ca, ta), (rb, cb, tb) in zip(DISCS, DISCS[1:])]
    bodies.append(((r5 - 17, c5 + 1), t5, 12.0))  # L1
    for centre, tilt, half in bodies:
        image[_box(rows, cols, centre, tilt, 20, half)[0]] = 35.0
        inside = _box(rows, cols, centre, tilt, 18, half - 2)[0]
        image[inside] = (175.0 + 40 * texture)[inside]
    labels = np.zeros(SLICE_SHAPE, dtype=np.uint8)
    for level, (r, c, tilt) in enumerate(DISCS, start=1):
        disc, across, along = _box(rows, cols, (r, c), tilt, 19, 4.5)
        image[disc] = 45.0
        image[(across / 15) ** 2 + (along / 3.2) ** 2 < 1] = 300.0
        labels[disc] = level
    image = ndimage.gaussian_filter(image, 0.6) + rng.normal(0, 8, SLICE_SHAPE)
    return np.clip(image, 0, None).astype(np.int16), labels


@pytest.fixture
def series(tmp_path) -> tuple[Path, np.ndarray]:
    """Five sagittal slices at 1 mm through a lumbar spine, and the disc labels on the grid the series is read
    onto (columns x rows x slices)."""
    directory = tmp_path / "series"
    directory.mkdir()
    rng = np.random.default_rng(0)
    for k in range(5):
        pixels, labels = sagittal_spine(rng)
        write_slice(directory / f"IM{k:04d}.dcm", pixels, (-2.0 + k, -20.0, 30.0), orientation=SAGITTAL,
                    series_uid=SERIES_UID, number=k + 1)
    return directory, np.repeat(labels.T[:, :, None], 5, axis=2)


def dice(found: np.ndarray, truth: np.ndarray) -> float:
    return 2.0 * float((found & truth).sum()) / float(found.sum() + truth.sum())


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


def test_run_on_a_dicom_series_writes_the_mask_on_its_grid(app, series, tmp_path, monkeypatch):
    """Each disc is found where it is and named by its level (Dice 0.62-0.84 per disc measured over four
    noise seeds with unet and deeplabv3plus; 0.5 asked). res_se_unet, trained on two subjects, finds
    two discs in this spine and names them wrong."""
    import json

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    series, truth = series
    out = tmp_path / "mask.nii.gz"
    result = CliRunner().invoke(cli, ["run", "disc", str(series), "-o", str(out), "--offline", "--json",
                                      "--model", "deeplabv3plus"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "deeplabv3plus"
    mask = nib.load(out)
    assert mask.shape == (221, 221, 5)  # columns x rows x slices, as the series was read: the discs' Dice below
    # fails if the two in-plane axes were swapped or flipped
    labels = np.asarray(mask.dataobj)
    assert set(np.unique(labels)) == set(range(6))
    for level, name in app.registry.get("disc").labels.items():
        assert dice(labels == level, truth == level) > 0.5, name
    # the series' grid: slices stacked along the normal row x column = LPS (-1, 0, 0), so voxel
    # (0, 0, 0) is the first pixel of the slice at LPS x = +2, i.e. RAS (-2, 20, 30); 1 mm voxels
    from segtool.io import read_volume

    assert np.allclose(mask.affine, read_volume(series).affine)
    assert np.allclose(mask.affine[:3, 3], (-2.0, 20.0, 30.0))
    assert np.allclose(np.abs(mask.affine[:3, :3]).sum(axis=0), 1.0)  # 1 mm, axis-aligned


def test_dicom_seg_output_references_the_input_series(series, tmp_path, monkeypatch):
    import pydicom  # a dependency; highdicom, which writes the SEG, is in the test extras: neither is skipped
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    series, truth = series
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
    assert names == {"L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2"}
    # the default network's discs, in the SEG's frames: each segment about the size of its disc
    pixels = {}
    for frame, groups in zip(seg.pixel_array, seg.PerFrameFunctionalGroupsSequence):
        number = groups.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        pixels[number] = pixels.get(number, 0) + int(frame.sum())
    for level in range(1, 6):
        assert 0.5 * (truth == level).sum() < pixels.get(level, 0) < 1.5 * (truth == level).sum(), level

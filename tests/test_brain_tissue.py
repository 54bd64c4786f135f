"""The brain-tissue task's bundled model: it verifies offline, runs slice-wise on any grid and combines contrasts.

Accuracy on a real brain (the vxm T1, never trained on) is benchmarks/accuracy.py's job;
these tests use a small synthetic head on disk.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from segtool.app import App
from segtool.cli import cli
from segtool.weights import HubSettings, build_model, resolve_model

#: voxel axes L, P, S at 1.2 x 1.1 x 1.5 mm: not the task's RAS, not its 1 mm
AFFINE = np.array([[-1.2, 0, 0, 40.0], [0, -1.1, 0, 50.0], [0, 0, 1.5, -30.0], [0, 0, 0, 1]])
SHAPE = (60, 70, 36)


def ellipsoid_radius() -> np.ndarray:
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in SHAPE), indexing="ij")
    return np.sqrt((x / 0.8) ** 2 + (y / 0.85) ** 2 + (z / 0.7) ** 2)


def synthetic_head(tmp_path):
    """A T1-like ellipsoid (bright core, darker shell, dark centre), zero outside, and its inversion inside."""
    r = ellipsoid_radius()
    t1 = np.select([r < 0.15, r < 0.6, r < 0.9, r < 1.0], [0.2, 0.9, 0.55, 0.15], 0.0).astype(np.float32)
    t1 += np.where(r < 1.0, np.random.default_rng(0).normal(0, 0.02, SHAPE), 0).astype(np.float32)
    t1[:, :, :4] = 0.0  # empty slices below the head
    t2 = np.where(t1 > 0, 1.1 - t1, 0.0).astype(np.float32)
    paths = {}
    for name, array in (("t1", t1), ("t2", t2)):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(array, AFFINE), str(paths[name]))
    return paths


def run(*args: str):
    result = CliRunner().invoke(cli, ["run", "brain-tissue", *args, "--offline", "--json", "-q"])
    return result, [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_the_bundled_model_verifies_and_builds_offline(tmp_path):
    import torch

    app = App(warn=lambda message: None)
    spec = app.registry.get("brain-tissue")
    assert spec.has_weights and spec.models[spec.default_model].source == "bundled"
    resolved = resolve_model(spec, None, HubSettings.from_env(offline_flag=True, cache_dir=tmp_path),
                             app.plugin_manager)
    assert resolved.pinned and resolved.config.weights_sha256 == resolved.weights_sha256
    effective = resolved.config.apply_to(spec)
    assert effective.slice_axis == 2 and effective.target_spacing == (1.0, 1.0, None)
    model = build_model(spec, resolved)
    with torch.inference_mode():
        out = model(torch.zeros(1, 1, 160, 160))
    assert tuple(out.shape) == (1, 4, 160, 160)


@pytest.mark.parametrize("model", [None, "ventricular-csf"])
def test_run_writes_tissue_labels_on_the_input_grid(tmp_path, monkeypatch, model):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    head = synthetic_head(tmp_path)
    chosen = ["--model", model] if model else []
    result, rows = run(str(head["t1"]), "-o", str(tmp_path / "t1_tissue.nii.gz"), *chosen)
    assert result.exit_code == 0, result.output
    image = nib.load(str(tmp_path / "t1_tissue.nii.gz"))
    assert image.shape == SHAPE and np.allclose(image.affine, AFFINE)
    labels = np.asanyarray(image.dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    # tissue where the head is, none around it (the ellipsoid is no brain, so no finer claim). The
    # `ventricular-csf` model calls most of this ellipsoid's shells background (extra-cerebral
    # CSF-like rings around a bright core), so the "tissue where the head is" claim is the default
    # all-CSF model's
    head_mask = ellipsoid_radius() < 1.0
    assert (labels > 0).sum() > (0 if model == "ventricular-csf" else 0.3 * head_mask.sum())
    assert (labels > 0)[ellipsoid_radius() >= 1.1].sum() <= 0.01 * (labels > 0).sum()
    # slices holding nothing but zeros are background, whatever the network would have said
    assert (labels[:, :, :4] == 0).all()
    assert set(rows[0]["volumes_mm3"]) == {"csf", "gray_matter", "white_matter"}


def test_an_analyze_t1_is_segmented_by_the_default_model_into_an_analyze_mask(tmp_path, monkeypatch):
    """Analyze in and out (iSeg ships .hdr/.img) still work with the default model."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    head = synthetic_head(tmp_path)
    t1 = nib.load(str(head["t1"]))
    nib.AnalyzeImage(np.asarray(t1.dataobj, dtype=np.float32), AFFINE).to_filename(str(tmp_path / "t1.hdr"))
    (tmp_path / "out").mkdir()
    result, rows = run(str(tmp_path / "t1.img"), "-o", str(tmp_path / "out" / "t1_seg.hdr"))
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert {"t1_seg.hdr", "t1_seg.img"} <= set(written) and all(w.startswith("t1_seg.") for w in written)
    mask = nib.load(str(tmp_path / "out" / "t1_seg.hdr"))
    assert not isinstance(mask.header, nib.Nifti1Header)
    assert mask.shape == SHAPE and np.allclose(mask.affine, nib.load(str(tmp_path / "t1.hdr")).affine)
    assert set(np.unique(np.asanyarray(mask.dataobj))) <= {0, 1, 2, 3} and rows[0]["status"] == "done"


def test_the_default_model_is_the_seeds_all_csf_convention(tmp_path):
    """Issue 39: `segtool run brain-tissue` labels CSF as all CSF (ventricles, sulci, extra-cerebral), as the
    seed, FSL FAST, SPM and Atropos do; FreeSurfer's ventricles-only CSF stays `--model ventricular-csf`.
    `segtool tasks brain-tissue --json` names the default and states each model's convention."""
    result = CliRunner().invoke(cli, ["tasks", "brain-tissue", "--json"])
    assert result.exit_code == 0, result.output
    task = json.loads(result.stdout)
    assert task["default_model"] == "all-csf"
    assert list(task["models"]) == ["all-csf", "ventricular-csf"]
    description = task["description"]
    assert ("all-csf (default): CSF = all CSF: ventricles, sulci and extra-cerebral space (the seed's convention"
            in description)
    assert "ventricular-csf: CSF = the ventricles only" in description and "FreeSurfer aseg's convention" in description
    assert description.count("(default)") == 1

    # and the default's weights are the model trained with the all-CSF merge (TISSUE_OF, label 24 = CSF),
    # not the fine-tune to FreeSurfer's ventricles: the name and the weights agree
    import segtool_brain_tissue as bt

    app = App(warn=lambda message: None)
    spec = app.registry.get("brain-tissue")
    resolved = resolve_model(spec, None, HubSettings.from_env(offline_flag=True, cache_dir=tmp_path),
                             app.plugin_manager)
    assert resolved.weights_sha256 == spec.models["all-csf"].weights.sha256
    assert not resolved.config.training.get("labels_map")  # trained with the plugin's TISSUE_OF
    assert bt.TISSUE_OF[24] == bt.CSF and 24 not in bt.VENTRICULAR_CSF_TISSUE_OF
    assert bt.CSF_CONVENTION[spec.default_model].startswith("CSF = all CSF")


def test_t1_and_t2_of_one_head_combine_into_one_mask(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    head = synthetic_head(tmp_path)
    result, rows = run(str(head["t1"]), str(head["t2"]), "--combine", "--output-dir", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert [r["input"] for r in rows] == [str(head["t1"])]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t1_seg.nii.gz"]
    assert nib.load(str(tmp_path / "out" / "t1_seg.nii.gz")).shape == SHAPE


def test_the_ventricular_csf_model_was_trained_by_the_plugins_ventricular_map(tmp_path):
    """The bundled `ventricular-csf` model records the labels map it was trained with: TISSUE_OF without label 24."""
    import torch

    from segtool.labels_map import parse_labels_map

    app = App(warn=lambda message: None)
    spec = app.registry.get("brain-tissue")
    resolved = resolve_model(spec, "ventricular-csf", HubSettings.from_env(offline_flag=True, cache_dir=tmp_path),
                             app.plugin_manager)
    assert resolved.pinned and resolved.config.weights_sha256 == resolved.weights_sha256
    training = resolved.config.training
    recorded = parse_labels_map(training["labels_map"], spec.labels)
    import segtool_brain_tissue as bt

    assert recorded == bt.VENTRICULAR_CSF_TISSUE_OF and 24 not in recorded and recorded[4] == bt.CSF
    assert training["init_weights"]["weights_sha256"] == spec.models["all-csf"].weights.sha256
    model = build_model(spec, resolved)
    with torch.inference_mode():
        assert tuple(model(torch.zeros(1, 1, 160, 160)).shape) == (1, 4, 160, 160)


def test_a_256_slice_takes_four_windows_and_the_vxm_t1_the_same_as_at_half_overlap():
    """The task's overlap (0.4) keeps a 256^3 T1 within 30 s on 2 cores: 2 windows a side on a 256-wide
    slice, not 3 as at 0.5; the vxm T1's axial slices (160 x 224 in RAS) get the very windows of 0.5."""
    from segtool.windows import plan_windows

    spec = App(warn=lambda message: None).registry.get("brain-tissue")
    assert len(plan_windows((256, 256), spec.patch_size, spec.overlap).starts) == 4
    assert len(plan_windows((256, 256), spec.patch_size, 0.5).starts) == 9
    for shape in ((160, 224), (224, 224), (200, 240), (240, 240)):
        assert plan_windows(shape, spec.patch_size, spec.overlap) == plan_windows(shape, spec.patch_size, 0.5)
